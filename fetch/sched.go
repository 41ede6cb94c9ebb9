package fetch

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// Priority classes of the scheduler: what a fetch is for decides when it
// may use the link.
//   - OnDemand: a reader is waiting for it (a FUSE request, a pull). It
//     always goes first.
//   - Speculative: likely to be read soon (the other entries of a
//     directory being listed, looked up or opened in, the libraries an
//     opened ELF file needs, a profile's files, directories). It has its
//     own concurrency bound and is never paused, so that it overlaps the
//     on-demand chain it guesses ahead of (pausing its bodies for
//     on-demand ones was measured to lengthen that chain). A reader that
//     asks for the same object joins it.
//   - Background: prefetch (metadata, profile, full). It has its own
//     concurrency bound, starts no request while an on-demand or
//     speculative one is in flight, and pauses the bodies it is reading
//     meanwhile, so that it takes the link only when nothing else wants
//     it.
//
// A shared fetch takes the most urgent class of the callers waiting for
// it: an on-demand read of an object that background work is fetching
// lifts that fetch out of the background at once.
type Priority int

const (
	OnDemand Priority = iota
	Speculative
	Background
)

func (p Priority) String() string {
	switch p {
	case OnDemand:
		return "on-demand"
	case Speculative:
		return "speculative"
	}
	return "background"
}

type priorityKey struct{}

// WithPriority marks the fetches made with ctx (default OnDemand).
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

func priorityOf(ctx context.Context) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok {
		return p
	}
	return OnDemand
}

// flight is one shared fetch (one detached key): it counts its waiting
// callers per class, so the request it makes runs at the most urgent.
type flight struct {
	refs    int // callers holding it; guarded by scheduler.mu
	waiting [Background + 1]atomic.Int32
}

func (fl *flight) priority() Priority {
	for p := OnDemand; p < Background; p++ {
		if fl.waiting[p].Load() > 0 {
			return p
		}
	}
	return Background
}

type flightKey struct{}

type unpausableKey struct{}

// unpausable reports whether the body of a background request made with
// ctx must be read through without yielding (see getBounded).
func unpausable(ctx context.Context) bool { return ctx.Value(unpausableKey{}) != nil }

// requestPriority is the class a request made with ctx runs at now: its
// flight's, when it serves one, else its context's.
func requestPriority(ctx context.Context) (Priority, *flight) {
	if fl, ok := ctx.Value(flightKey{}).(*flight); ok {
		return fl.priority(), fl
	}
	return priorityOf(ctx), nil
}

// scheduler orders one Fetcher's requests (every remote shares the link).
type scheduler struct {
	bg, spec *semaphore.Weighted
	// bgRate caps background bodies' bytes per second (nil: no cap, the
	// whole link when nothing urgent runs).
	bgRate *rate.Limiter

	mu       sync.Mutex
	flights  map[string]*flight
	urgent   int           // on-demand and speculative requests in flight
	onDemand int           // on-demand requests in flight
	changed  chan struct{} // closed and replaced when urgent or onDemand drops to 0 or a flight is promoted

	st schedStats
}

type schedStats struct {
	requests    [Background + 1]atomic.Int64
	inFlight    [Background + 1]atomic.Int64
	pauses      atomic.Int64
	pausedNanos atomic.Int64
	promotions  atomic.Int64
}

func newScheduler(bgWorkers, specWorkers int, bgBandwidth int64) *scheduler {
	var lim *rate.Limiter
	if bgBandwidth > 0 {
		lim = rate.NewLimiter(rate.Limit(bgBandwidth), int(max(bgBandwidth/4, chunkSize)))
	}
	return &scheduler{
		bgRate:  lim,
		bg:      semaphore.NewWeighted(int64(max(1, bgWorkers))),
		spec:    semaphore.NewWeighted(int64(max(1, specWorkers))),
		flights: map[string]*flight{},
		changed: make(chan struct{}),
	}
}

func (s *scheduler) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// join registers a caller of the shared fetch key at priority p; leave
// undoes it.
func (s *scheduler) join(key string, p Priority) (fl *flight, leave func()) {
	s.mu.Lock()
	fl = s.flights[key]
	if fl == nil {
		fl = &flight{}
		s.flights[key] = fl
	}
	fl.refs++
	before := fl.priority()
	fl.waiting[p].Add(1)
	if p < before {
		s.st.promotions.Add(1)
		s.notify()
	}
	s.mu.Unlock()
	return fl, func() {
		s.mu.Lock()
		fl.waiting[p].Add(-1)
		if fl.refs--; fl.refs == 0 {
			delete(s.flights, key)
		}
		s.mu.Unlock()
	}
}

// start admits one request made with ctx: a background request waits
// for a background slot and for no urgent request to be in flight (or
// for its flight to be promoted), a speculative one for a speculative
// slot. done must be called when the request's body is finished.
func (s *scheduler) start(ctx context.Context) (p Priority, done func(), err error) {
	p, fl := requestPriority(ctx)
	switch p {
	case Background:
		if err := s.bg.Acquire(ctx, 1); err != nil {
			return p, nil, err
		}
		if err := s.waitIdle(ctx, fl, Background, nil); err != nil {
			s.release(s.bg)
			return p, nil, err
		}
		s.st.requests[p].Add(1)
		s.st.inFlight[p].Add(1)
		return p, func() { s.st.inFlight[p].Add(-1); s.release(s.bg) }, nil
	case Speculative:
		if err := s.spec.Acquire(ctx, 1); err != nil {
			return p, nil, err
		}
		s.addUrgent(1, 0)
		s.st.requests[p].Add(1)
		s.st.inFlight[p].Add(1)
		return p, func() { s.st.inFlight[p].Add(-1); s.addUrgent(-1, 0); s.release(s.spec) }, nil
	}
	s.addUrgent(1, 1)
	s.st.requests[p].Add(1)
	s.st.inFlight[p].Add(1)
	return p, func() { s.st.inFlight[p].Add(-1); s.addUrgent(-1, -1) }, nil
}

// release gives a slot back.
func (s *scheduler) release(sem *semaphore.Weighted) { sem.Release(1) }

func (s *scheduler) addUrgent(d, onDemand int) {
	s.mu.Lock()
	s.urgent += d
	s.onDemand += onDemand
	if s.urgent == 0 || (onDemand < 0 && s.onDemand == 0) {
		s.notify()
	}
	s.mu.Unlock()
}

// waitIdle returns once nothing more urgent than level is in flight
// (for Background: no on-demand or speculative request; for
// Speculative: no on-demand one), or fl has been promoted above level.
// pause (when not nil) stops the waiting request's stall timer
// meanwhile.
func (s *scheduler) waitIdle(ctx context.Context, fl *flight, level Priority, pause func() func()) error {
	var resume func()
	var t0 time.Time
	defer func() {
		if resume != nil {
			resume()
		}
		if !t0.IsZero() {
			s.st.pausedNanos.Add(int64(time.Since(t0)))
		}
	}()
	for {
		s.mu.Lock()
		busy := (fl == nil || fl.priority() >= level) &&
			((level == Background && s.urgent > 0) || (level == Speculative && s.onDemand > 0))
		ch := s.changed
		s.mu.Unlock()
		if !busy {
			return nil
		}
		if t0.IsZero() {
			t0 = time.Now()
			s.st.pauses.Add(1)
			if pause != nil {
				resume = pause()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// gatedReader is the body of a background or speculative request: each
// Read first waits while more urgent requests are in flight (with the
// stall timer paused), so the transfer yields the link to them.
type gatedReader struct {
	ctx   context.Context
	s     *scheduler
	fl    *flight
	level Priority
	r     pausableReader
}

// pausableReader is a body whose stall timer can be paused.
type pausableReader interface {
	io.Reader
	Pause() (resume func())
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if err := g.s.waitIdle(g.ctx, g.fl, g.level, g.r.Pause); err != nil {
		return 0, err
	}
	if lim := g.s.bgRate; lim != nil && g.level == Background && (g.fl == nil || g.fl.priority() == Background) {
		if len(p) > lim.Burst() {
			p = p[:lim.Burst()]
		}
		n, err := g.r.Read(p)
		if n > 0 {
			resume := g.r.Pause()
			werr := lim.WaitN(g.ctx, n)
			resume()
			if werr != nil && err == nil {
				err = werr
			}
		}
		return n, err
	}
	return g.r.Read(p)
}

// Pause passes the stall-timer pause through (see acquireLarge).
func (g *gatedReader) Pause() func() { return g.r.Pause() }

var _ io.Reader = (*gatedReader)(nil)

// SchedulerStatus is the scheduler's part of status.json.
type SchedulerStatus struct {
	// Requests counts requests started per class; InFlight those not
	// finished.
	Requests map[string]int64 `json:"requests"`
	InFlight map[string]int64 `json:"in_flight"`
	// BackgroundPauses counts the times background work yielded to
	// urgent requests, for PausedSeconds in all.
	BackgroundPauses int64   `json:"background_pauses"`
	PausedSeconds    float64 `json:"background_paused_seconds"`
	// Promotions counts shared fetches that an urgent reader lifted out
	// of the background.
	Promotions int64 `json:"promotions"`
}

func (s *scheduler) status() SchedulerStatus {
	out := SchedulerStatus{Requests: map[string]int64{}, InFlight: map[string]int64{},
		BackgroundPauses: s.st.pauses.Load(), PausedSeconds: time.Duration(s.st.pausedNanos.Load()).Seconds(),
		Promotions: s.st.promotions.Load()}
	for p := OnDemand; p <= Background; p++ {
		out.Requests[p.String()] = s.st.requests[p].Load()
		out.InFlight[p.String()] = s.st.inFlight[p].Load()
	}
	return out
}
