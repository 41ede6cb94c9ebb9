package objcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazytree/lazytree/index"
)

// tempWith writes content to a CreateTemp file of s.
func tempWith(t testing.TB, s *Store, content []byte) *os.File {
	t.Helper()
	f, err := s.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBatchPresentOnlyAfterFlush(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	b := s.NewBatch("test")
	var objs []obj
	for i := range 10 {
		o := makeObj(uint64(100+i), 1000+i)
		objs = append(objs, o)
		if err := b.PutFile(ctx, o.sum, o.hdr, tempWith(t, s, o.content)); err != nil {
			t.Fatal(err)
		}
	}
	meta := []byte("a dirmeta's bytes")
	msum := index.Sum(sha256.Sum256(meta))
	if err := b.PutMeta(ctx, index.TypeDirMeta, msum, meta); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 11 {
		t.Fatalf("batch holds %d objects, want 11", b.Len())
	}
	for _, o := range objs {
		if ok, _ := s.Has(index.TypeFile, o.sum); ok {
			t.Fatalf("%s present before Flush", o.sum)
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		expectContent(t, s, o)
	}
	got, err := s.ReadMeta(ctx, index.TypeDirMeta, msum)
	if err != nil || !bytes.Equal(got, meta) {
		t.Fatalf("dirmeta after Flush: %q, %v", got, err)
	}
	if _, n := s.Usage(); n != 11 {
		t.Fatalf("%d objects counted, want 11", n)
	}
	fsckClean(t, s)
	checkTmpEmpty(t, home)
}

func TestBatchRefusesBadObjects(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	b := s.NewBatch("test")
	o := makeObj(7, 5000)
	bad := append([]byte{}, o.content...)
	bad[10] ^= 1
	var ce *CorruptError
	if err := b.PutFile(ctx, o.sum, o.hdr, tempWith(t, s, bad)); !errors.As(err, &ce) {
		t.Fatalf("wrong content: %v, want a CorruptError", err)
	}
	if err := b.PutMeta(ctx, index.TypeDirTree, o.sum, []byte("not it")); !errors.As(err, &ce) {
		t.Fatalf("wrong metadata: %v, want a CorruptError", err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(index.TypeFile, o.sum); ok {
		t.Fatal("a refused object is present")
	}
	if used, n := s.Usage(); used != 0 || n != 0 {
		t.Fatalf("usage %d bytes, %d objects after refusals; want 0", used, n)
	}
	checkTmpEmpty(t, home)
	if files := dirFiles(t, filepath.Join(home, "objects")); len(files) != 0 {
		t.Fatalf("files left in objects/: %v", files)
	}
}

func TestBatchAbortLeavesNothing(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	b := s.NewBatch("test")
	o := makeObj(8, 3000)
	if err := b.PutFile(ctx, o.sum, o.hdr, tempWith(t, s, o.content)); err != nil {
		t.Fatal(err)
	}
	b.Abort()
	if ok, _ := s.Has(index.TypeFile, o.sum); ok {
		t.Fatal("an aborted object is present")
	}
	if used, _ := s.Usage(); used != 0 {
		t.Fatalf("%d bytes still reserved after Abort", used)
	}
	if files := dirFiles(t, filepath.Join(home, "objects")); len(files) != 0 {
		t.Fatalf("files left in objects/: %v", files)
	}
	// The object can be stored again, normally.
	put(t, s, o)
	expectContent(t, s, o)
}

// A batch never flushed leaves no object and no file: Close removes its
// files (a clean start-up does not look for files without records; after
// a crash, start-up's reconcile does).
func TestBatchNeverFlushed(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s, err := Open(ctx, home, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch("test")
	o := makeObj(9, 4000)
	if err := b.PutFile(ctx, o.sum, o.hdr, tempWith(t, s, o.content)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(objPath(home, o.sum.String())); err != nil {
		t.Fatalf("the batch's file is not in objects/: %v", err)
	}
	s.Close() // the batch is never flushed
	s = openStore(t, home, Options{})
	if ok, _ := s.Has(index.TypeFile, o.sum); ok {
		t.Fatal("an unflushed object is present after restart")
	}
	if _, err := os.Stat(objPath(home, o.sum.String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unflushed file survived start-up: %v", err)
	}
	fsckClean(t, s)
}

// A writer of an object a batch holds waits for the batch's Flush; a
// batch meeting an object another writer holds flushes what it has and
// then waits, so two batches never deadlock.
func TestBatchBusyObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openStore(t, t.TempDir(), Options{})
	shared := makeObj(20, 2000)
	a, b := s.NewBatch("a"), s.NewBatch("b")
	oa, ob := makeObj(21, 100), makeObj(22, 100)
	if err := a.PutFile(ctx, oa.sum, oa.hdr, tempWith(t, s, oa.content)); err != nil {
		t.Fatal(err)
	}
	if err := b.PutFile(ctx, ob.sum, ob.hdr, tempWith(t, s, ob.content)); err != nil {
		t.Fatal(err)
	}
	if err := a.PutFile(ctx, shared.sum, shared.hdr, tempWith(t, s, shared.content)); err != nil {
		t.Fatal(err)
	}
	// b meets the object a holds: it flushes ob, then waits for a.
	done := make(chan error, 1)
	go func() { done <- b.PutFile(ctx, shared.sum, shared.hdr, tempWith(t, s, shared.content)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := s.Has(index.TypeFile, ob.sum); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("batch b did not flush what it held before waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("b's put of a held object returned before a flushed: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, o := range []obj{oa, ob, shared} {
		expectContent(t, s, o)
	}
	if _, n := s.Usage(); n != 3 {
		t.Fatalf("%d objects counted, want 3", n)
	}
	fsckClean(t, s)
}
