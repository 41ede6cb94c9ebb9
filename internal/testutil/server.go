package testutil

import (
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
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

// RequestLog is a concurrency-safe record of the requests a Server
// answered.
type RequestLog struct {
	mu   sync.Mutex
	reqs []Request
}

// Requests returns a copy of the logged requests in arrival order.
func (l *RequestLog) Requests() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Request(nil), l.reqs...)
}

// Paths returns the logged URL paths in arrival order.
func (l *RequestLog) Paths() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.reqs))
	for i, r := range l.reqs {
		out[i] = r.Path
	}
	return out
}

// Count returns how many requests asked for the path p.
func (l *RequestLog) Count(p string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if r.Path == p {
			n++
		}
	}
	return n
}

// Reset forgets every logged request.
func (l *RequestLog) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = nil
}

func (l *RequestLog) add(r Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
}

// ServeDir serves dir read-only over HTTP on 127.0.0.1 until the test
// ends. Regular files are served with Range support; directories and
// missing files get 404 (there are no listings), methods other than GET
// and HEAD get 405, and nothing outside dir is reachable, not even
// through symlinks.
func ServeDir(t testing.TB, dir string) *Server {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatalf("serve %s: %v", dir, err)
	}
	log := &RequestLog{}
	srv := httptest.NewUnstartedServer(&dirHandler{root: root, log: log})
	// httptest listens on 127.0.0.1 already; be explicit, since clients
	// and sandboxes in the tests rely on it not being ::1.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		root.Close()
		t.Fatalf("serve %s: %v", dir, err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		root.Close()
	})
	return &Server{URL: srv.URL, Log: log}
}

type dirHandler struct {
	root *os.Root
	log  *RequestLog
}

func (h *dirHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h.serve(rw, r)
	h.log.add(Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Status: rw.status})
}

func (h *dirHandler) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	// Refuse rather than clean: a client that sends .. is a bug the test
	// should see as a 404, not a file.
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") || path.Clean(p) != p || p == "/" {
		http.NotFound(w, r)
		return
	}
	f, err := h.root.Open(strings.TrimPrefix(p, "/"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || isEscape(err) {
			http.NotFound(w, r)
			return
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	// A fixed type stops ServeContent from sniffing; ostree does not care.
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// isEscape reports an os.Root refusal (a path or symlink leading outside
// the root); its error has no exported sentinel.
func isEscape(err error) bool {
	return strings.Contains(err.Error(), "escapes from parent")
}

// statusWriter remembers the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status = code
		s.wrote = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}
