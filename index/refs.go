package index

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// SetRef records commit as the last verified commit of (remote, ref).
func (db *DB) SetRef(remote, ref string, r Ref) error {
	if err := checkName("remote", remote); err != nil {
		return fmt.Errorf("set ref %s:%s: %w", remote, clip(ref), err)
	}
	if ref == "" {
		return fmt.Errorf("set ref %s:: empty ref name", remote)
	}
	err := db.update(func(txn *badger.Txn) error { return txn.Set(refKey(remote, ref), encodeRef(r)) })
	if err != nil {
		return fmt.Errorf("set ref %s:%s: %w", remote, ref, err)
	}
	return nil
}

// Ref returns the last verified commit of (remote, ref), or an error
// matching ErrNotFound.
func (db *DB) Ref(remote, ref string) (Ref, error) {
	if checkName("remote", remote) != nil {
		return Ref{}, fmt.Errorf("ref %s:%s: %w", clip(remote), clip(ref), ErrNotFound)
	}
	var r Ref
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(refKey(remote, ref))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			r, err = decodeRef(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return Ref{}, fmt.Errorf("ref %s:%s: %w", remote, ref, err)
	}
	return r, nil
}

// Refs returns every recorded ref of remote.
func (db *DB) Refs(remote string) (map[string]Ref, error) {
	out := make(map[string]Ref)
	if err := checkName("remote", remote); err != nil {
		return nil, fmt.Errorf("refs of %s: %w", clip(remote), err)
	}
	prefix := refKey(remote, "")
	err := db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[len(prefix):])
			err := item.Value(func(v []byte) error {
				r, err := decodeRef(v)
				if err != nil {
					return err
				}
				out[name] = r
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("refs of %s: %w", remote, err)
	}
	return out, nil
}

// DeleteRef forgets (remote, ref); it is not an error if it was unknown.
func (db *DB) DeleteRef(remote, ref string) error {
	if checkName("remote", remote) != nil {
		return nil
	}
	if err := db.update(func(txn *badger.Txn) error { return txn.Delete(refKey(remote, ref)) }); err != nil {
		return fmt.Errorf("delete ref %s:%s: %w", remote, ref, err)
	}
	return nil
}

// SetSummary records the last verified summary of remote.
func (db *DB) SetSummary(remote string, s Summary) error {
	if err := checkName("remote", remote); err != nil {
		return fmt.Errorf("set summary of %s: %w", remote, err)
	}
	if err := db.update(func(txn *badger.Txn) error { return txn.Set(summaryKey(remote), encodeSummary(&s)) }); err != nil {
		return fmt.Errorf("set summary of %s: %w", remote, err)
	}
	return nil
}

// Summary returns the last verified summary of remote, or an error
// matching ErrNotFound.
func (db *DB) Summary(remote string) (Summary, error) {
	var s Summary
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(summaryKey(remote))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			s, err = decodeSummary(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return Summary{}, fmt.Errorf("summary of %s: %w", remote, err)
	}
	return s, nil
}

// SetProfile records the access profile of commit: the files a run
// opened, in order (paths or checksums, as the caller chooses), replacing
// any earlier one.
func (db *DB) SetProfile(commit Sum, entries []string) error {
	v := encodeProfile(entries, db.now())
	if err := db.update(func(txn *badger.Txn) error { return txn.Set(profileKey(commit), v) }); err != nil {
		return fmt.Errorf("set profile of %s: %w", commit, err)
	}
	return nil
}

// Profile returns the access profile of commit, or an error matching
// ErrNotFound.
func (db *DB) Profile(commit Sum) ([]string, error) {
	var out []string
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(profileKey(commit))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			out, _, err = decodeProfile(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("profile of %s: %w", commit, err)
	}
	return out, nil
}

// DeleteProfile forgets the access profile of commit.
func (db *DB) DeleteProfile(commit Sum) error {
	if err := db.update(func(txn *badger.Txn) error { return txn.Delete(profileKey(commit)) }); err != nil {
		return fmt.Errorf("delete profile of %s: %w", commit, err)
	}
	return nil
}
