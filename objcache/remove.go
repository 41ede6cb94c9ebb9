package objcache

import (
	"context"
	"errors"
	"fmt"

	"github.com/lazytree/lazytree/index"
)

// Remove drops one stored object, content or metadata, as eviction does:
// its record goes first and then its file, so a crash in between leaves
// only a file without a record, which start-up and fsck delete. Its file
// header stays cached, as after eviction.
//
// An object that is open returns an error matching ErrBusy and one that
// is pinned ErrPinned; both are left as they are. An object that is not
// stored (never, or evicted, dropped or removed already) returns an
// error matching ErrNotPresent, which a caller that only wants it gone
// can ignore.
func (s *Store) Remove(ctx context.Context, id index.ObjectID) error {
	if !id.Type.Core() {
		return fmt.Errorf("remove %s: invalid type", id)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	// Holding the busy entry keeps Open from opening it meanwhile: a
	// first open takes the same entry.
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	idle := s.closeIdleLocked(id)
	open := s.open[id] != nil
	s.mu.Unlock()
	closeFiles(idle)
	if open {
		return fmt.Errorf("remove %s: %w", id, ErrBusy)
	}
	// Evict takes the object only if it is present and unpinned, in one
	// transaction, so a pin that lands meanwhile wins.
	ev, err := s.db.Evict([]index.ObjectID{id})
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if len(ev) == 1 {
		s.removeEvicted(ev[0])
		return nil
	}
	o, err := s.db.Object(id)
	switch {
	case errors.Is(err, index.ErrNotFound) || (err == nil && o.State != index.StatePresent):
		return fmt.Errorf("remove %s: %w", id, ErrNotPresent)
	case err != nil:
		return fmt.Errorf("remove %s: %w", id, err)
	default:
		return fmt.Errorf("remove %s: %w", id, ErrPinned)
	}
}

// ReplaceMeta stores data as a metadata object that is not
// content-addressed (index.TypeCommitMeta, index.TypeCommitTombstone),
// replacing the bytes stored, where PutMeta keeps what is there: a
// commit's detached metadata can change (a new signature) while the
// commit does not. The swap is one index transaction, so a crash leaves
// the old bytes or the new, never neither. The caller has verified data
// as far as it can (signatures); the store does not hash it. Pins and
// the time the object was added are kept; the quota counts the new size.
// Content-addressed types are refused: their bytes cannot change.
func (s *Store) ReplaceMeta(ctx context.Context, typ index.ObjType, sum index.Sum, data []byte, origin string) error {
	id := index.ObjectID{Sum: sum, Type: typ}
	if !typ.Core() || typ.ContentAddressed() {
		return fmt.Errorf("replace %s: not a metadata type that is replaceable", id)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if data == nil {
		data = []byte{}
	}
	size := int64(len(data))
	// The whole new size is reserved first, before the busy entry (a
	// writer never waits for quotaMu holding one); the old size is given
	// back once the swap is done.
	if err := s.reserve(ctx, size); err != nil {
		return fmt.Errorf("replace %s: %w", id, err)
	}
	unlock, err := s.lock(ctx, id)
	if err != nil {
		s.release(size)
		return err
	}
	defer unlock()
	old, replaced, err := s.db.ReplaceData(index.Object{ID: id, Size: size, Origin: origin}, data)
	if err != nil {
		s.release(size)
		return fmt.Errorf("replace %s: %w", id, err)
	}
	if replaced {
		s.release(old)
	} else {
		s.count.Add(1)
	}
	return nil
}
