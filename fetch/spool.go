package fetch

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
)

// spool is a download on its way to disk that a reader follows: the
// download appends to an unlinked file, and a reader reads what has
// arrived, waiting for the rest. So a delta part is decoded while it
// streams in, and the next parts can download meanwhile without their
// bytes waiting in memory.
type spool struct {
	f    *os.File
	mu   sync.Mutex
	cond *sync.Cond
	n    int64 // bytes written
	gen  int   // download attempts started
	done bool
	err  error
}

// errSpoolRestarted is what a reader gets when the download started over
// (a retry): the bytes it read are gone, and it must begin again.
var errSpoolRestarted = errors.New("download started over")

// newSpool creates the spool's file in dir, unlinked at once.
func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "spool-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	s := &spool{f: f}
	s.cond = sync.NewCond(&s.mu)
	return s, nil
}

// start begins a download attempt: what an earlier one wrote is dropped.
func (s *spool) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.cond.Broadcast()
	if s.n == 0 {
		return nil
	}
	s.n = 0
	return s.f.Truncate(0)
}

// Write appends to the file. Only the download writes, one call at a time.
func (s *spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	off := s.n
	s.mu.Unlock()
	n, err := s.f.WriteAt(p, off)
	s.mu.Lock()
	s.n += int64(n)
	s.cond.Broadcast()
	s.mu.Unlock()
	return n, err
}

// finish ends the download: with err nil, readers get io.EOF after the
// last byte; otherwise err.
func (s *spool) finish(err error) {
	s.mu.Lock()
	s.done, s.err = true, err
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Close closes the file (and so frees its space).
func (s *spool) Close() error { return s.f.Close() }

// reader returns a reader from the start of the current attempt, which
// gives up when ctx ends.
func (s *spool) reader(ctx context.Context) *spoolReader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &spoolReader{s: s, gen: s.gen, ctx: ctx}
}

type spoolReader struct {
	s   *spool
	ctx context.Context
	off int64
	gen int
}

func (r *spoolReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s := r.s
	stop := context.AfterFunc(r.ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	for r.off >= s.n && !s.done && s.gen == r.gen && r.ctx.Err() == nil {
		s.cond.Wait()
	}
	switch {
	case s.gen != r.gen:
		s.mu.Unlock()
		return 0, errSpoolRestarted
	case r.ctx.Err() != nil:
		s.mu.Unlock()
		return 0, r.ctx.Err()
	case r.off >= s.n:
		err := s.err
		s.mu.Unlock()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	avail := s.n - r.off
	s.mu.Unlock()
	if int64(len(p)) > avail {
		p = p[:avail]
	}
	n, err := s.f.ReadAt(p, r.off)
	s.mu.Lock()
	restarted := s.gen != r.gen
	s.mu.Unlock()
	if restarted {
		return 0, errSpoolRestarted
	}
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}
