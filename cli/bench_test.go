package cli

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/bench"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
)

// TestBenchCommand runs `lazytree bench` as a user would, on the demo
// sample at a 10 ms link, for three strategies and the ostree peer on two
// workloads, twice per cell; then again on the same repo with --compare.
// The report must hold every cell with plausible figures, the charts must
// say what the JSON says, and the second report must note every median
// that moved more than 15%.
func TestBenchCommand(t *testing.T) {
	requireFuse(t)
	testutil.RequireTool(t, "ostree")
	bin := testutil.BuildLazytree(t)
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	svg, html, first := filepath.Join(dir, "chart.svg"), filepath.Join(dir, "report.html"), filepath.Join(dir, "first.json")
	benchArgs := func(extra ...string) []string {
		return append([]string{"--home", filepath.Join(dir, "home"), "bench", "--rtt", "10ms", "--bandwidth", "200Mbit",
			"--strategy", "none,metadata,profile", "--peer", "ostree", "--runs", "2", "--json"}, extra...)
	}
	out := runBenchBin(t, bin, benchArgs("--workload", "builtin:start,builtin:first-read", "--work", work, "--svg", svg, "--html", html)...)
	if err := os.WriteFile(first, out, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := bench.ReadReport(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if rep.RefFiles < 50 || rep.RefBytes < 1e6 || rep.Commit == "" {
		t.Fatalf("report of the sample: %d files, %d bytes, commit %q", rep.RefFiles, rep.RefBytes, rep.Commit)
	}
	if len(rep.Cells) != 2*4 {
		t.Fatalf("%d cells, want 8 (2 workloads × 3 strategies and ostree)", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		if c.Error != "" || len(c.Samples) != 2 {
			t.Fatalf("%s %s: %d samples, error %q", c.Workload, c.Strategy, len(c.Samples), c.Error)
		}
		for _, s := range c.Samples {
			if s.Mount <= 0 || s.FirstByte < s.Mount || s.Done < s.FirstByte || s.Requests < 2 || s.CriticalPath < 1 ||
				s.CriticalPath > s.Requests || s.Bytes <= 0 || s.PeakRSS < 1<<20 {
				t.Errorf("%s %s: implausible sample %+v", c.Workload, c.Strategy, s)
			}
			if !bench.IsPeer(c.Strategy) && s.Bytes >= rep.RefBytes {
				t.Errorf("%s %s fetched %d bytes, the whole ref is %d", c.Workload, c.Strategy, s.Bytes, rep.RefBytes)
			}
		}
	}
	n := rep.Networks()[0]
	for _, wl := range []string{"start", "first-read"} {
		none, meta, peer := rep.Cell(wl, n, "none"), rep.Cell(wl, n, "metadata"), rep.Cell(wl, n, bench.PeerOstree)
		if meta.Summary[bench.MetricRequests].Median > none.Summary[bench.MetricRequests].Median {
			t.Errorf("%s: metadata made more requests (%v) than none (%v)", wl, meta.Summary[bench.MetricRequests], none.Summary[bench.MetricRequests])
		}
		if meta.Summary[bench.MetricHitRatio].Median <= 0 {
			t.Errorf("%s: metadata prefetch but no cache hits", wl)
		}
		if x := meta.Speedup(peer); x <= 1 {
			t.Errorf("%s: metadata finished %.2f× as soon as ostree pull + checkout", wl, x)
		}
	}
	for _, wl := range rep.Workloads() {
		checkChart(t, rep, strings.TrimSuffix(svg, ".svg")+"-"+wl+".svg", wl)
	}
	if b, err := os.ReadFile(html); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("HTML report: %v, %d bytes, svg inline: %v", err, len(b), bytes.Contains(b, []byte("<svg")))
	}

	// The same inputs again, told about the first report.
	out = runBenchBin(t, bin, benchArgs("--workload", "builtin:start", "--repo", filepath.Join(work, "sample", "repo"),
		"--sign-pubkey-file", filepath.Join(work, "sample", "throwaway.pub"), "--compare", first)...)
	again, err := bench.ReadReport(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if again.Commit != rep.Commit || len(again.Cells) != 4 {
		t.Fatalf("second report: commit %s (first %s), %d cells", again.Commit, rep.Commit, len(again.Cells))
	}
	notes := strings.Join(again.Notes, "\n")
	for _, c := range again.Cells {
		a, b := rep.Cell(c.Workload, c.Network, c.Strategy).Summary[bench.MetricDone].Median, c.Summary[bench.MetricDone].Median
		moved := (b - a) / ((a + b) / 2)
		t.Logf("%s %s: median %.3f s, then %.3f s (%+.0f%%)", c.Workload, c.Strategy, a, b, 100*moved)
		if (moved > bench.NoiseLimit || moved < -bench.NoiseLimit) && !strings.Contains(notes, c.Strategy+": median") {
			t.Errorf("%s %s moved %.0f%% and the report does not say so: %s", c.Workload, c.Strategy, 100*moved, notes)
		}
	}
	if !strings.Contains(notes, "against "+first) {
		t.Errorf("second report has no comparison note: %s", notes)
	}
}

// runBenchBin runs the lazytree binary with args and returns its standard
// output.
func runBenchBin(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lazytree %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// checkChart parses the chart of workload wl and checks every bar against
// the report: one bar and one label per cell and metric, at the median.
func checkChart(t *testing.T, rep *bench.Report, path, wl string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bars := map[string]int{}
	dec := xml.NewDecoder(f)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		if attr["data-metric"] == "" {
			continue
		}
		key := attr["data-network"] + " " + attr["data-strategy"] + " " + attr["data-metric"]
		bars[key]++
		var cell *bench.Cell
		for _, n := range rep.Networks() {
			if n.String() == attr["data-network"] {
				cell = rep.Cell(wl, n, attr["data-strategy"])
			}
		}
		if cell == nil || attr["data-workload"] != wl {
			t.Errorf("%s: a bar for %s that the report does not have", path, key)
			continue
		}
		if want := strconv.FormatFloat(cell.Summary[attr["data-metric"]].Median, 'g', -1, 64); attr["data-median"] != want {
			t.Errorf("%s: %s at %s, the report says %s", path, key, attr["data-median"], want)
		}
	}
	for _, c := range rep.Cells {
		if c.Workload != wl {
			continue
		}
		for _, m := range []string{bench.MetricDone, bench.MetricBytes} {
			if k := c.Network.String() + " " + c.Strategy + " " + m; bars[k] != 2 {
				t.Errorf("%s: %d elements for %s, want a bar and a label", path, bars[k], k)
			}
		}
	}
}

// TestBenchRecord records a workload from a real start of the demo
// sample's bash and replays it: the files bash and its loader open must be
// in it, in the loader's order, and bench must run it.
func TestBenchRecord(t *testing.T) {
	requireFuse(t)
	bin := testutil.BuildLazytree(t)
	dir := t.TempDir()
	work, wl := filepath.Join(dir, "work"), filepath.Join(dir, "start.json")
	runBenchBin(t, bin, "--home", filepath.Join(dir, "home"), "bench", "record", "--work", work, "--name", "bash-start", "-o", wl, "--",
		"{root}/files/lib64/ld-linux-x86-64.so.2", "--library-path", "{root}/files/lib", "{root}/files/bin/bash", "-c", "echo hi")
	w, err := bench.ParseWorkload(wl)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, op := range w.Ops {
		paths = append(paths, op.Path)
	}
	got := strings.Join(paths, " ")
	if w.Name != "bash-start" || !strings.Contains(got, "files/bin/bash") || !strings.Contains(got, "files/lib/libc.so.6") ||
		strings.Index(got, "files/bin/bash") > strings.Index(got, "files/lib/libc.so.6") {
		t.Fatalf("recorded %q: %s", w.Name, got)
	}
	// Replayed through the proxy in front of a URL (a plain server of the
	// same repo), with the first-read built-in beside it.
	origin, err := fetchtest.New(filepath.Join(work, "sample", "repo"), fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	out := runBenchBin(t, bin, "--home", filepath.Join(dir, "home"), "bench", "--repo", origin.URL(), "--ref", "runtime/org.lazytree.Demo/x86_64/1",
		"--sign-pubkey-file", filepath.Join(work, "sample", "throwaway.pub"), "--rtt", "5ms", "--strategy", "none",
		"--peer", "", "--workload", wl+",builtin:first-read", "--json")
	rep, err := bench.ReadReport(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 2 || rep.Cells[0].Error != "" || rep.Cells[0].Workload != "bash-start" || rep.Cells[0].Samples[0].Requests < len(w.Ops) ||
		rep.Cells[1].Error != "" || rep.Cells[1].Workload != "first-read" {
		t.Fatalf("replay: %+v", rep.Cells)
	}
	if rep.RefFiles < 50 || rep.Commit == "" || rep.RefBytes < 1e6 {
		t.Errorf("survey through the URL: %d files, %d bytes, commit %q", rep.RefFiles, rep.RefBytes, rep.Commit)
	}
	if n := origin.Stats().Requests; n < int64(rep.Cells[0].Samples[0].Requests) {
		t.Errorf("the origin saw %d requests, the proxy %d", n, rep.Cells[0].Samples[0].Requests)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"100Mbit": 100e6, "1Gbit": 1e9, "500kbit": 500e3, "20Mbps": 20e6, "2.5Mbit/s": 2.5e6, "unlimited": 0} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"100", "0.5bit", "fast", "-1Mbit", "Mbit", "NaNMbit", "1e20Gbit"} {
		if got, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) = %d, want an error", in, got)
		}
	}
}

// TestBenchUsage: a wrong flag is a one-line usage error (exit 2) before
// anything is built or measured.
func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--strategy", "bogus"},
		{"--peer", "bogus"},
		{"--strategy", "none,none"},
		{"--strategy", "peer:ostree"}, // and the default --peer ostree
		{"--workload", "builtin:start,builtin:start"},
		{"--rtt", "fast"},
		{"--bandwidth", "100"},
		{"--runs", "0"},
		{"--loss", "2"},
		{"--ref", "../../etc"},
		{"--workload", "builtin:nope"},
		{"--compare", "/nonexistent/report.json"},
		{"--svg", "/nonexistent/dir/chart.svg"},
	} {
		start := time.Now()
		_, errOut, code := ltCode(t, append([]string{"--home", t.TempDir(), "bench"}, args...)...)
		if code != ExitUsage || strings.Count(strings.TrimSpace(errOut), "\n") > 0 || time.Since(start) > 5*time.Second {
			t.Errorf("bench %q: exit %d after %s: %q", args, code, time.Since(start), errOut)
		}
	}
}
