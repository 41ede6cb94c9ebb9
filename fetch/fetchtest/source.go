package fetchtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// source is where a Server finds what it serves: a directory (New) or an
// upstream HTTP server (NewProxy). By the time open is called the handler
// has delayed the request, refused malformed paths and answered the
// faults that replace a response (NotFound, FailFirstN, Status5xx); the
// faults within a body are applied afterwards to what open returns, so a
// source knows nothing of faults.
//
// open is called concurrently from every handler. It never fails: when
// there is nothing to serve it returns an error response (404, 502...).
// It must give up when the client goes away (x.r.Context()) or the
// Server closes (x.s.done). close is called once, after every handler has returned.
type source interface {
	open(x *exchange, p string) *content
	close()
}

// content is one response as a source produced it, before body faults.
type content struct {
	// status is sent as is; only 200 and 206 get body faults.
	status int
	header http.Header
	body   io.Reader
	// n is the number of body bytes that follow the headers, or -1 when
	// it is unknown and the body runs until EOF (a proxied response
	// without Content-Length).
	n       int64
	release func()
}

// bodyFaults reports whether Reset, Stall, Truncate and Corrupt may strike
// within c: a successful response whose length is known.
func (c *content) bodyFaults() bool {
	return (c.status == http.StatusOK || c.status == http.StatusPartialContent) && c.n >= 0
}

// errorContent is a short text response, as http.Error writes it.
func errorContent(code int) *content {
	msg := http.StatusText(code) + "\n"
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	return &content{status: code, header: h, body: strings.NewReader(msg), n: int64(len(msg)), release: func() {}}
}

// localContent serves size bytes of src, honouring a single byte range
// in r; release is called once the response is written.
func localContent(r *http.Request, src io.ReaderAt, size int64, release func()) *content {
	status, off, n := http.StatusOK, int64(0), size
	if rh := r.Header.Get("Range"); rh != "" {
		switch o, l, res := parseRange(rh, size); res {
		case rangeOK:
			status, off, n = http.StatusPartialContent, o, l
		case rangeUnsatisfiable:
			release()
			c := errorContent(http.StatusRequestedRangeNotSatisfiable)
			c.header.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			return c
		}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if status == http.StatusPartialContent {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
	}
	return &content{status: status, header: h, body: io.NewSectionReader(src, off, n), n: n, release: release}
}

// overrideContent asks Options.Override for p; ok is false when it
// declines (or is not set) and the source must answer.
func overrideContent(cfg *config, r *http.Request, p string) (c *content, ok bool) {
	if cfg.Override == nil {
		return nil, false
	}
	b, ok := cfg.Override(p)
	if !ok {
		return nil, false
	}
	return localContent(r, bytes.NewReader(b), int64(len(b)), func() {}), true
}

// dirSource serves the regular files under a directory, confined with
// os.Root.
type dirSource struct {
	root *os.Root
}

var _ source = (*dirSource)(nil)

func (d *dirSource) open(x *exchange, p string) *content {
	f, err := d.root.Open(strings.TrimPrefix(p, "/"))
	if err != nil {
		if notFound(err) {
			return errorContent(http.StatusNotFound)
		}
		return errorContent(http.StatusInternalServerError)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return errorContent(http.StatusInternalServerError)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return errorContent(http.StatusNotFound)
	}
	return localContent(x.r, f, st.Size(), func() { f.Close() })
}

func (d *dirSource) close() { d.root.Close() }

// notFound reports errors that mean "no such file here" to a client:
// missing, unreadable, a file where a directory was expected, a symlink
// loop, or a path that os.Root refuses because it leads outside the root
// (that error has no exported sentinel).
func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) ||
		strings.Contains(err.Error(), "escapes from parent")
}
