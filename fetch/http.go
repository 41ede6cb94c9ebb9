package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lazytree/lazytree/fetch/serve"
)

// ErrNotFound means the server does not have the file (404, 403, 410).
var ErrNotFound = errors.New("not found on the server")

// HTTPOptions tune the HTTP client. The zero value is a good default.
type HTTPOptions struct {
	// Concurrency bounds requests in flight per remote (default 64; ostree
	// uses 8).
	Concurrency int
	// RequestTimeout bounds one request from start to the last byte
	// (default 10 minutes).
	RequestTimeout time.Duration
	// StallTimeout fails a request that makes no progress for this long:
	// no response headers, or no body bytes (default 15 s).
	StallTimeout time.Duration
	// MinThroughput (bytes/s) fails a transfer slower than this, measured
	// after the first StallTimeout (default 1 KiB/s).
	MinThroughput int64
	// Retries is how many times a transient failure is retried (default 4).
	Retries int
	// Backoff is the first retry delay, doubled each time (default 100 ms).
	Backoff time.Duration
	// FailbackAfter is how long a remote stays on a later URL (another
	// mirror, or its origin) after the one before failed, before it tries
	// its first mirror again (default 1 minute).
	FailbackAfter time.Duration
	// TLSConfig is used for https remotes (nil: the system's roots).
	TLSConfig *tls.Config
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

func (o HTTPOptions) withDefaults() HTTPOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Minute
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 15 * time.Second
	}
	if o.MinThroughput <= 0 {
		o.MinThroughput = 1 << 10
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.FailbackAfter <= 0 {
		o.FailbackAfter = time.Minute
	}
	return o
}

// HTTPError is a non-success HTTP status.
type HTTPError struct {
	// URL is the URL asked for, without userinfo (see RedactURL).
	URL    string
	Status int
}

func (e *HTTPError) Error() string { return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.Status) }

// Is makes 404, 403 and 410 match ErrNotFound.
func (e *HTTPError) Is(target error) bool {
	return target == ErrNotFound && (e.Status == 404 || e.Status == 403 || e.Status == 410)
}

// transient reports whether err is worth retrying: server busy, network
// trouble, truncated or stalled bodies. Decided here, once.
func transient(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		switch he.Status {
		case 408, 429, 500, 502, 503, 504:
			return true
		}
		return false
	}
	if errors.Is(err, errStalled) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue) && !errors.Is(err, errRedirect) && !errors.Is(err, context.Canceled)
}

var (
	errStalled  = errors.New("transfer stalled or below the minimum throughput")
	errRedirect = errors.New("redirect refused")
	// errEnough, returned by a consumer, ends a transfer early as a
	// success: the consumer has what it needed (fetchRange's caller
	// that asked for a little more than it might need).
	errEnough = errors.New("consumer has enough")
	// errTooLarge is a body larger than the caller allowed.
	errTooLarge = errors.New("larger than allowed")
	// errRecreated wraps the consumer's verification failure of a
	// fetchRange whose server says it re-encodes the file
	// (serve.RecreatedHeader): the bytes at those offsets were not the
	// publisher's. Not the server's failure, and not a reason to ask
	// another URL: the caller reads that server's stream another way.
	// (A node whose encoding is the publisher's serves ranges that
	// verify, and nothing changes.)
	errRecreated = errors.New("the server re-encoded the file: the publisher's offsets do not apply")
)

// RedactURL returns raw without its userinfo. A remote URL may carry
// credentials (http://user:token@host/), and what fetch returns ends up in
// status.json (readable by every user of an allow_other mount), in logs
// and on terminals; so every URL that enters an error or a log goes
// through here (cli uses it too). The whole userinfo goes, user name included, because a
// token is often given as the user name. Text that does not parse as a
// hierarchical URL is cut at the last '@' of what would be its authority.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Opaque == "" {
		if u.User == nil {
			return raw
		}
		u.User = nil
		return u.String()
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	auth, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		auth = auth[i+1:]
	}
	return scheme + auth + path
}

// redactErr removes userinfo from the URLs of the *url.Error values in
// err's chain, which net/http returns with the URL in their text (with the
// password masked but the user name kept).
func redactErr(err error) error {
	for e := err; e != nil; {
		if ue, ok := e.(*url.Error); ok {
			ue.URL = RedactURL(ue.URL)
		}
		e = errors.Unwrap(e)
	}
	return err
}

// netError is a request that got no response, worded for people:
// net/http's text repeats the URL and the layers a dial went through
// (`Get "http://h/summary": dial tcp h: connect: connection refused`);
// this says the cause and the server (`connection refused (http://h/)`).
// It unwraps to the *url.Error, so the chain is what it was.
type netError struct {
	server string
	err    *url.Error
}

func (e *netError) Error() string {
	cause := e.err.Err
	var oe *net.OpError
	if errors.As(cause, &oe) && oe.Err != nil {
		cause = oe.Err
		var se *os.SyscallError
		if errors.As(cause, &se) && se.Err != nil {
			cause = se.Err
		}
	}
	return cause.Error() + " (" + e.server + ")"
}

func (e *netError) Unwrap() error { return e.err }

// transportError words a *url.Error from http.Client.Do as a netError;
// other errors pass unchanged.
func transportError(err error) error {
	ue, ok := err.(*url.Error)
	if !ok {
		return err
	}
	server := ue.URL
	if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
		server = u.Scheme + "://" + u.Host + "/"
	}
	return &netError{server: server, err: ue}
}

// client fetches files of one remote over HTTP with retries and failover
// between its URLs. Safe for concurrent use.
//
// The URLs are the mirrors in the order given, then the origin: a mirror
// is near (a neighbour's `lazytree serve --cache`, an HTTP cache), the
// origin is the publisher. A fetch starts at the preferred URL (the first
// mirror unless it failed less than FailbackAfter ago) and moves on to the
// next one, wrapping around, when it keeps failing; each URL gets one
// round of retries per fetch. A mirror may lack a file (a cache node has what
// was asked of it), so its 404 moves the fetch on without changing the
// preferred URL; the origin's 404 is final.
type client struct {
	opts HTTPOptions
	hc   *http.Client
	// urls holds the mirrors, then the origin (never empty).
	urls []*endpoint
	// trustMirrors lets mirrors serve every file. Without it (a remote
	// that verifies nothing) mirrors serve only what mirrorable allows.
	trustMirrors bool
	sem          chan struct{}
	// low bounds the speculative and background requests to three
	// quarters of sem, so on-demand ones always find a connection.
	low chan struct{}
	// sched orders this client's requests with every other remote's (nil:
	// no ordering, in tests of the client alone).
	sched *scheduler

	mu sync.Mutex
	// preferred is the index in urls that fetches start at, since
	// switched.
	preferred int
	switched  time.Time

	requests, bytes, retries, failovers, resumes counter
}

// endpoint is one URL of a remote and what happened there.
type endpoint struct {
	url      string // as configured: it may carry credentials
	redacted string // url without userinfo, for status and errors
	origin   bool

	requests, bytes counter

	mu          sync.Mutex
	failures    int64
	notFound    int64
	lastError   string
	lastFailure time.Time
}

// maxLastError bounds the last_error of a URL in status.json.
const maxLastError = 200

// failed records a request to e that failed with err: a 404 (or 403,
// 410) as a file e does not have, anything else as a failure.
func (e *endpoint) failed(err error) {
	if errors.Is(err, ErrNotFound) {
		e.mu.Lock()
		e.notFound++
		e.mu.Unlock()
		return
	}
	// Errors name URLs redacted already; this is for any that did not.
	msg := err.Error()
	if e.url != e.redacted {
		msg = strings.ReplaceAll(msg, e.url, e.redacted)
	}
	if len(msg) > maxLastError {
		msg = strings.ToValidUTF8(msg[:maxLastError], "") + "..."
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failures++
	e.lastError, e.lastFailure = msg, time.Now().UTC()
}

// mirrorable reports whether a mirror may serve path to a remote that
// verifies nothing: only files checked against a checksum that does not
// come from the mirror's word alone (objects, static deltas and their
// indexes, whose output is content-addressed; tree indexes and profiles,
// named by checksum in the summary). Everything else (the summary, its
// signatures, summary.idx and its sub-summaries, refs/) says which
// commits to trust, and from a mirror it could name any commit; it comes
// from the origin.
func mirrorable(path string) bool {
	path = strings.TrimLeft(path, "/")
	for _, p := range []string{"objects/", "deltas/", "delta-indexes/", "lazytree/tree-index/", "lazytree/profile/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// newClient returns the client of a remote with the given mirrors and
// origin; trustMirrors is whether the remote verifies signatures (see
// mirrorable).
func newClient(mirrors []string, origin string, trustMirrors bool, opts HTTPOptions) *client {
	opts = opts.withDefaults()
	tr := opts.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true, // HTTP/2 where a TLS server offers it (ALPN)
			TLSClientConfig:       opts.TLSConfig,
			MaxIdleConns:          4 * opts.Concurrency,
			MaxIdleConnsPerHost:   opts.Concurrency,
			MaxConnsPerHost:       opts.Concurrency,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: opts.StallTimeout,
			// Objects are compressed already; ask for identity so Range
			// offsets mean file offsets.
			DisableCompression: true,
		}
	}
	c := &client{opts: opts, trustMirrors: trustMirrors, sem: make(chan struct{}, opts.Concurrency),
		low: make(chan struct{}, max(1, opts.Concurrency-max(1, opts.Concurrency/4)))}
	for _, m := range mirrors {
		c.urls = append(c.urls, &endpoint{url: m, redacted: RedactURL(m)})
	}
	c.urls = append(c.urls, &endpoint{url: origin, redacted: RedactURL(origin), origin: true})
	c.hc = &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return fmt.Errorf("%w: more than 5 redirects", errRedirect)
		}
		if req.URL.Scheme != via[0].URL.Scheme {
			return fmt.Errorf("%w: %s to %s changes the scheme", errRedirect, RedactURL(via[0].URL.String()), req.URL.Scheme+"://"+req.URL.Host)
		}
		return nil
	}}
	return c
}

type counter struct {
	mu sync.Mutex
	n  int64
}

func (c *counter) add(n int64) {
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
}

func (c *counter) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// currentLocked returns the preferred URL index, back at the first
// mirror once FailbackAfter has passed since the switch away from it.
func (c *client) currentLocked() int {
	if c.preferred != 0 && time.Since(c.switched) > c.opts.FailbackAfter {
		c.preferred = 0
	}
	return c.preferred
}

func (c *client) base() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.currentLocked()
}

// failover moves the preference from one URL to another if from is
// still preferred: of many requests that fail on one URL at once, the
// first moves the client on and the others follow.
func (c *client) failover(from, to int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from != to && c.currentLocked() == from {
		c.preferred = to
		c.switched = time.Now()
		c.failovers.add(1)
	}
}

func joinURL(base, path string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
}

// fetch GETs path and hands the body to consume, retrying transient
// failures with backoff and moving to the next URL when one keeps
// failing, gives a permanent error (a corrupt object, a refused
// redirect) or, being a mirror, does not have the file. consume must read
// the body from the start each time it is called. maxSize caps the body.
// A body that breaks part-way is resumed where it broke (see stream), so
// consume sees one unbroken stream.
//
// The error returned is the origin's when the origin was asked: a
// mirror's answer is never the last word.
func (c *client) fetch(ctx context.Context, path string, maxSize int64, consume func(io.Reader) error) error {
	return c.fetchSpan(ctx, path, maxSize, byteRange{}, consume)
}

// fetchRange fetches bytes [off, end) of path (end > off >= 0) and hands
// them to consume as one stream of exactly end-off bytes. A server that
// ignores Range (200) is handled by skipping the first off bytes and
// stopping at end. Interrupted transfers resume as fetch's do.
func (c *client) fetchRange(ctx context.Context, path string, off, end int64, consume func(io.Reader) error) error {
	if off < 0 || end <= off {
		return fmt.Errorf("GET %s: bad range [%d, %d)", path, off, end)
	}
	return c.fetchSpan(ctx, path, end-off, byteRange{off: off, end: end}, consume)
}

// byteRange is a part of a file: [off, end), or from off to the end of
// the file when end is 0.
type byteRange struct{ off, end int64 }

func (r byteRange) whole() bool { return r.off == 0 && r.end == 0 }

func (c *client) fetchSpan(ctx context.Context, path string, maxSize int64, rng byteRange, consume func(io.Reader) error) error {
	origin := len(c.urls) - 1
	first, start := origin, origin
	if (c.trustMirrors || mirrorable(path)) && ctx.Value(originOnlyKey{}) == nil {
		first, start = 0, c.base()
	}
	n := origin - first + 1
	var last, originErr error
	for k := 0; k < n; k++ {
		i := first + (start-first+k)%n
		err := c.tryURL(ctx, i, path, maxSize, rng, consume)
		if err == nil {
			if by, ok := ctx.Value(servedByKey{}).(*servedBy); ok && i != origin {
				by.add(i)
			}
			return nil
		}
		if ctx.Err() != nil || !c.urlsDiffer(ctx, err) || errors.Is(err, errRecreated) {
			return err
		}
		last = err
		if i == origin {
			originErr = err
			if errors.Is(err, ErrNotFound) {
				return err
			}
		}
		if k < n-1 && !errors.Is(err, ErrNotFound) {
			c.failover(i, first+(start-first+k+1)%n)
		}
	}
	if originErr != nil {
		return originErr
	}
	return last
}

// originOnlyKey, in a fetch's context, sends it to the origin alone.
type originOnlyKey struct{}

// fromOrigin returns ctx for fetches that skip the mirrors.
func fromOrigin(ctx context.Context) context.Context {
	return context.WithValue(ctx, originOnlyKey{}, true)
}

// servedByKey, in a fetch's context, holds a *servedBy that collects
// the mirrors that answered.
type servedByKey struct{}

// servedBy is the set of mirrors (indexes into client.urls) that served
// a group of fetches.
type servedBy struct {
	mu      sync.Mutex
	mirrors []int
}

func (b *servedBy) add(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Contains(b.mirrors, i) {
		b.mirrors = append(b.mirrors, i)
	}
}

// blame counts err against the mirrors that served what failed
// verification after the fetch (a summary and its signature, checked
// together), and moves the client off them; it reports whether there
// were any.
func (c *client) blame(b *servedBy, err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, i := range b.mirrors {
		c.urls[i].failed(err)
		c.failover(i, len(c.urls)-1)
	}
	return len(b.mirrors) > 0
}

// urlsDiffer reports whether another URL may answer better than the one
// that gave err: not when err is the caller's own limit (a speculative
// fetch's size cap, or a cache node's 413 for it: see
// serve.GuessLimitHeader).
func (c *client) urlsDiffer(ctx context.Context, err error) bool {
	_, guessing := speculativeCap(ctx)
	return !guessing || !guessRefused(err)
}

// guessRefused reports whether err is a body over the caller's limit,
// found by the client or by the server.
func guessRefused(err error) bool {
	var he *HTTPError
	return errors.Is(err, errTooLarge) || errors.As(err, &he) && he.Status == http.StatusRequestEntityTooLarge
}

// tryURL fetches path from c.urls[i], retrying transient failures with
// backoff, and counts the failures against that URL.
func (c *client) tryURL(ctx context.Context, i int, path string, maxSize int64, rng byteRange, consume func(io.Reader) error) error {
	ep := c.urls[i]
	delay := c.opts.Backoff
	var err error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.retries.add(1)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("GET %s: %w (last error: %v)", path, ctx.Err(), err)
			case <-t.C:
			}
			if delay < 5*time.Second {
				delay *= 2
			}
		}
		err = c.once(ctx, ep, path, joinURL(ep.url, path), maxSize, rng, consume)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if c.urlsDiffer(ctx, err) && !errors.Is(err, errRecreated) {
			ep.failed(err)
		}
		if !transient(err) || attempt >= c.opts.Retries {
			return err
		}
	}
}

// once makes one request (and the requests that resume it). Its errors
// name u without userinfo: see RedactURL.
func (c *client) once(ctx context.Context, ep *endpoint, path, u string, maxSize int64, rng byteRange, consume func(io.Reader) error) error {
	prio := OnDemand
	if c.sched != nil {
		p, done, err := c.sched.start(ctx)
		if err != nil {
			return err
		}
		defer done()
		prio = p
	}
	if prio != OnDemand {
		select {
		case c.low <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-c.low }()
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The slot is a request in flight: it is given back once the body is
	// all here, so that what the consumer does with the last bytes
	// (storing an object: a file created, renamed and indexed) overlaps
	// the next request instead of holding the link's slot.
	var once sync.Once
	release := func() { once.Do(func() { <-c.sem }) }
	defer release()
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.RequestTimeout, fmt.Errorf("%w: request deadline", errStalled))
	defer cancel()
	st := &stream{c: c, ep: ep, ctx: ctx, path: path, u: u, ru: RedactURL(u), max: maxSize, rng: rng, want: -1, received: release}
	defer st.close()
	if err := st.open(); err != nil {
		return err
	}
	var r io.Reader = st
	// Only background bodies yield: speculative ones that paused for the
	// on-demand chain they guess ahead of were measured to lengthen it
	// (issue 10 note).
	if prio == Background && c.sched != nil && !unpausable(ctx) {
		_, fl := requestPriority(ctx)
		r = &gatedReader{ctx: ctx, s: c.sched, fl: fl, level: prio, r: st}
	}
	err := consume(r)
	if errors.Is(err, errEnough) {
		return nil // the consumer has what it wanted; the rest is not read
	}
	if err == nil && st.want >= 0 && st.n < st.want {
		err = fmt.Errorf("GET %s: %w after %d of %d bytes", st.ru, io.ErrUnexpectedEOF, st.n, st.want)
	}
	if err != nil && st.bodyErr != nil && !errors.Is(st.bodyErr, io.EOF) {
		// The transfer broke (reset, truncation, stall) and could not be
		// resumed: whatever the consumer made of the partial bytes, the
		// cause is the network.
		err = fmt.Errorf("GET %s: %w after %d bytes", st.ru, st.bodyErr, st.n)
	}
	var ve *VerifyError
	if st.recreated && !rng.whole() && errors.As(err, &ve) {
		return fmt.Errorf("GET %s: %w: %w", st.ru, errRecreated, err)
	}
	if err != nil {
		if cause := st.stallCause(); cause != nil {
			return fmt.Errorf("GET %s: %w", st.ru, cause)
		}
		if st.tooBig {
			return fmt.Errorf("GET %s: more than the %d bytes allowed: %w", st.ru, maxSize, errTooLarge)
		}
		return err
	}
	return nil
}

// immutablePath reports whether path names a file whose bytes never
// change and are verified by checksum when read (objects, deltas,
// lazytree's indexes and profiles): such a transfer may be resumed
// without a validator from the server.
func immutablePath(path string) bool {
	path = strings.TrimLeft(path, "/")
	if strings.HasSuffix(path, ".commitmeta") {
		return false // detached metadata may be re-signed in place
	}
	return strings.HasPrefix(path, "objects/") || strings.HasPrefix(path, "deltas/") || strings.HasPrefix(path, "lazytree/")
}

// stream is the body of one GET as consume reads it: when the
// connection breaks part-way (a reset, a truncated body, a stall), it
// asks the same URL for the rest (Range: bytes=N-, with If-Range when
// the first response had a validator) and carries on, so the consumer
// (an inflater and a hash, typically) never notices and nothing is
// fetched twice. It resumes only files that do not change or that the
// server names with a validator, at most Retries times, after the same
// backoff as retries. A 206 must start exactly where asked; a 200 to a
// resume (a server that ignores Range, or an If-Range that no longer
// matched) is read past the bytes already had when its validator is the
// first one's, and fails otherwise (the caller's retry starts over).
// The size cap, the stall timer and the minimum throughput apply to the
// whole stream.
type stream struct {
	c       *client
	ep      *endpoint
	ctx     context.Context
	path    string
	u, ru   string
	max     int64     // cap on the bytes delivered (0: none)
	rng     byteRange // what the caller asked for
	want    int64     // bytes the stream should deliver, -1 unknown
	n       int64     // bytes delivered
	resumes int

	validator string // strong ETag or Last-Modified of the first response
	resp      *http.Response
	body      *watchedReader
	wctx      context.Context // the current response's, which its stall timer cancels
	stop      context.CancelCauseFunc
	bodyErr   error // the last error a body returned
	tooBig    bool
	lastStall error
	recreated bool   // the first response carried serve.RecreatedHeader
	received  func() // called when every wanted byte has arrived
}

// open sends the request for what is still wanted: the first, or a
// resume after st.n bytes.
func (st *stream) open() error {
	c := st.c
	wctx, stop := context.WithCancelCause(st.ctx)
	req, err := http.NewRequestWithContext(wctx, http.MethodGet, st.u, nil)
	if err != nil {
		stop(nil)
		return redactErr(err)
	}
	req.Header.Set("User-Agent", "lazytree/0.1")
	if lim, ok := speculativeCap(st.ctx); ok {
		req.Header.Set(serve.GuessLimitHeader, strconv.FormatInt(lim, 10))
	}
	from := st.rng.off + st.n
	if from > 0 || st.rng.end > 0 {
		if st.rng.end > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, st.rng.end-1))
		} else {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
		}
		if st.n > 0 && st.validator != "" {
			req.Header.Set("If-Range", st.validator)
		}
	}
	c.requests.add(1)
	st.ep.requests.add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		cause := context.Cause(wctx)
		stop(nil)
		if cause != nil && errors.Is(cause, errStalled) {
			return fmt.Errorf("GET %s: %w", st.ru, cause)
		}
		return transportError(redactErr(err))
	}
	fail := func(err error) error {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		stop(nil)
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return fail(&HTTPError{URL: st.ru, Status: resp.StatusCode})
	}
	recreated := resp.Header.Get(serve.RecreatedHeader) != ""
	if st.n > 0 && recreated != st.recreated {
		// A resume from another encoding than the first bytes'.
		return fail(fmt.Errorf("GET %s: resume after %d bytes: the file changed (re-encoded by the server: %v, was %v)", st.ru, st.n, recreated, st.recreated))
	}
	st.recreated = recreated
	validator := resp.Header.Get("ETag")
	if strings.HasPrefix(validator, "W/") {
		validator = ""
	}
	// Only a strong ETag: Last-Modified is weak (one-second granularity)
	// and could splice two versions of a file that changes.
	if st.n > 0 && st.validator != "" && validator != st.validator {
		return fail(fmt.Errorf("GET %s: resume after %d bytes: the file changed (validator %q, was %q)", st.ru, st.n, validator, st.validator))
	}
	// skip is what this body has before the bytes wanted next.
	var skip, length int64 = 0, resp.ContentLength
	if resp.StatusCode == http.StatusPartialContent {
		first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != from || (resp.ContentLength >= 0 && resp.ContentLength != last-first+1) {
			return fail(fmt.Errorf("GET %s: asked for bytes from %d, got Content-Range %q", st.ru, from, resp.Header.Get("Content-Range")))
		}
		if st.rng.end > 0 && last+1 > st.rng.end || st.n > 0 && st.want >= 0 && first+(last-first+1) != st.rng.off+st.want {
			if !(st.rng.end == 0 && total >= 0 && last+1 == total) {
				return fail(fmt.Errorf("GET %s: Content-Range %q does not fit what was asked", st.ru, resp.Header.Get("Content-Range")))
			}
		}
		length = last - first + 1
	} else if from > 0 {
		skip = from // a whole file for a range
		if length >= 0 {
			length -= from
			if length < 0 {
				return fail(fmt.Errorf("GET %s: %d bytes, asked for bytes from %d", st.ru, resp.ContentLength, from))
			}
		}
	}
	if st.rng.end > 0 && (length < 0 || length > st.rng.end-from) {
		length = st.rng.end - from
	}
	if st.n == 0 {
		st.validator = validator
		if length >= 0 {
			st.want = length
		}
		if st.max > 0 && length > st.max {
			return fail(fmt.Errorf("GET %s: %d bytes, more than the %d allowed: %w", st.ru, length, st.max, errTooLarge))
		}
	}
	left := int64(0)
	if st.max > 0 {
		left = skip + st.max - st.n
	}
	st.resp, st.stop, st.wctx = resp, stop, wctx
	// Each response has its own stall timer and throughput clock: a
	// resume late in a long transfer starts a fresh measurement.
	st.body = &watchedReader{r: resp.Body, max: left, start: time.Now(), opts: &c.opts, cancel: stop, c: c, ep: st.ep}
	st.body.arm()
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, st.body, skip); err != nil {
			return fmt.Errorf("GET %s: skipping %d bytes a server sent again: %w", st.ru, skip, err)
		}
		st.body.n -= skip
		if st.body.max > 0 {
			st.body.max -= skip
		}
	}
	return nil
}

func (st *stream) close() {
	if st.body != nil {
		st.body.disarm()
	}
	if st.resp != nil {
		st.resp.Body.Close()
		st.resp = nil
	}
	if st.stop != nil {
		if c := st.stallCause(); c != nil {
			st.lastStall = c
		}
		st.stop(nil)
		st.stop = nil
	}
}

// stallCause is the stall (or deadline) that cut the current body, if
// that is what happened.
func (st *stream) stallCause() error {
	for _, c := range []context.Context{st.wctx, st.ctx} {
		if c == nil {
			continue
		}
		if cause := context.Cause(c); cause != nil && errors.Is(cause, errStalled) {
			return cause
		}
	}
	if st.lastStall != nil && st.bodyErr != nil {
		return st.lastStall
	}
	return nil
}

// Pause is the current body's (see watchedReader.Pause).
func (st *stream) Pause() (resume func()) { return st.body.Pause() }

func (st *stream) Read(p []byte) (int, error) {
	for {
		if st.want >= 0 && st.n >= st.want {
			return 0, io.EOF
		}
		if st.want >= 0 && int64(len(p)) > st.want-st.n {
			p = p[:st.want-st.n]
		}
		n, err := st.body.Read(p)
		st.n += int64(n)
		if st.want >= 0 && st.n >= st.want {
			// Every byte is here: an error that came with the last
			// of them (a stall, a reset) changes nothing, and must
			// not send a resume request after the slot is given back.
			if st.received != nil {
				st.received()
			}
			return n, nil
		}
		if err == nil {
			return n, nil
		}
		st.bodyErr = err
		if st.body.tooBig {
			st.tooBig = true
		}
		if errors.Is(err, io.EOF) && (st.want < 0 || st.n >= st.want) {
			if st.received != nil {
				st.received()
			}
			return n, err
		}
		if !st.resumable(err) {
			return n, err
		}
		if rerr := st.resume(); rerr != nil {
			st.bodyErr = fmt.Errorf("%w (resume: %v)", err, rerr)
			return n, st.bodyErr
		}
		st.bodyErr = nil
		if n > 0 {
			return n, nil
		}
	}
}

// resumable reports whether a body that failed with err may be
// continued by a new request.
func (st *stream) resumable(err error) bool {
	if st.tooBig || st.n == 0 || st.resumes >= st.c.opts.Retries || st.ctx.Err() != nil {
		return false
	}
	if st.validator == "" && !immutablePath(st.path) {
		return false
	}
	if cause := context.Cause(st.ctx); cause != nil {
		return false // the request's own deadline
	}
	return errors.Is(err, io.EOF) || transient(err) || errors.Is(err, context.Canceled)
}

// resume waits the backoff and asks for the rest.
func (st *stream) resume() error {
	st.close()
	st.lastStall = nil
	st.resumes++
	st.c.resumes.add(1)
	delay := st.c.opts.Backoff << min(st.resumes-1, 6)
	t := time.NewTimer(min(delay, 5*time.Second))
	select {
	case <-st.ctx.Done():
		t.Stop()
		return st.ctx.Err()
	case <-t.C:
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if err = st.open(); err == nil || !transient(err) {
			return err
		}
	}
	return err
}

// parseContentRange reads "bytes first-last/total" (total may be "*").
func parseContentRange(h string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	total = -1
	if tot != "*" {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// watchedReader cancels the request when the body stalls or crawls, and
// enforces the size cap.
type watchedReader struct {
	r      io.Reader
	n, max int64
	err    error // the last error the body returned
	tooBig bool
	start  time.Time
	opts   *HTTPOptions
	cancel context.CancelCauseFunc
	c      *client
	ep     *endpoint // counts the bytes per URL too, when set
	mu     sync.Mutex
	timer  *time.Timer
}

func (w *watchedReader) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = time.AfterFunc(w.opts.StallTimeout, func() {
		w.cancel(fmt.Errorf("%w: no data for %s", errStalled, w.opts.StallTimeout))
	})
}

func (w *watchedReader) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// Pause stops the stall timer while the consumer waits for something
// other than the network (memory for a large body, say), and the time
// until resume does not count against the minimum throughput: a wait of
// ours is not the server's slowness. Call it and resume from the goroutine
// that reads.
func (w *watchedReader) Pause() (resume func()) {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	t0 := time.Now()
	return func() {
		w.start = w.start.Add(time.Since(t0))
		w.mu.Lock()
		if w.timer != nil {
			w.timer.Reset(w.opts.StallTimeout)
		}
		w.mu.Unlock()
	}
}

func (w *watchedReader) Read(p []byte) (int, error) {
	if w.max > 0 && w.n+int64(len(p)) > w.max+1 {
		p = p[:max(0, w.max+1-w.n)]
	}
	n, err := w.r.Read(p)
	if err != nil {
		w.err = err
	}
	if n > 0 {
		w.n += int64(n)
		w.c.bytes.add(int64(n))
		if w.ep != nil {
			w.ep.bytes.add(int64(n))
		}
		w.mu.Lock()
		if w.timer != nil {
			w.timer.Reset(w.opts.StallTimeout)
		}
		w.mu.Unlock()
		if el := time.Since(w.start); el > w.opts.StallTimeout && float64(w.n)/el.Seconds() < float64(w.opts.MinThroughput) {
			w.cancel(fmt.Errorf("%w: %d bytes in %s", errStalled, w.n, el.Round(time.Millisecond)))
			return n, errStalled
		}
	}
	if w.max > 0 && w.n > w.max {
		w.tooBig = true
		return n, fmt.Errorf("body larger than %d bytes", w.max)
	}
	return n, err
}

// getAll fetches a small file completely.
func (c *client) getAll(ctx context.Context, path string, maxSize int64) ([]byte, error) {
	var data []byte
	err := c.fetch(ctx, path, maxSize, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		data = b
		return err
	})
	return data, err
}
