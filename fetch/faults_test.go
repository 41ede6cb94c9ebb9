package fetch_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
)

// bigPublisher publishes a tree of n files with some depth.
func bigPublisher(t *testing.T, n int) *publisher {
	t.Helper()
	p := newPublisher(t, "")
	for i := 0; i < n; i++ {
		dir := filepath.Join(p.src, fmt.Sprintf("d%02d", i%17))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), []byte(fmt.Sprintf("file %d %s", i, make([]byte, i*7))), 0o644)
	}
	return p
}

func serve(t *testing.T, dir string, o fetchtest.Options) *fetchtest.Server {
	t.Helper()
	srv, err := fetchtest.New(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// TestPullSurvivesFaults pulls through 10% 5xx, resets and truncations
// and gets content identical to a clean pull.
func TestPullSurvivesFaults(t *testing.T) {
	testutil.RequireRoot(t)
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := bigPublisher(t, 300)
	p.commit("ref", "faults", day)
	p.export(day)
	srv := serve(t, p.r.Dir, fetchtest.Options{
		Seed:      7,
		Status5xx: fetchtest.Rule{P: 0.10},
		Reset:     fetchtest.Rule{P: 0.05, After: fetchtest.Seeded},
		Truncate:  fetchtest.Rule{P: 0.05, After: fetchtest.Seeded},
	})
	e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	res, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
	if err != nil {
		t.Fatalf("pull through faults: %v", err)
	}
	st := srv.Stats()
	t.Logf("%d requests, faults injected: %+v", st.Requests, st.Faults)
	co := filepath.Join(t.TempDir(), "co")
	if err := e.fetcher.Checkout(ctxT(t), "r", res.Commit, co); err != nil {
		t.Fatal(err)
	}
	if err := testutil.TreeDiff(p.src, co, testutil.DiffOptions{IgnoreRootMode: true}); err != nil {
		t.Fatalf("content differs after a faulty pull: %v", err)
	}
	faults := 0
	for _, r := range srv.Log() {
		if r.Fault != fetchtest.FaultNone {
			faults++
		}
	}
	if faults < 10 {
		t.Fatalf("only %d faults were injected; the test proves little", faults)
	}
}

// TestStalledServerFails: a server that stops sending makes the pull fail
// within the stall deadline (with retries), not hang.
func TestStalledServerFails(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := bigPublisher(t, 5)
	p.commit("ref", "stall", day)
	p.export(day)
	srv := serve(t, p.r.Dir, fetchtest.Options{Stall: fetchtest.Rule{P: 1, Paths: "/objects/**", After: fetchtest.Seeded}})
	e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}},
		fetch.Options{HTTP: fetch.HTTPOptions{StallTimeout: 300 * time.Millisecond, Retries: 2}})
	start := time.Now()
	_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
	el := time.Since(start)
	if err == nil {
		t.Fatal("pull from a stalled server succeeded")
	}
	t.Logf("failed after %s: %v", el.Round(time.Millisecond), err)
	// 3 attempts of 300 ms each plus backoff; far below a hang.
	if el > 20*time.Second {
		t.Fatalf("pull took %s to give up", el)
	}
}
