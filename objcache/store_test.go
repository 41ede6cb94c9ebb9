package objcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

func TestPutOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	if st := s.Startup(); st.Clean || st.TempRemoved != 0 || len(st.RecordsDropped) != 0 {
		t.Errorf("Startup of a new cache = %+v", st)
	}
	o := makeObj(1, 100000)
	empty := makeObj(2, 0) // symlinks and empty files have no content
	o.hdr.Mode, o.hdr.UID = 0o100755, 1000
	put(t, s, o)
	put(t, s, empty)
	put(t, s, o) // again: a no-op

	h, err := s.Open(ctx, o.sum)
	if err != nil {
		t.Fatal(err)
	}
	if h.Size() != int64(len(o.content)) || h.Fd() == ^uintptr(0) || h.Checksum() != o.sum {
		t.Errorf("handle: size %d, fd %d, checksum %s", h.Size(), h.Fd(), h.Checksum())
	}
	h2, err := s.Open(ctx, o.sum)
	if err != nil {
		t.Fatal(err)
	}
	if h2.File() != h.File() {
		t.Error("two handles on one object do not share the file")
	}
	buf := make([]byte, 10)
	if _, err := h.ReadAt(buf, 5000); err != nil || !bytes.Equal(buf, o.content[5000:5010]) {
		t.Errorf("ReadAt = %x, %v", buf, err)
	}
	h.Close()
	if err := h.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if _, err := h.ReadAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if _, err := h2.ReadAt(buf, 0); err != nil {
		t.Errorf("other handle stopped working: %v", err)
	}
	h2.Close()

	hdr, err := s.Index().Header(o.id().Sum)
	if err != nil || hdr.Mode != 0o100755 || hdr.UID != 1000 || hdr.Size != 100000 || !bytes.Equal(hdr.Raw, o.hdr.Raw) {
		t.Errorf("cached header = %+v, %v", hdr, err)
	}
	if ok, _ := s.Has(index.TypeFile, o.sum); !ok {
		t.Error("Has = false")
	}
	if b, n := s.Usage(); b != 100000 || n != 2 {
		t.Errorf("Usage = %d bytes, %d objects", b, n)
	}
	missing := makeObj(3, 10)
	if _, err := s.Open(ctx, missing.sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("Open of an absent object = %v", err)
	}
	// Checksums are typed; a string becomes one only through ParseSum.
	if _, err := index.ParseSum("../../etc/passwd"); err == nil {
		t.Error("ParseSum accepted a path as a checksum")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, o.sum); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close = %v", err)
	}

	s = openStore(t, home, Options{})
	if st := s.Startup(); !st.Clean {
		t.Errorf("Startup after Close = %+v", st)
	}
	if b, n := s.Usage(); b != 100000 || n != 2 {
		t.Errorf("Usage after reopen = %d bytes, %d objects", b, n)
	}
	expectContent(t, s, o)
	expectContent(t, s, empty)
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != 2 || st.Bytes != 100000 || st.Hits != 4 || st.Misses != 1 || st.ByRemote["test"].Objects != 2 || st.ByType["file"].Bytes != 100000 {
		t.Errorf("Stats = %+v", st)
	}
	fsckClean(t, s)
}

func TestPutRejectsWrongChecksum(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{})
	o := makeObj(1, 5000)
	bad := append([]byte(nil), o.content...)
	bad[17] ^= 1
	err := s.PutContent(context.Background(), o.sum, o.hdr, bytes.NewReader(bad), "test")
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Want != o.sum.String() || ce.Got == o.sum.String() || ce.What != "checksum" {
		t.Fatalf("Put of tampered content = %v", err)
	}
	// The header is part of the checksum too.
	h2 := o.hdr
	h2.Raw = append([]byte(nil), o.hdr.Raw...)
	h2.Raw[len(h2.Raw)-1] ^= 1
	if err := s.PutContent(context.Background(), o.sum, h2, bytes.NewReader(o.content), "test"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Put with a tampered header = %v", err)
	}
	if files := dirFiles(t, home+"/objects"); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
	if files := dirFiles(t, home+"/tmp"); len(files) != 0 {
		t.Errorf("temp files left: %v", files)
	}
	if ok, _ := s.Has(index.TypeFile, o.sum); ok {
		t.Error("tampered object recorded")
	}
	if err := s.PutContent(context.Background(), o.sum, index.FileHeader{}, bytes.NewReader(o.content), "t"); err == nil {
		t.Error("Put without header bytes succeeded")
	}
	// Checksums are typed; an invalid one is refused where a string
	// becomes one.
	if _, err := index.ParseSum(o.sum.String()[:63] + "X"); err == nil {
		t.Error("ParseSum accepted an invalid checksum")
	}
}

func TestMetaObjects(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	tree := []byte("a dirtree's bytes")
	sum := index.Sum(sha256.Sum256(tree))
	if err := s.PutMeta(ctx, index.TypeDirTree, sum, tree, "r"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, index.TypeDirMeta, sum, []byte("other"), "r"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("PutMeta with the wrong bytes = %v", err)
	}
	// Commitmeta shares its commit's checksum and is not hashed.
	if err := s.PutMeta(ctx, index.TypeCommitMeta, sum, []byte("detached metadata"), "r"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, index.TypeFile, sum, tree, "r"); err == nil {
		t.Error("PutMeta of a content object succeeded")
	}
	got, err := s.ReadMeta(ctx, index.TypeDirTree, sum)
	if err != nil || !bytes.Equal(got, tree) {
		t.Errorf("ReadMeta = %q, %v", got, err)
	}
	got, err = s.ReadMeta(ctx, index.TypeCommitMeta, sum)
	if err != nil || string(got) != "detached metadata" {
		t.Errorf("ReadMeta(commitmeta) = %q, %v", got, err)
	}
	if _, err := s.ReadMeta(ctx, index.TypeCommit, sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("ReadMeta of an absent commit = %v", err)
	}
	if b, n := s.Usage(); b != int64(len(tree))+17 || n != 2 {
		t.Errorf("Usage = %d, %d", b, n)
	}
	if files := dirFiles(t, filepath.Join(home, "objects")); len(files) != 0 {
		t.Errorf("metadata written as files: %v", files)
	}
	fsckClean(t, s)
}

// The three corruption cases the issue names: detected on open by size,
// on the first open after a restart by hash, and by fsck, which names it.
func TestCorruptionDetected(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	objs := []obj{makeObj(1, 4096), makeObj(2, 4096), makeObj(3, 4096), makeObj(4, 4096)}
	for _, o := range objs {
		put(t, s, o)
	}

	// 1. Size, while the store runs: detected on open.
	if err := os.WriteFile(objPath(home, objs[0].sum.String()), objs[0].content[:4000], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Open(ctx, objs[0].sum)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.What != "size" || ce.Got != "4000" || ce.Want != "4096" {
		t.Fatalf("Open of a truncated object = %v", err)
	}
	if _, err := os.Stat(objPath(home, objs[0].sum.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("truncated file not removed: %v", err)
	}
	if _, err := s.Open(ctx, objs[0].sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("second Open of the dropped object = %v", err)
	}
	if b, n := s.Usage(); b != 3*4096 || n != 3 {
		t.Errorf("Usage after the drop = %d, %d", b, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Flip bytes, same size, while the daemon is down.
	for _, o := range objs[1:3] {
		flipByte(t, objPath(home, o.sum.String()), 1000)
	}
	s = openStore(t, home, Options{})
	// 2. Hash, on the first open after start.
	_, err = s.Open(ctx, objs[1].sum)
	if !errors.As(err, &ce) || ce.What != "checksum" || ce.Want != objs[1].sum.String() {
		t.Fatalf("first Open of a flipped object = %v", err)
	}
	if ok, _ := s.Has(index.TypeFile, objs[1].sum); ok {
		t.Error("flipped object still recorded")
	}
	// 3. fsck names the other one and drops it.
	r, err := s.Fsck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Corrupt) != 1 || r.Corrupt[0].Object != objs[2].sum.String()+".file" || len(r.Missing) != 0 || len(r.Index) != 0 || r.Checked != 2 {
		t.Errorf("fsck = %+v", r)
	}
	if _, err := s.Open(ctx, objs[2].sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("Open after fsck dropped it = %v", err)
	}
	expectContent(t, s, objs[3])
	fsckClean(t, s)
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestFsckMarksOpenHandleUnreadable(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	o := makeObj(1, 4096)
	put(t, s, o)
	h, err := s.Open(ctx, o.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	flipByte(t, objPath(home, o.sum.String()), 5)
	r, err := s.Fsck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Corrupt) != 1 {
		t.Fatalf("fsck = %+v", r)
	}
	if _, err := h.ReadAt(make([]byte, 4), 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadAt on a handle of a corrupt object = %v", err)
	}
	// Stored again, it is served fresh while the old handle stays refused.
	put(t, s, o)
	expectContent(t, s, o)
	if _, err := h.ReadAt(make([]byte, 4), 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("old handle readable again: %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	a, b := makeObj(1, 100), makeObj(2, 100)
	put(t, s, a)
	put(t, s, b)
	os.Remove(objPath(home, a.sum.String()))
	os.Remove(objPath(home, b.sum.String()))
	if _, err := s.Open(ctx, a.sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("Open with the file gone = %v", err)
	}
	r, err := s.Fsck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Missing) != 1 || r.Missing[0].Object != b.sum.String()+".file" {
		t.Errorf("fsck = %+v", r)
	}
	if bytes, n := s.Usage(); bytes != 0 || n != 0 {
		t.Errorf("Usage = %d, %d", bytes, n)
	}
	// An orphan (file without record) is removed by fsck.
	if err := os.WriteFile(objPath(home, a.sum.String()), a.content, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := fsckClean(t, s); r.OrphansRemoved != 1 {
		t.Errorf("orphans removed = %d", r.OrphansRemoved)
	}
}

func TestEvictionOrder(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{MaxBytes: 1000, LowWater: 0.5})
	objs := make([]obj, 12)
	for i := range objs {
		objs[i] = makeObj(uint64(i), 100)
	}
	for _, o := range objs[:10] {
		put(t, s, o)
	}
	// Use 0 and 1, so 2 is now the least recently used.
	expectContent(t, s, objs[0])
	expectContent(t, s, objs[1])
	put(t, s, objs[10]) // over quota: evict to 500-100 = 400 bytes, then add
	if b, n := s.Usage(); b != 500 || n != 5 {
		t.Errorf("Usage after eviction = %d, %d; want 500, 5", b, n)
	}
	for i, want := range []bool{true, true, false, false, false, false, false, false, true, true, true} {
		if ok, _ := s.Has(index.TypeFile, objs[i].sum); ok != want {
			t.Errorf("object %d present = %v, want %v", i, ok, want)
		}
	}
	r, err := s.GC(ctx, 200)
	if err != nil || r.Evicted != 3 || r.Freed != 300 || r.Bytes != 200 {
		t.Errorf("GC = %+v, %v", r, err)
	}
	fsckClean(t, s)
}

func TestEvictionSkipsOpenAndPinned(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{MaxBytes: 1000})
	objs := make([]obj, 30)
	for i := range objs {
		objs[i] = makeObj(uint64(i), 100)
	}
	put(t, s, objs[0])
	put(t, s, objs[1])
	h, err := s.Open(ctx, objs[0].sum)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	commit := index.Sum(sha256.Sum256([]byte("commit")))
	if err := s.PinCommit(ctx, commit, []index.ObjectID{objs[1].id(), objs[2].id()}); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs[2:] {
		put(t, s, o)
		if b, _ := s.Usage(); b > 1000 {
			t.Fatalf("usage %d over the quota", b)
		}
	}
	for i := range 3 {
		if ok, _ := s.Has(index.TypeFile, objs[i].sum); !ok {
			t.Errorf("object %d (open or pinned) was evicted", i)
		}
	}
	got, err := readAll(h)
	if err != nil || !bytes.Equal(got, objs[0].content) {
		t.Errorf("open handle reads %d bytes, %v", len(got), err)
	}
	// All that remains evictable is unpinned: GC to 0 keeps the three.
	r, _ := s.GC(ctx, 0)
	if r.Bytes != 300 {
		t.Errorf("GC to 0 left %d bytes, want the 300 open or pinned", r.Bytes)
	}
	pins, err := s.Pins(ctx)
	if err != nil || len(pins) != 1 || pins[0].Present != 2 {
		t.Errorf("Pins = %+v, %v", pins, err)
	}
	h.Close()
	if err := s.UnpinCommit(ctx, commit); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.GC(ctx, 0); r.Bytes != 0 || r.Evicted != 3 {
		t.Errorf("GC after unpin and close = %+v", r)
	}
	if n := len(dirFiles(t, filepath.Join(home, "objects"))); n != 0 {
		t.Errorf("%d files left after evicting everything", n)
	}
	fsckClean(t, s)
}

// failingWriter fails after n bytes with the given error, like a disk
// that fills up part-way through an object.
type failingWriter struct {
	w   io.Writer
	n   int
	err error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return f.w.Write(p)
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{})
	s.wrapTempWriter = func(f *os.File) io.Writer { return &failingWriter{w: f, n: 1000, err: errNoSpace} }
	o := makeObj(1, 300000)
	err := s.PutContent(context.Background(), o.sum, o.hdr, bytes.NewReader(o.content), "t")
	if !errors.Is(err, errNoSpace) {
		t.Fatalf("Put = %v", err)
	}
	checkNothingLeft(t, s, home, o)
	s.wrapTempWriter = nil
	put(t, s, o)
	expectContent(t, s, o)
}

func checkNothingLeft(t *testing.T, s *Store, home string, o obj) {
	t.Helper()
	if files := dirFiles(t, filepath.Join(home, "tmp")); len(files) != 0 {
		t.Errorf("temp files left: %v", files)
	}
	if _, err := os.Stat(objPath(home, o.sum.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("object file exists: %v", err)
	}
	if ok, _ := s.Has(index.TypeFile, o.sum); ok {
		t.Error("object recorded")
	}
	if b, n := s.Usage(); b != 0 || n != 0 {
		t.Errorf("Usage = %d, %d", b, n)
	}
}

func TestConcurrentSameObject(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{MaxBytes: 20 * 1000})
	objs := make([]obj, 40)
	for i := range objs {
		objs[i] = makeObj(uint64(i), 1000)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				o := objs[(i*7+g)%len(objs)]
				switch i % 3 {
				case 0, 1:
					if err := s.PutContent(ctx, o.sum, o.hdr, bytes.NewReader(o.content), "t"); err != nil {
						t.Error(err)
						return
					}
				case 2:
					h, err := s.Open(ctx, o.sum)
					if errors.Is(err, ErrNotPresent) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					got, err := readAll(h)
					h.Close()
					if err != nil || !bytes.Equal(got, o.content) {
						t.Errorf("read %d bytes, %v", len(got), err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if b, _ := s.Usage(); b > 20*1000 {
		t.Errorf("usage %d over quota", b)
	}
	fsckClean(t, s)
}

func TestLockedHome(t *testing.T) {
	home := t.TempDir()
	openStore(t, home, Options{})
	if _, err := Open(context.Background(), home, Options{}); !errors.Is(err, index.ErrLocked) {
		t.Errorf("second Open = %v, want index.ErrLocked", err)
	}
}

func TestTempLeftoversRemoved(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{})
	s.Close()
	os.WriteFile(filepath.Join(home, "tmp", "abc-123"), []byte("partial"), 0o600)
	s = openStore(t, home, Options{})
	if st := s.Startup(); st.TempRemoved != 1 {
		t.Errorf("Startup = %+v", st)
	}
	if files := dirFiles(t, filepath.Join(home, "tmp")); len(files) != 0 {
		t.Errorf("tmp/ = %v", files)
	}
}

func TestPutFile(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	o := makeObj(1, 70000)
	f, err := s.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	f.Write(o.content)
	if err := s.PutFile(ctx, o.sum, o.hdr, f, "delta"); err != nil {
		t.Fatal(err)
	}
	expectContent(t, s, o)
	if hdr, _ := s.Index().Header(o.id().Sum); hdr.Size != 70000 {
		t.Errorf("header size = %d", hdr.Size)
	}

	// Wrong content: refused, and the file is gone.
	bad := makeObj(2, 100)
	f, _ = s.CreateTemp()
	f.Write(o.content)
	if err := s.PutFile(ctx, bad.sum, bad.hdr, f, "delta"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("PutFile of the wrong content = %v", err)
	}
	if files := dirFiles(t, filepath.Join(home, "tmp")); len(files) != 0 {
		t.Errorf("tmp/ = %v", files)
	}
	// A file from elsewhere is refused and left alone.
	other, err := os.Create(filepath.Join(t.TempDir(), "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutFile(ctx, bad.sum, bad.hdr, other, "delta"); err == nil {
		t.Error("PutFile took a file outside tmp/")
	}
	if _, err := os.Stat(other.Name()); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	fsckClean(t, s)
}

// TestCorruptErrorIsOstreeCorrupt: objcache's verification failures are
// of the module's one corrupt family.
func TestCorruptErrorIsOstreeCorrupt(t *testing.T) {
	var err error = fmt.Errorf("wrapped: %w", &CorruptError{Object: "x.file", What: "checksum", Got: "a", Want: "b"})
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("%v matches ErrCorrupt %v, ostree.ErrCorrupt %v", err, errors.Is(err, ErrCorrupt), errors.Is(err, ostree.ErrCorrupt))
	}
}
