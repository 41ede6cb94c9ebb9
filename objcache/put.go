package objcache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/index"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// PutContent stores a content object. hdr.Raw is OSTree's content-stream
// header prefix (big-endian u32 length, four zero bytes, the GVariant
// file header) and content the uncompressed file content: the object is
// accepted only if SHA-256(hdr.Raw || content) is sum. The other
// fields of hdr are what the caller parsed from hdr.Raw and are cached
// for stat; hdr.Size must be the size hdr.Raw declares, which the
// content must match exactly. origin names the remote it came from.
//
// The declared size is hostile until the checksum says otherwise, so it
// bounds everything before a byte is read: hdr.Size is reserved against
// the quota first (evicting as needed; more than Options.MaxBytes is
// refused at once with an error matching ErrTooLarge), at most
// hdr.Size+1 bytes are read from content and at most hdr.Size are
// written to tmp/. Content longer or shorter than declared is a
// *CorruptError with What "size".
//
// The content goes to tmp/ and is hashed as it is written; only a
// verified file is renamed into objects/, and it is recorded once it is
// durable. A checksum mismatch returns a *CorruptError; any failure
// (ENOSPC included) leaves nothing behind and gives the reservation
// back. Storing an object that is already present succeeds without
// reading content.
func (s *Store) PutContent(ctx context.Context, sum index.Sum, hdr index.FileHeader, content io.Reader, origin string) error {
	id := index.ObjectID{Sum: sum, Type: index.TypeFile}
	if len(hdr.Raw) == 0 {
		return fmt.Errorf("store %s: empty content-stream header", id)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if ok, err := s.present(id); err != nil || ok {
		return err
	}
	if hdr.Size > uint64(s.max) {
		return fmt.Errorf("store %s: declared size %d, quota %d: %w", id, hdr.Size, s.max, ErrTooLarge)
	}
	size := int64(hdr.Size)
	if err := s.reserve(ctx, size); err != nil {
		return fmt.Errorf("store %s: %w", id, err)
	}
	f, err := os.CreateTemp(s.tmpDir, sum.String()[:16]+"-*")
	if err != nil {
		s.release(size)
		return fmt.Errorf("store %s: %w", id, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		s.release(size)
		return err
	}
	var w io.Writer = f
	if s.wrapTempWriter != nil {
		w = s.wrapTempWriter(f)
	}
	h := sha256.New()
	h.Write(hdr.Raw)
	n, err := copyHashing(ctx, w, h, content, size)
	if errors.Is(err, errTooLong) {
		return fail(&CorruptError{Object: id.String(), What: "size", Got: "more than " + itoa(size), Want: itoa(size)})
	}
	if err != nil {
		return fail(fmt.Errorf("store %s: write: %w", id, err))
	}
	if n != size {
		return fail(&CorruptError{Object: id.String(), What: "size", Got: itoa(n), Want: itoa(size)})
	}
	if got := index.Sum(h.Sum(nil)); got != sum {
		return fail(&CorruptError{Object: id.String(), What: "checksum", Got: got.String(), Want: sum.String()})
	}
	return s.commit(ctx, id, f, size, &hdr, nil, origin)
}

// CreateTemp returns a new empty file in tmp/, on the same file system as
// objects/, for a caller that produces content itself (applying a static
// delta, say) and hands it over with PutFile instead of copying it
// through PutContent. Open removes files left there.
func (s *Store) CreateTemp() (*os.File, error) {
	f, err := os.CreateTemp(s.tmpDir, "put-*")
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	return f, nil
}

// PutFile stores the content written to f, a file from CreateTemp, as a
// content object, like PutContent: it hashes hdr.Raw || the file (the
// store never records what it has not verified), then renames the file
// into place rather than copying it. PutFile takes f over: it is closed,
// and removed unless it became the object.
func (s *Store) PutFile(ctx context.Context, sum index.Sum, hdr index.FileHeader, f *os.File, origin string) error {
	id := index.ObjectID{Sum: sum, Type: index.TypeFile}
	if err := s.begin(); err != nil {
		return s.discardTemp(f, err)
	}
	defer s.ops.Done()
	size, err := s.acceptTemp(ctx, id, hdr, f)
	if err != nil || size < 0 {
		return err
	}
	return s.commit(ctx, id, f, size, &hdr, nil, origin)
}

// discardTemp closes f and removes it if it is a file of tmp/, and
// returns err.
func (s *Store) discardTemp(f *os.File, err error) error {
	f.Close()
	if filepath.Dir(f.Name()) == s.tmpDir {
		os.Remove(f.Name())
	}
	return err
}

// acceptTemp is what PutFile and Batch.PutFile check of a content
// object's temp file f, inside an operation (begin): that it is a file
// from CreateTemp, that the object is not present, and its size and
// hash (checkTemp); then it reserves the size, which it returns. The
// bytes are on disk already: reserving after the check keeps a bad
// file from evicting anything. On an error, or when the object is
// present (size -1, nil error), f is discarded.
func (s *Store) acceptTemp(ctx context.Context, id index.ObjectID, hdr index.FileHeader, f *os.File) (int64, error) {
	if filepath.Dir(f.Name()) != s.tmpDir {
		f.Close()
		return 0, fmt.Errorf("store %s: %s is not a file from CreateTemp", id, f.Name())
	}
	if len(hdr.Raw) == 0 {
		return 0, s.discardTemp(f, fmt.Errorf("store %s: empty content-stream header", id))
	}
	if ok, err := s.present(id); err != nil || ok {
		return -1, s.discardTemp(f, err)
	}
	size, err := s.checkTemp(ctx, id, hdr, f)
	if err != nil {
		return 0, s.discardTemp(f, err)
	}
	if err := s.reserve(ctx, size); err != nil {
		return 0, s.discardTemp(f, fmt.Errorf("store %s: %w", id, err))
	}
	return size, nil
}

// checkTemp hashes hdr.Raw || f, a content object's temp file, against
// id and checks its size against hdr, and returns the size.
func (s *Store) checkTemp(ctx context.Context, id index.ObjectID, hdr index.FileHeader, f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("store %s: %w", id, err)
	}
	size := fi.Size()
	if uint64(size) != hdr.Size {
		return 0, &CorruptError{Object: id.String(), What: "size", Got: itoa(size), Want: strconv.FormatUint(hdr.Size, 10)}
	}
	h := sha256.New()
	h.Write(hdr.Raw)
	if n, err := copyHashing(ctx, io.Discard, h, io.NewSectionReader(f, 0, size), size); err != nil || n != size {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("store %s: read: %w", id, err)
	}
	if got := index.Sum(h.Sum(nil)); got != id.Sum {
		return 0, &CorruptError{Object: id.String(), What: "checksum", Got: got.String(), Want: id.Sum.String()}
	}
	return size, nil
}

// PutMeta stores a metadata object (dirtree, dirmeta, commit, commitmeta,
// commit-tombstone). The bytes of the content-addressed types must hash
// to sum; commitmeta and tombstones are keyed by their commit's
// checksum and are not hashed (the caller has verified what it can, e.g.
// signatures). Metadata lives in the index, not in files.
func (s *Store) PutMeta(ctx context.Context, typ index.ObjType, sum index.Sum, data []byte, origin string) error {
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
	if data == nil {
		data = []byte{}
	}
	if err := s.reserve(ctx, int64(len(data))); err != nil {
		return fmt.Errorf("store %s: %w", id, err)
	}
	return s.commit(ctx, id, nil, int64(len(data)), nil, data, origin)
}

// commit records the object, whose size bytes the caller has reserved:
// the reservation becomes the object's if it is added and is given back
// otherwise (present already, or an error). For a content object, f is
// its verified temp file, still open: it is renamed into objects/
// (where, without a record, nothing serves it and start-up or fsck
// deletes it), then the group flush makes its bytes and its directory
// entry durable, and only then is it recorded. So a record never names a
// file that a power cut could take away, and one flush covers both.
func (s *Store) commit(ctx context.Context, id index.ObjectID, f *os.File, size int64, hdr *index.FileHeader, data []byte, origin string) error {
	if f != nil {
		defer f.Close()
	}
	unlock, err := s.lock(ctx, id)
	if err != nil {
		if f != nil {
			os.Remove(f.Name())
		}
		s.release(size)
		return err
	}
	// Every change to the object's file happens before unlock: once it
	// is unlocked, another writer may rename its own copy into place.
	defer unlock()
	added, err := s.commitLocked(ctx, id, f, size, hdr, data, origin)
	if !added {
		s.release(size)
	}
	return err
}

// commitLocked is commit's part under id's busy entry. It reports whether
// the object was added (false: it was present already, or an error).
func (s *Store) commitLocked(ctx context.Context, id index.ObjectID, f *os.File, size int64, hdr *index.FileHeader, data []byte, origin string) (bool, error) {
	if ok, err := s.present(id); err != nil || ok {
		if f != nil {
			os.Remove(f.Name())
		}
		return false, err
	}
	var final string
	if f != nil {
		final = s.path(id.Sum)
		if err := os.Rename(f.Name(), final); err != nil {
			os.Remove(f.Name())
			return false, fmt.Errorf("store %s: %w", id, err)
		}
		if err := s.durable(ctx, f, filepath.Dir(final)); err != nil {
			os.Remove(final)
			return false, fmt.Errorf("store %s: sync: %w", id, err)
		}
	}
	added, err := s.db.AddObject(index.Object{ID: id, Size: size, Origin: origin}, hdr, data)
	if err != nil {
		if final != "" {
			os.Remove(final)
		}
		return false, fmt.Errorf("store %s: %w", id, err)
	}
	if added {
		s.count.Add(1)
		if f == nil {
			s.setVerified(id, fileID{})
		} else if fi, err := f.Stat(); err == nil {
			// After the rename, which changes the ctime. Without a
			// stat, the first open rehashes.
			s.setVerified(id, statID(fi))
		}
	}
	return added, nil
}

// errTooLong: copyHashing's reader had more than its limit.
var errTooLong = errors.New("longer than declared")

// copyHashing copies r to w and into h, checking ctx between chunks. It
// reads at most limit+1 bytes of r and writes at most limit to w: with
// more, it returns errTooLong without writing the chunk that passed the
// limit.
func copyHashing(ctx context.Context, w io.Writer, h hash.Hash, r io.Reader, limit int64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		// One byte past the limit is enough to know there is more.
		b := buf
		if left := limit - n + 1; left < int64(len(b)) {
			b = b[:left]
		}
		k, rerr := r.Read(b)
		if n+int64(k) > limit {
			return n, errTooLong
		}
		if k > 0 {
			h.Write(b[:k])
			if _, err := w.Write(b[:k]); err != nil {
				return n, err
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// durable makes f's bytes and its entry in dir durable.
func (s *Store) durable(ctx context.Context, f *os.File, dir string) error {
	if s.sync == nil {
		return nil
	}
	err := s.sync.sync(ctx)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return syncPath(dir)
}

// syncer is a group commit for durability: one syncfs(2) covers every
// file whose writer asked before it started. Concurrent writers share the
// call, so storing many small objects costs a handful of flushes rather
// than one fsync each (an fsync costs about a millisecond here). syncfs
// also reports writeback errors since the directory was opened.
type syncer struct {
	dir  *os.File
	reqs chan chan error
	stop chan struct{}
	done chan struct{}
}

func newSyncer(dir string) (*syncer, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	y := &syncer{dir: d, reqs: make(chan chan error, 256), stop: make(chan struct{}), done: make(chan struct{})}
	go y.run()
	return y, nil
}

func (y *syncer) run() {
	defer close(y.done)
	for {
		select {
		case <-y.stop:
			return
		case r := <-y.reqs:
			batch := []chan error{r}
		drain:
			for {
				select {
				case r := <-y.reqs:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			err := unix.Syncfs(int(y.dir.Fd()))
			for _, r := range batch {
				r <- err
			}
		}
	}
}

func (y *syncer) sync(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case y.reqs <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the goroutine; the store calls it after every writer is
// done.
func (y *syncer) close() {
	close(y.stop)
	<-y.done
	y.dir.Close()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
