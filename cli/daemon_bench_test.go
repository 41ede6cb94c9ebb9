package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree/repo"
)

// BenchmarkDaemonMemoryWalk runs the real daemon (lazytree mount
// --foreground, a child process) over a ref of 50,000 files
// (LAZYTREE_BENCH_FILES), walks the whole tree cold with `find -printf`
// (a stat of every file, which fetches every object), then again warm, and
// reports the daemon's peak RSS (VmHWM) and both walk times:
// `go test -run '^$' -bench DaemonMemoryWalk -benchtime 1x ./cli`.
func BenchmarkDaemonMemoryWalk(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount")
	}
	files := testutil.EnvInt("LAZYTREE_BENCH_FILES", 50000)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := testutil.GenTree(src, files, int64(files)*1024, 4); err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(filepath.Join(dir, "pub"), "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.CommitDir(context.Background(), src, repo.CommitOptions{Branch: "big"}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Export(context.Background(), repo.ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	srv, err := fetchtest.New(r.Dir, fetchtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	bin := testutil.BuildLazytree(b)
	for i := 0; i < b.N; i++ {
		home, mp := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
		os.RemoveAll(home)
		env := append(os.Environ(), "LAZYTREE_HOME="+home)
		add := exec.Command(bin, "remote", "add", "--no-gpg-verify", "b", srv.URL())
		add.Env = env
		if out, err := add.CombinedOutput(); err != nil {
			b.Fatalf("remote add: %v\n%s", err, out)
		}
		daemon := exec.Command(bin, "mount", "--foreground", mp)
		daemon.Env = env
		stdout, _ := daemon.StdoutPipe()
		if err := daemon.Start(); err != nil {
			b.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if !strings.HasPrefix(line, "mounted") {
			daemon.Process.Kill()
			b.Fatalf("daemon: %q", line)
		}
		walk := func() time.Duration {
			start := time.Now()
			out, err := exec.Command("find", filepath.Join(mp, "b", "big"), "-printf", "%s %m\n").Output()
			if err != nil {
				daemon.Process.Kill()
				b.Fatalf("walk: %v", err)
			}
			if n := strings.Count(string(out), "\n"); n < files {
				b.Fatalf("walk saw %d entries, want at least %d", n, files)
			}
			return time.Since(start)
		}
		cold := walk()
		warm := walk()
		hwm := vmHWM(daemon.Process.Pid)
		daemon.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- daemon.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			daemon.Process.Kill()
			b.Fatal("daemon did not exit on SIGINT")
		}
		if fusefs.Mounted(mp) {
			b.Fatal("mount left behind")
		}
		b.ReportMetric(float64(hwm)/1024, "daemon-peak-MB")
		b.ReportMetric(cold.Seconds(), "cold-walk-s")
		b.ReportMetric(warm.Seconds(), "warm-walk-s")
	}
}

// vmHWM returns a process's peak resident set in KiB.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}
