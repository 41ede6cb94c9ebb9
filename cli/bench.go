package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/bench"
	"github.com/lazytree/lazytree/internal/sample"
	"github.com/lazytree/lazytree/ostree/repo"
)

// Built-in samples of `bench --sample`.
const (
	sampleDemo   = "demo"   // host programs and their libraries (the demo's runtime): small, quick
	samplePython = "python" // the host's Python with its standard library and shared libraries: 5,000+ files, 100+ MB
	// sampleRuntime is the python sample topped up with the host's
	// libraries, programs and data to the size of a real Flatpak runtime.
	sampleRuntime      = "runtime"
	sampleRuntimeBytes = 200e6
)

type benchOptions struct {
	Repo        string
	Sample      string
	Ref         string
	RTT         []string
	Bandwidth   []string
	Strategy    []string
	Workload    []string
	Peer        []string
	Runs        int
	JSON        bool
	SVG         string
	HTML        string
	GPGImport   []string
	SignPubkey  []string
	HTTP2       bool
	Concurrency int
	Work        string
	Compare     string
	Out         string
	Loss        float64
	LossStall   time.Duration
}

func newBenchCmd(g *globalOptions) *cobra.Command {
	o := &benchOptions{}
	c := &cobra.Command{
		Use:   "bench [--repo DIR|URL | --sample demo|python|runtime]",
		Short: "Compare fetch strategies (and ostree, flatpak) on a repo under emulated networks",
		Long: `bench serves an archive repository on 127.0.0.1 through an emulated link (latency per
request and per connection, bandwidth shared by all connections) and measures, for every
network × strategy × workload, a cold start from a fresh cache: time to mount, to the first
byte, to the workload's end, bytes and requests (and the critical path of requests that
waited for each other), cache hits and the daemon's peak RSS. Peers do what their users do
through the same link: ostree pull (bare-user, static deltas) + checkout, flatpak install;
the workload then runs on their tree. Without --repo it builds a sample from this host's
programs and publishes it with static deltas and a tree index.

Strategies are the mount's --prefetch modes: none, metadata, profile (an unmeasured run
records the profile first), delta, full, all. Workloads are built in (start: the tree's
Python importing a script's modules, else its shell; ls-lR; first-read: the deepest file;
read-all) or a JSON file, one of:
  {"name": "N", "command": ["{root}/files/bin/sh", "-c", "echo hi"], "env": ["K=V"]}
  {"name": "N", "ops": [{"op": "read", "path": "files/lib/libc.so.6", "offset": 0, "length": 4096, "at_ms": 10}]}
with ops open, read, stat, readdir on paths inside the tree; "bench record -- CMD" writes
one. start and command workloads run the tree's programs on this host as you, outside any
sandbox: bench only repositories whose programs you would run. Peers do not verify
signatures.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	pf := c.PersistentFlags()
	pf.StringVar(&o.Repo, "repo", "", "archive repository to serve: a directory, or an http(s) URL to proxy (default: build --sample)")
	pf.StringVar(&o.Sample, "sample", sampleDemo, "built-in sample when there is no --repo: "+sampleDemo+" (host programs), "+samplePython+" (host Python, 5,000+ files) or "+sampleRuntime+" (host Python, libraries, programs and data: 200 MB)")
	pf.StringVar(&o.Ref, "ref", "", "ref to measure (default: the repo's only ref)")
	pf.StringArrayVar(&o.GPGImport, "gpg-import", nil, "trust the GPG public key(s) in FILE for --repo")
	pf.StringArrayVar(&o.SignPubkey, "sign-pubkey-file", nil, "trust the ed25519 public keys in FILE for --repo")
	pf.StringVar(&o.Work, "work", "", "keep the sample and runs' state under DIR (default: a temporary directory, removed)")
	c.AddCommand(newBenchRecordCmd(o))
	f := c.Flags()
	f.StringSliceVar(&o.RTT, "rtt", []string{"25ms"}, "round-trip times to emulate, each added to every request and every new connection")
	f.StringSliceVar(&o.Bandwidth, "bandwidth", []string{"100Mbit"}, "link rates (bit/s, shared by all connections): 20Mbit, 1Gbit, unlimited")
	f.StringSliceVar(&o.Strategy, "strategy", []string{"none", "metadata"}, "prefetch modes to compare: none, metadata, profile, delta, full, all")
	f.StringSliceVar(&o.Workload, "workload", []string{"builtin:start"}, "workloads: builtin:start, builtin:ls-lR, builtin:first-read, builtin:read-all, or a JSON file")
	f.StringSliceVar(&o.Peer, "peer", []string{"ostree"}, "peers to compare with: ostree, flatpak (empty: none)")
	f.IntVar(&o.Runs, "runs", 1, "runs per cell (medians, min and max)")
	f.BoolVar(&o.JSON, "json", false, "print the report as JSON instead of a table")
	f.StringVar(&o.SVG, "svg", "", "write the charts as SVG to FILE (one file per workload: FILE, or NAME-WORKLOAD.svg when there are several)")
	f.StringVar(&o.HTML, "html", "", "write a self-contained HTML report to FILE")
	f.BoolVar(&o.HTTP2, "http2", false, "also offer cleartext HTTP/2 (lazytree uses it, ostree and flatpak do not: off is equal settings)")
	f.IntVar(&o.Concurrency, "concurrency", 0, "the daemon's requests in flight (default: its own; ostree uses 8)")
	f.Float64Var(&o.Loss, "loss", 0, "probability that each 64 KiB of a response stalls (a lossy link), 0 to 1")
	f.DurationVar(&o.LossStall, "loss-stall", 200*time.Millisecond, "how long a lost 64 KiB stalls")
	f.StringVar(&o.Out, "out", "", "write report.json, report.html and one chart-WORKLOAD.svg per workload into DIR (and still print the table)")
	f.StringVar(&o.Compare, "compare", "", "a report (--json) of an earlier run on the same inputs: note every cell whose median moved more than 15%")
	return c
}

// parseRate reads "100Mbit", "1Gbit", "500kbit", "20Mbps", "unlimited" as
// bits per second; a unit is required.
func parseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "unlimited" {
		return 0, nil
	}
	bad := fmt.Errorf("bandwidth %q: want a rate such as 20Mbit, 1Gbit or unlimited", s)
	unit := ""
	for _, u := range []string{"bit/s", "bps", "bit"} {
		if strings.HasSuffix(t, u) {
			t, unit = strings.TrimSuffix(t, u), u
			break
		}
	}
	if unit == "" {
		return 0, bad
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "g"):
		mult, t = 1e9, t[:len(t)-1]
	case strings.HasSuffix(t, "m"):
		mult, t = 1e6, t[:len(t)-1]
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v*mult >= 1000) || v*mult > 1e12 {
		return 0, bad
	}
	return int64(v * mult), nil
}

func (o *benchOptions) config(bin string) (bench.Config, error) {
	cfg := bench.Config{Binary: bin, Repo: o.Repo, Ref: o.Ref, Runs: o.Runs, GPGKeys: o.GPGImport, SignKeys: o.SignPubkey,
		HTTP2: o.HTTP2, Concurrency: o.Concurrency, Loss: o.Loss, LossStall: o.LossStall}
	if o.Loss < 0 || o.Loss > 1 || o.LossStall < 0 {
		return cfg, usageError{fmt.Errorf("--loss %v, --loss-stall %v: want a probability from 0 to 1 and a positive duration", o.Loss, o.LossStall)}
	}
	if o.Runs < 1 || o.Runs > 100 {
		return cfg, usageError{fmt.Errorf("--runs %d: want 1 to 100", o.Runs)}
	}
	for _, r := range o.RTT {
		d, err := time.ParseDuration(strings.TrimSpace(r))
		if err != nil || d < 0 || d > time.Minute {
			return cfg, usageError{fmt.Errorf("--rtt %q: want a duration from 0 to 1m, such as 25ms", r)}
		}
		for _, b := range o.Bandwidth {
			bps, err := parseRate(b)
			if err != nil {
				return cfg, usageError{err}
			}
			cfg.Networks = append(cfg.Networks, bench.Network{RTT: d, Bandwidth: bps})
		}
	}
	cfg.Strategies = append(cfg.Strategies, o.Strategy...)
	for _, p := range o.Peer {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Strategies = append(cfg.Strategies, "peer:"+strings.TrimPrefix(p, "peer:"))
		}
	}
	for _, w := range o.Workload {
		wl, err := bench.ParseWorkload(w)
		if err != nil {
			return cfg, usageError{err}
		}
		cfg.Workloads = append(cfg.Workloads, wl)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// source makes cfg's repo: --repo, or the sample built under work.
func (o *benchOptions) source(ctx context.Context, cfg *bench.Config, work string, errw io.Writer) error {
	if cfg.Repo != "" {
		return nil
	}
	fmt.Fprintf(errw, "bench: building the %s sample from this host's programs\n", o.Sample)
	var err error
	cfg.Repo, cfg.SignKeys, err = buildBenchSample(ctx, filepath.Join(work, "sample"), o.Sample, errw)
	return err
}

// workDir returns o.Work (made) or a new temporary directory, and what
// removes it.
func (o *benchOptions) workDir() (string, func(), error) {
	if o.Work != "" {
		return o.Work, func() {}, os.MkdirAll(o.Work, 0o755)
	}
	d, err := os.MkdirTemp("", "lazytree-bench-")
	return d, func() { os.RemoveAll(d) }, err
}

func newBenchRecordCmd(o *benchOptions) *cobra.Command {
	var output, name string
	c := &cobra.Command{
		Use:   "record [--repo DIR | --sample S] [--ref REF] [-o FILE] -- CMD [ARGS...]",
		Short: "Make a workload from a real run: the files CMD opens from the lazily mounted ref, in order",
		Long: `record mounts the ref from a fresh cache, runs CMD with every "{root}" in its arguments
replaced by the ref's directory in the mount (also in $LAZYTREE_ROOT), and writes the files
it opened, in the order it opened them, as a workload that bench --workload FILE replays:
each file is read whole (the mount records which files, not which bytes, nor when).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			work, cleanup, err := o.workDir()
			if err != nil {
				return err
			}
			defer cleanup()
			cfg := bench.Config{Binary: bin, Repo: o.Repo, Ref: o.Ref, GPGKeys: o.GPGImport, SignKeys: o.SignPubkey, Work: filepath.Join(work, "record")}
			if err := o.source(cmd.Context(), &cfg, work, cmd.ErrOrStderr()); err != nil {
				return err
			}
			if name == "" {
				name = "recorded"
			}
			w, err := bench.Record(cmd.Context(), cfg, name, args)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(w, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if output == "" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(output, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "recorded %d files opened by %s into %s\n", len(w.Ops), Escape(args[0]), output)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "write the workload to FILE instead of standard output")
	c.Flags().StringVar(&name, "name", "", "the workload's name (default: recorded)")
	return c
}

func runBench(ctx context.Context, g *globalOptions, o *benchOptions, out, errw io.Writer) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	cfg, err := o.config(bin)
	if err != nil {
		return err
	}
	// Everything that can be wrong is found before the measuring starts.
	var before *bench.Report
	if o.Compare != "" {
		f, err := os.Open(o.Compare)
		if err != nil {
			return usageError{err}
		}
		before, err = bench.ReadReport(f)
		f.Close()
		if err != nil {
			return usageError{fmt.Errorf("--compare %s: %w", o.Compare, err)}
		}
	}
	for _, p := range []string{o.SVG, o.HTML} {
		if p != "" {
			if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
				return usageError{fmt.Errorf("%s: no directory to write it in", p)}
			}
		}
	}
	if o.Out != "" {
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return usageError{err}
		}
	}
	work, cleanup, err := o.workDir()
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.Work = filepath.Join(work, "runs")
	if err := o.source(ctx, &cfg, work, errw); err != nil {
		return err
	}
	cfg.Progress = benchProgress(errw)
	rep, runErr := bench.Run(ctx, cfg)
	if rep == nil {
		return runErr
	}
	// An interrupted run still reports what it measured.
	if before != nil {
		drift := bench.Compare(before, rep)
		for _, d := range drift {
			rep.Notes = append(rep.Notes, "against "+o.Compare+": "+d.String())
		}
		if len(drift) == 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("against %s: every median within %.0f%%", o.Compare, 100*bench.NoiseLimit))
		}
	}
	if o.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(out)
	}
	if err != nil {
		return err
	}
	if o.Out != "" {
		if err := writeBenchOut(rep, o.Out); err != nil {
			return err
		}
	}
	if o.SVG != "" {
		if err := writeBenchSVGs(rep, o.SVG); err != nil {
			return err
		}
	}
	if o.HTML != "" {
		if err := writeFileWith(o.HTML, rep.WriteHTML); err != nil {
			return err
		}
	}
	return runErr
}

// writeBenchOut writes everything a report makes into dir.
func writeBenchOut(rep *bench.Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := writeFileWith(filepath.Join(dir, "report.json"), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	})
	if err != nil {
		return err
	}
	if err := writeFileWith(filepath.Join(dir, "report.html"), rep.WriteHTML); err != nil {
		return err
	}
	_, err = rep.WriteSVGs(dir)
	return err
}

func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// writeBenchSVGs writes one chart per workload: path itself for one, or
// path's name with the workload's appended for several.
func writeBenchSVGs(rep *bench.Report, path string) error {
	names := rep.Workloads()
	for _, w := range names {
		p := path
		if len(names) > 1 {
			p = strings.TrimSuffix(path, ".svg") + "-" + bench.FileSafe(w) + ".svg"
		}
		if err := writeFileWith(p, func(f io.Writer) error { return rep.WriteSVG(f, w) }); err != nil {
			return err
		}
	}
	return nil
}

// benchProgress shows the matrix's progress: a bar on a terminal, a line
// per run elsewhere.
func benchProgress(w io.Writer) func(done, total int, what string) {
	if !isTerminal(w) {
		return func(done, total int, what string) {
			if done < total {
				fmt.Fprintf(w, "bench: [%d/%d] %s\n", done+1, total, EscapeLine(what))
			}
		}
	}
	var bar *progressbar.ProgressBar
	return func(done, total int, what string) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
				progressbar.OptionClearOnFinish(), progressbar.OptionSetElapsedTime(true), progressbar.OptionSetPredictTime(true))
		}
		bar.Describe(EscapeLine(what))
		bar.Set(done)
		if done >= total {
			bar.Finish()
		}
	}
}

// buildBenchSample lays out a sample runtime from host programs under dir
// and publishes it as a Flatpak runtime would be: committed and exported
// signed with a throwaway ed25519 key, with static deltas (what ostree
// and flatpak pull) and a tree index (what lazytree reads first). It
// returns the repo and the public key file.
func buildBenchSample(ctx context.Context, dir, kind string, errw io.Writer) (string, []string, error) {
	rt := filepath.Join(dir, "runtime")
	var name string
	switch kind {
	case sampleDemo:
		name = "org.lazytree.Demo"
		if _, err := buildDemoRuntime(rt); err != nil {
			return "", nil, err
		}
	case samplePython, sampleRuntime:
		name = "org.lazytree.Python"
		var err error
		if kind == sampleRuntime {
			name = "org.lazytree.Runtime"
			_, err = sample.BuildHostRuntime(rt, sampleRuntimeBytes)
		} else {
			_, err = sample.BuildPythonRuntime(rt)
		}
		if err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(filepath.Join(rt, "metadata"), []byte("[Runtime]\nname="+name+"\nruntime="+name+"/x86_64/1\n"), 0o644); err != nil {
			return "", nil, err
		}
	default:
		return "", nil, usageError{fmt.Errorf("--sample %q: want %s, %s or %s", kind, sampleDemo, samplePython, sampleRuntime)}
	}
	signer, pubFile, err := throwawayKey(dir)
	if err != nil {
		return "", nil, err
	}
	pub := filepath.Join(dir, "repo")
	r, err := repo.Init(pub, "")
	if err != nil {
		return "", nil, err
	}
	ref := "runtime/" + name + "/x86_64/1"
	res, err := r.CommitDir(ctx, rt, repo.CommitOptions{Branch: ref, Subject: "lazytree bench sample", Signer: signer})
	if err != nil {
		return "", nil, err
	}
	if _, err := r.Export(ctx, repo.ExportOptions{Signer: signer, Deltas: generateDelta, TreeIndex: true}); err != nil {
		return "", nil, err
	}
	fmt.Fprintf(errw, "bench: sample %s: %s of content, committed as %s with static deltas and a tree index\n", kind, formatBytes(res.Bytes), ref)
	if err := os.RemoveAll(rt); err != nil {
		return "", nil, err
	}
	return pub, []string{pubFile}, nil
}
