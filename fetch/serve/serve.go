package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// File is what a Backend found for a name.
type File struct {
	// Content is read from the start, or from a Range's offset.
	Content io.ReadSeeker
	// ModTime is sent as Last-Modified when not zero.
	ModTime time.Time
	// ETag is a strong entity tag, quoted ("..."); empty sends none.
	ETag string
	// Close releases Content (nil: nothing to release).
	Close func() error
	// Recreated marks an object encoded by the server, not as its
	// publisher wrote it (a cache node's .filez): the same content, but
	// other bytes, so offsets into the publisher's file (a tree index's
	// access points) do not apply. Sent as RecreatedHeader.
	Recreated bool
}

// RecreatedHeader is sent, with the value "1", with a File that is
// Recreated.
const RecreatedHeader = "X-Lazytree-Recreated"

// Backend finds the file a repository name holds. Open returns an error
// matching fs.ErrNotExist when there is none, fs.ErrPermission when it
// must not be served, and ErrUpstream (wrapped) when a source behind the
// backend failed or sent something that did not verify; anything else is
// an internal error. name is always valid for Name. Open is called
// concurrently.
type Backend interface {
	Open(ctx context.Context, name string) (*File, error)
}

// ErrUpstream marks a failure of the source behind a backend (answered
// 502), as opposed to a missing file (404).
var ErrUpstream = errors.New("upstream failed")

// ErrTooLarge marks a file larger than the request's GuessLimitHeader
// allows that the backend did not have (answered 413).
var ErrTooLarge = errors.New("larger than the client's guess limit")

// GuessLimitHeader is sent by a lazytree client with a request it makes
// on a guess (a speculative fetch, fetch/speculate.go), with the largest
// size it will take. A cache node that lacks the file fetches it from its
// upstream only within that size, so that one client's abandoned guess
// does not cost the node a whole large object.
const GuessLimitHeader = "X-Lazytree-Guess-Max"

type guessKey struct{}

// GuessLimit returns the limit of GuessLimitHeader that Handler put on a
// request's context.
func GuessLimit(ctx context.Context) (int64, bool) {
	n, ok := ctx.Value(guessKey{}).(int64)
	return n, ok
}

// Class says how long a response may be cached.
type Class int

const (
	// ShortLived names change when the repository is published again:
	// summary, signatures, refs, config, delta indexes.
	ShortLived Class = iota
	// Immutable names are content-addressed: the bytes behind them never
	// change.
	Immutable
)

// MaxNameLength bounds a request path.
const MaxNameLength = 1024

// Name checks a request path and returns the repository name it asks for
// (without the leading "/") and its cache class. Only what an archive
// repository publishes is a name: config, summary, summary.sig,
// summary.idx and summary.idx.sig, summaries/, refs/, objects/, deltas/,
// delta-indexes/ and lazytree/ (tree indexes, profiles). Empty, "." and
// ".." segments, backslashes and control bytes are refused.
func Name(urlPath string) (string, Class, error) {
	if !strings.HasPrefix(urlPath, "/") || len(urlPath) > MaxNameLength {
		return "", 0, errBadName
	}
	name := urlPath[1:]
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", 0, errBadName
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; c < 0x20 || c == 0x7f || c == '\\' {
				return "", 0, errBadName
			}
		}
	}
	top, rest, sub := strings.Cut(name, "/")
	switch {
	case !sub && (top == "config" || top == "summary" || top == "summary.sig" || top == "summary.idx" || top == "summary.idx.sig"):
		return name, ShortLived, nil
	case sub && (top == "refs" || top == "delta-indexes"):
		return name, ShortLived, nil
	case sub && (top == "objects" || top == "deltas" || top == "summaries"):
		return name, Immutable, nil
	case sub && top == "lazytree" && (strings.HasPrefix(rest, "tree-index/") || strings.HasPrefix(rest, "profile/")):
		return name, Immutable, nil
	}
	return "", 0, errBadName
}

var errBadName = errors.New("not a repository path")

// Cache-Control values per class. Short-lived files may be kept a minute
// and must then be revalidated (their ETag makes that cheap): a client
// behind a cache sees a new publish within about a minute.
const (
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheShort     = "public, max-age=60, must-revalidate"
)

// Options configure Handler. The zero value serves without an access log.
type Options struct {
	// AccessLog gets one line per request (nil: none).
	AccessLog io.Writer
	// Logger gets internal errors (nil: discarded).
	Logger *slog.Logger
	// WriteTimeout fails a response that makes no progress for this long
	// (default 60 s): a client that stops reading does not hold a
	// connection for ever.
	WriteTimeout time.Duration
}

// Handler serves b as an archive repository.
func Handler(b Backend, o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 60 * time.Second
	}
	return &handler{b: b, o: o}
}

type handler struct {
	b  Backend
	o  Options
	mu sync.Mutex // serialises access log lines
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, rc: http.NewResponseController(w), timeout: h.o.WriteTimeout}
	h.serve(rec, r)
	h.log(r, rec, time.Since(start))
}

func (h *handler) serve(w *recorder, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, class, err := Name(r.URL.Path)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	ctx := r.Context()
	if v := r.Header.Get(GuessLimitHeader); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			ctx = context.WithValue(ctx, guessKey{}, n)
		}
	}
	f, err := h.b.Open(ctx, name)
	if err != nil {
		switch {
		case errors.Is(err, ErrTooLarge):
			http.Error(w, "larger than the guess limit", http.StatusRequestEntityTooLarge)
		case errors.Is(err, fs.ErrNotExist):
			http.Error(w, "not found", http.StatusNotFound)
		case errors.Is(err, fs.ErrPermission):
			http.Error(w, "forbidden", http.StatusForbidden)
		case errors.Is(err, ErrUpstream):
			w.note = err.Error()
			http.Error(w, "upstream failed", http.StatusBadGateway)
		case r.Context().Err() != nil:
			w.note = "client went away"
		default:
			w.note = err.Error()
			h.o.Logger.Error("serve", "name", name, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	if f.Close != nil {
		defer f.Close()
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("X-Content-Type-Options", "nosniff")
	if class == Immutable {
		hd.Set("Cache-Control", cacheImmutable)
	} else {
		hd.Set("Cache-Control", cacheShort)
	}
	if f.ETag != "" {
		hd.Set("ETag", f.ETag)
	}
	if f.Recreated {
		hd.Set(RecreatedHeader, "1")
	}
	// ServeContent answers If-None-Match (304), If-Range and a single
	// Range (206, 416); it leaves Content-Encoding alone, so offsets are
	// offsets in the file.
	http.ServeContent(w, r, "", f.ModTime, f.Content)
}

// log writes one access log line: client, method, path, protocol,
// status, body bytes, duration, and a note on failures. The path is
// quoted, so a hostile client cannot forge log lines.
func (h *handler) log(r *http.Request, w *recorder, d time.Duration) {
	if h.o.AccessLog == nil {
		return
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	line := fmt.Sprintf("%s %s %s %s %s %d %d %s", time.Now().UTC().Format(time.RFC3339Nano), clientHost(r.RemoteAddr), r.Method,
		strconv.Quote(r.URL.Path), r.Proto, status, w.n, d.Round(time.Microsecond))
	if rg := r.Header.Get("Range"); rg != "" {
		line += " range=" + strconv.Quote(rg)
	}
	if w.note != "" {
		line += " note=" + strconv.Quote(w.note)
	}
	h.mu.Lock()
	io.WriteString(h.o.AccessLog, line+"\n")
	h.mu.Unlock()
}

func clientHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// recorder counts what a response wrote and pushes the write deadline
// forward before every write.
type recorder struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	status  int
	n       int64
	note    string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.rc.SetWriteDeadline(time.Now().Add(r.timeout))
	n, err := r.ResponseWriter.Write(b)
	r.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// NewServer returns an http.Server for h that speaks HTTP/1.1 and, over
// cleartext, HTTP/2 with prior knowledge (h2c), with timeouts for idle
// and slow clients.
func NewServer(h http.Handler) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Dir serves a repository directory. Open with NewDir.
type Dir struct{ root *os.Root }

var _ Backend = (*Dir)(nil)

// NewDir opens dir for serving. Close it when done.
func NewDir(dir string) (*Dir, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", dir, err)
	}
	if _, err := root.Stat("config"); err != nil {
		root.Close()
		return nil, fmt.Errorf("serve %s: not an OSTree repository (no config): %w", dir, err)
	}
	return &Dir{root: root}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Open opens a regular file below the directory. Symlinks are followed
// only where they stay inside it (os.Root); directories and special
// files are not found. The ETag is nginx's: size and modification time,
// which change whenever a publisher rewrites a file.
func (d *Dir) Open(ctx context.Context, name string) (*File, error) {
	// O_NONBLOCK: opening a fifo for reading would otherwise wait for a
	// writer, holding the request (and Close) for ever; it changes
	// nothing for a regular file.
	f, err := d.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, err
		}
		// os.Root's refusal of a path leading out, ENOTDIR, ELOOP...:
		// nothing to serve.
		return nil, fmt.Errorf("%s: %w (%v)", name, fs.ErrNotExist, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (not a regular file)", name, fs.ErrNotExist)
	}
	tag := fmt.Sprintf(`"%x-%x"`, st.ModTime().UnixNano(), st.Size())
	return &File{Content: f, ModTime: st.ModTime(), ETag: tag, Close: f.Close}, nil
}
