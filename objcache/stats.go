package objcache

import (
	"context"
	"fmt"

	"github.com/lazytree/lazytree/index"
)

// Usage is a count of objects and their bytes.
type Usage struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Stats describes the cache.
type Stats struct {
	Usage
	MaxBytes int64 `json:"max_bytes"`
	// Pinned counts present objects that a pin names.
	Pinned Usage `json:"pinned"`
	// ByType and ByRemote split the present objects by OSTree type and by
	// the remote they were fetched from.
	ByType   map[string]Usage `json:"by_type"`
	ByRemote map[string]Usage `json:"by_remote"`
	// Hits and Misses count opens and metadata reads since the cache was
	// created (saved on Close and after evictions).
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	// OpenObjects is how many content objects have open handles now.
	OpenObjects int `json:"open_objects"`
}

// HitRatio is Hits / (Hits + Misses), 0 when nothing was asked.
func (st *Stats) HitRatio() float64 {
	if st.Hits+st.Misses == 0 {
		return 0
	}
	return float64(st.Hits) / float64(st.Hits+st.Misses)
}

// Stats scans the index and returns the cache's statistics.
func (s *Store) Stats(ctx context.Context) (*Stats, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	st := &Stats{
		MaxBytes: s.max,
		ByType:   make(map[string]Usage),
		ByRemote: make(map[string]Usage),
		Hits:     s.baseHits + s.hits.Load(),
		Misses:   s.baseMiss + s.misses.Load(),
	}
	add := func(m map[string]Usage, k string, o index.Object) {
		u := m[k]
		u.Objects++
		u.Bytes += o.Size
		m[k] = u
	}
	err := s.db.ScanObjects(ctx, 0, nil, func(o index.Object) error {
		if o.State != index.StatePresent {
			return nil
		}
		st.Objects++
		st.Bytes += o.Size
		if o.Pins > 0 {
			st.Pinned.Objects++
			st.Pinned.Bytes += o.Size
		}
		add(st.ByType, o.ID.Type.String(), o)
		add(st.ByRemote, o.Origin, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	s.mu.Lock()
	st.OpenObjects = len(s.open) - s.idle.Len()
	s.mu.Unlock()
	return st, nil
}

// PinRef pins objs, found reachable from commit c by the caller, as
// what (remote, ref) points at, replacing an earlier pin of the ref.
// Pinned objects are never evicted; those not stored yet are pinned as
// soon as they are.
func (s *Store) PinRef(ctx context.Context, remote, ref string, c index.Sum, objs []index.ObjectID) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if err := s.db.PinRef(ctx, remote, ref, c, objs); err != nil {
		return err
	}
	// A moved ref releases the old commit's objects.
	return s.maybeEvict(ctx)
}

// PinCommit pins objs, found reachable from commit by the caller.
func (s *Store) PinCommit(ctx context.Context, c index.Sum, objs []index.ObjectID) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	return s.db.PinCommit(ctx, c, objs)
}

// UnpinRef removes the pin of (remote, ref) and evicts if the cache is
// over quota. An unknown pin matches index.ErrNotFound.
func (s *Store) UnpinRef(ctx context.Context, remote, ref string) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if err := s.db.UnpinRef(remote, ref); err != nil {
		return err
	}
	return s.maybeEvict(ctx)
}

// UnpinCommit removes the pin of commit c and evicts if the cache is
// over quota.
func (s *Store) UnpinCommit(ctx context.Context, c index.Sum) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if err := s.db.UnpinCommit(c); err != nil {
		return err
	}
	return s.maybeEvict(ctx)
}

// Pins lists the pins.
func (s *Store) Pins(ctx context.Context) ([]index.Pin, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	return s.db.Pins(ctx)
}
