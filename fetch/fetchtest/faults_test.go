package fetchtest_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// statuses fetches path n times and returns the status of each.
func statuses(t *testing.T, s *fetchtest.Server, path string, n int) []int {
	t.Helper()
	c := newClient(t, 10*time.Second)
	out := make([]int, n)
	for i := range out {
		out[i] = get(t, c, s.URL()+path).status
	}
	return out
}

func TestStatus5xx(t *testing.T) {
	dir, _ := makeTree(t)
	const n = 1000
	o := fetchtest.Options{Seed: 7, Status5xx: fetchtest.Rule{P: 0.1}}
	first := statuses(t, serve(t, dir, o), "/a.txt", n)
	seen := map[int]int{}
	for _, st := range first {
		seen[st]++
	}
	failed := n - seen[200]
	// 100 expected; the bounds are over 6 standard deviations wide.
	if failed < 50 || failed > 150 {
		t.Fatalf("%d of %d requests failed at P=0.1", failed, n)
	}
	for st, k := range seen {
		if st != 200 && st != 500 && st != 502 && st != 503 {
			t.Fatalf("status %d (%d times)", st, k)
		}
	}
	if seen[500] == 0 || seen[502] == 0 || seen[503] == 0 {
		t.Fatalf("not every default status was used: %v", seen)
	}

	// The same seed gives the same run; another seed another run.
	if again := statuses(t, serve(t, dir, o), "/a.txt", n); !slices.Equal(first, again) {
		t.Fatal("the same seed gave a different sequence")
	}
	o.Seed = 8
	if other := statuses(t, serve(t, dir, o), "/a.txt", n); slices.Equal(first, other) {
		t.Fatal("another seed gave the same sequence")
	}

	// ErrorStatuses narrows the choice, Paths the requests.
	s := serve(t, dir, fetchtest.Options{
		Status5xx:     fetchtest.Rule{P: 1, Paths: "/objects/"},
		ErrorStatuses: []int{http.StatusInternalServerError},
	})
	for _, st := range statuses(t, s, objPath, 20) {
		if st != 500 {
			t.Fatalf("status %d, want only 500", st)
		}
	}
	if st := statuses(t, s, "/a.txt", 1)[0]; st != 200 {
		t.Fatalf("a path outside the filter got %d", st)
	}
	if got := s.Log()[0].Fault; got != fetchtest.FaultStatus {
		t.Fatalf("logged fault %q", got)
	}
	if got := s.Stats().Faults; got != 20 {
		t.Fatalf("Stats().Faults = %d, want 20", got)
	}
}

func TestMatchFunc(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Status5xx: fetchtest.Rule{
		P:     1,
		Match: func(r *http.Request) bool { return r.Header.Get("Range") != "" },
	}})
	c := newClient(t, 10*time.Second)
	if r := get(t, c, s.URL()+"/big", "Range", "bytes=0-1"); r.status < 500 {
		t.Fatalf("ranged request got %d", r.status)
	}
	if r := get(t, c, s.URL()+"/a.txt"); r.status != 200 {
		t.Fatalf("plain request got %d", r.status)
	}
}

func TestFailFirstN(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{FailFirstN: 2, FailFirstPaths: "/objects/"})
	got := statuses(t, s, objPath, 3)
	if got[0] < 500 || got[1] < 500 || got[2] != 200 {
		t.Fatalf("statuses %v, want two 5xx then 200", got)
	}
	if got := statuses(t, s, "/objects/cd/4567.commit", 3); got[0] < 500 || got[2] != 200 {
		t.Fatalf("each path fails on its own: %v", got)
	}
	if st := statuses(t, s, "/a.txt", 1)[0]; st != 200 {
		t.Fatalf("a path outside the filter got %d", st)
	}
	log := s.Log()
	if log[0].Fault != fetchtest.FaultFailFirst || log[1].Attempt != 1 || log[2].Fault != fetchtest.FaultNone {
		t.Fatalf("log %+v", log[:3])
	}
	s.Reset()
	if st := statuses(t, s, objPath, 1)[0]; st < 500 {
		t.Fatalf("after Reset the first request got %d", st)
	}
}

func TestNotFound(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{NotFound: fetchtest.Rule{P: 1, Paths: "**.commit"}})
	c := newClient(t, 10*time.Second)
	if r := get(t, c, s.URL()+"/objects/cd/4567.commit"); r.status != 404 {
		t.Fatalf("filtered path got %d", r.status)
	}
	if r := get(t, c, s.URL()+objPath); r.status != 200 {
		t.Fatalf("other path got %d", r.status)
	}
	if got := s.Log()[0].Fault; got != fetchtest.FaultNotFound {
		t.Fatalf("logged fault %q", got)
	}
}

func TestResetBeforeHeaders(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Reset: fetchtest.Rule{P: 1, Paths: "/big", After: fetchtest.BeforeHeaders}})
	r := do(t, freshClient(t, 10*time.Second), "GET", s.URL()+"/big")
	if r.doErr == nil {
		t.Fatalf("got a %d response", r.status)
	}
	if !errors.Is(r.doErr, syscall.ECONNRESET) {
		t.Fatalf("error %v, want a connection reset", r.doErr)
	}
	if l := s.Log()[0]; l.Fault != fetchtest.FaultReset || l.Status != 0 || l.Bytes != 0 {
		t.Fatalf("log %+v", l)
	}
	// Other paths, and the same path once fixed, are served.
	c := newClient(t, 10*time.Second)
	if r := get(t, c, s.URL()+"/a.txt"); r.status != 200 {
		t.Fatalf("other path got %d", r.status)
	}
	if err := s.Update(func(o *fetchtest.Options) { o.Reset = fetchtest.Rule{} }); err != nil {
		t.Fatal(err)
	}
	if r := get(t, c, s.URL()+"/big"); len(r.body) != bigSize {
		t.Fatalf("fixed server sent %d bytes", len(r.body))
	}
}

func TestResetMidBody(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Reset: fetchtest.Rule{P: 1, After: 100 << 10}})
	r := do(t, freshClient(t, 10*time.Second), "GET", s.URL()+"/big")
	// A RST may overtake the data still in flight, so the client fails
	// either before the status or while reading the body.
	switch {
	case r.doErr != nil:
		t.Logf("reset before the response was read: %v", r.doErr)
	case r.readErr != nil:
		if len(r.body) >= bigSize {
			t.Fatalf("read all %d bytes", len(r.body))
		}
		t.Logf("reset after %d body bytes: %v", len(r.body), r.readErr)
	default:
		t.Fatalf("read %d bytes without error", len(r.body))
	}
	if l := s.Log()[0]; l.Fault != fetchtest.FaultReset || l.Status != 200 || l.Bytes != 100<<10 {
		t.Fatalf("log %+v", l)
	}
}

func TestTruncate(t *testing.T) {
	dir, big := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Truncate: fetchtest.Rule{P: 1, Paths: "/big", After: 1000}})
	c := newClient(t, 10*time.Second)
	resp, err := c.Get(s.URL() + "/big")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != bigSize {
		t.Fatalf("Content-Length %d, want the full %d", resp.ContentLength, bigSize)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read error %v, want unexpected EOF", err)
	}
	if !bytes.Equal(body, big[:1000]) {
		t.Fatalf("got %d bytes, want the first 1000", len(body))
	}
	if l := s.Log()[0]; l.Fault != fetchtest.FaultTruncate || l.Bytes != 1000 || l.Status != 200 {
		t.Fatalf("log %+v", l)
	}
	// Ranges are truncated too, and an After past the end still cuts.
	if err := s.Update(func(o *fetchtest.Options) { o.Truncate.After = 1 << 30 }); err != nil {
		t.Fatal(err)
	}
	r := do(t, c, "GET", s.URL()+"/big", "Range", "bytes=100-199")
	if !errors.Is(r.readErr, io.ErrUnexpectedEOF) || !bytes.Equal(r.body, big[100:199]) {
		t.Fatalf("ranged truncation: %d bytes, %v", len(r.body), r.readErr)
	}
	// Seeded cuts fall inside the body and differ between attempts.
	if err := s.Update(func(o *fetchtest.Options) { o.Truncate.After = fetchtest.Seeded }); err != nil {
		t.Fatal(err)
	}
	cuts := map[int]bool{}
	for range 5 {
		r := do(t, c, "GET", s.URL()+"/big")
		if !errors.Is(r.readErr, io.ErrUnexpectedEOF) || len(r.body) >= bigSize {
			t.Fatalf("seeded truncation: %d bytes, %v", len(r.body), r.readErr)
		}
		cuts[len(r.body)] = true
	}
	if len(cuts) < 2 {
		t.Fatalf("seeded cuts all at %v", cuts)
	}
	// Empty bodies cannot be truncated and are served.
	if r := get(t, c, s.URL()+"/empty"); r.status != 200 {
		t.Fatalf("empty file got %d", r.status)
	}
}

func TestCorrupt(t *testing.T) {
	dir, big := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Corrupt: fetchtest.Rule{P: 1}})
	c := newClient(t, 10*time.Second)
	r := get(t, c, s.URL()+"/big")
	if len(r.body) != bigSize || countDiff(r.body, big) != 1 {
		t.Fatalf("got %d bytes, %d differing; want %d and 1", len(r.body), countDiff(r.body, big), bigSize)
	}
	r = get(t, c, s.URL()+"/a.txt")
	if string(r.body) == smallTxt || len(r.body) != len(smallTxt) {
		t.Fatalf("small file not corrupted: %q", r.body)
	}
	// The flipped byte is within what a Range asks for.
	r = get(t, c, s.URL()+"/big", "Range", "bytes=500-509")
	if countDiff(r.body, big[500:510]) != 1 {
		t.Fatalf("range %x, original %x", r.body, big[500:510])
	}
	if got := s.Count(""); got != 3 || s.Stats().Faults != 3 || s.Log()[0].Fault != fetchtest.FaultCorrupt {
		t.Fatalf("log %+v", s.Log())
	}
	// Fixed, the server sends the right bytes again.
	if err := s.Update(func(o *fetchtest.Options) { o.Corrupt.P = 0 }); err != nil {
		t.Fatal(err)
	}
	if r := get(t, c, s.URL()+"/big"); !bytes.Equal(r.body, big) {
		t.Fatal("fixed server still sends wrong bytes")
	}
}

func TestOverride(t *testing.T) {
	dir, _ := makeTree(t)
	old := []byte("an older summary")
	s := serve(t, dir, fetchtest.Options{Override: func(p string) ([]byte, bool) {
		switch p {
		case "/summary", "/a.txt":
			return old, true
		}
		return nil, false
	}})
	c := newClient(t, 10*time.Second)
	for _, p := range []string{"/summary", "/a.txt"} {
		if r := get(t, c, s.URL()+p); r.status != 200 || !bytes.Equal(r.body, old) {
			t.Fatalf("%s: %d %q", p, r.status, r.body)
		}
	}
	if r := get(t, c, s.URL()+"/a.txt", "Range", "bytes=3-7"); r.status != 206 || !bytes.Equal(r.body, old[3:8]) {
		t.Fatalf("ranged override: %d %q", r.status, r.body)
	}
	if r := get(t, c, s.URL()+"/sub/x"); string(r.body) != "x" {
		t.Fatalf("not overridden: %q", r.body)
	}
	log := s.Log()
	if !log[0].Overridden || log[3].Overridden {
		t.Fatalf("log %+v", log)
	}
}

func TestStallUntilClientGivesUp(t *testing.T) {
	dir, big := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Stall: fetchtest.Rule{P: 1, Paths: "/big", After: 4096}})
	const timeout = 300 * time.Millisecond
	c := freshClient(t, timeout)
	start := time.Now()
	r := do(t, c, "GET", s.URL()+"/big")
	elapsed := time.Since(start)
	if r.doErr == nil && r.readErr == nil {
		t.Fatalf("stalled response read in full: %d bytes", len(r.body))
	}
	if elapsed < timeout {
		t.Fatalf("gave up after %v, before the client's %v timeout", elapsed, timeout)
	}
	if len(r.body) > 0 && !bytes.Equal(r.body, big[:len(r.body)]) {
		t.Fatal("stalled prefix is wrong")
	}
	// The handler notices the client leave and returns.
	waitFor(t, "the stalled handler to return", 5*time.Second, func() bool { return s.Stats().InFlight == 0 })
	if l := s.Log()[0]; l.Fault != fetchtest.FaultStall || !l.Done || l.Bytes != 4096 || l.Duration < timeout/2 {
		t.Fatalf("log %+v", l)
	}
}

func TestStallUntilClose(t *testing.T) {
	dir, _ := makeTree(t)
	before := runtime.NumGoroutine()
	s, err := fetchtest.New(dir, fetchtest.Options{Stall: fetchtest.Rule{P: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// The empty file stalls before its headers, HEAD likewise.
	for _, p := range []string{"/big", "/a.txt", "/empty", "/big"} {
		wg.Go(func() {
			resp, err := c.Get(s.URL() + p)
			if err != nil {
				errs <- err
				return
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			errs <- err
		})
	}
	waitFor(t, "four stalled requests", 5*time.Second, func() bool { return s.Stats().InFlight == 4 })
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("a stalled request succeeded")
		}
	}
	tr.CloseIdleConnections()
	waitGoroutines(t, before)
}
