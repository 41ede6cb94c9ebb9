package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Object returns the record of id, or an error matching ErrNotFound.
// Absent records (pinned, not stored) are returned too: check State.
func (db *DB) Object(id ObjectID) (Object, error) {
	var o Object
	err := db.view(func(txn *badger.Txn) error {
		var err error
		o, err = getObject(txn, id)
		return err
	})
	if err != nil {
		return Object{}, fmt.Errorf("look up %s: %w", id, err)
	}
	return o, nil
}

func getObject(txn *badger.Txn, id ObjectID) (Object, error) {
	it, err := txn.Get(objectKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Object{}, ErrNotFound
	}
	if err != nil {
		return Object{}, err
	}
	var o Object
	err = it.Value(func(v []byte) error {
		o, err = decodeObject(id, v)
		return err
	})
	return o, err
}

// putObject writes a record and keeps the LRU index in step: a present,
// unpinned object has exactly one LRU key, at its access time; old is the
// record as it was (nil if there was none).
func putObject(txn *badger.Txn, old, o *Object) error {
	if old != nil && old.State == StatePresent && old.Pins == 0 {
		if err := txn.Delete(lruKey(unixNano(old.Access), old.ID)); err != nil {
			return err
		}
	}
	if err := txn.Set(objectKey(o.ID), encodeObject(o)); err != nil {
		return err
	}
	if o.State == StatePresent && o.Pins == 0 {
		return txn.Set(lruKey(unixNano(o.Access), o.ID), binary.AppendUvarint(nil, uint64(o.Size)))
	}
	return nil
}

func deleteObject(txn *badger.Txn, old *Object) error {
	if old.State == StatePresent && old.Pins == 0 {
		if err := txn.Delete(lruKey(unixNano(old.Access), old.ID)); err != nil {
			return err
		}
	}
	if old.ID.Type != TypeFile {
		if err := txn.Delete(dataKey(old.ID)); err != nil {
			return err
		}
	}
	return txn.Delete(objectKey(old.ID))
}

// AddObject records that an object is now present, in one transaction
// with what goes with it: for a content object its header (hdr, required),
// for a metadata object its bytes (data, required). o.ID, o.Size and
// o.Origin are used; the times are set to now, and the pin count of an
// absent record is kept. It returns false, changing nothing, when the
// object is already present.
//
// The caller must make the object's file durable before calling: once
// this returns, the record may outlive a crash.
func (db *DB) AddObject(o Object, hdr *FileHeader, data []byte) (bool, error) {
	if !o.ID.Type.Core() {
		return false, fmt.Errorf("add %s: invalid type", o.ID)
	}
	if (o.ID.Type == TypeFile) != (hdr != nil) || (o.ID.Type != TypeFile) != (data != nil) {
		return false, fmt.Errorf("add %s: a content object needs a header, a metadata object its bytes", o.ID)
	}
	if len(o.Origin) > maxNameLen {
		return false, fmt.Errorf("add %s: origin name too long", o.ID)
	}
	added := false
	err := db.update(func(txn *badger.Txn) error {
		added = false
		old, err := getObject(txn, o.ID)
		var oldp *Object
		switch {
		case err == nil:
			if old.State == StatePresent {
				return nil
			}
			oldp = &old
		case !errors.Is(err, ErrNotFound):
			return err
		}
		rec := presentRecord(o, oldp, db.now())
		if hdr != nil {
			if err := txn.Set(headerKey(o.ID.Sum), encodeHeader(hdr)); err != nil {
				return err
			}
		} else if err := txn.Set(dataKey(o.ID), data); err != nil {
			return err
		}
		added = true
		return putObject(txn, oldp, &rec)
	})
	if err != nil {
		return false, fmt.Errorf("add %s: %w", o.ID, err)
	}
	if added && hdr != nil && db.headers != nil {
		db.headers.set(o.ID.Sum, *hdr)
	}
	return added, nil
}

// NewObject is one object for AddObjects: what AddObject takes.
type NewObject struct {
	Object
	Header *FileHeader // content objects
	Data   []byte      // metadata objects
}

// maxBatchTxn bounds the objects AddObjects records in one transaction:
// typical headers take a few hundred bytes, well under Badger's limit
// (15 % of the memtable); a batch of large ones that exceeds it is
// recorded in smaller transactions.
const maxBatchTxn = 512

// AddObjects is AddObject for many objects, in as few transactions as
// Badger allows: one per maxBatchTxn objects. added[i] says whether
// objs[i] was added (false: present already). On an error, the objects
// of transactions committed before it stay recorded, and added says
// which.
func (db *DB) AddObjects(objs []NewObject) (added []bool, err error) {
	added = make([]bool, len(objs))
	for i, o := range objs {
		if !o.ID.Type.Core() {
			return added, fmt.Errorf("add %s: invalid type", o.ID)
		}
		if (o.ID.Type == TypeFile) != (o.Header != nil) || (o.ID.Type != TypeFile) != (o.Data != nil) {
			return added, fmt.Errorf("add %s: a content object needs a header, a metadata object its bytes", o.ID)
		}
		if len(o.Origin) > maxNameLen {
			return added, fmt.Errorf("add %s: origin name too long", objs[i].ID)
		}
	}
	n := maxBatchTxn
	for start := 0; start < len(objs); start += n {
		part := objs[start:min(start+n, len(objs))]
		got := added[start : start+len(part)]
		err := db.update(func(txn *badger.Txn) error {
			now := db.now()
			for i, o := range part {
				got[i] = false
				old, err := getObject(txn, o.ID)
				var oldp *Object
				switch {
				case err == nil:
					if old.State == StatePresent {
						continue
					}
					oldp = &old
				case !errors.Is(err, ErrNotFound):
					return err
				}
				rec := presentRecord(o.Object, oldp, now)
				if o.Header != nil {
					if err := txn.Set(headerKey(o.ID.Sum), encodeHeader(o.Header)); err != nil {
						return err
					}
				} else if err := txn.Set(dataKey(o.ID), o.Data); err != nil {
					return err
				}
				if err := putObject(txn, oldp, &rec); err != nil {
					return err
				}
				got[i] = true
			}
			return nil
		})
		if errors.Is(err, badger.ErrTxnTooBig) && len(part) > 1 {
			// Large headers: the same objects in smaller transactions.
			clear(got)
			n = len(part) / 2
			start -= n
			continue
		}
		if err != nil {
			clear(got)
			return added, fmt.Errorf("add %d objects: %w", len(part), err)
		}
		if db.headers != nil {
			for i, o := range part {
				if got[i] && o.Header != nil {
					db.headers.set(o.ID.Sum, *o.Header)
				}
			}
		}
	}
	return added, nil
}

// presentRecord is the record of o becoming present at now, keeping the
// pins of its earlier record old (nil when it had none).
func presentRecord(o Object, old *Object, now time.Time) Object {
	rec := Object{ID: o.ID, State: StatePresent, Size: o.Size, Origin: o.Origin, Added: now, Access: now}
	if old != nil {
		rec.Pins = old.Pins
	}
	return rec
}

// ReplaceData stores data as the bytes of a metadata object that is not
// content-addressed (commitmeta, commit-tombstone), in place of what is
// stored, in one transaction: a crash leaves either the old bytes or the
// new ones, never neither. o.ID, o.Size and o.Origin are used; pins and
// the time added are kept, the access time is set to now. An object not
// present is added as by AddObject. It returns the size of the bytes
// replaced and whether there were any.
func (db *DB) ReplaceData(o Object, data []byte) (oldSize int64, replaced bool, err error) {
	if !o.ID.Type.Core() || o.ID.Type.ContentAddressed() || data == nil {
		return 0, false, fmt.Errorf("replace %s: only the bytes of a metadata object that is not content-addressed can be replaced", o.ID)
	}
	if len(o.Origin) > maxNameLen {
		return 0, false, fmt.Errorf("replace %s: origin name too long", o.ID)
	}
	err = db.update(func(txn *badger.Txn) error {
		oldSize, replaced = 0, false
		old, err := getObject(txn, o.ID)
		var oldp *Object
		switch {
		case err == nil:
			oldp = &old
		case !errors.Is(err, ErrNotFound):
			return err
		}
		rec := presentRecord(o, oldp, db.now())
		if oldp != nil {
			if old.State == StatePresent {
				rec.Added = old.Added
				oldSize, replaced = old.Size, true
			}
		}
		if err := txn.Set(dataKey(o.ID), data); err != nil {
			return err
		}
		return putObject(txn, oldp, &rec)
	})
	if err != nil {
		return 0, false, fmt.Errorf("replace %s: %w", o.ID, err)
	}
	return oldSize, replaced, nil
}

// Data returns the stored bytes of a present metadata object.
func (db *DB) Data(id ObjectID) ([]byte, error) {
	var out []byte
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(dataKey(id))
		if err != nil {
			return err
		}
		out, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", id, err)
	}
	return out, nil
}

// Drop records that a present object's bytes are gone (missing or
// corrupt). A pinned object keeps an absent record so that its pins still
// apply when it is stored again. It returns the record as it was, or an
// error matching ErrNotFound if the object was not present.
func (db *DB) Drop(id ObjectID) (Object, error) {
	var was Object
	err := db.update(func(txn *badger.Txn) error {
		old, err := getObject(txn, id)
		if err != nil {
			return err
		}
		if old.State != StatePresent {
			return ErrNotFound
		}
		was = old
		if old.Pins == 0 {
			return deleteObject(txn, &old)
		}
		if id.Type != TypeFile {
			if err := txn.Delete(dataKey(id)); err != nil {
				return err
			}
		}
		rec := old
		rec.State, rec.Size = StateAbsent, 0
		return putObject(txn, &old, &rec)
	})
	if err != nil {
		return Object{}, fmt.Errorf("drop %s: %w", id, err)
	}
	return was, nil
}

// Evict removes the records of those of ids that are present and
// unpinned at the time of the transaction, and returns them. The caller
// removes the files afterwards: a crash in between leaves a file without a
// record, which start-up reconciliation deletes, never the reverse. File
// headers are kept, so stat stays cheap after eviction.
func (db *DB) Evict(ids []ObjectID) ([]Object, error) {
	var out []Object
	for start := 0; start < len(ids); start += chunkSize {
		chunk := ids[start:min(start+chunkSize, len(ids))]
		var got []Object
		err := db.update(func(txn *badger.Txn) error {
			got = got[:0]
			for _, id := range chunk {
				old, err := getObject(txn, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if old.State != StatePresent || old.Pins != 0 {
					continue
				}
				if err := deleteObject(txn, &old); err != nil {
					return err
				}
				got = append(got, old)
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("evict: %w", err)
		}
		out = append(out, got...)
	}
	return out, nil
}

// LRU calls fn with present, unpinned objects from the least recently
// used on, until fn returns false. Access times still pending in memory
// are not seen: call FlushAccess first when the order matters.
func (db *DB) LRU(ctx context.Context, fn func(id ObjectID, size int64) bool) error {
	return db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pLRU}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := stopped(ctx); err != nil {
				return err
			}
			item := it.Item()
			id, ok := idFromLRUKey(item.Key())
			if !ok {
				continue
			}
			var size uint64
			if err := item.Value(func(v []byte) error {
				var n int
				size, n = binary.Uvarint(v)
				if n <= 0 {
					return ErrBadRecord
				}
				return nil
			}); err != nil {
				return err
			}
			if !fn(id, int64(size)) {
				return nil
			}
		}
		return nil
	})
}

// Touch notes that id was used now. It only updates a map; the times
// reach the index in batches (see Options.FlushInterval).
func (db *DB) Touch(id ObjectID) {
	now := db.now().UnixNano()
	db.accessMu.Lock()
	db.access[id] = now
	db.accessMu.Unlock()
}

// FlushAccess writes the pending access times.
func (db *DB) FlushAccess() error {
	db.accessMu.Lock()
	pending := db.access
	if len(pending) == 0 {
		db.accessMu.Unlock()
		return nil
	}
	db.access = make(map[ObjectID]int64, len(pending))
	db.accessMu.Unlock()

	ids := make([]ObjectID, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	for start := 0; start < len(ids); start += chunkSize / 2 {
		chunk := ids[start:min(start+chunkSize/2, len(ids))]
		err := db.update(func(txn *badger.Txn) error {
			for _, id := range chunk {
				old, err := getObject(txn, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				t := pending[id]
				if old.State != StatePresent || t <= unixNano(old.Access) {
					continue
				}
				rec := old
				rec.Access = time.Unix(0, t)
				if err := putObject(txn, &old, &rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("flush access times: %w", err)
		}
	}
	return nil
}

// ScanObjects calls fn for every record whose key starts with the type
// typ (0: every type) and, within it, the checksum bytes sumPrefix. It
// reads in pages, so fn may take its time and may change the index.
func (db *DB) ScanObjects(ctx context.Context, typ ObjType, sumPrefix []byte, fn func(Object) error) error {
	prefix := []byte{pObject}
	if typ != 0 {
		prefix = append(prefix, byte(typ))
		prefix = append(prefix, sumPrefix...)
	}
	var seek []byte
	for {
		page, next, err := db.scanPage(prefix, seek, 1000)
		if err != nil {
			return fmt.Errorf("scan objects: %w", err)
		}
		for _, o := range page {
			if err := stopped(ctx); err != nil {
				return err
			}
			if err := fn(o); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		seek = next
	}
}

func (db *DB) scanPage(prefix, seek []byte, n int) ([]Object, []byte, error) {
	var page []Object
	var next []byte
	err := db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		if seek == nil {
			seek = prefix
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(page) == n {
				next = bytes.Clone(k)
				return nil
			}
			id, ok := idFromObjectKey(k)
			if !ok {
				return fmt.Errorf("key %x: %w", k, ErrBadRecord)
			}
			err := item.Value(func(v []byte) error {
				o, err := decodeObject(id, v)
				if err != nil {
					return err
				}
				page = append(page, o)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return page, next, err
}

// Header returns the cached header of a content object.
func (db *DB) Header(sum Sum) (FileHeader, error) {
	var gen uint64
	if db.headers != nil {
		var h FileHeader
		var ok bool
		if h, gen, ok = db.headers.get(sum); ok {
			return h, nil
		}
	}
	var h FileHeader
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(headerKey(sum))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			h, err = decodeHeader(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return FileHeader{}, fmt.Errorf("header of %s.file: %w", sum, err)
	}
	if db.headers != nil {
		db.headers.fill(sum, h, gen)
	}
	return h, nil
}

// PutHeader caches the header of a content object whose content is not
// necessarily stored (for example, from a tree index). The caller has
// authenticated it. While the content is present, the header it was
// verified with is kept and h is ignored.
func (db *DB) PutHeader(sum Sum, h FileHeader) error {
	err := db.update(func(txn *badger.Txn) error {
		old, err := getObject(txn, ObjectID{Sum: sum, Type: TypeFile})
		if err == nil && old.State == StatePresent {
			return nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return txn.Set(headerKey(sum), encodeHeader(&h))
	})
	if db.headers != nil {
		db.headers.forget(sum)
	}
	if err != nil {
		return fmt.Errorf("store header of %s.file: %w", sum, err)
	}
	return nil
}
