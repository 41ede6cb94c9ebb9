package fetchtest_test

import (
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// files in the tree that makeTree writes.
const (
	bigSize  = 1 << 20
	smallTxt = "hello, fetchtest\n"
	objPath  = "/objects/ab/cdef.filez"
)

// makeTree writes a small repo-like tree and, beside it, a secret that
// must stay unreachable. It returns the served directory and the big
// file's content.
func makeTree(t *testing.T) (string, []byte) {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "repo")
	big := make([]byte, bigSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	files := map[string][]byte{
		"a.txt":                   []byte(smallTxt),
		"big":                     big,
		"empty":                   nil,
		"sub/x":                   []byte("x"),
		"objects/ab/cdef.filez":   []byte("object bytes"),
		"objects/ab/0123.dirtree": []byte("dirtree bytes"),
		"objects/cd/4567.commit":  []byte("commit bytes"),
		"deltas/ab/cd/superblock": []byte("superblock"),
		"../secret":               []byte("secret"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"escape":    "../secret",
		"absescape": filepath.Join(top, "secret"),
		"inlink":    "a.txt",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, big
}

// serve starts a Server that the test closes at its end.
func serve(t *testing.T, dir string, o fetchtest.Options) *fetchtest.Server {
	t.Helper()
	s, err := fetchtest.New(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newClient returns a client with its own connection pool, closed at the
// end of the test.
func newClient(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// freshClient never reuses a connection, so that Go's transport does not
// retry a request that failed on a reused one.
func freshClient(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
}

type result struct {
	status int
	header http.Header
	body   []byte
	// doErr is the error of the request itself, readErr that of reading
	// the body.
	doErr, readErr error
}

func do(t *testing.T, c *http.Client, method, url string, header ...string) result {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{doErr: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: body, readErr: err}
}

// get fetches url and fails the test on any transport error.
func get(t *testing.T, c *http.Client, url string, header ...string) result {
	t.Helper()
	r := do(t, c, http.MethodGet, url, header...)
	if r.doErr != nil || r.readErr != nil {
		t.Fatalf("GET %s: %v %v", url, r.doErr, r.readErr)
	}
	return r
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", bound, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitGoroutines waits until no more goroutines run than before, allowing
// for the runtime's own to come and go.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countDiff(a, b []byte) int {
	n := 0
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n + max(len(a), len(b)) - min(len(a), len(b))
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
