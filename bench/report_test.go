package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

var svgOut = flag.String("svgout", "", "write the test report's first chart to this file, and the others beside it, to look at")

var (
	testNets = []Network{
		{RTT: 0, Bandwidth: 0},
		{RTT: 20 * time.Millisecond, Bandwidth: 100_000_000},
		{RTT: 150 * time.Millisecond, Bandwidth: 10_000_000},
	}
	testStrategies = []string{"none", "metadata", "profile", "delta", "full", "peer:ostree", "peer:flatpak"}
	testWorkloads  = []string{"start", "read-all"}
)

// testReport is a report as the runner would write it: every cell has
// three samples of different values, except (start, 20ms, profile), which
// is noisy; (start, 0s, delta), which lost a run and has two; and
// (read-all, 150ms, peer:flatpak), which failed outright. Lazy strategies
// finish in [1, 10) s, peers in [10, 100) s.
func testReport() *Report {
	r := &Report{
		Version: ReportVersion, Started: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Host: Host{CPUs: 2, Kernel: "6.8.0", Go: "go1.26.8"},
		Repo: "https://example.org/repo", Ref: "app/org.example/x86_64/stable",
		Commit: "0123456789abcdef0123456789abcdef", RefFiles: 4321, RefBytes: 450_000_000, Runs: 3,
		Notes: []string{"peer:flatpak failed on 150ms/10Mbit: not installed"},
	}
	for wi, wl := range testWorkloads {
		for ni, n := range testNets {
			for si, s := range testStrategies {
				c := Cell{Network: n, Strategy: s, Workload: wl}
				done := 1.0 + 0.37*float64(si) + 0.9*float64(ni) + 2*float64(wi)
				bytes := int64(100_000 * (si + 1) * (si + 1) * (ni + 1) * (wi + 1))
				if IsPeer(s) {
					done = 12 + 7*float64(ni) + 15*float64(wi) + 3*float64(si-5)
					bytes = 450_000_000 + int64(si)*1_000_000
				}
				scale := []float64{1.0, 0.97, 1.04}
				switch {
				case wl == "start" && ni == 1 && s == "profile":
					scale = []float64{1.0, 0.8, 1.1}
				case wl == "start" && ni == 0 && s == "delta":
					scale = []float64{1.0, 1.06}
					c.Error = "1 of 3 runs: mount: timed out"
				case wl == "read-all" && ni == 2 && s == "peer:flatpak":
					scale = nil
					c.Error = "flatpak: not installed"
				}
				for k, f := range scale {
					c.Samples = append(c.Samples, Sample{
						Mount: 0.05 * f, FirstByte: 0.3 * f, Done: done * f,
						Bytes: int64(float64(bytes) * f), Requests: 40 + 10*si + k, CriticalPath: 3 + si,
						CacheHitRatio: 0.5 + 0.1*float64(k), PeakRSS: int64(30_000_000 + 1_000_000*k),
					})
				}
				c.Summarize()
				r.Cells = append(r.Cells, c)
			}
		}
	}
	return r
}

// roundTrip is r as a script reading --json sees it.
func roundTrip(t *testing.T, r *Report) *Report {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name                     string
		done                     []float64
		median, min, max, spread float64
		noisy                    bool
	}{
		{"odd", []float64{3, 1, 2}, 2, 1, 3, 1, true},
		{"even", []float64{4, 1, 3, 2}, 2.5, 1, 4, 1.2, true},
		{"one", []float64{5}, 5, 5, 5, 0, false},
		{"quiet", []float64{10, 10.5, 9.8}, 10, 9.8, 10.5, 0.07, false},
		{"at the limit", []float64{10, 11.5, 10}, 10, 10, 11.5, 0.15, false},
		{"zero median", []float64{0, 0, 1}, 0, 0, 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Cell
			for _, d := range tt.done {
				c.Samples = append(c.Samples, Sample{Done: d, Bytes: int64(d * 1000)})
			}
			c.Summarize()
			got := c.Summary[MetricDone]
			if got.Median != tt.median || got.Min != tt.min || got.Max != tt.max || math.Abs(got.Spread-tt.spread) > 1e-9 {
				t.Errorf("done = %+v, want median %v min %v max %v spread %v", got, tt.median, tt.min, tt.max, tt.spread)
			}
			if b := c.Summary[MetricBytes]; b.Median != tt.median*1000 {
				t.Errorf("bytes median = %v, want %v", b.Median, tt.median*1000)
			}
			if c.Noisy != tt.noisy {
				t.Errorf("noisy = %v, want %v", c.Noisy, tt.noisy)
			}
			if len(c.Summary) != len(Metrics) {
				t.Errorf("summary has %d metrics, want %d", len(c.Summary), len(Metrics))
			}
		})
	}
	var empty Cell
	empty.Summarize()
	if len(empty.Summary) != 0 || empty.Noisy {
		t.Errorf("no samples: summary %v, noisy %v; want none", empty.Summary, empty.Noisy)
	}
	if got := empty.Speedup(&Cell{Summary: map[string]Stat{MetricDone: {Median: 2}}}); got != 0 {
		t.Errorf("speedup of a cell without samples = %v, want 0", got)
	}
}

// chartElem is an element of a chart with data-metric.
type chartElem struct {
	name, class, text                           string
	workload, network, strategy, metric, median string
}

// parseChart reads every element carrying data-metric out of an SVG,
// failing on XML that is not well-formed.
func parseChart(t *testing.T, svg []byte) []chartElem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var out []chartElem
	var open *chartElem
	depth, openDepth := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			e := chartElem{name: tok.Name.Local}
			has := false
			for _, a := range tok.Attr {
				switch a.Name.Local {
				case "class":
					e.class = a.Value
				case "data-workload":
					e.workload = a.Value
				case "data-network":
					e.network = a.Value
				case "data-strategy":
					e.strategy = a.Value
				case "data-metric":
					e.metric, has = a.Value, true
				case "data-median":
					e.median = a.Value
				}
			}
			if has {
				out = append(out, e)
				open, openDepth = &out[len(out)-1], depth
			}
		case xml.CharData:
			// Only the element's own text, not its <title> tooltip.
			if open != nil && depth == openDepth {
				open.text += string(tok)
			}
		case xml.EndElement:
			if open != nil && depth == openDepth {
				open = nil
			}
			depth--
		}
	}
	return out
}

// parseHuman reads a value label back: "~4.20s", "420ms", "12.3 MB".
func parseHuman(s string) (float64, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "~")
	units := []struct {
		suffix string
		mul    float64
	}{{"ms", 1e-3}, {"s", 1}, {" kB", 1e3}, {" MB", 1e6}, {" GB", 1e9}, {" B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			return v * u.mul, err
		}
	}
	return 0, fmt.Errorf("no unit in %q", s)
}

func TestSVGBarsMatchJSON(t *testing.T) {
	r := testReport()
	want := roundTrip(t, r)
	type key struct{ workload, network, strategy, metric string }
	for _, wl := range testWorkloads {
		var b bytes.Buffer
		if err := r.WriteSVG(&b, wl); err != nil {
			t.Fatal(err)
		}
		if *svgOut != "" {
			p := *svgOut
			if wl != testWorkloads[0] {
				p = strings.TrimSuffix(p, ".svg") + "-" + wl + ".svg"
			}
			if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Contains(b.Bytes(), []byte(`viewBox="0 0 `)) {
			t.Errorf("%s: no viewBox", wl)
		}
		for _, ext := range []string{"<script", "href=\"http", "@import", "@font-face"} {
			if bytes.Contains(b.Bytes(), []byte(ext)) {
				t.Errorf("%s: chart contains %q, want self-contained", wl, ext)
			}
		}
		bars, labels := map[key]int{}, map[key]int{}
		for _, e := range parseChart(t, b.Bytes()) {
			k := key{e.workload, e.network, e.strategy, e.metric}
			if e.workload != wl {
				t.Errorf("chart of %s has an element of workload %q", wl, e.workload)
			}
			c := want.Cell(e.workload, parseNet(t, want, e.network), e.strategy)
			st, ok := Stat{}, false
			if c != nil {
				st, ok = c.Summary[e.metric]
			}
			if !ok {
				t.Errorf("%s %v: no such median in the JSON", e.name, k)
				continue
			}
			if got, err := strconv.ParseFloat(e.median, 64); err != nil || got != st.Median {
				t.Errorf("%s %v: data-median %q, want %v", e.name, k, e.median, st.Median)
			}
			switch {
			case e.name == "rect" && e.class == "bar":
				bars[k]++
			case e.name == "text" && e.class == "value":
				labels[k]++
				got, err := parseHuman(e.text)
				if err != nil || math.Abs(got-st.Median) > 0.005*math.Abs(st.Median)+1e-12 {
					t.Errorf("label %v: %q reads as %v (%v), want %v", k, e.text, got, err, st.Median)
				}
				if c.Noisy && e.metric == MetricDone && !strings.HasPrefix(e.text, "~") {
					t.Errorf("label %v of a noisy cell: %q, want a ~", k, e.text)
				}
			default:
				t.Errorf("unexpected <%s class=%q> with data-metric", e.name, e.class)
			}
		}
		n := 0
		for _, c := range want.Cells {
			if c.Workload != wl {
				continue
			}
			for _, m := range []string{MetricDone, MetricBytes} {
				k := key{wl, c.Network.String(), c.Strategy, m}
				if _, ok := c.Summary[m]; !ok {
					if bars[k]+labels[k] != 0 {
						t.Errorf("%v: a cell without samples has %d bars and %d labels", k, bars[k], labels[k])
					}
					continue
				}
				n++
				if bars[k] != 1 || labels[k] != 1 {
					t.Errorf("%v: %d bars and %d labels, want one of each", k, bars[k], labels[k])
				}
			}
		}
		if n == 0 || len(bars) != n || len(labels) != n {
			t.Errorf("%s: %d bars and %d labels for %d medians", wl, len(bars), len(labels), n)
		}
	}
	if err := r.WriteSVG(io.Discard, "no-such"); err == nil {
		t.Error("WriteSVG of an unknown workload: no error")
	}
}

// parseNet finds the network of r whose String is s.
func parseNet(t *testing.T, r *Report, s string) Network {
	t.Helper()
	for _, n := range r.Networks() {
		if n.String() == s {
			return n
		}
	}
	t.Errorf("data-network %q is no network of the report", s)
	return Network{RTT: -1}
}

func TestTable(t *testing.T) {
	r := testReport()
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// rows[workload][network][strategy] is the row's line.
	rows := map[string]map[string]map[string]string{}
	wl, net := "", ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "workload":
			wl = f[1]
			rows[wl] = map[string]map[string]string{}
			continue
		case wl == "" || len(f) < 2 || f[0] == "network" || strings.HasPrefix(line, "[") || line == "Notes:":
			continue
		}
		s := f[0]
		if strings.Contains(f[0], "/") {
			net, s = f[0], f[1]
			rows[wl][net] = map[string]string{}
		}
		if rows[wl][net] == nil {
			continue
		}
		rows[wl][net][s] = line
	}
	for _, c := range r.Cells {
		line, ok := rows[c.Workload][c.Network.String()][c.Strategy]
		if !ok {
			t.Errorf("no row for %s %s %s in\n%s", c.Workload, c.Network, c.Strategy, out)
			continue
		}
		if len(c.Samples) == 0 {
			if !strings.Contains(line, "failed [") {
				t.Errorf("row of a failed cell: %q", line)
			}
			continue
		}
		med := c.Summary[MetricDone].Median
		want := strconv.FormatFloat(med, 'f', 2, 64) + "s"
		if med >= 10 {
			want = strconv.FormatFloat(med, 'f', 1, 64) + "s"
		}
		if c.Noisy {
			want = "~" + want
		}
		if !strings.Contains(line, " "+want+" (") {
			t.Errorf("row %q: no median %q", line, want)
		}
		base := r.Cell(c.Workload, c.Network, "peer:ostree")
		switch {
		case c.Strategy == "peer:ostree":
			want = "baseline"
		case c.Speedup(base) >= 1:
			want = fmt.Sprintf("%.1f× sooner", c.Speedup(base))
		default:
			want = fmt.Sprintf("%.1f× later", 1/c.Speedup(base))
		}
		if !strings.Contains(line, want) {
			t.Errorf("row %q: no %q", line, want)
		}
	}
	for _, s := range []string{"1 of 3 runs: mount: timed out", "flatpak: not installed", "~ noisy", r.Notes[0], "450 MB"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
}

func TestHTML(t *testing.T) {
	r := testReport()
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	checkXML(t, b.Bytes())
	doc, err := html.Parse(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var text strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			count[n.Data]++
			for _, a := range n.Attr {
				if a.Key == "src" || a.Key == "href" {
					t.Errorf("<%s %s=%q>: want no external resources", n.Data, a.Key, a.Val)
				}
			}
		}
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if count["svg"] != len(testWorkloads) || count["table"] != len(testWorkloads) {
		t.Errorf("%d svg and %d tables, want %d of each", count["svg"], count["table"], len(testWorkloads))
	}
	if count["script"] != 0 || count["link"] != 0 {
		t.Errorf("%d scripts and %d links, want none", count["script"], count["link"])
	}
	// The SVGs inline are the charts WriteSVG writes.
	for _, wl := range testWorkloads {
		var svg bytes.Buffer
		if err := r.WriteSVG(&svg, wl); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b.Bytes(), svg.Bytes()) {
			t.Errorf("HTML lacks the chart of %s", wl)
		}
	}
	for _, s := range []string{r.Ref, r.Notes[0], "flatpak: not installed", "2 CPUs"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("HTML text lacks %q", s)
		}
	}
}

// checkXML fails unless doc is well-formed XML.
func checkXML(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
	}
}

func TestHostileNames(t *testing.T) {
	const evil = `<script>&"`
	r := testReport()
	r.Ref = `"><img src=x onerror=alert(1)>`
	r.Notes = append(r.Notes, `</li><script>alert(1)</script>`)
	for _, s := range []string{evil, "peer:" + evil} {
		c := Cell{Network: testNets[0], Strategy: s, Workload: "start", Error: "err " + evil}
		c.Samples = []Sample{{Done: 2, Bytes: 1000}, {Done: 2.1, Bytes: 1100}}
		c.Summarize()
		r.Cells = append(r.Cells, c)
	}
	r.Cells = append(r.Cells, Cell{Network: testNets[1], Strategy: "x", Workload: evil, Error: evil})
	c := Cell{Network: testNets[1], Strategy: "x", Workload: evil}
	c.Samples = []Sample{{Done: 1, Bytes: 1}}
	c.Summarize()
	r.Cells = append(r.Cells, c)

	var svg bytes.Buffer
	if err := r.WriteSVG(&svg, "start"); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range parseChart(t, svg.Bytes()) {
		if e.strategy == evil || e.strategy == "peer:"+evil {
			found++
		}
	}
	if found != 8 { // two strategies × two metrics × bar and label
		t.Errorf("found %d elements of the hostile strategies, want 8", found)
	}
	var svg2 bytes.Buffer
	if err := r.WriteSVG(&svg2, evil); err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg2.Bytes())
	var page bytes.Buffer
	if err := r.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	checkXML(t, page.Bytes())
	for name, out := range map[string][]byte{"svg": svg.Bytes(), "svg of the hostile workload": svg2.Bytes(), "html": page.Bytes()} {
		for _, raw := range []string{"<script", "<img", `&"`} {
			if bytes.Contains(out, []byte(raw)) {
				t.Errorf("%s contains %q unescaped", name, raw)
			}
		}
	}
	doc, err := html.Parse(bytes.NewReader(page.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var elems []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "script" || n.Data == "img") {
			elems = append(elems, n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(elems) != 0 {
		t.Errorf("HTML has elements %v from hostile names", elems)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), evil) {
		t.Errorf("table lacks the strategy %q as is", evil)
	}
}

func TestTermSafe(t *testing.T) {
	if got, want := termSafe("a\tb\nc\x1b[2Jd"), "a b c\uFFFD[2Jd"; got != want {
		t.Errorf("termSafe = %q, want %q", got, want)
	}
}

func TestWriteSVGs(t *testing.T) {
	r := testReport()
	dir := t.TempDir()
	paths, err := r.WriteSVGs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(testWorkloads) {
		t.Fatalf("wrote %v, want one per workload", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		checkXML(t, b)
	}
}
