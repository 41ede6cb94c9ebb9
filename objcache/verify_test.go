package objcache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// openClose opens and closes an object, failing the test on an error.
func openClose(t *testing.T, s *Store, o obj) {
	t.Helper()
	expectContent(t, s, o)
}

// checkRehashes asserts how many files Open has rehashed so far.
func checkRehashes(t *testing.T, s *Store, want int64, when string) {
	t.Helper()
	if got := s.rehashes.Load(); got != want {
		t.Errorf("%s: %d rehashes, want %d", when, got, want)
	}
}

// wantRefused asserts that Open refuses a changed object and that it is
// gone afterwards.
func wantRefused(t *testing.T, s *Store, home string, o obj) {
	t.Helper()
	h, err := s.Open(context.Background(), o.sum)
	if err == nil {
		got, _ := readAll(h)
		h.Close()
		t.Fatalf("Open of a changed %s served %d bytes", o.sum.String()[:8], len(got))
	}
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Want != o.sum.String() {
		t.Fatalf("Open of a changed %s = %v, want a CorruptError", o.sum.String()[:8], err)
	}
	if _, err := s.Open(context.Background(), o.sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("second Open of %s = %v, want ErrNotPresent", o.sum.String()[:8], err)
	}
	if _, err := os.Stat(objPath(home, o.sum.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("changed file of %s not removed: %v", o.sum.String()[:8], err)
	}
}

// TestChangedFileRehashed is hole 10 of issue 8: a cache file changed on
// disk after its first open in a session was served unverified until
// restart. Now a file whose inode, size, ctime or mtime changed since it
// was verified is rehashed before it is served, and an untouched one is
// not. (Without idle files, so that every open opens the path again as
// the first open after a close does; TestIdleFiles covers idle ones.)
func TestChangedFileRehashed(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true, IdleFiles: -1})
	var objs []obj
	for i := range 6 {
		o := makeObj(uint64(i+1), 64<<10)
		put(t, s, o)
		objs = append(objs, o)
	}
	untouched, inPlace, replaced, sameBytes, touched, shared := objs[0], objs[1], objs[2], objs[3], objs[4], objs[5]

	// Written in this session: verified on the way in, no rehash.
	for _, o := range objs {
		openClose(t, s, o)
		openClose(t, s, o)
	}
	checkRehashes(t, s, 0, "opens of objects written in this session")

	// Bytes changed in place, same size: only mtime and ctime differ.
	flipByte(t, objPath(home, inPlace.sum.String()), 1000)
	wantRefused(t, s, home, inPlace)
	checkRehashes(t, s, 1, "after the in-place change")

	// Replaced by another file (a new inode) with other bytes.
	bad := append([]byte(nil), replaced.content...)
	bad[5] ^= 1
	replaceFile(t, objPath(home, replaced.sum.String()), bad)
	wantRefused(t, s, home, replaced)
	checkRehashes(t, s, 2, "after the replacement")

	// Replaced by a copy of the same bytes: rehashed once, then served
	// and trusted again.
	replaceFile(t, objPath(home, sameBytes.sum.String()), sameBytes.content)
	openClose(t, s, sameBytes)
	openClose(t, s, sameBytes)
	checkRehashes(t, s, 3, "after a replacement by the same bytes")

	// Only its times changed (mtime set back to what it was sets ctime
	// to now): rehashed once, then trusted again.
	p := objPath(home, touched.sum.String())
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	openClose(t, s, touched)
	openClose(t, s, touched)
	checkRehashes(t, s, 4, "after a touch")

	// Changed in place while another handle has it open: the next Open
	// rechecks the shared file and refuses, and the open handle stops
	// reading.
	keep, err := s.Open(context.Background(), shared.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	flipByte(t, objPath(home, shared.sum.String()), 2000)
	wantRefused(t, s, home, shared)
	if _, err := keep.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadAt on a handle open when its file changed = %v, want ErrCorrupt", err)
	}
	checkRehashes(t, s, 5, "after the change under an open handle")

	// The untouched object still opens without a rehash.
	openClose(t, s, untouched)
	checkRehashes(t, s, 5, "after opening the untouched object")
	fsckClean(t, s)
}

// TestVerifiedAfterRestartAndFsck: after a restart the first open
// rehashes (nothing is verified yet), later opens do not; fsck's check
// counts as a verification too.
func TestVerifiedAfterRestartAndFsck(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true})
	a, b := makeObj(1, 5000), makeObj(2, 5000)
	put(t, s, a)
	put(t, s, b)
	s.Close()
	s = openStore(t, home, Options{NoSync: true})
	openClose(t, s, a)
	openClose(t, s, a)
	checkRehashes(t, s, 1, "two opens after a restart")
	fsckClean(t, s)
	openClose(t, s, b)
	checkRehashes(t, s, 1, "an open after fsck")
	// fsck's verification also notes the file's identity.
	flipByte(t, objPath(home, b.sum.String()), 10)
	wantRefused(t, s, home, b)
}

// replaceFile puts a new file with data at path by rename, as a hand in
// objects/ (or another program) could.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "replacement")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
