package fetchtest_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
)

const vectorRef = "exampleos/x86_64/stable"

// ostreePull pulls vectorRef with the real ostree from url into a new
// archive repo and returns the repo's path and the command's output.
func ostreePull(t *testing.T, url string, extra ...string) (string, string) {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "client")
	testutil.Run(t, "", nil, "ostree", "init", "--repo="+repo, "--mode=archive")
	testutil.Run(t, "", nil, "ostree", "remote", "add", "--repo="+repo, "--no-gpg-verify", "o", url)
	args := append([]string{"pull", "--repo=" + repo}, extra...)
	out := testutil.Run(t, "", nil, "ostree", append(args, "o", vectorRef)...)
	return repo, out
}

// wantCommit checks that repo has the vectors' head commit, intact.
func wantCommit(t *testing.T, repo string) {
	t.Helper()
	got := strings.TrimSpace(testutil.Output(t, "", nil, "ostree", "rev-parse", "--repo="+repo, "o:"+vectorRef))
	c2 := vectorCommit(t, "C2")
	if got != c2 {
		t.Fatalf("pulled %s, want %s", got, c2)
	}
	testutil.Run(t, "", nil, "ostree", "fsck", "--repo="+repo)
}

func vectorCommit(t *testing.T, name string) string {
	t.Helper()
	for _, line := range strings.Split(string(readFile(t, testutil.VectorPath(t, "commits.txt"))), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return v
		}
	}
	t.Fatalf("%s not in commits.txt", name)
	return ""
}

// TestOstreePull checks that the real ostree pulls from the server, and
// that the log shows its request sequence.
func TestOstreePull(t *testing.T) {
	testutil.RequireTool(t, "ostree")
	s := serve(t, testutil.CopyVectorRepo(t, "repo"), fetchtest.Options{})
	repo, _ := ostreePull(t, s.URL(), "--disable-static-deltas")
	wantCommit(t, repo)

	c2 := vectorCommit(t, "C2")
	obj := "/objects/" + c2[:2] + "/" + c2[2:]
	paths := s.Paths()
	want := []string{"/summary.sig", "/summary", "/config", obj + ".commitmeta", obj + ".commit"}
	if len(paths) < len(want) {
		t.Fatalf("requests %q", paths)
	}
	for i, p := range want {
		if paths[i] != p {
			t.Fatalf("request %d is %s, want %s; all: %q", i, paths[i], p, paths)
		}
	}
	// The counts of the vectors' pull log 01 (no deltas): 10 metadata
	// objects (5 dirtrees, 3 dirmetas, the commit and its commitmeta) and
	// 14 content objects, each fetched once: 27 requests in all.
	if got := s.Count("/objects/**.dirtree") + s.Count("/objects/**.dirmeta") + s.Count("/objects/**.commit*"); got != 10 {
		t.Errorf("%d metadata objects fetched, want 10", got)
	}
	if got := s.Count("/objects/*/*.filez"); got != 14 {
		t.Errorf("%d content objects fetched, want 14", got)
	}
	for _, r := range s.Log() {
		if r.Method != "GET" || r.Status != 200 || !r.Done {
			t.Errorf("request %+v", r)
		}
	}
	if got := s.Stats().Requests; got != 27 {
		t.Errorf("%d requests, want 27", got)
	}
	t.Logf("%d requests over %d connections", s.Stats().Requests, s.Stats().Conns)
}

// TestOstreePullThrough500 checks that a seeded 10% of 500s still gives
// a complete pull. ostree 2022.7 retries 500 only: a 502, 503 or 504
// fails the pull at once, so that is all this injects.
func TestOstreePullThrough500(t *testing.T) {
	testutil.RequireTool(t, "ostree")
	s := serve(t, testutil.CopyVectorRepo(t, "repo"), fetchtest.Options{
		Seed:          1,
		Status5xx:     fetchtest.Rule{P: 0.1},
		ErrorStatuses: []int{500},
		// And one sure retry, whatever the seed.
		FailFirstN:     1,
		FailFirstPaths: "**.commit",
	})
	repo, _ := ostreePull(t, s.URL(), "--disable-static-deltas", "--network-retries=10")
	wantCommit(t, repo)
	failed := 0
	for _, r := range s.Log() {
		if r.Status == 500 {
			failed++
		}
	}
	if failed == 0 {
		t.Fatalf("no 500 was injected in %d requests", len(s.Log()))
	}
	t.Logf("%d of %d requests answered 500", failed, len(s.Log()))
}

// TestOstreePullEmulated pulls through the emulated network, as `lazytree
// bench` does with ostree as a peer. HTTP2 is on: libcurl speaks
// HTTP/1.1 to an http:// URL, which must still work.
func TestOstreePullEmulated(t *testing.T) {
	testutil.RequireTool(t, "ostree")
	const latency = 20 * time.Millisecond
	s := serve(t, testutil.CopyVectorRepo(t, "repo"), fetchtest.Options{
		Latency:     latency,
		Jitter:      5 * time.Millisecond,
		ConnLatency: latency,
		Bandwidth:   2 << 20,
		HTTP2:       true,
	})
	start := time.Now()
	repo, _ := ostreePull(t, s.URL())
	elapsed := time.Since(start)
	wantCommit(t, repo)
	// summary.sig, summary, config, then the delta index and superblock
	// (or the commit) come one after another: five round trips at least.
	if elapsed < 5*latency {
		t.Fatalf("pull took %v, less than five round trips of %v", elapsed, latency)
	}
	for _, r := range s.Log() {
		if r.Proto != "HTTP/1.1" || r.Duration < latency {
			t.Fatalf("request %+v", r)
		}
	}
	t.Logf("pull took %v, %d requests, %d bytes", elapsed, s.Stats().Requests, s.Stats().WireBytes)
}
