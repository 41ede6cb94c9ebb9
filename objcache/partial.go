package objcache

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/lazytree/lazytree/index"
)

// Partial content
//
// A large content object whose chunks have authenticated digests (a
// tree index) can be served before it is whole. Its verified chunks are
// kept in a sparse file, partial/<64 hex>.part, at their offsets in the
// uncompressed content; holes are chunks not yet had. The store knows
// nothing of chunks or digests: the caller verifies every piece before
// WriteAt and every piece it reads back after a restart (ReadAt gives
// the file's bytes, a hole reads as zeros). Nothing else is recorded, so
// a crash or power cut can at worst leave a piece torn or missing, which
// its digest then refuses: the file is crash-safe without a flush.
//
// Partial files count in the quota (their allocated bytes) and are
// evicted before complete objects, oldest first, when they are not
// open. Complete checks the whole object against its checksum and
// renames the file into objects/ as a normal object (the same commit as
// PutFile), after which handles already open keep reading the same
// inode.

// partialDir is the directory of partial files under the home.
const partialDir = "partial"

// Partial is one partially stored content object, shared by everyone
// who opened it; Close each handle OpenPartial returned.
type Partial struct {
	s    *Store
	sum  index.Sum
	size int64
	path string
	f    *os.File
	// Fresh is true when the file was created by this OpenPartial (no
	// piece of it was stored before): nothing needs reading back.
	fresh bool

	mu       sync.Mutex // guards what follows; s.partMu guards refs
	counted  int64      // bytes counted in the quota
	finished bool       // promoted or removed
	promoted bool       // by Complete
	refs     int
}

func (s *Store) partialPath(sum index.Sum) string {
	return filepath.Join(s.home, partialDir, sum.String()+".part")
}

// OpenPartial opens (creating it if needed) the partial file of content
// object sum, whose content is size bytes. A complete object is not
// looked for: callers try Open first.
func (s *Store) OpenPartial(sum index.Sum, size int64) (*Partial, error) {
	if size <= 0 || size > s.max {
		return nil, fmt.Errorf("partial %s: %d bytes (quota %d): %w", sum, size, s.max, ErrTooLarge)
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	s.partMu.Lock()
	defer s.partMu.Unlock()
	// A finished one (promoted, or discarded after its checksum failed)
	// may still be held by old handles: it is never handed out again.
	if p := s.partials[sum]; p != nil && !p.isFinished() {
		if p.size != size {
			return nil, fmt.Errorf("partial %s: open as %d bytes, asked for %d", sum, p.size, size)
		}
		p.refs++
		return p, nil
	}
	path := s.partialPath(sum)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	fresh := err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("partial %s: %w", sum, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != size {
		// Not ours (or from a different declared size): start again. Its
		// blocks are no longer counted.
		s.used.Add(-allocated(fi))
		s.partUsed.Add(-allocated(fi))
		fresh = true
		err = f.Truncate(0)
	}
	if err == nil {
		err = f.Truncate(size)
	}
	if err == nil {
		fi, err = f.Stat()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("partial %s: %w", sum, err)
	}
	p := &Partial{s: s, sum: sum, size: size, path: path, f: f, fresh: fresh, counted: allocated(fi), refs: 1}
	if s.partials == nil {
		s.partials = map[index.Sum]*Partial{}
	}
	s.partials[sum] = p
	return p, nil
}

func (p *Partial) isFinished() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.finished
}

// allocated is the bytes a (sparse) file holds on disk.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return min(st.Blocks*512, fi.Size()+4096)
	}
	return fi.Size()
}

// Fresh reports whether the file was new when it was first opened in
// this session: then no piece is there that was not written through
// WriteAt since.
func (p *Partial) Fresh() bool { return p.fresh }

// Size is the content length.
func (p *Partial) Size() int64 { return p.size }

// ReadAt reads the file's bytes: verified pieces where they were
// written, zeros in holes. The caller serves only ranges it verified.
func (p *Partial) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, off) }

// WriteAt stores a verified piece at off, counting it in the quota
// first (which may evict other objects, never an open one). The quota
// counts what the file holds on disk (its allocated blocks), the same
// figure a recount and an eviction use: a piece written twice, or one
// that fills part of a block, costs what it adds to the file.
func (p *Partial) WriteAt(ctx context.Context, b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > p.size {
		return fmt.Errorf("partial %s: piece [%d, %d) outside %d bytes", p.sum, off, off+int64(len(b)), p.size)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return fmt.Errorf("partial %s: %w", p.sum, ErrClosed)
	}
	// A piece can add at most its length and the two partial blocks at
	// its ends.
	reserved := min(int64(len(b))+2*blockSize, p.size+blockSize)
	if err := p.s.reserve(ctx, reserved); err != nil {
		return fmt.Errorf("partial %s: %w", p.sum, err)
	}
	_, err := p.f.WriteAt(b, off)
	fi, serr := p.f.Stat()
	now := p.counted + int64(len(b))
	if serr == nil {
		now = allocated(fi)
	}
	p.account(now)
	p.s.release(reserved)
	if err != nil {
		return fmt.Errorf("partial %s: %w", p.sum, err)
	}
	return nil
}

// blockSize is the allocation unit allocated rounds to.
const blockSize = 4096

// account sets what the file counts in the quota; p.mu is held.
func (p *Partial) account(now int64) {
	d := now - p.counted
	p.s.used.Add(d)
	p.s.partUsed.Add(d)
	p.counted = now
}

// Complete checks the file against the object's checksum (SHA-256 of
// hdr.Raw and the content) and makes it a normal cache object, as
// PutFile does. A mismatch removes the file and returns a *CorruptError.
// Open handles keep reading the same bytes.
func (p *Partial) Complete(ctx context.Context, hdr index.FileHeader, origin string) error {
	s := p.s
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.promoted {
		return nil
	}
	if p.finished {
		return fmt.Errorf("partial %s: discarded: %w", p.sum, ErrClosed)
	}
	id := index.ObjectID{Sum: p.sum, Type: index.TypeFile}
	if uint64(p.size) != hdr.Size || len(hdr.Raw) == 0 {
		return fmt.Errorf("partial %s: header says %d bytes, the file has %d", p.sum, hdr.Size, p.size)
	}
	h := sha256.New()
	h.Write(hdr.Raw)
	if n, err := copyHashing(ctx, io.Discard, h, io.NewSectionReader(p.f, 0, p.size), p.size); err != nil || n != p.size {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("partial %s: read: %w", p.sum, err)
	}
	if got := index.Sum(h.Sum(nil)); got != p.sum {
		p.removeLocked()
		return &CorruptError{Object: id.String(), What: "checksum", Got: got.String(), Want: p.sum.String()}
	}
	// What the file holds now counts as the object's size.
	if extra := p.size - p.counted; extra > 0 {
		if err := s.reserve(ctx, extra); err != nil {
			return fmt.Errorf("partial %s: %w", p.sum, err)
		}
	} else {
		s.release(-extra)
	}
	s.partUsed.Add(-p.counted)
	p.counted = 0
	p.finished = true
	g, err := os.Open(p.path)
	if err != nil {
		os.Remove(p.path)
		s.release(p.size)
		return fmt.Errorf("partial %s: %w", p.sum, err)
	}
	// commit renames the file into objects/ or, failing, removes it:
	// either way it is no longer a partial file.
	err = s.commit(ctx, id, g, p.size, &hdr, nil, origin)
	p.promoted = err == nil
	return err
}

// removeLocked deletes the file and gives back its quota; p.mu is held.
func (p *Partial) removeLocked() {
	if p.finished {
		return
	}
	p.finished = true
	os.Remove(p.path)
	p.account(0)
}

// Discard deletes the partial file (a publisher's digests that disagree
// with the object's checksum, say). Open handles keep their descriptor.
func (p *Partial) Discard() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked()
}

// Close releases one handle; the last one closes the file, which stays
// on disk (and in the quota) for the next OpenPartial.
func (p *Partial) Close() error {
	s := p.s
	s.partMu.Lock()
	p.refs--
	last := p.refs == 0
	if last && s.partials[p.sum] == p {
		delete(s.partials, p.sum)
	}
	s.partMu.Unlock()
	if last {
		return p.f.Close()
	}
	return nil
}

// PartialBytes is what partial files count in the quota.
func (s *Store) PartialBytes() int64 { return s.partUsed.Load() }

// countPartials sums what the partial files hold on disk (at Open).
func (s *Store) countPartials() int64 {
	var n int64
	s.eachPartialFile(func(_ index.Sum, _ string, fi fs.FileInfo) { n += allocated(fi) })
	return n
}

func (s *Store) eachPartialFile(fn func(sum index.Sum, path string, fi fs.FileInfo)) {
	dir := filepath.Join(s.home, partialDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		hex, ok := strings.CutSuffix(e.Name(), ".part")
		if !ok {
			continue
		}
		sum, err := index.ParseSum(hex)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		fn(sum, filepath.Join(dir, e.Name()), fi)
	}
}

// evictPartialsLocked deletes partial files nobody has open, oldest
// first, until the cache holds at most target bytes; quotaMu is held.
func (s *Store) evictPartialsLocked(target int64) (r GCResult) {
	type cand struct {
		sum  index.Sum
		path string
		fi   fs.FileInfo
	}
	var cs []cand
	s.eachPartialFile(func(sum index.Sum, path string, fi fs.FileInfo) { cs = append(cs, cand{sum, path, fi}) })
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Compare(a.fi.ModTime().UnixNano(), b.fi.ModTime().UnixNano()) })
	for _, c := range cs {
		if s.used.Load() <= target {
			break
		}
		s.partMu.Lock()
		busy := s.partials[c.sum] != nil
		// Stat again: it may have been written and closed since the
		// listing, and it is given back at what it holds now.
		fi, err := os.Lstat(c.path)
		if !busy && err == nil && fi.Mode().IsRegular() && os.Remove(c.path) == nil {
			n := allocated(fi)
			s.used.Add(-n)
			s.partUsed.Add(-n)
			r.Evicted++
			r.Freed += n
		}
		s.partMu.Unlock()
	}
	return r
}
