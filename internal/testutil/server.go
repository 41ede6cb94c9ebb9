package testutil

import (
	"testing"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// Server is a read-only HTTP server over a directory, for pulling from a
// repository the way the real clients do.
type Server struct {
	// URL is the base URL, http://127.0.0.1:PORT with no trailing slash.
	URL string
	// Log records every request in arrival order.
	Log *RequestLog
}

// Request is one logged request.
type Request struct {
	Method string
	// Path is the URL path as requested, with a leading slash.
	Path string
	// Range is the Range header, empty when the request had none.
	Range string
	// Status is the HTTP status code of the response.
	Status int
}

// RequestLog is the record of the requests a Server answered.
type RequestLog struct{ srv *fetchtest.Server }

// Requests returns the logged requests in arrival order.
func (l *RequestLog) Requests() []Request {
	var out []Request
	for _, r := range l.srv.Log() {
		out = append(out, Request{Method: r.Method, Path: r.Path, Range: r.Range, Status: r.Status})
	}
	return out
}

// Paths returns the logged URL paths in arrival order.
func (l *RequestLog) Paths() []string { return l.srv.Paths() }

// Count returns how many logged requests asked for exactly path p.
func (l *RequestLog) Count(p string) int {
	n := 0
	for _, q := range l.srv.Paths() {
		if q == p {
			n++
		}
	}
	return n
}

// Reset forgets the logged requests.
func (l *RequestLog) Reset() { l.srv.Reset() }

// ServeDir serves dir over HTTP on 127.0.0.1 until the test ends: the
// module's one in-process repo server (fetch/fetchtest) with no latency,
// limits or faults, so that what real clients pull through it behaves as
// in the tests that add them. Nothing outside dir is reachable, not even
// through symlinks.
func ServeDir(t testing.TB, dir string) *Server {
	t.Helper()
	srv, err := fetchtest.New(dir, fetchtest.Options{})
	if err != nil {
		t.Fatalf("serve %s: %v", dir, err)
	}
	t.Cleanup(srv.Close)
	return &Server{URL: srv.URL(), Log: &RequestLog{srv: srv}}
}
