package objcache

import (
	"context"
	"fmt"
	"sync"
)

// TmpDir is the store's directory for in-flight writes (tmp/), on the
// same file system as objects/ and emptied at every start, for callers
// that need scratch files next to the cache (a static-delta part being
// decompressed, say).
func (s *Store) TmpDir() string { return s.tmpDir }

// ReserveScratch counts n bytes of scratch files against the quota (a
// static-delta part being decompressed in tmp/), evicting as a write
// would, and returns the function that gives them back. More than the
// quota is refused with ErrTooLarge.
func (s *Store) ReserveScratch(ctx context.Context, n int64) (release func(), err error) {
	if err := s.reserve(ctx, n); err != nil {
		return nil, fmt.Errorf("reserve scratch space: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { s.release(n) }) }, nil
}
