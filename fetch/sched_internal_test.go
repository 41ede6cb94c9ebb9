package fetch

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// returnsWithin reports whether fn returned within d (it keeps running
// otherwise; the test's cleanup unblocks it).
func returnsWithin(d time.Duration, fn func()) (returned bool, wait func()) {
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
		return true, func() {}
	case <-time.After(d):
		return false, func() { <-done }
	}
}

// TestBackgroundWaitsForUrgent: a background request starts only when no
// on-demand or speculative request is in flight.
func TestBackgroundWaitsForUrgent(t *testing.T) {
	s := newScheduler(2, 2, 0)
	ctx := context.Background()
	for _, urgent := range []Priority{OnDemand, Speculative} {
		_, done, err := s.start(WithPriority(ctx, urgent))
		if err != nil {
			t.Fatal(err)
		}
		var bgDone func()
		ok, wait := returnsWithin(100*time.Millisecond, func() {
			_, bgDone, err = s.start(WithPriority(ctx, Background))
		})
		if ok {
			t.Fatalf("a background request started while a %s one was in flight", urgent)
		}
		done()
		wait()
		if err != nil {
			t.Fatal(err)
		}
		bgDone()
	}
	if got := s.status().BackgroundPauses; got != 2 {
		t.Fatalf("%d background pauses counted, want 2", got)
	}
	// Urgent requests never wait for background ones.
	_, bg1, _ := s.start(WithPriority(ctx, Background))
	_, bg2, _ := s.start(WithPriority(ctx, Background))
	ok, wait := returnsWithin(time.Second, func() {
		_, done, _ := s.start(ctx)
		done()
	})
	wait()
	if !ok {
		t.Fatal("an on-demand request waited for background slots")
	}
	bg1()
	bg2()
}

// TestPromotionLiftsBackgroundFetch: an on-demand caller that joins a
// shared background fetch lifts it out of the background at once, while
// other urgent work is still in flight.
func TestPromotionLiftsBackgroundFetch(t *testing.T) {
	s := newScheduler(2, 2, 0)
	ctx := context.Background()
	_, urgentDone, _ := s.start(ctx) // some other on-demand read
	defer urgentDone()
	fl, leaveBG := s.join("r/x.file", Background)
	defer leaveBG()
	fctx := context.WithValue(WithPriority(ctx, Background), flightKey{}, fl)
	started := make(chan func())
	go func() {
		_, done, err := s.start(fctx)
		if err != nil {
			t.Error(err)
			close(started)
			return
		}
		started <- done
	}()
	select {
	case <-started:
		t.Fatal("background fetch started while an on-demand one was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	_, leaveFG := s.join("r/x.file", OnDemand)
	defer leaveFG()
	select {
	case done := <-started:
		if done != nil {
			done()
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the joined on-demand caller did not lift the fetch")
	}
	if s.status().Promotions != 1 {
		t.Fatalf("promotions = %d, want 1", s.status().Promotions)
	}
}

// TestGatedBodyPauses: a background body is not read while urgent work
// is in flight, and resumes after.
func TestGatedBodyPauses(t *testing.T) {
	s := newScheduler(2, 2, 0)
	ctx := context.Background()
	opts := HTTPOptions{}.withDefaults()
	c := &client{opts: opts}
	w := &watchedReader{r: strings.NewReader("background body"), start: time.Now(), opts: &c.opts, cancel: func(error) {}, c: c}
	g := &gatedReader{ctx: ctx, s: s, level: Background, r: w}
	_, done, _ := s.start(ctx)
	var got []byte
	ok, wait := returnsWithin(100*time.Millisecond, func() { got, _ = io.ReadAll(g) })
	if ok {
		t.Fatal("background body read while an on-demand request was in flight")
	}
	done()
	wait()
	if string(got) != "background body" {
		t.Fatalf("read %q", got)
	}
	// A cancelled wait ends the read.
	_, done, _ = s.start(ctx)
	defer done()
	cctx, cancel := context.WithCancel(ctx)
	g = &gatedReader{ctx: cctx, s: s, level: Background, r: w}
	cancel()
	if _, err := g.Read(make([]byte, 4)); err == nil {
		t.Fatal("a cancelled background read succeeded while paused")
	}
}

// TestBackgroundBandwidthCap: with a cap, a background body is read no
// faster than it allows (a lower bound: a loaded machine only slows it).
func TestBackgroundBandwidthCap(t *testing.T) {
	s := newScheduler(2, 2, 256<<10)
	opts := HTTPOptions{}.withDefaults()
	c := &client{opts: opts}
	body := strings.Repeat("x", 512<<10)
	w := &watchedReader{r: strings.NewReader(body), start: time.Now(), opts: &c.opts, cancel: func(error) {}, c: c}
	start := time.Now()
	got, err := io.ReadAll(&gatedReader{ctx: context.Background(), s: s, level: Background, r: w})
	if err != nil || len(got) != len(body) {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	// 512 KiB at 256 KiB/s with a 64 KiB burst: at least 1.7 s.
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("512 KiB read in %s under a 256 KiB/s cap", el)
	}
}
