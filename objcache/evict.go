package objcache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/lazytree/lazytree/index"
)

// reserve accounts for size bytes about to be stored. If that would pass
// the quota, it first evicts down to the low-water mark minus size, so
// the cache never exceeds the quota while anything evictable is left.
// Reservation and eviction are serialized, which is what bounds the
// overshoot: concurrent writers cannot all slip in before an eviction.
// A size over the quota is refused with ErrTooLarge: no eviction could
// make room for it, and a hostile declared size must cost nothing.
//
// The reservation counts in s.used from now on; the writer hands it to
// commit, which keeps it for an object it adds and gives it back
// otherwise, or gives it back itself with release on a failure before.
func (s *Store) reserve(ctx context.Context, size int64) error {
	if size < 0 || size > s.max {
		return fmt.Errorf("reserve %d bytes (quota %d): %w", size, s.max, ErrTooLarge)
	}
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	if s.used.Load()+size > s.max {
		if _, err := s.evictLocked(ctx, s.low-size); err != nil {
			return err
		}
	}
	s.used.Add(size)
	return nil
}

// release gives back a reservation that will not be committed.
func (s *Store) release(size int64) { s.used.Add(-size) }

// GCResult says what an eviction pass did.
type GCResult struct {
	Evicted int
	Freed   int64
	// Bytes is what the cache holds afterwards. It stays above the target
	// when the rest is pinned or open.
	Bytes int64
}

// GC evicts least recently used objects until the cache holds at most
// target bytes, skipping pinned and open objects.
func (s *Store) GC(ctx context.Context, target int64) (GCResult, error) {
	if err := s.begin(); err != nil {
		return GCResult{}, err
	}
	defer s.ops.Done()
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	r, err := s.evictLocked(ctx, target)
	if err != nil {
		return r, fmt.Errorf("gc: %w", err)
	}
	return r, nil
}

// evictLocked is one eviction pass; quotaMu is held.
func (s *Store) evictLocked(ctx context.Context, target int64) (r GCResult, err error) {
	defer func() { r.Bytes = s.used.Load() }()
	// The LRU order must include recent opens.
	if err = s.db.FlushAccess(); err != nil {
		return r, err
	}
	// Partial files first: they are incomplete, and what they hold is
	// refetched by the range.
	r = s.evictPartialsLocked(target)
	for s.used.Load() > target {
		need := s.used.Load() - target
		var ids []index.ObjectID
		var locks []chan struct{}
		var sum int64
		err := s.db.LRU(ctx, func(id index.ObjectID, size int64) bool {
			if ch, ok := s.tryLockIdle(id); ok {
				ids = append(ids, id)
				locks = append(locks, ch)
				sum += size
			}
			return sum < need && len(ids) < 1024
		})
		if err == nil && len(ids) > 0 {
			var ev []index.Object
			ev, err = s.db.Evict(ids)
			for _, o := range ev {
				s.removeEvicted(o)
				r.Evicted++
				r.Freed += o.Size
			}
			if err == nil && len(ev) == 0 {
				// Every candidate was pinned in the meantime.
				err = errNothingEvictable
			}
		}
		for i, id := range ids {
			s.unlock(id, locks[i])
		}
		if errors.Is(err, errNothingEvictable) {
			break
		}
		if err != nil {
			return r, err
		}
		if len(ids) == 0 {
			break
		}
	}
	if r.Evicted > 0 {
		if err := s.saveCounters(); err != nil {
			s.log.Warn("objcache: save counters", "err", err)
		}
	}
	return r, nil
}

var errNothingEvictable = errors.New("nothing evictable")

// removeEvicted deletes the file of an object whose record is gone. If
// the unlink fails, the file is an orphan that fsck (or the next start
// after a crash) removes; the quota no longer counts it either way.
func (s *Store) removeEvicted(o index.Object) {
	s.used.Add(-o.Size)
	s.count.Add(-1)
	s.mu.Lock()
	delete(s.verified, o.ID)
	s.mu.Unlock()
	if o.ID.Type != index.TypeFile {
		return
	}
	if err := os.Remove(s.path(o.ID.Sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("objcache: remove evicted file", "object", o.ID.String(), "err", err)
	}
}

// maybeEvict runs a pass if the cache is over quota, as after an unpin.
func (s *Store) maybeEvict(ctx context.Context) error {
	if s.used.Load() <= s.max {
		return nil
	}
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	if s.used.Load() <= s.max {
		return nil
	}
	_, err := s.evictLocked(ctx, s.low)
	return err
}
