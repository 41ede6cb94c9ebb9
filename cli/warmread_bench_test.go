package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree/repo"
)

// BenchmarkWarmRead compares, in one run, two warm workloads on a tree of
// a few thousand small files (copies of /usr/lib/python3.11 and
// /usr/lib/python3 by default; LAZYTREE_BENCH_TREE names other
// directories, colon-separated) on local disk (the committed directory,
// i.e. what a checkout holds) and through the mount of the real daemon
// stack (objcache, index, fetch, fusefs) in this process, with every
// object fetched into the cache first:
//   - tar: `tar cf - DIR | cat >/dev/null` (every file opened and read);
//   - find: `find DIR -printf '%s%m\n'` (a stat of every entry).
//
// Each round runs all four; the fastest of LAZYTREE_BENCH_ROUNDS rounds
// (default 5) of each counts, which keeps a loaded machine's noise out of
// the ratios. It reports mount/disk ratios ("tar-x", "find-x"), per-file
// times, and the FUSE requests the mount saw per tar pass:
// `go test -run '^$' -bench WarmRead -benchtime 1x ./cli`
// LAZYTREE_BENCH_CPUPROFILE=FILE profiles this process (the daemon side;
// the workloads run in children) during the warm rounds only.
func BenchmarkWarmRead(b *testing.B) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		testutil.SkipOrFail(b, "cannot mount FUSE here (need root and /dev/fuse): %v", err)
	}
	dirs := filepath.SplitList(os.Getenv("LAZYTREE_BENCH_TREE"))
	if len(dirs) == 0 {
		dirs = []string{"/usr/lib/python3.11", "/usr/lib/python3"}
	}
	rounds := testutil.EnvInt("LAZYTREE_BENCH_ROUNDS", 5)
	dir := b.TempDir()
	disk := filepath.Join(dir, "src")
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			b.Skipf("no tree to copy: %v", err)
		}
		dst := filepath.Join(disk, "files", "lib", filepath.Base(d))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			b.Fatal(err)
		}
		testutil.Run(b, "", nil, "cp", "-a", d, dst)
	}
	pub := filepath.Join(dir, "pub")
	r, err := repo.Init(pub, "")
	if err != nil {
		b.Fatal(err)
	}
	const ref = "runtime/org.lazytree.Warm/x86_64/1"
	if _, err := r.CommitDir(context.Background(), disk, repo.CommitOptions{Branch: ref}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Export(context.Background(), repo.ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	srv, err := fetchtest.New(pub, fetchtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()

	home, mp := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
	g := &globalOptions{Home: home}
	if _, err := runRemoteAdd(context.Background(), g, &remoteAddOptions{NoGPGVerify: true}, []string{"b", srv.URL()}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *fusefs.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, g, mp, &mountOptions{Prefetch: "none", Timeout: time.Minute}, func(s *fusefs.Server) { ready <- s })
	}()
	var fsrv *fusefs.Server
	select {
	case fsrv = <-ready:
	case err := <-done:
		cancel()
		b.Fatalf("daemon: %v", err)
	}
	defer func() {
		cancel()
		<-done
		if fusefs.Mounted(mp) {
			syscall.Unmount(mp, syscall.MNT_DETACH)
			b.Error("mount left behind")
		}
	}()
	mounted := filepath.Join(mp, "b", ref)

	// The workloads run in children: never do I/O on the mount from the
	// process that serves it.
	tar := func(root string) time.Duration {
		return timeChild(b, "tar", "tar cf - -C \"$1\" . | cat >/dev/null", root)
	}
	find := func(root string) time.Duration {
		return timeChild(b, "find", "find \"$1\" -printf '%s%m\\n' >/dev/null", root)
	}
	tar(mounted) // cold: fetches every object into the cache
	tar(disk)
	syscall.Sync()
	files := countEntries(b, disk)

	best := func(ts []time.Duration) time.Duration { return slices.Min(ts) }
	var tarDisk, tarMount, findDisk, findMount []time.Duration
	var before, after fusefs.Stats
	if p := os.Getenv("LAZYTREE_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	for range b.N {
		for i := range rounds {
			tarDisk = append(tarDisk, tar(disk))
			if i == 0 {
				before = fsrv.Status().FS
			}
			tarMount = append(tarMount, tar(mounted))
			if i == 0 {
				after = fsrv.Status().FS
			}
			findDisk = append(findDisk, find(disk))
			findMount = append(findMount, find(mounted))
		}
	}
	b.ReportMetric(best(tarMount).Seconds()/best(tarDisk).Seconds(), "tar-x")
	b.ReportMetric(best(findMount).Seconds()/best(findDisk).Seconds(), "find-x")
	b.ReportMetric(float64(best(tarDisk).Microseconds())/float64(files), "tar-disk-µs/entry")
	b.ReportMetric(float64(best(tarMount).Microseconds())/float64(files), "tar-mount-µs/entry")
	b.ReportMetric(float64(best(findMount).Microseconds())/float64(files), "find-mount-µs/entry")
	b.ReportMetric(float64(files), "entries")
	for _, op := range []string{"lookup", "getattr", "open", "readdir", "read"} {
		b.ReportMetric(float64(after.Ops[op]-before.Ops[op])/float64(files), "fuse-"+op+"/entry")
	}
}

// timeChild runs script with sh, arg as $1, and returns its wall time.
func timeChild(b *testing.B, name, script, arg string) time.Duration {
	b.Helper()
	cmd := exec.Command("sh", "-c", script, name, arg)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		b.Fatalf("%s %s: %v\n%s", name, arg, err, out)
	}
	return time.Since(start)
}

func countEntries(b *testing.B, root string) int {
	b.Helper()
	n := 0
	err := filepath.WalkDir(root, func(_ string, _ os.DirEntry, err error) error {
		n++
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
