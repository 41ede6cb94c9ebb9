package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/internal/testutil"
)

// BenchmarkCommitVsOstree commits the same generated tree (10,000 files,
// 200 MB) with `lazytree commit` and with `ostree commit` into a fresh
// archive repository per iteration, both as child processes, and reports
// each one's time and peak RSS, interleaved in one run, with the time
// ratio lazytree/ostree (below 1 is faster):
// `go test -run '^$' -bench CommitVsOstree -benchtime 3x ./cli`.
// LAZYTREE_BENCH_FILES and LAZYTREE_BENCH_MB change the tree size.
func BenchmarkCommitVsOstree(b *testing.B) {
	ostreeBin := testutil.RequireTool(b, "ostree")
	files, mb := testutil.EnvInt("LAZYTREE_BENCH_FILES", 10000), testutil.EnvInt("LAZYTREE_BENCH_MB", 200)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := testutil.GenTree(src, files, int64(mb)<<20, 1); err != nil {
		b.Fatal(err)
	}
	bin := testutil.BuildLazytree(b)
	ltRepo, osRepo := filepath.Join(dir, "lt-repo"), filepath.Join(dir, "ostree-repo")
	var ltTime, osTime time.Duration
	var ltRSS, osRSS int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Interleaved, so that load from elsewhere hits both alike.
		os.RemoveAll(ltRepo)
		os.RemoveAll(osRepo)
		run(b, []string{bin, "init", "--repo", ltRepo})
		run(b, []string{ostreeBin, "init", "--repo=" + osRepo, "--mode=archive"})
		start := time.Now()
		ltRSS = max(ltRSS, run(b, []string{bin, "commit", "--repo", ltRepo, "-b", "bench", src}))
		ltTime += time.Since(start)
		start = time.Now()
		osRSS = max(osRSS, run(b, []string{ostreeBin, "commit", "--repo=" + osRepo, "-b", "bench", "--tree=dir=" + src}))
		osTime += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(ltTime.Seconds()/n, "lazytree-s/op")
	b.ReportMetric(osTime.Seconds()/n, "ostree-s/op")
	b.ReportMetric(ltTime.Seconds()/osTime.Seconds(), "time-ratio")
	b.ReportMetric(float64(ltRSS)/1024, "lazytree-maxrss-MB")
	b.ReportMetric(float64(osRSS)/1024, "ostree-maxrss-MB")
}

// run executes a command and returns its peak resident set size in KiB.
func run(b *testing.B, argv []string) int64 {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
}
