package fetchtest

import (
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serveHTTP answers one request: delay, faults that replace the response,
// the file (or its override) with Range support, and faults that strike
// within the body.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		abort()
	}
	defer s.handlers.Done()
	x := &exchange{s: s, cfg: s.config(), r: r, rw: &recorder{ResponseWriter: w, s: s}, start: time.Now()}
	x.c, _ = r.Context().Value(connKey{}).(*conn)
	var connID uint64
	if x.c != nil {
		connID = x.c.id
	}
	x.attempt, x.h = s.log.begin(Request{
		Conn:   connID,
		Method: r.Method,
		Path:   r.URL.Path,
		Range:  r.Header.Get("Range"),
		Proto:  r.Proto,
		Start:  x.start,
	})
	s.stats.requests.Add(1)
	s.stats.inflight.Add(1)
	// Deferred so that it also runs when a fault aborts the handler.
	defer x.finish()
	x.serve()
}

// exchange is one request being answered.
type exchange struct {
	s          *Server
	cfg        *config
	r          *http.Request
	rw         *recorder
	c          *conn // nil only if net/http stops calling ConnContext
	h          logHandle
	attempt    int
	start      time.Time
	fault      Fault
	lost       int
	overridden bool
	completed  bool
}

func (x *exchange) serve() {
	s, cfg, r, rw, p := x.s, x.cfg, x.r, x.rw, x.r.URL.Path
	// Counted from arrival, so that the log and lookups do not add to it.
	if !s.sleep(r.Context(), cfg.delay(p, x.attempt)-time.Since(x.start)) {
		abort()
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Refuse rather than clean: a client that sends .. or // has a bug
	// that its test should see as a 404, not as some other file.
	if !strings.HasPrefix(p, "/") || p == "/" || strings.ContainsRune(p, 0) || path.Clean(p) != p {
		http.NotFound(rw, r)
		return
	}

	switch {
	case cfg.notFound.hits(cfg, r, x.attempt):
		x.fault = FaultNotFound
		http.NotFound(rw, r)
		return
	case x.attempt < cfg.FailFirstN && cfg.failFirst.match(p):
		x.fault = FaultFailFirst
		code := cfg.errorStatus(x.fault, p, x.attempt)
		http.Error(rw, http.StatusText(code), code)
		return
	case cfg.status.hits(cfg, r, x.attempt):
		x.fault = FaultStatus
		code := cfg.errorStatus(x.fault, p, x.attempt)
		http.Error(rw, http.StatusText(code), code)
		return
	}
	// Draw every body fault now, so that each draw depends only on the
	// request and not on what the file turns out to hold.
	resetHit := cfg.reset.hits(cfg, r, x.attempt)
	stallHit := cfg.stall.hits(cfg, r, x.attempt)
	truncateHit := cfg.truncate.hits(cfg, r, x.attempt)
	corruptHit := cfg.corrupt.hits(cfg, r, x.attempt)
	if resetHit && cfg.reset.After == BeforeHeaders {
		x.fault = FaultReset
		x.strike()
	}

	c, overridden := overrideContent(cfg, r, p)
	if !overridden {
		c = s.src.open(x, p)
	}
	defer c.release()
	x.overridden = overridden
	hdr := rw.Header()
	for k, v := range c.header {
		hdr[k] = v
	}

	body := c.n
	if r.Method == http.MethodHead {
		body = 0
	}
	cut, flip := int64(-1), int64(-1)
	if c.bodyFaults() {
		switch {
		case resetHit:
			x.fault, cut = FaultReset, cfg.reset.cut(cfg, p, x.attempt, body)
		case stallHit:
			x.fault, cut = FaultStall, cfg.stall.cut(cfg, p, x.attempt, body)
		case truncateHit && body > 0:
			x.fault, cut = FaultTruncate, cfg.truncate.cut(cfg, p, x.attempt, body)
		case corruptHit && body > 0:
			x.fault, flip = FaultCorrupt, int64(cfg.draw(string(FaultCorrupt)+"/at", p, x.attempt)%uint64(body))
		}
	}
	// With no body to cut, a Reset or Stall after the headers would look
	// like a complete response (and the connection would be reused while
	// the handler still holds it): strike before the headers instead.
	if cut < 0 || body > 0 {
		rw.WriteHeader(c.status)
	}
	if cut < 0 {
		if err := x.copyBody(c.body, body, flip, x.complete); err != nil {
			// The response is short of its Content-Length; make sure the
			// client sees an error rather than a short body.
			abort()
		}
		return
	}
	if err := x.copyBody(c.body, cut, -1, nil); err != nil {
		abort()
	}
	if body > 0 {
		_ = http.NewResponseController(rw).Flush()
	}
	x.strike()
}

// strike ends the response with x.fault (Reset, Stall or Truncate) after
// what has been written so far.
func (x *exchange) strike() {
	switch x.fault {
	case FaultReset:
		x.complete(0)
		if x.c != nil {
			x.c.reset()
		}
	case FaultStall:
		select {
		case <-x.r.Context().Done():
		case <-x.s.done:
		}
	case FaultTruncate:
		x.complete(0)
	}
	// A handler that panics with ErrAbortHandler makes net/http close an
	// HTTP/1 connection (after flushing what was written: a truncated
	// body) or reset an HTTP/2 stream.
	abort()
}

// complete records the outcome in the log and Stats, counting pending
// body bytes about to be written. It is called before the client can see
// the end of the response or its fault, so that a client that has seen
// either finds the log final.
func (x *exchange) complete(pending int64) {
	if x.completed {
		return
	}
	x.completed = true
	s := x.s
	s.stats.inflight.Add(-1)
	if x.fault != FaultNone {
		s.stats.faults.Add(1)
		if l := x.cfg.Logger; l != nil {
			l.Debug("fetchtest: injected fault", "fault", x.fault, "method", x.r.Method, "path", x.r.URL.Path,
				"attempt", x.attempt, "status", x.rw.status, "bytes", x.rw.bytes+pending)
		}
	}
	s.log.finish(x.h, func(q *Request) {
		q.Status = x.rw.status
		q.Bytes = x.rw.bytes + pending
		q.Fault = x.fault
		q.Overridden = x.overridden
		q.Lost = x.lost
		q.Duration = time.Since(x.start)
		q.Done = true
	})
}

// finish completes the log when nothing did before (error statuses, which
// net/http sends after the handler returns, and aborts), and otherwise
// corrects the byte count if the last write fell short.
func (x *exchange) finish() {
	if !x.completed {
		x.complete(0)
		return
	}
	x.s.log.finish(x.h, func(q *Request) { q.Bytes = x.rw.bytes })
}

// abort ends the response abruptly; see http.ErrAbortHandler.
func abort() { panic(http.ErrAbortHandler) }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// lossChunk is the stretch of body that Options.Loss holds back or lets
// through at once: about what a TCP sender has in flight when a loss
// makes it wait for a retransmission timeout.
const lossChunk = 64 << 10

// lost reports whether Options.Loss holds back the i-th lossChunk of the
// response to the attempt-th request for p.
func (c *config) lost(p string, attempt int, i int64) bool {
	if c.Loss <= 0 {
		return false
	}
	return c.Loss >= 1 || unit(c.draw("loss/"+strconv.FormatInt(i, 10), p, attempt)) < c.Loss
}

// copyBody writes n bytes of src (all of it, to EOF, when n < 0),
// flipping the byte at flip when flip >= 0, holding back the chunks that
// Options.Loss hits, and calling last (when set) with the size of the
// final write just before it.
func (x *exchange) copyBody(src io.Reader, n, flip int64, last func(pending int64)) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	p := x.r.URL.Path
	for done := int64(0); n < 0 || done < n; {
		// Reads never straddle a loss chunk, so that a hit holds back
		// the chunk from its first byte.
		k := int(min(int64(len(buf)), lossChunk-done%lossChunk))
		if n >= 0 {
			k = int(min(int64(k), n-done))
		}
		var got int
		var err error
		if n < 0 {
			got, err = io.ReadAtLeast(src, buf[:k], 1)
			if err == io.EOF {
				return nil
			}
		} else {
			got, err = io.ReadFull(src, buf[:k])
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if flip >= done && flip < done+int64(got) {
			buf[flip-done] ^= 0xff
		}
		if done%lossChunk == 0 && x.cfg.lost(p, x.attempt, done/lossChunk) {
			x.lost++
			// What was written before the loss reaches the client; the
			// chunk itself waits.
			_ = http.NewResponseController(x.rw).Flush()
			if !x.s.sleep(x.r.Context(), x.cfg.lossStall) {
				return errConnClosed
			}
		}
		if last != nil && done+int64(got) == n {
			last(int64(got))
		}
		if _, err := x.rw.Write(buf[:got]); err != nil {
			return err
		}
		done += int64(got)
	}
	return nil
}

type rangeResult int

const (
	rangeIgnored rangeResult = iota
	rangeOK
	rangeUnsatisfiable
)

// parseRange reads a Range header for a body of size bytes. Only a single
// byte range is honoured; several ranges, other units and malformed
// headers are ignored (the whole body is sent), which RFC 9110 allows.
func parseRange(h string, size int64) (off, n int64, res rangeResult) {
	unit, spec, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return 0, 0, rangeIgnored
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, rangeIgnored
	}
	if first == "" {
		// A suffix: the last n bytes.
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, 0, rangeIgnored
		}
		if k == 0 || size == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		k = min(k, size)
		return size - k, k, rangeOK
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, rangeIgnored
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, 0, rangeIgnored
		}
	}
	if a >= size {
		return 0, 0, rangeUnsatisfiable
	}
	b = min(b, size-1)
	return a, b - a + 1, rangeOK
}

// recorder remembers the status and counts body bytes for the log.
type recorder struct {
	http.ResponseWriter
	s      *Server
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write counts bytes before it writes them, so that the counts are
// never behind what the client has seen, and takes back what failed.
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.bytes += int64(len(b))
	r.s.stats.body.Add(int64(len(b)))
	n, err := r.ResponseWriter.Write(b)
	if short := int64(len(b) - n); short > 0 {
		r.bytes -= short
		r.s.stats.body.Add(-short)
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
