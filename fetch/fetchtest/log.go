package fetchtest

import (
	"sync"
	"time"
)

// Request is one logged request.
type Request struct {
	// Seq numbers requests in arrival order from 0, since New or the last
	// Reset.
	Seq int
	// Conn identifies the connection (1 for the first accepted); requests
	// that share it were served over one kept-alive connection.
	Conn   uint64
	Method string
	// Path is the URL path as the client sent it, with its leading '/'.
	Path string
	// Range is the Range header, empty when there was none.
	Range string
	// Proto is "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// Attempt counts the earlier requests for the same path: 0 for the
	// first. Seeded faults and FailFirstN are decided on it.
	Attempt int
	// Status is the status code sent, 0 when the connection was reset
	// before one was.
	Status int
	// Bytes is the number of body bytes handed to the connection.
	Bytes int64
	// Fault is the fault injected into this response, if any.
	Fault Fault
	// Overridden reports that Options.Override supplied the content.
	Overridden bool
	// Lost is the number of body chunks that Options.Loss held back.
	Lost int
	// Start is when the request arrived; Duration how long it took to
	// answer, until the last byte or the fault. Done is false while the
	// request is still being answered (a slow link, a stall until the
	// server notices that the client left). The entry is final before the
	// client can see the end of the response, or its reset or truncation.
	Start    time.Time
	Duration time.Duration
	Done     bool
}

// requestLog records requests in arrival order and counts attempts per
// path. gen changes on every reset so that requests still in flight
// across a reset do not write into the new log.
type requestLog struct {
	mu       sync.Mutex
	gen      uint64
	reqs     []Request
	attempts map[string]int
}

// begin logs a request as it arrives and returns its attempt number and
// the handle under which finish completes it.
func (l *requestLog) begin(r Request) (attempt int, h logHandle) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attempts == nil {
		l.attempts = make(map[string]int)
	}
	r.Attempt = l.attempts[r.Path]
	l.attempts[r.Path]++
	r.Seq = len(l.reqs)
	l.reqs = append(l.reqs, r)
	return r.Attempt, logHandle{gen: l.gen, seq: r.Seq}
}

type logHandle struct {
	gen uint64
	seq int
}

// finish records the outcome of the request behind h.
func (l *requestLog) finish(h logHandle, update func(*Request)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.gen != l.gen || h.seq >= len(l.reqs) {
		return
	}
	update(&l.reqs[h.seq])
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.reqs = nil
	l.attempts = nil
}

func (l *requestLog) snapshot() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Request(nil), l.reqs...)
}

// Stats are a Server's running totals since New or the last Reset.
type Stats struct {
	// Requests is the number of requests received, InFlight those not
	// yet answered.
	Requests, InFlight int64
	// Bytes counts response body bytes handed to connections; WireBytes
	// every byte written to them, headers and HTTP/2 framing included.
	Bytes, WireBytes int64
	// Conns is the number of connections accepted.
	Conns int64
	// Faults is the number of responses that got a fault.
	Faults int64
}
