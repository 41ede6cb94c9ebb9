package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// A pin is added in steps, because a runtime names tens of thousands of
// objects and a Badger transaction holds a few thousand writes:
//
//  1. a pin record is written in the pending state, under a new id;
//  2. members are added in chunks: per object a membership key and a pin
//     count increment in one transaction (the key makes a retried chunk
//     idempotent);
//  3. one transaction marks the pin complete, points its name at it and
//     marks the pin it replaces pending;
//  4. the replaced pin is removed, in chunks.
//
// Removal marks the pin pending first. Open removes every pending pin, so
// a crash at any step leaves either the old pin or the new one, with
// exact counts, and objects named by both stay pinned throughout.

// PinRef pins objs, which the caller found reachable from commit, as what
// (remote, ref) points at. A previous pin of the ref is replaced.
func (db *DB) PinRef(ctx context.Context, remote, ref string, commit Sum, objs []ObjectID) error {
	if err := checkName("remote", remote); err != nil {
		return fmt.Errorf("pin %s:%s: %w", remote, ref, err)
	}
	if ref == "" || len(ref) > 4096 {
		return fmt.Errorf("pin %s:%s: invalid ref name", remote, clip(ref))
	}
	if err := db.pin(ctx, Pin{Kind: PinRef, Remote: remote, Ref: ref, Commit: commit}, objs); err != nil {
		return fmt.Errorf("pin %s:%s: %w", remote, ref, err)
	}
	return nil
}

// PinCommit pins objs, which the caller found reachable from commit. A
// previous pin of the same commit is replaced.
func (db *DB) PinCommit(ctx context.Context, commit Sum, objs []ObjectID) error {
	if err := db.pin(ctx, Pin{Kind: PinCommit, Commit: commit}, objs); err != nil {
		return fmt.Errorf("pin commit %s: %w", commit, err)
	}
	return nil
}

// UnpinRef removes the pin of (remote, ref), or returns an error matching
// ErrNotFound.
func (db *DB) UnpinRef(remote, ref string) error {
	if checkName("remote", remote) != nil {
		return fmt.Errorf("unpin %s:%s: %w", clip(remote), clip(ref), ErrNotFound)
	}
	if err := db.unpin(pinNameKey(PinRef, remote, ref, Sum{})); err != nil {
		return fmt.Errorf("unpin %s:%s: %w", remote, ref, err)
	}
	return nil
}

// UnpinCommit removes the pin of commit, or returns an error matching
// ErrNotFound.
func (db *DB) UnpinCommit(commit Sum) error {
	if err := db.unpin(pinNameKey(PinCommit, "", "", commit)); err != nil {
		return fmt.Errorf("unpin commit %s: %w", commit, err)
	}
	return nil
}

func (db *DB) pin(ctx context.Context, p Pin, objs []ObjectID) error {
	for _, id := range objs {
		if !id.Type.Core() {
			return fmt.Errorf("object %s: invalid type", id)
		}
	}
	db.pinMu.Lock()
	defer db.pinMu.Unlock()

	var pid uint64
	rec := pinRecord{Pin: p, state: pinPending}
	rec.Created = db.now()
	err := db.update(func(txn *badger.Txn) error {
		seq, err := getU64(txn, metaKey(metaPinSeq))
		if err != nil {
			return err
		}
		pid = seq + 1
		if err := txn.Set(metaKey(metaPinSeq), binary.BigEndian.AppendUint64(nil, pid)); err != nil {
			return err
		}
		return txn.Set(pinKey(pid), encodePin(&rec))
	})
	if err != nil {
		return err
	}
	var count int64
	fail := func(err error) error {
		// Roll back now rather than at the next Open; that needs no ctx.
		if rerr := db.removePin(pid); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	for start := 0; start < len(objs); start += chunkSize / 2 {
		if err := stopped(ctx); err != nil {
			return fail(err)
		}
		n, err := db.addMembers(pid, objs[start:min(start+chunkSize/2, len(objs))])
		if err != nil {
			return fail(err)
		}
		count += n
	}
	name := pinNameKey(p.Kind, p.Remote, p.Ref, p.Commit)
	var old uint64
	err = db.update(func(txn *badger.Txn) error {
		old = 0
		rec.state, rec.Objects = pinComplete, count
		if err := txn.Set(pinKey(pid), encodePin(&rec)); err != nil {
			return err
		}
		prev, err := getU64(txn, name)
		if err != nil {
			return err
		}
		if prev != 0 {
			if err := setPinState(txn, prev, pinPending); err != nil {
				return err
			}
			old = prev
		}
		return txn.Set(name, binary.BigEndian.AppendUint64(nil, pid))
	})
	if err != nil {
		return fail(err)
	}
	if old != 0 {
		return db.removePin(old)
	}
	return nil
}

// addMembers adds pid's membership to objs in one transaction and returns
// how many were new.
func (db *DB) addMembers(pid uint64, objs []ObjectID) (int64, error) {
	var n int64
	err := db.update(func(txn *badger.Txn) error {
		n = 0
		for _, id := range objs {
			mk := memberKey(pid, id)
			if _, err := txn.Get(mk); err == nil {
				continue
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			if err := txn.Set(mk, nil); err != nil {
				return err
			}
			old, err := getObject(txn, id)
			switch {
			case errors.Is(err, ErrNotFound):
				rec := Object{ID: id, State: StateAbsent, Pins: 1}
				if err := putObject(txn, nil, &rec); err != nil {
					return err
				}
			case err != nil:
				return err
			default:
				rec := old
				rec.Pins++
				if err := putObject(txn, &old, &rec); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	return n, err
}

func (db *DB) unpin(name []byte) error {
	db.pinMu.Lock()
	defer db.pinMu.Unlock()
	var pid uint64
	err := db.update(func(txn *badger.Txn) error {
		var err error
		pid, err = getU64(txn, name)
		if err != nil {
			return err
		}
		if pid == 0 {
			return ErrNotFound
		}
		if err := setPinState(txn, pid, pinPending); err != nil {
			return err
		}
		return txn.Delete(name)
	})
	if err != nil {
		return err
	}
	return db.removePin(pid)
}

// removePin takes a pin's members away in chunks, then the pin itself.
// It is idempotent, so a crash part-way is finished by the next Open.
func (db *DB) removePin(pid uint64) error {
	if err := db.update(func(txn *badger.Txn) error { return setPinState(txn, pid, pinPending) }); err != nil {
		return err
	}
	prefix := memberPrefix(pid)
	for {
		var keys [][]byte
		err := db.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < chunkSize/2; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		err = db.update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if err := txn.Delete(k); err != nil {
					return err
				}
				id, ok := idFromMemberKey(k)
				if !ok {
					continue
				}
				old, err := getObject(txn, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				rec := old
				if rec.Pins > 0 {
					rec.Pins--
				}
				if rec.Pins == 0 && rec.State == StateAbsent {
					if err := txn.Delete(objectKey(id)); err != nil {
						return err
					}
					continue
				}
				if err := putObject(txn, &old, &rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return db.update(func(txn *badger.Txn) error { return txn.Delete(pinKey(pid)) })
}

// recoverPins removes the pins a crash left pending.
func (db *DB) recoverPins() error {
	var pending []uint64
	err := db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pPin}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 9 {
				continue
			}
			pid := binary.BigEndian.Uint64(k[1:])
			err := item.Value(func(v []byte) error {
				p, err := decodePin(v)
				if err != nil || p.state != pinComplete {
					pending = append(pending, pid)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover pins: %w", err)
	}
	for _, pid := range pending {
		db.log.Info("index: rolling back interrupted pin", "pin", pid)
		if err := db.removePin(pid); err != nil {
			return fmt.Errorf("recover pin %d: %w", pid, err)
		}
	}
	return nil
}

func setPinState(txn *badger.Txn, pid uint64, state byte) error {
	it, err := txn.Get(pinKey(pid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec pinRecord
	if err := it.Value(func(v []byte) error {
		rec, err = decodePin(v)
		return err
	}); err != nil {
		// An undecodable record is removed like a pending one.
		return txn.Set(pinKey(pid), []byte{recVersion, 0, pinPending})
	}
	if rec.state == state {
		return nil
	}
	rec.state = state
	return txn.Set(pinKey(pid), encodePin(&rec))
}

// getU64 reads an 8-byte big-endian value; a missing key reads as 0.
func getU64(txn *badger.Txn, key []byte) (uint64, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = it.Value(func(b []byte) error {
		if len(b) != 8 {
			return ErrBadRecord
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// Pins lists the complete pins with how much of each is stored.
func (db *DB) Pins(ctx context.Context) ([]Pin, error) {
	type entry struct {
		pid uint64
		pin Pin
	}
	var list []entry
	err := db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pPin}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if len(item.Key()) != 9 {
				continue
			}
			pid := binary.BigEndian.Uint64(item.Key()[1:])
			err := item.Value(func(v []byte) error {
				p, err := decodePin(v)
				if err != nil {
					return err
				}
				if p.state == pinComplete {
					list = append(list, entry{pid, p.Pin})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	out := make([]Pin, 0, len(list))
	for _, e := range list {
		p := e.pin
		if err := db.pinUsage(ctx, e.pid, &p); err != nil {
			return nil, fmt.Errorf("list pins: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (db *DB) pinUsage(ctx context.Context, pid uint64, p *Pin) error {
	return db.view(func(txn *badger.Txn) error {
		prefix := memberPrefix(pid)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := stopped(ctx); err != nil {
				return err
			}
			id, ok := idFromMemberKey(it.Item().Key())
			if !ok || !bytes.HasPrefix(it.Item().Key(), prefix) {
				continue
			}
			o, err := getObject(txn, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if o.State == StatePresent {
				p.Present++
				p.PresentBytes += o.Size
			}
		}
		return nil
	})
}
