package fetchtest

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"
)

// Options shape what a Server emulates. The zero value serves the
// directory plainly: no delay, no bandwidth limit, no faults.
//
// Every random choice (whether a Rule strikes, which 5xx, where a body is
// cut, which byte is flipped, how much jitter) is a pure function of Seed,
// the fault, the URL path and how many requests for that path came before
// (the attempt). A run with the same Seed that asks for each path in the
// same order therefore meets the same faults, whatever the interleaving
// of different paths across connections.
type Options struct {
	// Latency delays every request before anything of its response is
	// written: the emulated round trip plus server time.
	Latency time.Duration
	// Jitter adds a seeded delay drawn uniformly from [0, Jitter) to each
	// request, on top of Latency.
	Jitter time.Duration
	// ConnLatency delays the first read of every new connection, the cost
	// of a TCP handshake on the emulated link. Clients that reuse
	// connections pay it once.
	ConnLatency time.Duration
	// Bandwidth limits the bytes per second written to all connections
	// together: one emulated link that every client shares. 0 is no
	// limit. It counts every byte on the wire, headers included.
	Bandwidth int64
	// ConnBandwidth limits the bytes per second of each connection on its
	// own (a per-flow limit); both limits apply when both are set.
	ConnBandwidth int64
	// Loss is the probability that a stretch of 64 KiB of a response
	// body is lost on the way and must wait LossStall before it goes out,
	// as a TCP sender waits for a retransmission timeout. It applies per
	// response, chunk by chunk from the first body byte, with or without
	// a bandwidth limit (the link is free for other connections while a
	// chunk waits), and is seeded like the faults. Request.Lost counts
	// the chunks held back.
	Loss float64
	// LossStall is how long a lost chunk waits; 0 means 200 ms, a
	// typical minimum retransmission timeout.
	LossStall time.Duration
	// UpstreamTimeout bounds, in proxy mode (NewProxy), the wait for the
	// upstream's response headers; the request then fails with 504. 0
	// means 30 s. The body has no bound of its own: it ends when the
	// client goes away or the Server closes.
	UpstreamTimeout time.Duration
	// HTTP2 also serves HTTP/2 over cleartext TCP to clients that speak it
	// with prior knowledge (h2c without Upgrade), beside HTTP/1.1. It is
	// read by New only; SetOptions refuses to change it.
	HTTP2 bool
	// Seed makes every random choice reproducible; see Options.
	Seed int64

	// NotFound answers 404 to the requests it matches, as if the file
	// were missing.
	NotFound Rule
	// FailFirstN makes the first FailFirstN requests for each path that
	// FailFirstPaths matches (every path when it is empty) fail with a
	// status from ErrorStatuses: a deterministic transient failure for
	// retry tests.
	FailFirstN     int
	FailFirstPaths string
	// Status5xx answers the requests it matches with a status from
	// ErrorStatuses instead of the file.
	Status5xx Rule
	// ErrorStatuses are the codes that Status5xx and FailFirstN choose
	// from, by seed; each must be 5xx. Empty means 500, 502 and 503. The
	// real ostree (2022.7) retries 500 only and fails a pull on any other
	// 5xx: set {500} when it is the client.
	ErrorStatuses []int
	// Reset aborts the TCP connection with a RST (SO_LINGER 0) after
	// Reset.After body bytes, or before the status line when After is
	// BeforeHeaders. Over HTTP/2 it kills the whole connection, as a
	// reset would.
	Reset Rule
	// Stall writes the headers and Stall.After body bytes, then writes
	// nothing more until the client goes away or the Server closes.
	Stall Rule
	// Truncate declares the full Content-Length, writes Truncate.After
	// body bytes and then ends the response: over HTTP/1.1 the
	// connection is closed cleanly (the client reads an unexpected EOF),
	// over HTTP/2 the stream is reset. Empty bodies are never truncated.
	Truncate Rule
	// Corrupt flips one byte (XOR 0xff) of the body actually sent, at a
	// seeded offset; the length stays right. Empty bodies are never
	// corrupted.
	Corrupt Rule

	// Override, when set, is asked first for every GET and HEAD; when it
	// returns ok, content is served in place of the file at path (the URL
	// path, with its leading '/'), even where there is no file. Faults
	// apply to it as to any file. It must be safe for concurrent use.
	Override func(path string) (content []byte, ok bool)

	// Logger receives the http.Server's own errors and one debug line per
	// injected fault. Nil discards them.
	Logger *slog.Logger
}

// Rule selects requests for one fault. A request is hit when its path
// matches Paths, Match (if set) returns true, and a seeded draw falls
// below P. The zero Rule never strikes.
type Rule struct {
	// P is the probability, from 0 (never) to 1 (every matching request).
	P float64
	// Paths is a pattern over URL paths; empty matches every path. See
	// Server.Count for the syntax.
	Paths string
	// Match, when set, must also return true. It must be safe for
	// concurrent use and must not keep r.
	Match func(r *http.Request) bool
	// After is where Reset, Stall and Truncate strike: the number of body
	// bytes sent first (at most all but one, so the body is always cut).
	// Seeded picks a point within the body; BeforeHeaders (Reset only)
	// sends nothing at all. Where there is no body (an empty file, HEAD),
	// Reset and Stall strike before the headers, since a complete empty
	// response would hide them. Status5xx, NotFound and Corrupt ignore
	// After.
	After int64
}

// Special values of Rule.After.
const (
	// Seeded strikes at a seeded point within the body.
	Seeded int64 = -1
	// BeforeHeaders makes Reset strike before the status line is written,
	// so that the client's request fails without a response.
	BeforeHeaders int64 = -2
)

// Fault names a fault injected into one response, as logged.
type Fault string

// Faults, in the order in which they are considered: the first that
// strikes is the only one a response gets.
const (
	FaultNone      Fault = ""
	FaultNotFound  Fault = "not-found"
	FaultFailFirst Fault = "fail-first"
	FaultStatus    Fault = "5xx"
	FaultReset     Fault = "reset"
	FaultStall     Fault = "stall"
	FaultTruncate  Fault = "truncate"
	FaultCorrupt   Fault = "corrupt"
)

// defaultErrorStatuses are what a misbehaving server or proxy in front of
// an OSTree repo answers most.
var defaultErrorStatuses = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}

// ErrInvalidOptions is matched by every error New and SetOptions return
// for options that make no sense.
var ErrInvalidOptions = errors.New("fetchtest: invalid options")

// config is Options checked and compiled; it is immutable once built, so
// handlers read it without locks.
type config struct {
	Options
	notFound, status, reset, stall, truncate, corrupt rule
	failFirst                                         *pattern
	statuses                                          []int
	lossStall, upstreamTimeout                        time.Duration
}

// Defaults of the durations that 0 leaves to the Server.
const (
	defaultLossStall       = 200 * time.Millisecond
	defaultUpstreamTimeout = 30 * time.Second
)

type rule struct {
	Rule
	fault Fault
	paths *pattern
}

func compile(o Options) (*config, error) {
	c := &config{Options: o}
	bad := func(format string, args ...any) (*config, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Latency", o.Latency}, {"Jitter", o.Jitter}, {"ConnLatency", o.ConnLatency},
		{"LossStall", o.LossStall}, {"UpstreamTimeout", o.UpstreamTimeout}} {
		if d.v < 0 {
			return bad("%s %v is negative", d.name, d.v)
		}
	}
	if o.Bandwidth < 0 || o.ConnBandwidth < 0 {
		return bad("bandwidth %d/%d bytes/s is negative", o.Bandwidth, o.ConnBandwidth)
	}
	if math.IsNaN(o.Loss) || o.Loss < 0 || o.Loss > 1 {
		return bad("Loss: probability %v is not in [0, 1]", o.Loss)
	}
	c.lossStall = cmp.Or(o.LossStall, defaultLossStall)
	c.upstreamTimeout = cmp.Or(o.UpstreamTimeout, defaultUpstreamTimeout)
	if o.FailFirstN < 0 {
		return bad("FailFirstN %d is negative", o.FailFirstN)
	}
	var err error
	if c.failFirst, err = compilePattern(o.FailFirstPaths); err != nil {
		return bad("FailFirstPaths: %v", err)
	}
	c.statuses = slices.Clone(o.ErrorStatuses)
	if len(c.statuses) == 0 {
		c.statuses = defaultErrorStatuses
	}
	for _, s := range c.statuses {
		if s < 500 || s > 599 {
			return bad("ErrorStatuses: %d is not a 5xx status", s)
		}
	}
	c.ErrorStatuses = c.statuses
	for _, r := range []struct {
		dst   *rule
		src   Rule
		fault Fault
		cuts  bool
	}{
		{&c.notFound, o.NotFound, FaultNotFound, false},
		{&c.status, o.Status5xx, FaultStatus, false},
		{&c.reset, o.Reset, FaultReset, true},
		{&c.stall, o.Stall, FaultStall, true},
		{&c.truncate, o.Truncate, FaultTruncate, true},
		{&c.corrupt, o.Corrupt, FaultCorrupt, false},
	} {
		if math.IsNaN(r.src.P) || r.src.P < 0 || r.src.P > 1 {
			return bad("%s: probability %v is not in [0, 1]", r.fault, r.src.P)
		}
		p, err := compilePattern(r.src.Paths)
		if err != nil {
			return bad("%s: %v", r.fault, err)
		}
		if r.cuts && r.src.After < 0 && r.src.After != Seeded && (r.src.After != BeforeHeaders || r.fault != FaultReset) {
			return bad("%s: After %d is not a byte count, Seeded or (for reset) BeforeHeaders", r.fault, r.src.After)
		}
		*r.dst = rule{Rule: r.src, fault: r.fault, paths: p}
	}
	return c, nil
}

// hits reports whether r strikes req, the attempt-th request for its path.
func (r *rule) hits(c *config, req *http.Request, attempt int) bool {
	if r.P <= 0 || !r.paths.match(req.URL.Path) {
		return false
	}
	if r.Match != nil && !r.Match(req) {
		return false
	}
	return r.P >= 1 || unit(c.draw(string(r.fault), req.URL.Path, attempt)) < r.P
}

// cut returns how many of n body bytes go out before r strikes.
func (r *rule) cut(c *config, path string, attempt int, n int64) int64 {
	switch {
	case n <= 0:
		return 0
	case r.After == Seeded:
		return int64(c.draw(string(r.fault)+"/cut", path, attempt) % uint64(n))
	case r.After >= n:
		return n - 1
	default:
		return r.After
	}
}

// errorStatus picks the 5xx for a failing request.
func (c *config) errorStatus(kind Fault, path string, attempt int) int {
	return c.statuses[c.draw(string(kind)+"/status", path, attempt)%uint64(len(c.statuses))]
}

// delay is the time a request waits before its response starts.
func (c *config) delay(path string, attempt int) time.Duration {
	d := c.Latency
	if c.Jitter > 0 {
		d += time.Duration(c.draw("jitter", path, attempt) % uint64(c.Jitter))
	}
	return d
}
