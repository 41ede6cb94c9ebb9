package objcache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/lazytree/lazytree/index"
)

// Problem is one object fsck found wrong.
type Problem struct {
	// Object is the "checksum.type" name.
	Object string `json:"object"`
	Cause  string `json:"cause"`
}

// FsckReport is what Fsck found. Objects it names have been dropped.
type FsckReport struct {
	// Checked objects and their bytes.
	Checked int64 `json:"checked"`
	Bytes   int64 `json:"bytes"`
	// Corrupt objects: size or checksum wrong.
	Corrupt []Problem `json:"corrupt"`
	// Missing: records whose file was gone.
	Missing []Problem `json:"missing"`
	// OrphansRemoved: files in objects/ without a record, deleted.
	OrphansRemoved int `json:"orphans_removed"`
	// Index lists violations of the index's own invariants (not
	// repaired: each is a bug).
	Index []string `json:"index"`
	// TempRemoved is how many unfinished writes were removed from tmp/
	// (by the start-up, with FsckSinceOpen).
	TempRemoved int `json:"temp_removed"`
}

// Clean reports whether fsck found nothing wrong.
func (r *FsckReport) Clean() bool {
	return len(r.Corrupt) == 0 && len(r.Missing) == 0 && len(r.Index) == 0
}

// FsckSinceOpen is Fsck together with what opening the store found and
// repaired (unfinished writes, records without a file, files without a
// record): everything wrong with the cache since it was last closed.
func (s *Store) FsckSinceOpen(ctx context.Context) (*FsckReport, error) {
	r, err := s.Fsck(ctx)
	if err != nil {
		return nil, err
	}
	start := s.Startup()
	for _, name := range start.RecordsDropped {
		r.Missing = append(r.Missing, Problem{Object: name, Cause: "file missing (found at start-up)"})
	}
	r.OrphansRemoved += start.OrphansRemoved
	r.TempRemoved += start.TempRemoved
	return r, nil
}

// Fsck rehashes every stored object, drops those that are missing or
// damaged (and marks open handles on them unreadable), deletes files
// that have no record, and checks the index's invariants. It works while
// the store is in use.
func (s *Store) Fsck(ctx context.Context) (*FsckReport, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	r := &FsckReport{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	err := s.db.ScanObjects(gctx, 0, nil, func(o index.Object) error {
		if o.State != index.StatePresent {
			return nil
		}
		g.Go(func() error {
			what, err := s.checkObject(gctx, o)
			if err != nil || what == gone {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			r.Checked++
			r.Bytes += o.Size
			switch {
			case what == "missing":
				r.Missing = append(r.Missing, Problem{o.ID.String(), "file missing"})
			case what != "":
				r.Corrupt = append(r.Corrupt, Problem{o.ID.String(), what})
			}
			return nil
		})
		return nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	sort.Slice(r.Corrupt, func(i, j int) bool { return r.Corrupt[i].Object < r.Corrupt[j].Object })
	sort.Slice(r.Missing, func(i, j int) bool { return r.Missing[i].Object < r.Missing[j].Object })
	if r.OrphansRemoved, err = s.removeOrphans(ctx); err != nil {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	if r.Index, err = s.db.Check(ctx); err != nil {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	return r, nil
}

// gone is what checkObject says of an object evicted or dropped since
// the scan saw it.
const gone = "gone"

// checkObject verifies one object and drops it if it is bad. It returns
// "" when the object is good, gone, "missing", or what is wrong with it.
func (s *Store) checkObject(ctx context.Context, o index.Object) (string, error) {
	unlock, err := s.lock(ctx, o.ID)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Evicted or dropped since the scan read it?
	cur, err := s.db.Object(o.ID)
	if errors.Is(err, index.ErrNotFound) || (err == nil && cur.State != index.StatePresent) {
		return gone, nil
	}
	if err != nil {
		return "", err
	}
	what, fid, err := s.inspect(ctx, cur)
	if err != nil {
		return "", err
	}
	if what != "" {
		s.drop(o.ID)
	} else {
		s.setVerified(o.ID, fid)
	}
	return what, nil
}

// inspect checks one object. For a good content object it also returns
// its file's identity as it was before hashing.
func (s *Store) inspect(ctx context.Context, o index.Object) (string, fileID, error) {
	if o.ID.Type != index.TypeFile {
		data, err := s.db.Data(o.ID)
		if errors.Is(err, index.ErrNotFound) {
			return "missing", fileID{}, nil
		}
		if err != nil {
			return "", fileID{}, err
		}
		if int64(len(data)) != o.Size {
			return fmt.Sprintf("size is %d, want %d", len(data), o.Size), fileID{}, nil
		}
		if o.ID.Type.ContentAddressed() && index.Sum(sha256.Sum256(data)) != o.ID.Sum {
			return "checksum mismatch", fileID{}, nil
		}
		return "", fileID{}, nil
	}
	f, err := os.Open(s.path(o.ID.Sum))
	if errors.Is(err, fs.ErrNotExist) {
		return "missing", fileID{}, nil
	}
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fileID{}, err
	}
	if fi.Size() != o.Size {
		return fmt.Sprintf("size is %d, want %d", fi.Size(), o.Size), fileID{}, nil
	}
	hdr, err := s.db.Header(o.ID.Sum)
	if errors.Is(err, index.ErrNotFound) {
		return "no cached header", fileID{}, nil
	}
	if err != nil {
		return "", fileID{}, err
	}
	h := sha256.New()
	h.Write(hdr.Raw)
	if _, err := copyHashing(ctx, io.Discard, h, io.NewSectionReader(f, 0, o.Size), o.Size); err != nil {
		return "", fileID{}, err
	}
	if got := index.Sum(h.Sum(nil)); got != o.ID.Sum {
		return "checksum mismatch: content hashes to " + got.String(), fileID{}, nil
	}
	return "", statID(fi), nil
}

// removeOrphans deletes files in objects/ that have no present record.
// A file is locked before it is judged, so a write that has renamed its
// file but not yet recorded it (it holds the lock) is left alone.
func (s *Store) removeOrphans(ctx context.Context) (int, error) {
	n := 0
	for b := range 256 {
		dir := filepath.Join(s.objDir, fmt.Sprintf("%02x", b))
		ents, err := os.ReadDir(dir)
		if err != nil {
			return n, err
		}
		for _, e := range ents {
			sum, ok := sumFromName(dir, e.Name())
			if !ok {
				continue
			}
			id := index.ObjectID{Sum: sum, Type: index.TypeFile}
			unlock, err := s.lock(ctx, id)
			if err != nil {
				return n, err
			}
			ok, err = s.present(id)
			if err == nil && !ok {
				if rerr := os.Remove(filepath.Join(dir, e.Name())); rerr == nil {
					n++
				} else if !errors.Is(rerr, fs.ErrNotExist) {
					err = rerr
				}
			}
			unlock()
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}
