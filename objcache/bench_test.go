package objcache

import (
	"bytes"
	"context"
	"testing"

	"golang.org/x/sync/errgroup"
)

// BenchmarkOpen opens and closes cached, already verified objects that
// no one else has open: with idle files (the default), a stat of the
// path; without ("no-idle"), open(2), fstat and close(2).
func BenchmarkOpen(b *testing.B) {
	b.Run("idle", func(b *testing.B) { benchOpen(b, Options{NoSync: true}) })
	b.Run("no-idle", func(b *testing.B) { benchOpen(b, Options{NoSync: true, IdleFiles: -1}) })
}

func benchOpen(b *testing.B, opts Options) {
	ctx := context.Background()
	s := openStore(b, b.TempDir(), opts)
	objs := make([]obj, 1000)
	for i := range objs {
		objs[i] = makeObj(uint64(i), 4096)
		put(b, s, objs[i])
	}
	i := 0
	for b.Loop() {
		h, err := s.Open(ctx, objs[i%len(objs)].sum)
		if err != nil {
			b.Fatal(err)
		}
		h.Close()
		i++
	}
}

// BenchmarkOpenShared opens an object that another handle holds open:
// the handle shares the fd and skips the index.
func BenchmarkOpenShared(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir(), Options{NoSync: true})
	o := makeObj(1, 4096)
	put(b, s, o)
	keep, err := s.Open(ctx, o.sum)
	if err != nil {
		b.Fatal(err)
	}
	defer keep.Close()
	for b.Loop() {
		h, err := s.Open(ctx, o.sum)
		if err != nil {
			b.Fatal(err)
		}
		h.Close()
	}
}

// BenchmarkOpenFirstAfterStart is the first open of a 64 KiB object in a
// session: it rehashes the file.
func BenchmarkOpenFirstAfterStart(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir(), Options{NoSync: true, IdleFiles: -1})
	o := makeObj(1, 64<<10)
	put(b, s, o)
	for b.Loop() {
		s.mu.Lock()
		clear(s.verified)
		s.mu.Unlock()
		h, err := s.Open(ctx, o.sum)
		if err != nil {
			b.Fatal(err)
		}
		h.Close()
	}
}

// benchPut stores n objects of size bytes into a new cache with the given
// number of concurrent writers, durably (group syncfs) unless noSync.
func benchPut(b *testing.B, n, size, writers int, noSync bool) {
	objs := make([]obj, n)
	for i := range objs {
		objs[i] = makeObj(uint64(i), size)
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		s, err := Open(ctx, b.TempDir(), Options{NoSync: noSync})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var g errgroup.Group
		g.SetLimit(writers)
		for _, o := range objs {
			g.Go(func() error { return s.PutContent(ctx, o.sum, o.hdr, bytes.NewReader(o.content), "bench") })
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, count := s.Usage(); count != int64(n) {
			b.Fatalf("stored %d objects, want %d", count, n)
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
}

// BenchmarkPut10000Small is the goal: 10,000 objects of 1 KiB,
// durable, from 64 concurrent writers (as fetch writes them).
func BenchmarkPut10000Small(b *testing.B) { benchPut(b, 10000, 1024, 64, false) }

// BenchmarkPut10000SmallNoSync is the same without durability, to show
// what the flushes cost.
func BenchmarkPut10000SmallNoSync(b *testing.B) { benchPut(b, 10000, 1024, 64, true) }

// BenchmarkPut1000SmallSerial is one writer: every object waits for its
// own flush.
func BenchmarkPut1000SmallSerial(b *testing.B) { benchPut(b, 1000, 1024, 1, false) }

// BenchmarkPut1000SmallBatch is one writer with a Batch: one flush for
// all (compare BenchmarkPut1000SmallSerial).
func BenchmarkPut1000SmallBatch(b *testing.B) {
	objs := make([]obj, 1000)
	for i := range objs {
		objs[i] = makeObj(uint64(i), 1024)
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		s, err := Open(ctx, b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		bt := s.NewBatch("bench")
		for _, o := range objs {
			f, err := s.CreateTemp()
			if err != nil {
				b.Fatal(err)
			}
			f.Write(o.content)
			if err := bt.PutFile(ctx, o.sum, o.hdr, f); err != nil {
				b.Fatal(err)
			}
		}
		if err := bt.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(1000*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
}
