package fetch_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree/repo"
)

// BenchmarkPullVsOstree pulls one ref of 5,000 files (LAZYTREE_BENCH_FILES,
// LAZYTREE_BENCH_MB) from the same fetchtest server with `lazytree pull`
// and `ostree pull` into an archive repo, both as child processes,
// interleaved, direct and with 25 ms added per request. It reports each
// one's seconds per pull and the ratio lazytree/ostree:
// `go test -run '^$' -bench PullVsOstree -benchtime 2x ./fetch`.
func BenchmarkPullVsOstree(b *testing.B) {
	ostreeBin := testutil.RequireTool(b, "ostree")
	files, mb := testutil.EnvInt("LAZYTREE_BENCH_FILES", 5000), testutil.EnvInt("LAZYTREE_BENCH_MB", 50)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := testutil.GenTree(src, files, int64(mb)<<20, 2); err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(filepath.Join(dir, "pub"), "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.CommitDir(context.Background(), src, repo.CommitOptions{Branch: "bench"}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Export(context.Background(), repo.ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	bin := testutil.BuildLazytree(b)
	for _, latency := range []time.Duration{0, 25 * time.Millisecond} {
		b.Run("latency="+latency.String(), func(b *testing.B) {
			srv, err := fetchtest.New(r.Dir, fetchtest.Options{Latency: latency})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			var lt, os_ time.Duration
			for i := 0; i < b.N; i++ {
				home := filepath.Join(dir, "home")
				client := filepath.Join(dir, "client")
				os.RemoveAll(home)
				os.RemoveAll(client)
				env := []string{"LAZYTREE_HOME=" + home}
				testutil.Run(b, "", env, bin, "remote", "add", "--no-gpg-verify", "b", srv.URL())
				start := time.Now()
				testutil.Run(b, "", env, bin, "pull", "b:bench")
				lt += time.Since(start)
				testutil.Run(b, "", nil, ostreeBin, "init", "--repo="+client, "--mode=archive")
				testutil.Run(b, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--no-gpg-verify", "b", srv.URL())
				start = time.Now()
				testutil.Run(b, "", nil, ostreeBin, "pull", "--repo="+client, "b", "bench")
				os_ += time.Since(start)
			}
			n := float64(b.N)
			b.ReportMetric(lt.Seconds()/n, "lazytree-s/op")
			b.ReportMetric(os_.Seconds()/n, "ostree-s/op")
			b.ReportMetric(lt.Seconds()/os_.Seconds(), "time-ratio")
		})
	}
}
