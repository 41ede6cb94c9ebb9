package fetchtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves a directory (New) or forwards to an upstream (NewProxy)
// over HTTP on 127.0.0.1 through an emulated network with injectable
// faults, and logs every request. It is safe for
// concurrent use; its options can change while it serves.
type Server struct {
	src   source
	url   string
	http2 bool
	srv   *http.Server
	cfg   atomic.Pointer[config]
	setMu sync.Mutex // serializes SetOptions and Update
	link  link
	log   requestLog
	stats counters

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	served    chan struct{} // closed when srv.Serve returns

	mu       sync.Mutex // guards closed, conns, nextConn and handlers.Add
	closed   bool
	conns    map[*conn]struct{}
	nextConn uint64
	handlers sync.WaitGroup
}

// New serves dir until Close. It listens on 127.0.0.1 on a port the kernel
// picks; URL tells which.
func New(dir string, opts Options) (*Server, error) {
	cfg, err := compile(opts)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fetchtest: serve %s: %w", dir, err)
	}
	s, err := start(&dirSource{root: root}, cfg)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("fetchtest: serve %s: %w", dir, err)
	}
	return s, nil
}

// start listens and serves src until Close; it takes src over only when
// it succeeds.
func start(src source, cfg *config) (*Server, error) {
	// tcp4 on purpose: clients and sandboxes in tests rely on 127.0.0.1,
	// never ::1.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		src:    src,
		url:    "http://" + ln.Addr().String(),
		http2:  cfg.HTTP2,
		done:   make(chan struct{}),
		served: make(chan struct{}),
		conns:  make(map[*conn]struct{}),
	}
	s.cfg.Store(cfg)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	s.srv.Protocols = new(http.Protocols)
	s.srv.Protocols.SetHTTP1(true)
	s.srv.Protocols.SetUnencryptedHTTP2(cfg.HTTP2)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(&listener{Listener: ln, s: s})
	}()
	return s, nil
}

type connKey struct{}

// URL returns the base URL, http://127.0.0.1:PORT, with no trailing slash.
func (s *Server) URL() string { return s.url }

// Close stops the server: it closes the listener and every connection,
// wakes stalled and throttled responses, and returns once every handler
// has returned. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		_ = s.srv.Close()
		for _, c := range conns {
			c.Close()
		}
		<-s.served
		s.handlers.Wait()
		s.src.close()
	})
}

// Options returns the options in force.
func (s *Server) Options() Options {
	o := s.config().Options
	o.ErrorStatuses = slices.Clone(o.ErrorStatuses)
	return o
}

// SetOptions replaces the options for requests that start from now on
// (limits apply at once to transfers under way). It refuses invalid
// options, and a change of HTTP2, and keeps the old ones then.
func (s *Server) SetOptions(o Options) error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	return s.setOptions(o)
}

func (s *Server) setOptions(o Options) error {
	if o.HTTP2 != s.http2 {
		return fmt.Errorf("%w: HTTP2 cannot change after New", ErrInvalidOptions)
	}
	cfg, err := compile(o)
	if err != nil {
		return err
	}
	s.cfg.Store(cfg)
	return nil
}

// Update edits the options in force with f and applies the result as
// SetOptions does; a test "fixes the server" with, say,
// Update(func(o *Options) { o.Corrupt = Rule{} }). Updates and SetOptions
// are serialized, so concurrent edits are not lost; f must not call
// either.
func (s *Server) Update(f func(*Options)) error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	o := s.Options()
	f(&o)
	return s.setOptions(o)
}

func (s *Server) config() *config { return s.cfg.Load() }

// Log returns a copy of the request log in arrival order.
func (s *Server) Log() []Request { return s.log.snapshot() }

// Reset forgets the logged requests, the attempts counted per path (so
// seeded faults and FailFirstN start over) and the totals in Stats.
func (s *Server) Reset() {
	s.log.reset()
	s.stats.requests.Store(0)
	s.stats.body.Store(0)
	s.stats.wire.Store(0)
	s.stats.conns.Store(0)
	s.stats.faults.Store(0)
}

// Count returns how many logged requests have a path that pattern
// matches. A pattern is "" (every path), a path ("/summary": exactly
// that), a directory ending in '/' ("/objects/": everything under it), or
// a glob ("/objects/*/*.filez", "**.commit"), where '*' stays within a
// path segment, '**' crosses segments, and '?' and '[...]' are as in
// path.Match. A leading '/' is implied. Count panics on a malformed glob.
func (s *Server) Count(pattern string) int {
	p := mustPattern(pattern)
	n := 0
	for _, r := range s.log.snapshot() {
		if p.match(r.Path) {
			n++
		}
	}
	return n
}

// Paths returns the logged paths in arrival order.
func (s *Server) Paths() []string {
	reqs := s.log.snapshot()
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Path
	}
	return out
}

// Stats returns the running totals.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:  s.stats.requests.Load(),
		InFlight:  s.stats.inflight.Load(),
		Bytes:     s.stats.body.Load(),
		WireBytes: s.stats.wire.Load(),
		Conns:     s.stats.conns.Load(),
		Faults:    s.stats.faults.Load(),
	}
}

// track registers a new connection, or reports false once closed.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.nextConn++
	c.id = s.nextConn
	s.conns[c] = struct{}{}
	s.stats.conns.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// enter registers a handler with Close, or reports false once closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// sleep waits d, or less when ctx ends or the server closes, and reports
// whether it waited the whole time.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}
