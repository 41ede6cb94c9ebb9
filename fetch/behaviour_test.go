package fetch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// TestPullResumes cancels a pull midway; the next pull fetches only what
// the first did not store.
func TestPullResumes(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := bigPublisher(t, 200)
	p.commit("ref", "resume", day)
	p.export(day)
	srv := serve(t, p.r.Dir, fetchtest.Options{Latency: 5 * time.Millisecond})
	e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{HTTP: fetch.HTTPOptions{Concurrency: 4}})
	ctx, cancel := context.WithCancel(ctxT(t))
	prog := &fetch.Progress{}
	go func() {
		for prog.ObjectsDone.Load() < 60 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := e.fetcher.Pull(ctx, "r", "ref", prog); err == nil {
		t.Fatal("the interrupted pull reported success")
	}
	// Let shared fetches that outlived the cancelled pull finish.
	for srv.Stats().InFlight > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	first := map[string]bool{}
	for _, r := range srv.Log() {
		if strings.HasSuffix(r.Path, ".filez") && r.Status == 200 {
			first[r.Path] = true
		}
	}
	srv.Reset()
	res, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
	if err != nil {
		t.Fatal(err)
	}
	again := 0
	for _, r := range srv.Log() {
		if first[r.Path] {
			again++
		}
	}
	if again != 0 {
		t.Fatalf("the resumed pull fetched %d objects again", again)
	}
	if len(first) == 0 || res.Fetched == 0 {
		t.Fatalf("first pull fetched %d, second %d: the test proves nothing", len(first), res.Fetched)
	}
	t.Logf("first pull stored %d content objects, the resumed one fetched %d objects", len(first), res.Fetched)
}

// TestSharedFetchSurvivesFirstCaller: the first caller gives up; a second
// caller waiting on the same object still gets it, fetched once.
func TestSharedFetchSurvivesFirstCaller(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := bigPublisher(t, 3)
	c := p.commit("ref", "shared", day)
	p.export(day)
	srv := serve(t, p.r.Dir, fetchtest.Options{})
	e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	cm, err := e.fetcher.Commit(ctxT(t), "r", "ref", c)
	if err != nil {
		t.Fatal(err)
	}
	root, err := e.fetcher.DirTree(ctxT(t), "r", cm.RootTree)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := e.fetcher.DirTree(ctxT(t), "r", root.Dirs[0].Tree)
	if err != nil {
		t.Fatal(err)
	}
	obj := sub.Files[0].Checksum
	srv.Update(func(o *fetchtest.Options) { o.Latency = 300 * time.Millisecond })
	srv.Reset()
	first, cancelFirst := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	var err1, err2 error
	wg.Add(2)
	go func() { defer wg.Done(); err1 = e.fetcher.FetchContent(first, "r", obj) }()
	time.Sleep(50 * time.Millisecond)
	go func() { defer wg.Done(); err2 = e.fetcher.FetchContent(ctxT(t), "r", obj) }()
	time.Sleep(50 * time.Millisecond)
	cancelFirst()
	wg.Wait()
	if !errors.Is(err1, context.Canceled) {
		t.Fatalf("first caller: %v, want canceled", err1)
	}
	if err2 != nil {
		t.Fatalf("second caller: %v", err2)
	}
	if n := srv.Count("/objects/**.filez"); n != 1 {
		t.Fatalf("%d fetches of one object", n)
	}
	h, err := e.store.Open(ctxT(t), obj)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

// TestRedirectsRefused: a redirect to another scheme (or file:) is an
// error, not followed.
func TestRedirectsRefused(t *testing.T) {
	for _, target := range []string{"file:///etc/passwd", "ftp://127.0.0.1/x", "https://127.0.0.1:1/summary"} {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target, http.StatusFound)
		}))
		e := newEnv(t, hs.URL, fetch.AddOptions{NoGPGVerify: true}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
		_, err := e.fetcher.Summary(ctxT(t), "r", true)
		hs.Close()
		if err == nil {
			t.Fatalf("redirect to %s followed", target)
		}
		if !strings.Contains(err.Error(), "redirect") {
			t.Fatalf("redirect to %s: %v", target, err)
		}
	}
}

// TestOfflineUsesLastVerifiedSummary: with the server gone, refs still
// resolve from the last verified summary and cached objects still read.
func TestOfflineUsesLastVerifiedSummary(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := bigPublisher(t, 5)
	c := p.commit("ref", "offline", day)
	p.export(day)
	srv := serve(t, p.r.Dir, fetchtest.Options{})
	e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	// A new fetcher on the same cache, as after a restart.
	f2 := fetch.New(e.store, e.cfg, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	got, err := f2.ResolveRef(ctxT(t), "r", "ref")
	if err != nil || got != c {
		t.Fatalf("offline resolve: %s, %v", got, err)
	}
	if _, err := f2.Commit(ctxT(t), "r", "ref", c); err != nil {
		t.Fatalf("offline commit: %v", err)
	}
}

// TestHTTP2WhenOffered: over TLS, a server that offers HTTP/2 gets it, and
// a pull through it works.
func TestHTTP2WhenOffered(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := bigPublisher(t, 20)
	p.commit("ref", "h2", day)
	p.export(day)
	var mu sync.Mutex
	protos := map[string]int{}
	files := http.FileServer(http.Dir(p.r.Dir))
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	hs.EnableHTTP2 = true
	hs.StartTLS()
	defer hs.Close()
	tlsConf := hs.Client().Transport.(*http.Transport).TLSClientConfig
	e := newEnv(t, hs.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{HTTP: fetch.HTTPOptions{TLSConfig: tlsConf}})
	if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if protos["HTTP/2.0"] == 0 || protos["HTTP/1.1"] != 0 {
		t.Fatalf("protocols seen by the server: %v", protos)
	}
}
