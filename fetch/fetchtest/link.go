package fetchtest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is a token bucket kept as the time at which the bytes reserved so
// far will have crossed it: a FIFO line of a given rate. It carries no
// burst, so a transfer of n bytes takes at least n/rate.
type link struct {
	mu   sync.Mutex
	next time.Time
}

// reserve books n bytes at rate bytes/s from now and returns when they
// will have been sent.
func (l *link) reserve(now time.Time, n int, rate int64) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(int64(n) * int64(time.Second) / rate))
	return l.next
}

// maxLag is how late a connection may book its next chunk and still be
// owed the time. A writer wakes late from every wait (timer slack, a busy
// machine); if its next chunk were booked from when it woke, a single
// flow would lose that slack on every chunk and get several percent less
// than the rate, while concurrent flows, which keep the line booked
// ahead, would not. A connection that was idle longer (between
// responses, or while a lost chunk waits) starts afresh: no burst.
const maxLag = 10 * time.Millisecond

// chunk is how many bytes a throttled write books at once: about 10 ms of
// the slower limit, so that concurrent connections interleave finely.
func chunk(rates ...int64) int {
	c := int64(64 << 10)
	for _, r := range rates {
		if r > 0 {
			c = min(c, r/100)
		}
	}
	return int(max(c, 512))
}

// listener tracks and wraps every connection it accepts.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, s: l.s, closed: make(chan struct{})}
	if !l.s.track(c) {
		nc.Close()
		return nil, net.ErrClosed
	}
	return c, nil
}

// conn is one emulated connection: it pays ConnLatency once, throttles
// writes through the Server's link and its own, counts bytes, and can be
// reset by a fault.
type conn struct {
	net.Conn
	s         *Server
	id        uint64
	own       link
	dueMu     sync.Mutex // held by Write while it throttles
	due       time.Time  // when the last throttled chunk was to be sent
	handshake sync.Once
	closeOnce sync.Once
	closed    chan struct{}
}

// errConnClosed is what a throttled write returns when its connection or
// the server closes while it waits.
var errConnClosed = errors.New("fetchtest: connection closed")

func (c *conn) Read(b []byte) (int, error) {
	c.handshake.Do(func() {
		if d := c.s.config().ConnLatency; d > 0 {
			c.sleep(d)
		}
	})
	return c.Conn.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	cfg := c.s.config()
	if cfg.Bandwidth <= 0 && cfg.ConnBandwidth <= 0 {
		return c.write(b)
	}
	size := chunk(cfg.Bandwidth, cfg.ConnBandwidth)
	written := 0
	c.dueMu.Lock()
	defer c.dueMu.Unlock()
	for written < len(b) {
		k := min(len(b)-written, size)
		now := time.Now()
		if c.due.After(now.Add(-maxLag)) && c.due.Before(now) {
			// The flow goes on from where its last chunk was due.
			now = c.due
		}
		until := now
		if cfg.Bandwidth > 0 {
			until = c.s.link.reserve(now, k, cfg.Bandwidth)
		}
		if cfg.ConnBandwidth > 0 {
			if t := c.own.reserve(now, k, cfg.ConnBandwidth); t.After(until) {
				until = t
			}
		}
		c.due = until
		if !c.sleep(time.Until(until)) {
			return written, errConnClosed
		}
		n, err := c.write(b[written : written+k])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// write counts bytes before it writes them, so that WireBytes is never
// behind what the client has seen, and takes back what failed.
func (c *conn) write(b []byte) (int, error) {
	c.s.stats.wire.Add(int64(len(b)))
	n, err := c.Conn.Write(b)
	if n < len(b) {
		c.s.stats.wire.Add(int64(n - len(b)))
	}
	return n, err
}

// sleep waits d, or less when the connection or the server closes, and
// reports whether it waited the whole time.
func (c *conn) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closed:
		return false
	case <-c.s.done:
		return false
	}
}

func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		c.s.untrack(c)
	})
	return err
}

// reset aborts the connection: with SO_LINGER 0 the kernel drops what is
// unsent and answers with a RST instead of a FIN.
func (c *conn) reset() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

var _ net.Conn = (*conn)(nil)

// counters are the Server's atomic totals.
type counters struct {
	requests, inflight, body, wire, conns, faults atomic.Int64
}
