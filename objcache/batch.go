package objcache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/index"
)

// Batch stores many objects with one durability flush and one index
// transaction (per few hundred objects) instead of one of each per
// object: what applying a static delta part needs, whose thousands of
// small objects would otherwise wait for a flush each. An object put in
// a batch is verified at once, as PutFile and PutMeta verify, but becomes
// present only at Flush; a crash before that leaves files without
// records, which start-up removes.
//
// While it waits for Flush, an object's busy entry is held, so that
// nothing else writes, evicts or removes it meanwhile; a writer of the
// same object waits for the batch. A batch never waits for another
// writer while holding entries: meeting a busy object, it flushes what
// it holds first. A Batch is used by one goroutine at a time.
type Batch struct {
	s      *Store
	origin string
	items  []batchItem
}

type batchItem struct {
	obj    index.NewObject
	final  string // the renamed file of a content object
	fi     os.FileInfo
	unlock func()
}

// maxBatch is how many objects a batch holds before it flushes on its
// own: it bounds the busy entries held and the records of one flush.
const maxBatch = 4096

// NewBatch starts a batch of objects from origin.
func (s *Store) NewBatch(origin string) *Batch { return &Batch{s: s, origin: origin} }

// Len is how many objects wait for Flush.
func (b *Batch) Len() int { return len(b.items) }

// PutFile is Store.PutFile, with the record deferred to Flush. Like
// PutFile it takes f over.
func (b *Batch) PutFile(ctx context.Context, sum index.Sum, hdr index.FileHeader, f *os.File) error {
	s := b.s
	fail := func(err error) error { return s.discardTemp(f, err) }
	id := index.ObjectID{Sum: sum, Type: index.TypeFile}
	if err := s.begin(); err != nil {
		return fail(err)
	}
	defer s.ops.Done()
	size, err := s.acceptTemp(ctx, id, hdr, f)
	if err != nil || size < 0 {
		return err
	}
	unlock, err := b.lock(ctx, id)
	if err != nil {
		s.release(size)
		return fail(err)
	}
	if ok, err := s.present(id); err != nil || ok {
		unlock()
		s.release(size)
		return fail(err)
	}
	final := s.path(sum)
	if err := os.Rename(f.Name(), final); err != nil {
		unlock()
		s.release(size)
		return fail(fmt.Errorf("store %s: %w", id, err))
	}
	fi, err := f.Stat() // after the rename, which changes the ctime
	f.Close()
	if err != nil {
		fi = nil
	}
	s.pend(id, size)
	hc := hdr
	b.items = append(b.items, batchItem{obj: index.NewObject{Object: index.Object{ID: id, Size: size, Origin: b.origin}, Header: &hc},
		final: final, fi: fi, unlock: unlock})
	return b.flushIfFull(ctx)
}

// PutMeta is Store.PutMeta, with the record deferred to Flush. data is
// copied.
func (b *Batch) PutMeta(ctx context.Context, typ index.ObjType, sum index.Sum, data []byte) error {
	s := b.s
	id := index.ObjectID{Sum: sum, Type: typ}
	if !typ.Core() || typ == index.TypeFile {
		return fmt.Errorf("store %s: not a metadata type", id)
	}
	if typ.ContentAddressed() {
		if got := index.Sum(sha256.Sum256(data)); got != sum {
			return &CorruptError{Object: id.String(), What: "checksum", Got: got.String(), Want: sum.String()}
		}
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if ok, err := s.present(id); err != nil || ok {
		return err
	}
	size := int64(len(data))
	if err := s.reserve(ctx, size); err != nil {
		return fmt.Errorf("store %s: %w", id, err)
	}
	unlock, err := b.lock(ctx, id)
	if err != nil {
		s.release(size)
		return err
	}
	if ok, err := s.present(id); err != nil || ok {
		unlock()
		s.release(size)
		return err
	}
	s.pend(id, size)
	b.items = append(b.items, batchItem{obj: index.NewObject{Object: index.Object{ID: id, Size: size, Origin: b.origin}, Data: append([]byte{}, data...)},
		unlock: unlock})
	return b.flushIfFull(ctx)
}

// lock takes id's busy entry. When another writer holds it, the batch
// flushes what it holds before it waits, so that two batches never wait
// for each other.
func (b *Batch) lock(ctx context.Context, id index.ObjectID) (func(), error) {
	s := b.s
	s.mu.Lock()
	if s.busy[id] == nil {
		ch := make(chan struct{})
		s.busy[id] = ch
		s.mu.Unlock()
		return func() { s.unlock(id, ch) }, nil
	}
	s.mu.Unlock()
	if err := b.Flush(ctx); err != nil {
		return nil, err
	}
	return s.lock(ctx, id)
}

func (b *Batch) flushIfFull(ctx context.Context) error {
	if len(b.items) < maxBatch {
		return nil
	}
	return b.Flush(ctx)
}

// Flush makes every object put since the last Flush durable (one flush
// for all their files) and then present. On an error nothing of them is
// recorded that could name a lost file, their files are removed, and
// the error is returned: the objects can be put again.
func (b *Batch) Flush(ctx context.Context) error {
	items := b.items
	b.items = nil
	if len(items) == 0 {
		return nil
	}
	s := b.s
	defer func() {
		for _, it := range items {
			it.unlock()
		}
	}()
	if err := s.begin(); err != nil {
		return err // Close removed the files and gave the reservations back
	}
	defer s.ops.Done()
	fail := func(err error) error {
		for _, it := range items {
			s.unpend(it)
		}
		return err
	}
	var anyFile *batchItem
	for i := range items {
		if items[i].final != "" {
			anyFile = &items[i]
			break
		}
	}
	if anyFile != nil {
		if err := s.durableBatch(ctx, items); err != nil {
			return fail(fmt.Errorf("store %d objects: sync: %w", len(items), err))
		}
	}
	objs := make([]index.NewObject, len(items))
	for i, it := range items {
		objs[i] = it.obj
	}
	added, err := s.db.AddObjects(objs)
	for i, it := range items {
		if added[i] {
			s.mu.Lock()
			delete(s.pending, it.obj.ID)
			s.mu.Unlock()
			s.count.Add(1)
			if it.final == "" {
				s.setVerified(it.obj.ID, fileID{})
			} else if it.fi != nil {
				s.setVerified(it.obj.ID, statID(it.fi))
			}
			continue
		}
		if err != nil {
			s.unpend(it)
		} else {
			// Present already: the file (if any) is the same object's.
			s.mu.Lock()
			delete(s.pending, it.obj.ID)
			s.mu.Unlock()
			s.release(it.obj.Size)
		}
	}
	if err != nil {
		return fmt.Errorf("store %d objects: %w", len(items), err)
	}
	return nil
}

// Abort gives up the objects put since the last Flush: their files are
// removed and nothing is recorded.
func (b *Batch) Abort() {
	items := b.items
	b.items = nil
	for _, it := range items {
		b.s.unpend(it)
		it.unlock()
	}
}

// pend notes an object a batch holds, unrecorded, with its reservation.
func (s *Store) pend(id index.ObjectID, size int64) {
	s.mu.Lock()
	s.pending[id] = size
	s.mu.Unlock()
}

// unpend gives up a pending object: its file is removed and its
// reservation given back, once, by whoever comes first (the batch, or
// Close).
func (s *Store) unpend(it batchItem) {
	s.mu.Lock()
	_, ok := s.pending[it.obj.ID]
	delete(s.pending, it.obj.ID)
	s.mu.Unlock()
	if !ok {
		return
	}
	if it.final != "" {
		os.Remove(it.final)
	}
	s.release(it.obj.Size)
}

// dropPending is Close's: the files of batches never flushed are removed
// (a clean start-up does not look for files without records) and their
// reservations given back before the usage is saved.
func (s *Store) dropPending() {
	s.mu.Lock()
	p := s.pending
	s.pending = map[index.ObjectID]int64{}
	s.mu.Unlock()
	for id, size := range p {
		if id.Type == index.TypeFile {
			os.Remove(s.path(id.Sum))
		}
		s.release(size)
	}
}

// durableBatch makes the files of items and their directory entries
// durable: one group flush, or where syncfs is missing an fsync of each
// file and directory.
func (s *Store) durableBatch(ctx context.Context, items []batchItem) error {
	if s.sync == nil {
		return nil
	}
	err := s.sync.sync(ctx)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	dirs := map[string]bool{}
	for _, it := range items {
		if it.final == "" {
			continue
		}
		if err := syncPath(it.final); err != nil {
			return err
		}
		dirs[filepath.Dir(it.final)] = true
	}
	for d := range dirs {
		if err := syncPath(d); err != nil {
			return err
		}
	}
	return nil
}

// syncPath fsyncs the file or directory at p.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
