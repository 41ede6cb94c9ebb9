package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree/repo"
)

// BenchmarkColdStart starts bash from a runtime of the demo's host
// programs plus 5,000 generated files (over 100 MB), served with 25 ms per
// request and 100 Mbit/s, two ways in the same run:
//   - lazy: lazytree mount (no prefetch), then run bash from the mount;
//   - ostree: ostree pull into a bare-user repo (static deltas available
//     and allowed, as Flatpak installs), ostree checkout, then run bash.
//
// It reports both times, their ratio (ostree/lazy, higher is better) and
// the share of the ref's bytes the lazy start fetched:
// `go test -run '^$' -bench ColdStart -benchtime 1x ./cli`.
func BenchmarkColdStart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount")
	}
	ostreeBin := testutil.RequireTool(b, "ostree")
	dir := b.TempDir()
	rt := filepath.Join(dir, "runtime")
	if _, err := buildDemoRuntime(rt); err != nil {
		b.Fatal(err)
	}
	if err := testutil.GenTree(filepath.Join(rt, "files", "share"), 5000, 100<<20, 3); err != nil {
		b.Fatal(err)
	}
	pub := filepath.Join(dir, "pub")
	r, err := repo.Init(pub, "")
	if err != nil {
		b.Fatal(err)
	}
	const ref = "runtime/org.lazytree.Bench/x86_64/1"
	if _, err := r.CommitDir(context.Background(), rt, repo.CommitOptions{Branch: ref}); err != nil {
		b.Fatal(err)
	}
	// Static deltas for the baseline, made by the real ostree.
	testutil.Run(b, "", nil, ostreeBin, "static-delta", "generate", "--repo="+pub, "--empty", "--to="+ref)
	testutil.Run(b, "", nil, ostreeBin, "summary", "-u", "--repo="+pub)
	refBytes, _ := dirSize(filepath.Join(pub, "objects"))
	srv, err := fetchtest.New(pub, fetchtest.Options{Latency: 25 * time.Millisecond, Bandwidth: 100e6 / 8, ErrorStatuses: []int{500}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()

	var lazyT, ostreeT time.Duration
	var lazyBytes int64
	for i := 0; i < b.N; i++ {
		// Lazy.
		home, mp := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
		os.RemoveAll(home)
		g := &globalOptions{Home: home}
		if _, err := runRemoteAdd(context.Background(), g, &remoteAddOptions{NoGPGVerify: true}, []string{"b", srv.URL()}); err != nil {
			b.Fatal(err)
		}
		srv.Reset()
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			done <- runDaemon(ctx, g, mp, &mountOptions{Prefetch: "none", Timeout: time.Minute}, func(*fusefs.Server) { close(ready) })
		}()
		<-ready
		root := filepath.Join(mp, "b", ref, "files")
		startBash(b, root)
		lazyT += time.Since(start)
		lazyBytes += srv.Stats().Bytes
		cancel()
		<-done

		// ostree pull + checkout.
		client, co := filepath.Join(dir, "client"), filepath.Join(dir, "co")
		os.RemoveAll(client)
		os.RemoveAll(co)
		start = time.Now()
		testutil.Run(b, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare-user")
		testutil.Run(b, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--no-gpg-verify", "b", srv.URL())
		testutil.Run(b, "", nil, ostreeBin, "pull", "--repo="+client, "b", ref)
		testutil.Run(b, "", nil, ostreeBin, "checkout", "--repo="+client, "-U", "b:"+ref, co)
		startBash(b, filepath.Join(co, "files"))
		ostreeT += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(lazyT.Seconds()/n, "lazy-s")
	b.ReportMetric(ostreeT.Seconds()/n, "ostree-s")
	b.ReportMetric(ostreeT.Seconds()/lazyT.Seconds(), "speedup")
	b.ReportMetric(100*float64(lazyBytes)/n/float64(refBytes), "fetched-%")
}

func startBash(b *testing.B, root string) {
	b.Helper()
	argv := []string{filepath.Join(root, "lib64", "ld-linux-x86-64.so.2"), "--library-path", filepath.Join(root, "lib"),
		filepath.Join(root, "bin", "bash"), "-c", "echo started"}
	if _, _, _, err := timeFirstOutput(context.Background(), argv); err != nil {
		b.Fatalf("start bash from %s: %v", root, err)
	}
}
