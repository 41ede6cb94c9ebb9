package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/internal/sample"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree/repo"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// The emulated link of the critical-path benchmarks: a far mirror.
const (
	critLatency   = 25 * time.Millisecond
	critBandwidth = 100e6 / 8 // bytes per second: 100 Mbit/s
	critRef       = "runtime/org.lazytree.Python/x86_64/1"
	// critImports is the workload: a typical script's imports.
	critImports = `import json, os, re, subprocess, email.message, http.client, decimal; print("ok")`
)

// critRun is what one cold start cost.
type critRun struct {
	secs     float64
	requests int // all logged requests
	crit     int // fetchtest.CriticalPath of them
	bytes    int64
	// afterCommit and critAfter count the requests logged after the
	// commit object's (or, for ostree pulling a delta, the delta
	// superblock's), and their critical path: the cost of the tree itself
	// once the client knows the root.
	afterCommit, critAfter int
	entries                int // ls -lR only
}

func newCritRun(secs float64, log []fetchtest.Request, bytes int64) critRun {
	r := critRun{secs: secs, requests: len(log), crit: fetchtest.CriticalPath(log), bytes: bytes}
	for i, q := range log {
		if strings.HasSuffix(q.Path, ".commit") || strings.HasSuffix(q.Path, "/superblock") {
			rest := log[i+1:]
			r.afterCommit, r.critAfter = len(rest), fetchtest.CriticalPath(rest)
			break
		}
	}
	return r
}

// linkSecs is the least time the link needs to carry the run's bytes:
// one round trip plus the bytes at the link's rate.
func (r critRun) linkSecs() float64 {
	return float64(r.bytes)*8/100e6 + critLatency.Seconds()
}

// BenchmarkCriticalPath judges issue 10: how many round trips a cold
// start of a real program waits for. It lays out a runtime from the
// host's Python (sample.BuildPythonRuntime: 5,000+ files, 100+ MB),
// commits it with the real ostree (archive repo, a from-scratch static
// delta, summary; no lazytree export), serves it at 25 ms per request and
// 100 Mbit/s, and measures in the same run:
//   - ostree: pull into a bare-user repo (deltas allowed), checkout -U,
//     then the workload on the checkout;
//   - lazy, cold cache, for --prefetch none, metadata and profile (a second
//     cold start that keeps only the first one's access profile), and
//     metadata over the same repo after `lazytree export --tree-index`
//     (skipped until that flag exists): start the daemon, then the
//     workload from the mount.
//
// The workloads are the interpreter importing a script's usual modules,
// and separately a cold `ls -lR` of the whole tree. Per mode it reports
// seconds, ostree/lazy ("x-MODE", higher is better), requests, their
// critical path (fetchtest.CriticalPath) and MB fetched; for ls -lR the
// requests after the commit and seconds over the link's floor (the
// fetched bytes at 100 Mbit/s plus one round trip, "ls-MODE-x-link",
// lower is better):
// `go test -run '^$' -bench CriticalPath -benchtime 1x ./cli`.
func BenchmarkCriticalPath(b *testing.B) {
	requireMountB(b)
	ostreeBin := testutil.RequireTool(b, "ostree")
	testutil.RequireTool(b, "ldd")
	ctx := context.Background()
	dir := b.TempDir()
	rt := filepath.Join(dir, "runtime")
	if _, err := sample.BuildPythonRuntime(rt); err != nil {
		b.Fatal(err)
	}
	nfiles, nbytes := treeSize(b, rt)
	pub := filepath.Join(dir, "pub")
	testutil.Run(b, "", nil, ostreeBin, "init", "--repo="+pub, "--mode=archive")
	testutil.Run(b, "", nil, ostreeBin, "commit", "--repo="+pub, "-b", critRef, "--tree=dir="+rt)
	testutil.Run(b, "", nil, ostreeBin, "static-delta", "generate", "--repo="+pub, "--empty", "--to="+critRef)
	testutil.Run(b, "", nil, ostreeBin, "summary", "-u", "--repo="+pub)
	commit, err := index.ParseSum(strings.TrimSpace(testutil.Output(b, "", nil, ostreeBin, "rev-parse", "--repo="+pub, critRef)))
	if err != nil {
		b.Fatal(err)
	}
	repoBytes, _ := dirSize(filepath.Join(pub, "objects"))
	b.Logf("runtime: %d files, %.1f MB; archive objects %.1f MB", nfiles, float64(nbytes)/1e6, float64(repoBytes)/1e6)
	link := fetchtest.Options{Latency: critLatency, Bandwidth: critBandwidth, ErrorStatuses: []int{500}}
	srv, err := fetchtest.New(pub, link)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()

	// The same repo with a tree index, when `export --tree-index` exists.
	var idxSrv *fetchtest.Server
	idxMissing := ""
	if newExportCmd(&globalOptions{}).Flags().Lookup("tree-index") == nil {
		idxMissing = "lazytree export has no --tree-index flag yet"
	} else {
		pubIdx := filepath.Join(dir, "pub-index")
		testutil.Run(b, "", nil, "cp", "-a", pub, pubIdx)
		c := newExportCmd(&globalOptions{Home: filepath.Join(dir, "export-home")})
		c.SetArgs([]string{"--repo", pubIdx, "--tree-index"})
		c.SetOut(io.Discard)
		if err := c.ExecuteContext(ctx); err != nil {
			b.Fatalf("export --tree-index: %v", err)
		}
		if idxSrv, err = fetchtest.New(pubIdx, link); err != nil {
			b.Fatal(err)
		}
		defer idxSrv.Close()
	}

	// Every sub-benchmark records its mean run here, for the ratios and
	// the table at the end.
	results := map[string]critRun{}
	var order []string
	measure := func(name, base string, run func(b *testing.B) critRun) {
		b.Run(name, func(b *testing.B) {
			var sum critRun
			for i := 0; i < b.N; i++ {
				r := run(b)
				sum.secs += r.secs
				sum.requests += r.requests
				sum.crit += r.crit
				sum.bytes += r.bytes
				sum.afterCommit += r.afterCommit
				sum.critAfter += r.critAfter
				sum.entries += r.entries
			}
			n := b.N
			mean := critRun{secs: sum.secs / float64(n), requests: sum.requests / n, crit: sum.crit / n, bytes: sum.bytes / int64(n),
				afterCommit: sum.afterCommit / n, critAfter: sum.critAfter / n, entries: sum.entries / n}
			results[name] = mean
			order = append(order, name)
			b.ReportMetric(mean.secs, "s")
			b.ReportMetric(float64(mean.requests), "requests")
			b.ReportMetric(float64(mean.crit), "crit-path")
			b.ReportMetric(float64(mean.bytes)/1e6, "MB")
			if ref, ok := results[base]; ok && name != base {
				b.ReportMetric(ref.secs/mean.secs, "x-"+name)
			}
			if strings.HasPrefix(name, "ls-") {
				b.ReportMetric(float64(mean.entries), "entries")
				b.ReportMetric(float64(mean.afterCommit), "requests-after-commit")
				b.ReportMetric(float64(mean.critAfter), "crit-path-after-commit")
				b.ReportMetric(mean.secs/mean.linkSecs(), "x-link")
			}
		})
	}

	// Baseline: ostree pull + checkout, then the workload on the
	// checkout; each workload pulls afresh.
	var lsWant int
	pull := func(b *testing.B) (co string, pulled time.Duration, r critRun) {
		client, co := filepath.Join(dir, "client"), filepath.Join(dir, "co")
		os.RemoveAll(client)
		os.RemoveAll(co)
		srv.Reset()
		start := time.Now()
		testutil.Run(b, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare-user")
		testutil.Run(b, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--no-gpg-verify", "b", srv.URL())
		testutil.Run(b, "", nil, ostreeBin, "pull", "--repo="+client, "b", critRef)
		testutil.Run(b, "", nil, ostreeBin, "checkout", "--repo="+client, "-U", "b:"+critRef, co)
		pulled = time.Since(start)
		return co, pulled, newCritRun(pulled.Seconds(), srv.Log(), srv.Stats().Bytes)
	}
	py := func(b *testing.B, root string) {
		b.Helper()
		if out := runFromTree(b, root, critImports); out != "ok" {
			b.Fatalf("python from %s printed %q, want ok", root, out)
		}
	}
	ls := func(b *testing.B, root string) int {
		b.Helper()
		n := countLsLR(b, root)
		if lsWant != 0 && n != lsWant {
			b.Errorf("ls -lR of %s: %d entries, the checkout has %d", root, n, lsWant)
		}
		return n
	}
	measure("ostree", "ostree", func(b *testing.B) critRun {
		co, pulled, r := pull(b)
		start := time.Now()
		py(b, co)
		r.secs = (pulled + time.Since(start)).Seconds()
		return r
	})
	type mode struct {
		name     string
		srv      *fetchtest.Server
		prefetch string
		profile  bool
	}
	modes := []mode{
		{"none", srv, fetch.PrefetchNone, false},
		{"metadata", srv, fetch.PrefetchMetadata, false},
		{"profile", srv, fetch.PrefetchProfile, true},
		{"index", idxSrv, fetch.PrefetchMetadata, false},
	}
	var recorded []string // the profile the profile mode's first start recorded
	for _, m := range modes {
		if m.srv == nil {
			b.Run(m.name, func(b *testing.B) { b.Skip(idxMissing) })
			continue
		}
		measure(m.name, "ostree", func(b *testing.B) critRun {
			var keep []string
			if m.profile {
				// A first cold start records the profile, which is all
				// that the measured one keeps of it.
				home := lazyCold(b, m.srv, dir, m.prefetch, nil, func(root string) { py(b, root) }).home
				keep = readProfile(b, home, commit)
				recorded = keep
			}
			prepare := func(home string) {
				if keep != nil {
					writeProfile(b, home, commit, keep)
				}
			}
			return lazyCold(b, m.srv, dir, m.prefetch, prepare, func(root string) { py(b, root) }).run
		})
	}
	// A first-ever start on a new machine, with the profile recorded
	// above published with the repo (export --tree-index --profile).
	if recorded != nil && idxMissing == "" {
		pubProf := filepath.Join(dir, "pub-profile")
		testutil.Run(b, "", nil, "cp", "-a", pub, pubProf)
		pf := filepath.Join(dir, "profile.json")
		data, err := (&treeindex.Profile{Commit: commit, Paths: recorded}).Encode()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(pf, data, 0o644); err != nil {
			b.Fatal(err)
		}
		c := newExportCmd(&globalOptions{Home: filepath.Join(dir, "export-home")})
		c.SetArgs([]string{"--repo", pubProf, "--tree-index", "--profile", pf})
		c.SetOut(io.Discard)
		if err := c.ExecuteContext(ctx); err != nil {
			b.Fatalf("export --tree-index --profile: %v", err)
		}
		profSrv, err := fetchtest.New(pubProf, link)
		if err != nil {
			b.Fatal(err)
		}
		defer profSrv.Close()
		measure("published", "ostree", func(b *testing.B) critRun {
			return lazyCold(b, profSrv, dir, fetch.PrefetchProfile, nil, func(root string) { py(b, root) }).run
		})
	}
	measure("ls-ostree", "ls-ostree", func(b *testing.B) critRun {
		co, pulled, r := pull(b)
		start := time.Now()
		lsWant = 0
		lsWant = ls(b, co)
		r.secs = (pulled + time.Since(start)).Seconds()
		r.entries = lsWant
		return r
	})
	for _, m := range modes {
		if m.profile {
			continue // ls -lR opens no file: a profile does not apply
		}
		if m.srv == nil {
			b.Run("ls-"+m.name, func(b *testing.B) { b.Skip(idxMissing) })
			continue
		}
		measure("ls-"+m.name, "ls-ostree", func(b *testing.B) critRun {
			var n int
			c := lazyCold(b, m.srv, dir, m.prefetch, nil, func(root string) { n = ls(b, root) })
			c.run.entries = n
			return c.run
		})
	}

	var table strings.Builder
	fmt.Fprintf(&table, "runtime %d files, %.1f MB; link %v, 100 Mbit/s\n", nfiles, float64(nbytes)/1e6, critLatency)
	fmt.Fprintf(&table, "%-12s %8s %8s %9s %9s %9s %9s %8s %8s %7s\n", "mode", "seconds", "x", "requests", "crit-path",
		"after-cmt", "crit-aftr", "MB", "entries", "x-link")
	for _, name := range order {
		r := results[name]
		base := results["ostree"]
		if strings.HasPrefix(name, "ls-") {
			base = results["ls-ostree"]
		}
		ratio := 0.0
		if base.secs > 0 {
			ratio = base.secs / r.secs
		}
		fmt.Fprintf(&table, "%-12s %8.2f %8.2f %9d %9d %9d %9d %8.1f", name, r.secs, ratio, r.requests, r.crit,
			r.afterCommit, r.critAfter, float64(r.bytes)/1e6)
		if strings.HasPrefix(name, "ls-") {
			fmt.Fprintf(&table, " %8d %7.1f", r.entries, r.secs/r.linkSecs())
		}
		table.WriteString("\n")
	}
	// A parent benchmark's own log is not printed: a last sub-benchmark
	// prints the table.
	b.Run("table", func(b *testing.B) { b.Log("\n" + table.String()) })
}

// BenchmarkOnDemandUnderLoad looks up and reads a 32 MiB file (random,
// so it does not compress) on demand from a cold mount twice: on an idle link
// (--prefetch none), then while --prefetch full saturates the same link
// (25 ms, 100 Mbit/s) with a 100 MB tree, and reports both times and
// their ratio ("x-slowdown", 1 is the goal: background work yields to
// on-demand reads):
// `go test -run '^$' -bench OnDemandUnderLoad -benchtime 1x ./cli`.
func BenchmarkOnDemandUnderLoad(b *testing.B) {
	requireMountB(b)
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := testutil.GenTree(filepath.Join(src, "share"), 3000, 100<<20, 5); err != nil {
		b.Fatal(err)
	}
	// Deeper than any generated directory, so that the breadth-first
	// prefetch reaches it last.
	const bigPath = "share/z/y/x/w/v/big.bin"
	big := make([]byte, 32<<20)
	rand.Read(big)
	if err := os.MkdirAll(filepath.Dir(filepath.Join(src, bigPath)), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, bigPath), big, 0o644); err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(filepath.Join(dir, "pub"), "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.CommitDir(ctx, src, repo.CommitOptions{Branch: "load"}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Export(ctx, repo.ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	srv, err := fetchtest.New(r.Dir, fetchtest.Options{Latency: critLatency, Bandwidth: critBandwidth})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var idle, loaded time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, prefetch := range []string{fetch.PrefetchNone, fetch.PrefetchFull} {
			var took time.Duration
			lazyCold(b, srv, dir, prefetch, nil, func(root string) {
				file := filepath.Join(root, bigPath)
				// The ref's first lookup starts the prefetch (not timed).
				if _, err := os.Stat(root); err != nil {
					b.Fatal(err)
				}
				if prefetch == fetch.PrefetchFull {
					waitBytes(b, srv, 4<<20)
				}
				// Timed from the lookup: a stat already fetches the whole
				// object, whose header holds the file's size and mode.
				start := time.Now()
				out, err := exec.Command("cmp", file, filepath.Join(src, bigPath)).CombinedOutput()
				took = time.Since(start)
				if err != nil {
					b.Fatalf("read %s: %v\n%s", file, err, out)
				}
			}, "load")
			if prefetch == fetch.PrefetchNone {
				idle += took
			} else {
				loaded += took
			}
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(idle.Seconds()/n, "idle-s")
	b.ReportMetric(loaded.Seconds()/n, "loaded-s")
	b.ReportMetric(loaded.Seconds()/idle.Seconds(), "x-slowdown")
}

// waitBytes waits until srv has sent n body bytes since its last Reset:
// the background prefetch is under way.
func waitBytes(b *testing.B, srv *fetchtest.Server, n int64) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for srv.Stats().Bytes < n {
		if time.Now().After(deadline) {
			b.Fatalf("prefetch sent %d bytes in a minute, want %d", srv.Stats().Bytes, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requireMountB skips (fails under LAZYTREE_CI=1) a benchmark that
// cannot mount FUSE here.
func requireMountB(b *testing.B) {
	b.Helper()
	testutil.RequireRoot(b)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testutil.SkipOrFail(b, "cannot mount FUSE here: %v", err)
	}
}

// coldStart is one measured lazy start.
type coldStart struct {
	home string
	run  critRun
}

// lazyCold starts the daemon in this process with an empty cache (the
// remote "b" added, then prepare, if set, given the home), runs work on
// the ref's root in the mount (critRef, or ref when given), and returns
// the time from the daemon's start to the end of work and the requests
// logged over it. The daemon is stopped before it returns.
func lazyCold(b *testing.B, srv *fetchtest.Server, dir, prefetch string, prepare func(home string), work func(root string), ref ...string) coldStart {
	b.Helper()
	ctx := context.Background()
	home, mp := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
	if err := os.RemoveAll(home); err != nil {
		b.Fatal(err)
	}
	g := &globalOptions{Home: home}
	if _, err := runRemoteAdd(ctx, g, &remoteAddOptions{NoGPGVerify: true}, []string{"b", srv.URL()}); err != nil {
		b.Fatal(err)
	}
	if prepare != nil {
		prepare(home)
	}
	srv.Reset()
	dctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- runDaemon(dctx, g, mp, &mountOptions{Prefetch: prefetch, Timeout: time.Minute, LogLevel: slog.LevelWarn, Concurrency: benchConcurrency()},
			func(*fusefs.Server) { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		b.Fatalf("daemon: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	defer stop()
	r := critRef
	if len(ref) > 0 {
		r = ref[0]
	}
	work(filepath.Join(mp, "b", r))
	run := newCritRun(time.Since(start).Seconds(), srv.Log(), srv.Stats().Bytes)
	stop()
	if fusefs.Mounted(mp) {
		b.Fatalf("%s still mounted after the daemon stopped", mp)
	}
	return coldStart{home: home, run: run}
}

// readProfile returns the access profile the daemon in home recorded for
// commit, from the cache's index (fetch.MountSource saves it there on
// Close).
func readProfile(b *testing.B, home string, commit index.Sum) []string {
	b.Helper()
	store, err := objcache.Open(context.Background(), home, objcache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	p, err := store.Index().Profile(commit)
	if err != nil {
		b.Fatalf("the first cold start recorded no profile: %v", err)
	}
	return p
}

// writeProfile records profile for commit in the empty cache in home:
// a cold cache that kept only what an earlier run opened.
func writeProfile(b *testing.B, home string, commit index.Sum, profile []string) {
	b.Helper()
	store, err := objcache.Open(context.Background(), home, objcache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if err := store.Index().SetProfile(commit, profile); err != nil {
		b.Fatal(err)
	}
}

// runFromTree runs the runtime's python (in a checkout or a mount) with
// -c script in a child, through its loader and a host shell's exec (a
// program on the mount must not be exec'd by the process serving it),
// and returns its trimmed stdout.
func runFromTree(b *testing.B, root, script string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	argv, env := sample.PythonArgv(root, "-c", script)
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `exec "$0" "$@"`}, argv...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("python from %s: %v\n%s", root, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// countLsLR runs `ls -lR` over root in a child and counts the entries it
// lists (not the "dir:" headers, "total" lines or blank lines).
func countLsLR(b *testing.B, root string) int {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ls", "-lR", root)
	cmd.Env = []string{"LC_ALL=C"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("ls -lR %s: %v\n%s", root, err, stderr.String())
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && strings.ContainsRune("-dlcbps", rune(l[0])) {
			n++
		}
	}
	return n
}

// treeSize counts the regular files under dir and their bytes.
func treeSize(b *testing.B, dir string) (files int, size int64) {
	b.Helper()
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files++
			size += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return files, size
}

// benchConcurrency is the daemon's requests in flight per remote:
// $LAZYTREE_BENCH_CONCURRENCY (8 compares at ostree's setting), else the
// default.
func benchConcurrency() int {
	n, _ := strconv.Atoi(os.Getenv("LAZYTREE_BENCH_CONCURRENCY"))
	return n
}
