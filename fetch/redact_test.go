package fetch_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/testutil"
)

// The credentials every test here puts in a remote URL. The user name is
// a secret too: tokens are often given as the user name.
const (
	credUser   = "tokenuser"
	credSecret = "s3cr3tpass"
)

func withCreds(rawURL string) string {
	return strings.Replace(rawURL, "http://", "http://"+credUser+":"+credSecret+"@", 1)
}

// syncBuffer is a log sink that the fetcher's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func assertNoCreds(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, credSecret) || strings.Contains(s, credUser) {
		t.Fatalf("%s carries the remote's credentials: %s", what, s)
	}
}

// TestErrorsHideURLCredentials reproduces the credentials leak of issue 8
// (hole 8): a remote URL with user:password@ that fails with 500, 404, a
// refused connection or a refused redirect gave errors (which reach
// status.json, logs and the terminal) naming the URL with its userinfo.
func TestErrorsHideURLCredentials(t *testing.T) {
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", code) }
	}
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/repo"
	}
	serveURL := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL + "/repo"
	}
	for _, tc := range []struct {
		name string
		url  func() string
	}{
		{"500", func() string { return serveURL(status(500)) }},
		{"404", func() string { return serveURL(status(404)) }},
		{"403", func() string { return serveURL(status(403)) }},
		{"connection refused", refused},
		{"redirect to https", func() string {
			return serveURL(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://127.0.0.1:1"+r.URL.Path, http.StatusFound)
			}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			opts := fetch.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			opts.HTTP.Retries = 1
			// The mirror is a second way for a URL to reach an error.
			e := newEnv(t, withCreds(tc.url()), fetch.AddOptions{NoGPGVerify: true, Mirrors: []string{withCreds(tc.url())}}, opts)
			// A remote without a summary (404) has no refs to list and
			// no error; the pull below asks for a ref file and fails.
			if _, err := e.fetcher.Refs(ctxT(t), "r"); err != nil {
				assertNoCreds(t, "the refs error", err.Error())
			}
			_, err := e.fetcher.Pull(ctxT(t), "r", "x", nil)
			if err == nil {
				t.Fatal("pulling from a failing remote succeeded")
			}
			assertNoCreds(t, "the pull error", err.Error())
			if !strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("the pull error no longer names the server: %v", err)
			}
			assertNoCreds(t, "the fetcher's log", logs.String())
		})
	}
}

// TestFallbackLogHidesURLCredentials: when a remote with credentials fails
// after a good summary, the fetcher logs the cause of using the stored
// summary; the log must not carry the credentials.
func TestFallbackLogHidesURLCredentials(t *testing.T) {
	var failing atomic.Bool
	var sawAuth atomic.Bool
	files := http.FileServer(http.Dir(testutil.CopyVectorRepo(t, "flatpak-repo")))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == credUser && p == credSecret {
			sawAuth.Store(true)
		}
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable) // origin down: the stored summary stands in, and says so in the log
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	var logs syncBuffer
	opts := fetch.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	opts.HTTP.Retries = 1
	e := newEnv(t, withCreds(srv.URL), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, opts)
	if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
		t.Fatalf("first summary: %v", err)
	}
	if !sawAuth.Load() {
		t.Fatal("the server never saw the URL's credentials as basic auth")
	}
	failing.Store(true)
	_, err := e.fetcher.Summary(ctxT(t), "r", true)
	if err != nil {
		assertNoCreds(t, "the summary error", err.Error())
	}
	if logs.String() == "" {
		t.Fatal("nothing was logged for a failing remote: the test no longer looks at the log it means to")
	}
	assertNoCreds(t, "the fetcher's log", logs.String())
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://user:pass@host/repo", "http://host/repo"},
		{"https://token@host:8443/a/b?c=d", "https://host:8443/a/b?c=d"},
		{"http://host/repo", "http://host/repo"},
		{"http://u:p@127.0.0.1:1/x/summary", "http://127.0.0.1:1/x/summary"},
		// Not a URL that parses (a space in the host, a bad escape): the
		// userinfo still goes.
		{"http://us er:pa%zz@ho st/p", "http://ho st/p"},
		{"user:pass@host/p%zz", "host/p%zz"},
		{"user:pass@host/p", "host/p"},
	} {
		if got := fetch.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestCheckURLHidesCredentials: the error for a URL that Add refuses names
// the URL without its userinfo.
func TestCheckURLHidesCredentials(t *testing.T) {
	for _, u := range []string{"ftp://" + credUser + ":" + credSecret + "@host/", "http://" + credUser + ":" + credSecret + "@host/%zz"} {
		err := fetch.CheckURL(u)
		if err == nil {
			t.Fatalf("CheckURL(%q) accepted it", u)
		}
		assertNoCreds(t, "the CheckURL error", err.Error())
	}
}

// TestStatusHidesURLCredentials: what the mount shows in status.json
// (readable by every user of an allow_other mount) carries the errors of
// a failing remote without its credentials.
func TestStatusHidesURLCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	opts := fetch.Options{}
	opts.HTTP.Retries = 1
	e := newEnv(t, withCreds(srv.URL), fetch.AddOptions{NoGPGVerify: true}, opts)
	src := fetch.NewSource(e.fetcher, fetch.SourceOptions{})
	t.Cleanup(func() { src.Close() })
	if _, err := src.Refs(ctxT(t), "r"); err == nil {
		t.Fatal("the refs of a failing remote loaded")
	}
	b, err := json.Marshal(src.Status())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "HTTP 500") {
		t.Fatalf("status does not show the failure: the test no longer looks where the error lands: %s", b)
	}
	assertNoCreds(t, "the source status", string(b))
}
