package objcache

import (
	"context"
	"errors"
	"os"
	"testing"
)

// idleFile opens and closes o and returns the file the store keeps idle.
func idleFile(t *testing.T, s *Store, o obj) *os.File {
	t.Helper()
	h, err := s.Open(context.Background(), o.sum)
	if err != nil {
		t.Fatal(err)
	}
	f := h.File()
	h.Close()
	return f
}

func isClosed(f *os.File) bool {
	_, err := f.Stat()
	return errors.Is(err, os.ErrClosed)
}

// TestIdleFiles: a closed object's file stays open for the next Open, up
// to Options.IdleFiles of them; it does not count as open for eviction or
// Remove, which close it; an in-place change under it is still caught;
// Close closes every idle file.
func TestIdleFiles(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true, IdleFiles: 2})
	var objs []obj
	for i := range 4 {
		o := makeObj(uint64(i+1), 8<<10)
		put(t, s, o)
		objs = append(objs, o)
	}
	a, b, c, d := objs[0], objs[1], objs[2], objs[3]

	fa := idleFile(t, s, a)
	if isClosed(fa) {
		t.Fatal("the last Close closed the file; want it kept idle")
	}
	if f := idleFile(t, s, a); f != fa {
		t.Error("a second Open opened the file again; want the idle one")
	}
	if st, err := s.Stats(ctx); err != nil || st.OpenObjects != 0 {
		t.Errorf("OpenObjects with only idle files = %d (%v), want 0", st.OpenObjects, err)
	}
	expectContent(t, s, a)

	// Bounded: the least recently used idle file is closed.
	fb := idleFile(t, s, b)
	idleFile(t, s, c)
	if !isClosed(fa) || isClosed(fb) {
		t.Errorf("after idling 3 files with IdleFiles 2: first closed %v (want true), second closed %v (want false)", isClosed(fa), isClosed(fb))
	}

	// Changed in place while idle: the fstat of the next Open sees it.
	flipByte(t, objPath(home, b.sum.String()), 100)
	wantRefused(t, s, home, b)
	if !isClosed(fb) {
		t.Error("the idle file of a dropped object is still open")
	}

	// Remove and eviction treat an idle object as closed.
	fc := idleFile(t, s, c)
	if err := s.Remove(ctx, c.id()); err != nil {
		t.Errorf("Remove of an idle object: %v", err)
	}
	if !isClosed(fc) {
		t.Error("Remove left the idle file open")
	}
	fd := idleFile(t, s, d)
	if _, err := s.GC(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if s.skippedOpen.Load() != 0 || !isClosed(fd) {
		t.Errorf("GC skipped %d open objects, idle file closed %v; want 0 and true", s.skippedOpen.Load(), isClosed(fd))
	}
	if _, err := s.Open(ctx, d.sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("Open after GC = %v, want ErrNotPresent", err)
	}

	// Close closes idle files; handles open at Close still read, and
	// close their file when they are closed.
	e := makeObj(5, 8<<10)
	put(t, s, e)
	fe := idleFile(t, s, e)
	f := makeObj(6, 8<<10)
	put(t, s, f)
	h, err := s.Open(ctx, f.sum)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !isClosed(fe) {
		t.Error("Close left an idle file open")
	}
	if _, err := h.ReadAt(make([]byte, 10), 0); err != nil {
		t.Errorf("read of a handle open at Close: %v", err)
	}
	h.Close()
	if !isClosed(h.File()) {
		t.Error("a handle closed after the store's Close left its file open")
	}
}

// TestIdleFileReplaced: a file replaced (a new inode at its path) while
// its verified descriptor is idle goes on serving the verified bytes, as
// it would under an open handle; once the idle file is closed, the next
// Open rehashes the new file and refuses it.
func TestIdleFileReplaced(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true})
	o := makeObj(1, 8<<10)
	put(t, s, o)
	idleFile(t, s, o)
	bad := append([]byte(nil), o.content...)
	bad[5] ^= 1
	replaceFile(t, objPath(home, o.sum.String()), bad)
	expectContent(t, s, o)
	s.mu.Lock()
	closeFiles(s.closeIdleLocked(o.id()))
	s.mu.Unlock()
	wantRefused(t, s, home, o)
}
