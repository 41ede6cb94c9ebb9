package objcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"testing"

	"github.com/lazytree/lazytree/index"
)

func TestRemove(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true})
	a, b, c := makeObj(1, 1000), makeObj(2, 2000), makeObj(3, 3000)
	for _, o := range []obj{a, b, c} {
		put(t, s, o)
	}
	tree := []byte("a dirtree")
	treeSum := index.Sum(sha256.Sum256(tree))
	if err := s.PutMeta(ctx, index.TypeDirTree, treeSum, tree, "t"); err != nil {
		t.Fatal(err)
	}
	treeID := index.ObjectID{Sum: mustSum(t, treeSum.String()), Type: index.TypeDirTree}

	// A content object: record and file gone, quota given back.
	if err := s.Remove(ctx, a.id()); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if ok, _ := s.Has(index.TypeFile, a.sum); ok {
		t.Error("removed object still recorded")
	}
	if _, err := os.Stat(objPath(home, a.sum.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file of a removed object: %v", err)
	}
	if _, err := s.Open(ctx, a.sum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("Open after Remove = %v, want ErrNotPresent", err)
	}
	if err := s.Remove(ctx, a.id()); !errors.Is(err, ErrNotPresent) {
		t.Errorf("second Remove = %v, want ErrNotPresent", err)
	}
	if used, n := s.Usage(); used != 5000+int64(len(tree)) || n != 3 {
		t.Errorf("Usage = %d, %d; want %d, 3", used, n, 5000+len(tree))
	}

	// A metadata object.
	if err := s.Remove(ctx, treeID); err != nil {
		t.Fatalf("Remove of a dirtree = %v", err)
	}
	if _, err := s.ReadMeta(ctx, index.TypeDirTree, treeSum); !errors.Is(err, ErrNotPresent) {
		t.Errorf("ReadMeta after Remove = %v, want ErrNotPresent", err)
	}

	// Open: refused and still readable; removable once closed.
	h, err := s.Open(ctx, b.sum)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, b.id()); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove of an open object = %v, want ErrBusy", err)
	}
	if got, err := readAll(h); err != nil || !bytes.Equal(got, b.content) {
		t.Errorf("read after a refused Remove: %d bytes, %v", len(got), err)
	}
	h.Close()
	if err := s.Remove(ctx, b.id()); err != nil {
		t.Errorf("Remove once closed = %v", err)
	}

	// Pinned: refused, kept.
	if err := s.Index().PinCommit(ctx, mustSum(t, a.sum.String()), []index.ObjectID{c.id()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, c.id()); !errors.Is(err, ErrPinned) {
		t.Errorf("Remove of a pinned object = %v, want ErrPinned", err)
	}
	expectContent(t, s, c)

	if err := s.Remove(ctx, index.ObjectID{Sum: c.id().Sum, Type: 0}); err == nil {
		t.Error("Remove of an invalid type succeeded")
	}
	if used, n := s.Usage(); used != 3000 || n != 1 {
		t.Errorf("Usage = %d, %d; want 3000, 1", used, n)
	}
	fsckClean(t, s)

	// What a restart finds agrees.
	s.Close()
	s = openStore(t, home, Options{NoSync: true})
	if used, n := s.Usage(); used != 3000 || n != 1 {
		t.Errorf("Usage after restart = %d, %d; want 3000, 1", used, n)
	}
	if r := fsckClean(t, s); r.OrphansRemoved != 0 {
		t.Errorf("fsck removed %d orphans", r.OrphansRemoved)
	}
}

func TestReplaceMeta(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{MaxBytes: 1000, NoSync: true})
	commit := makeObj(1, 10).sum // any checksum names a commit here
	read := func() string {
		t.Helper()
		got, err := s.ReadMeta(ctx, index.TypeCommitMeta, commit)
		if err != nil {
			t.Fatalf("ReadMeta = %v", err)
		}
		return string(got)
	}
	usage := func(wantBytes, wantN int64) {
		t.Helper()
		if b, n := s.Usage(); b != wantBytes || n != wantN {
			t.Errorf("Usage = %d, %d; want %d, %d", b, n, wantBytes, wantN)
		}
	}

	// Not there yet: stored.
	if err := s.ReplaceMeta(ctx, index.TypeCommitMeta, commit, []byte("v1"), "a"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "v1" {
		t.Errorf("after the first ReplaceMeta: %q", got)
	}
	usage(2, 1)
	// PutMeta keeps what is there; ReplaceMeta does not.
	if err := s.PutMeta(ctx, index.TypeCommitMeta, commit, []byte("v2 is longer"), "a"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "v1" {
		t.Errorf("PutMeta replaced the bytes: %q", got)
	}
	if err := s.ReplaceMeta(ctx, index.TypeCommitMeta, commit, []byte("v2 is longer"), "b"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "v2 is longer" {
		t.Errorf("after ReplaceMeta: %q", got)
	}
	usage(12, 1)
	if o, _ := s.Index().Object(index.ObjectID{Sum: mustSum(t, commit.String()), Type: index.TypeCommitMeta}); o.Origin != "b" || o.Size != 12 {
		t.Errorf("record = %+v", o)
	}
	// Tombstones too.
	if err := s.ReplaceMeta(ctx, index.TypeCommitTombstone, commit, nil, "b"); err != nil {
		t.Errorf("ReplaceMeta of a tombstone = %v", err)
	}
	usage(12, 2)

	// Content-addressed types are refused.
	for _, typ := range []index.ObjType{index.TypeFile, index.TypeDirTree, index.TypeDirMeta, index.TypeCommit, 0} {
		if err := s.ReplaceMeta(ctx, typ, commit, []byte("x"), "a"); err == nil {
			t.Errorf("ReplaceMeta of type %s succeeded", typ)
		}
	}
	// Over the quota: refused, the old bytes kept.
	if err := s.ReplaceMeta(ctx, index.TypeCommitMeta, commit, make([]byte, 1001), "a"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReplaceMeta over the quota = %v, want ErrTooLarge", err)
	}
	if got := read(); got != "v2 is longer" {
		t.Errorf("after a refused ReplaceMeta: %q", got)
	}
	usage(12, 2)
	fsckClean(t, s)
}

func mustSum(t testing.TB, s string) index.Sum {
	t.Helper()
	sum, err := index.ParseSum(s)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
