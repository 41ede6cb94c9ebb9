package objcache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"

	"github.com/lazytree/lazytree/index"
)

// openObj is one open content file, shared by every Handle on it. When
// its last handle closes it may stay open, idle, for the next Open (see
// Options.IdleFiles); an idle object is not "open" to eviction or
// Remove, which close its file first.
type openObj struct {
	id      index.ObjectID
	f       *os.File
	size    int64
	refs    int           // guarded by Store.mu
	fid     fileID        // guarded by Store.mu: f's identity when last verified
	idle    *list.Element // guarded by Store.mu: in Store.idle while refs == 0
	corrupt atomic.Bool
}

// Handle is an open content object. Eviction skips an object while any
// handle on it is open. Handles on one object share one file descriptor:
// use ReadAt (or pass the fd to the kernel), never Read, Seek or Close on
// File. A Handle is safe for concurrent use.
type Handle struct {
	s      *Store
	o      *openObj
	closed atomic.Bool
}

var _ io.ReaderAt = (*Handle)(nil)

// File returns the shared file, for FUSE passthrough or pread. It is
// valid until Close.
func (h *Handle) File() *os.File { return h.o.f }

// Fd returns the shared file descriptor (see File).
func (h *Handle) Fd() uintptr { return h.o.f.Fd() }

// Size returns the content's length.
func (h *Handle) Size() int64 { return h.o.size }

// Checksum returns the object's checksum.
func (h *Handle) Checksum() index.Sum { return h.o.id.Sum }

// ReadAt reads the content. After fsck found the object damaged (and
// dropped it), reads fail with a *CorruptError.
func (h *Handle) ReadAt(p []byte, off int64) (int, error) {
	if h.closed.Load() {
		return 0, ErrClosed
	}
	if h.o.corrupt.Load() {
		return 0, &CorruptError{Object: h.o.id.String(), What: "checksum", Got: "a damaged file", Want: h.o.id.Sum.String()}
	}
	return h.o.f.ReadAt(p, off)
}

// Close releases the handle. The last one keeps the file open, idle, for
// the next Open of the object (up to Options.IdleFiles of them, least
// recently used closed first), or closes it. A second Close returns
// ErrClosed.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return ErrClosed
	}
	s, o := h.s, h.o
	s.mu.Lock()
	o.refs--
	last := o.refs == 0
	var toClose []*os.File
	if last {
		if s.open[o.id] == o && s.idleMax > 0 && !o.corrupt.Load() {
			o.idle = s.idle.PushFront(o)
			for s.idle.Len() > s.idleMax {
				toClose = append(toClose, s.unidleLocked(s.idle.Back().Value.(*openObj)))
			}
		} else {
			if s.open[o.id] == o {
				delete(s.open, o.id)
			}
			toClose = append(toClose, o.f)
		}
	}
	s.mu.Unlock()
	if !last {
		return nil
	}
	// Used until now: an object held open for hours is not the least
	// recently used the moment it closes.
	s.db.Touch(o.id)
	return closeFiles(toClose)
}

// unidleLocked takes an idle object out of the idle list and the open
// map and returns its file for the caller to close once mu is released.
func (s *Store) unidleLocked(o *openObj) *os.File {
	s.idle.Remove(o.idle)
	o.idle = nil
	if s.open[o.id] == o {
		delete(s.open, o.id)
	}
	return o.f
}

// closeIdleLocked closes (through the returned files) id's idle file, if
// it has one, so that id counts as not open.
func (s *Store) closeIdleLocked(id index.ObjectID) []*os.File {
	if o := s.open[id]; o != nil && o.refs == 0 {
		return []*os.File{s.unidleLocked(o)}
	}
	return nil
}

func closeFiles(fs []*os.File) error {
	var errs []error
	for _, f := range fs {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Open opens a stored content object. A file is rehashed before it is
// served unless it was verified in this session (written, opened or
// checked by fsck) and is still the file that was verified: every open
// fstats it and compares device, inode, size, ctime and mtime with what
// they were then, so a file written in place or replaced since is
// rehashed (and one whose bytes changed is dropped), even while other
// handles have it open. A damaged object is dropped and reported as a
// *CorruptError, never served; handles already open on it refuse to
// read. An object that is not stored returns an error matching
// ErrNotPresent.
//
// Bytes changed under a handle after it was opened are not seen by it
// (FUSE passthrough reads them without asking us); the next open is.
func (s *Store) Open(ctx context.Context, sum index.Sum) (*Handle, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	id := index.ObjectID{Sum: sum, Type: index.TypeFile}
	for {
		s.mu.Lock()
		if o := s.open[id]; o != nil {
			if o.refs == 0 {
				s.idle.Remove(o.idle)
				o.idle = nil
			}
			o.refs++
			fid := o.fid
			s.mu.Unlock()
			h := &Handle{s: s, o: o}
			if err := s.recheck(ctx, o, fid); err != nil {
				h.Close()
				return nil, err
			}
			s.db.Touch(id)
			s.hits.Add(1)
			return h, nil
		}
		if ch := s.busy[id]; ch != nil {
			s.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		s.busy[id] = ch
		known, verified := s.verified[id]
		s.mu.Unlock()

		var o *openObj
		var err error
		if verified {
			o, err = s.openFile(ctx, id, &known)
		} else {
			o, err = s.openFile(ctx, id, nil)
		}
		s.mu.Lock()
		if err == nil {
			s.open[id] = o
			s.verified[id] = o.fid
		}
		delete(s.busy, id)
		s.mu.Unlock()
		close(ch)
		if err != nil {
			if errors.Is(err, ErrNotPresent) {
				s.misses.Add(1)
			}
			return nil, err
		}
		s.db.Touch(id)
		s.hits.Add(1)
		return &Handle{s: s, o: o}, nil
	}
}

// openFile opens and checks id's file; the caller holds its busy entry.
// known is the file's identity when it was verified in this session, or
// nil: unless the file still has it, the file is rehashed.
func (s *Store) openFile(ctx context.Context, id index.ObjectID, known *fileID) (*openObj, error) {
	if known != nil {
		// Verified in this session, so recorded as present (evictions
		// and drops forget the verification): if the file is still the
		// one verified, the record has nothing more to say.
		if f, err := os.Open(s.path(id.Sum)); err == nil {
			if fi, err := f.Stat(); err == nil && statID(fi) == *known {
				return &openObj{id: id, f: f, size: known.size, refs: 1, fid: *known}, nil
			}
			f.Close()
		}
	}
	rec, err := s.db.Object(id)
	if errors.Is(err, index.ErrNotFound) || (err == nil && rec.State != index.StatePresent) {
		return nil, fmt.Errorf("open %s: %w", id, ErrNotPresent)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", id, err)
	}
	f, err := os.Open(s.path(id.Sum))
	if errors.Is(err, fs.ErrNotExist) {
		s.drop(id)
		return nil, fmt.Errorf("open %s: file missing, record dropped: %w", id, ErrNotPresent)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", id, err)
	}
	if fi.Size() != rec.Size {
		f.Close()
		s.drop(id)
		return nil, &CorruptError{Object: id.String(), What: "size", Got: itoa(fi.Size()), Want: itoa(rec.Size)}
	}
	// Taken before hashing: a change during the hash changes the ctime
	// again, so the next open rehashes.
	fid := statID(fi)
	if known == nil || *known != fid {
		s.rehashes.Add(1)
		if err := s.verifyFile(ctx, id, f, rec.Size); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &openObj{id: id, f: f, size: rec.Size, refs: 1, fid: fid}, nil
}

// recheck makes sure that o's shared file, on which the caller holds a
// reference, is still the file verified as fid, and rehashes it if not
// (dropping the object if its bytes changed).
func (s *Store) recheck(ctx context.Context, o *openObj, fid fileID) error {
	fi, err := o.f.Stat()
	if err != nil {
		return fmt.Errorf("open %s: %w", o.id, err)
	}
	if statID(fi) == fid {
		return nil
	}
	unlock, err := s.lock(ctx, o.id)
	if err != nil {
		return err
	}
	defer unlock()
	if o.corrupt.Load() {
		return &CorruptError{Object: o.id.String(), What: "checksum", Got: "a damaged file", Want: o.id.Sum.String()}
	}
	// Another opener may have rehashed it meanwhile.
	if fi, err = o.f.Stat(); err != nil {
		return fmt.Errorf("open %s: %w", o.id, err)
	}
	now := statID(fi)
	s.mu.Lock()
	same := now == o.fid
	s.mu.Unlock()
	if same {
		return nil
	}
	if now.size != o.size {
		s.drop(o.id)
		return &CorruptError{Object: o.id.String(), What: "size", Got: itoa(now.size), Want: itoa(o.size)}
	}
	s.rehashes.Add(1)
	if err := s.verifyFile(ctx, o.id, o.f, o.size); err != nil {
		return err
	}
	s.mu.Lock()
	o.fid = now
	if s.open[o.id] == o {
		s.verified[o.id] = now
	}
	s.mu.Unlock()
	return nil
}

// verifyFile hashes header || file and drops the object on a mismatch.
// The caller holds id's busy entry.
func (s *Store) verifyFile(ctx context.Context, id index.ObjectID, f *os.File, size int64) error {
	hdr, err := s.db.Header(id.Sum)
	if errors.Is(err, index.ErrNotFound) {
		s.drop(id)
		return &CorruptError{Object: id.String(), What: "header", Got: "none", Want: "a cached header"}
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", id, err)
	}
	h := sha256.New()
	h.Write(hdr.Raw)
	n, err := copyHashing(ctx, io.Discard, h, io.NewSectionReader(f, 0, size), size)
	if err != nil {
		return fmt.Errorf("open %s: verify: %w", id, err)
	}
	if got := index.Sum(h.Sum(nil)); got != id.Sum || n != size {
		s.drop(id)
		return &CorruptError{Object: id.String(), What: "checksum", Got: got.String(), Want: id.Sum.String()}
	}
	return nil
}

// ReadMeta returns a stored metadata object's bytes. Content-addressed
// types are checked against their checksum on the first read of each
// object after the store was opened; a damaged object is dropped and
// reported as a *CorruptError.
func (s *Store) ReadMeta(ctx context.Context, typ index.ObjType, sum index.Sum) ([]byte, error) {
	id := index.ObjectID{Sum: sum, Type: typ}
	if !typ.Core() || typ == index.TypeFile {
		return nil, fmt.Errorf("read %s: not a metadata type", id)
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	data, err := s.db.Data(id)
	if errors.Is(err, index.ErrNotFound) {
		s.misses.Add(1)
		return nil, fmt.Errorf("read %s: %w", id, ErrNotPresent)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", id, err)
	}
	if typ.ContentAddressed() && !s.isVerified(id) {
		if got := index.Sum(sha256.Sum256(data)); got != sum {
			unlock, err := s.lock(ctx, id)
			if err != nil {
				return nil, err
			}
			s.drop(id)
			unlock()
			return nil, &CorruptError{Object: id.String(), What: "checksum", Got: got.String(), Want: sum.String()}
		}
		s.setVerified(id, fileID{})
	}
	s.db.Touch(id)
	s.hits.Add(1)
	return data, nil
}
