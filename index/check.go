package index

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Check verifies the index's own invariants and returns one line per
// violation (none means consistent):
//   - every record decodes; absent records are pinned;
//   - a present, unpinned object has exactly one LRU key, at its access
//     time, with its size; no LRU key lacks such a record;
//   - a present metadata object has its bytes, and no bytes lack a
//     present record; a present content object has a header;
//   - every record's pin count is the number of pins naming it.
//
// It reads the whole index into memory and is meant for fsck and tests,
// not for the hot path. Check does not repair anything: a violation is a
// bug to report.
func (db *DB) Check(ctx context.Context) ([]string, error) {
	var problems []string
	report := func(format string, a ...any) {
		if len(problems) < 1000 {
			problems = append(problems, fmt.Sprintf(format, a...))
		}
	}
	objs := make(map[ObjectID]Object)
	lru := make(map[ObjectID][]byte)
	data := make(map[ObjectID]bool)
	headers := make(map[Sum]bool)
	members := make(map[ObjectID]uint32)

	err := db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := stopped(ctx); err != nil {
				return err
			}
			item := it.Item()
			k := item.KeyCopy(nil)
			switch k[0] {
			case pObject:
				id, ok := idFromObjectKey(k)
				if !ok {
					report("bad object key %x", k)
					continue
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				o, err := decodeObject(id, v)
				if err != nil {
					report("%v", err)
					continue
				}
				objs[id] = o
			case pLRU:
				id, ok := idFromLRUKey(k)
				if !ok {
					report("bad lru key %x", k)
					continue
				}
				if _, dup := lru[id]; dup {
					report("%s: two lru keys", id)
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				lru[id] = append(k[1:9:9], v...)
			case pData:
				id, ok := idFromObjectKey(append([]byte{pObject}, k[1:]...))
				if !ok {
					report("bad data key %x", k)
					continue
				}
				data[id] = true
			case pHeader:
				if len(k) == 33 {
					var s Sum
					copy(s[:], k[1:])
					headers[s] = true
				}
			case pPinMember:
				id, ok := idFromMemberKey(k)
				if !ok {
					report("bad pin member key %x", k)
					continue
				}
				members[id]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check index: %w", err)
	}
	for id, o := range objs {
		wantLRU := o.State == StatePresent && o.Pins == 0
		got, has := lru[id]
		switch {
		case wantLRU && !has:
			report("%s: present and unpinned but not in the lru index", id)
		case !wantLRU && has:
			report("%s: in the lru index but %s with %d pins", id, o.State, o.Pins)
		case has:
			at := int64(binary.BigEndian.Uint64(got[:8]))
			size, n := binary.Uvarint(got[8:])
			if at != max(unixNano(o.Access), 0) || n <= 0 || int64(size) != o.Size {
				report("%s: lru key disagrees with the record", id)
			}
		}
		delete(lru, id)
		if o.State == StateAbsent && o.Pins == 0 {
			report("%s: absent and unpinned", id)
		}
		if id.Type != TypeFile && data[id] != (o.State == StatePresent) {
			report("%s: %s but stored bytes: %v", id, o.State, data[id])
		}
		delete(data, id)
		if id.Type == TypeFile && o.State == StatePresent && !headers[id.Sum] {
			report("%s: present without a header", id)
		}
		if members[id] != o.Pins {
			report("%s: pin count %d, named by %d pins", id, o.Pins, members[id])
		}
		delete(members, id)
	}
	for id := range lru {
		report("%s: lru key without a record", id)
	}
	for id := range data {
		report("%s: stored bytes without a present record", id)
	}
	for id, n := range members {
		report("%s: named by %d pins but has no record", id, n)
	}
	return problems, nil
}
