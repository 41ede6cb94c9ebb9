package objcache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
)

// TestPartialFillAndComplete: pieces written in any order count in the
// quota as they land; Complete checks the whole object and makes it a
// normal object (same bytes through Open, no partial bytes left), while
// a handle opened before keeps reading.
func TestPartialFillAndComplete(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	o := makeObj(1, 3<<20+1234)
	p, err := s.OpenPartial(o.sum, int64(len(o.content)))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Fresh() {
		t.Fatal("a new partial file is not fresh")
	}
	used0, _ := s.Usage()
	piece := int64(1 << 20)
	for _, off := range []int64{2 << 20, 0, 3 << 20, 1 << 20} {
		end := min(off+piece, int64(len(o.content)))
		if err := p.WriteAt(ctx, o.content[off:end], off); err != nil {
			t.Fatal(err)
		}
	}
	used1, _ := s.Usage()
	if got, disk := used1-used0, onDisk(t, s.partialPath(o.sum)); got != disk || got < int64(len(o.content)) || s.PartialBytes() != got {
		t.Fatalf("pieces counted %d bytes in the quota (%d partial), the file holds %d, the content is %d", got, s.PartialBytes(), disk, len(o.content))
	}
	// A piece written again (two spans that raced for a chunk, or one
	// rewritten after a restart) adds nothing.
	if err := p.WriteAt(ctx, o.content[1<<20:2<<20], 1<<20); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Usage(); again != used1 {
		t.Fatalf("a piece written twice moved the quota from %d to %d bytes", used1, again)
	}
	if err := p.WriteAt(ctx, []byte("x"), int64(len(o.content))); err == nil {
		t.Fatal("a piece past the end was accepted")
	}
	if err := p.Complete(ctx, o.hdr, "test"); err != nil {
		t.Fatal(err)
	}
	used2, n := s.Usage()
	// A complete object counts its size, as PutFile's do.
	if used2 != used0+int64(len(o.content)) || n != 1 {
		t.Fatalf("after Complete: %d bytes, %d objects; want %d, 1", used2, n, used0+int64(len(o.content)))
	}
	expectContent(t, s, o)
	buf := make([]byte, 100)
	if _, err := p.ReadAt(buf, 5); err != nil || !bytes.Equal(buf, o.content[5:105]) {
		t.Fatalf("the open partial handle after Complete: %v", err)
	}
	p.Close()
	if got := s.PartialBytes(); got != 0 {
		t.Fatalf("%d partial bytes after Complete", got)
	}
	fsckClean(t, s)
}

// TestPartialWrongContent: Complete of a file that does not hash to the
// object's name removes it and records nothing.
func TestPartialWrongContent(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	o := makeObj(2, 1<<20)
	p, err := s.OpenPartial(o.sum, int64(len(o.content)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	bad := append([]byte(nil), o.content...)
	bad[1000] ^= 1
	if err := p.WriteAt(ctx, bad, 0); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if err := p.Complete(ctx, o.hdr, "test"); !errors.As(err, &ce) {
		t.Fatalf("Complete of wrong bytes: %v, want a CorruptError", err)
	}
	if ok, _ := s.Has(o.id().Type, o.sum); ok {
		t.Fatal("wrong bytes became an object")
	}
	if used, _ := s.Usage(); used != 0 || s.PartialBytes() != 0 {
		t.Fatalf("after the refused Complete: %d bytes used, %d partial", used, s.PartialBytes())
	}
	if err := p.Complete(ctx, o.hdr, "test"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Complete again after the refusal: %v, want ErrClosed", err)
	}
	// Still held by p's owner, the refused file is never handed out
	// again: the next OpenPartial starts afresh, and stores.
	q, err := s.OpenPartial(o.sum, int64(len(o.content)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q == p || !q.Fresh() {
		t.Fatal("OpenPartial handed out the refused partial file")
	}
	if err := q.WriteAt(ctx, o.content, 0); err != nil {
		t.Fatalf("writing the fresh partial file: %v", err)
	}
	if err := q.Complete(ctx, o.hdr, "test"); err != nil {
		t.Fatalf("Complete of the right bytes: %v", err)
	}
}

// TestPartialSurvivesRestart: a partial file stays, counted, across a
// clean close and a recount (what Open does after an unclean stop), is not fresh when opened
// again, and has the pieces written before.
func TestPartialSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{})
	o := makeObj(3, 2<<20)
	p, err := s.OpenPartial(o.sum, int64(len(o.content)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteAt(ctx, o.content[1<<20:], 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteAt(ctx, o.content[1<<20:], 1<<20); err != nil {
		t.Fatal(err)
	}
	counted, _ := s.Usage()
	p.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, home, Options{})
	if used, _ := s.Usage(); used != counted || s.PartialBytes() != counted {
		t.Fatalf("after a clean restart the quota counts %d bytes (%d partial), before it %d", used, s.PartialBytes(), counted)
	}
	if used, _ := s.Usage(); used < 1<<20 || used > 1<<20+8192 {
		t.Fatalf("after a clean restart the quota counts %d bytes, want about %d", used, 1<<20)
	}
	// After an unclean stop, Open recounts from the records and the
	// partial files.
	if err := s.recount(ctx); err != nil {
		t.Fatal(err)
	}
	if used, _ := s.Usage(); used != counted {
		t.Fatalf("after a recount the quota counts %d bytes, before it %d", used, counted)
	}
	if used, _ := s.Usage(); used < 1<<20 || used > 1<<20+8192 {
		t.Fatalf("after a recount the quota counts %d bytes, want about %d", used, 1<<20)
	}
	p, err = s.OpenPartial(o.sum, int64(len(o.content)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Fresh() {
		t.Fatal("a partial file from before is fresh")
	}
	buf := make([]byte, 4096)
	if _, err := p.ReadAt(buf, 1<<20+10); err != nil || !bytes.Equal(buf, o.content[1<<20+10:1<<20+10+4096]) {
		t.Fatalf("piece from before the restart: %v", err)
	}
}

// TestPartialEvicted: an idle partial file goes before complete objects
// when the quota needs room; an open one stays.
func TestPartialEvicted(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{MaxBytes: 4 << 20})
	idle, open := makeObj(4, 2<<20), makeObj(5, 1<<20)
	p, err := s.OpenPartial(idle.sum, int64(len(idle.content)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteAt(ctx, idle.content[:1<<20], 0); err != nil {
		t.Fatal(err)
	}
	p.Close()
	q, err := s.OpenPartial(open.sum, int64(len(open.content)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.WriteAt(ctx, open.content, 0); err != nil {
		t.Fatal(err)
	}
	// 2 MiB more does not fit under 4 MiB with 2 MiB held: the idle
	// partial file goes.
	put(t, s, makeObj(6, 2<<20+512<<10))
	if _, err := os.Stat(s.partialPath(idle.sum)); !os.IsNotExist(err) {
		t.Fatalf("the idle partial file is still there: %v", err)
	}
	if _, err := os.Stat(s.partialPath(open.sum)); err != nil {
		t.Fatalf("the open partial file was evicted: %v", err)
	}
	if used, _ := s.Usage(); used > 4<<20 {
		t.Fatalf("%d bytes used, over the 4 MiB quota", used)
	}
	if got, want := s.PartialBytes(), onDisk(t, s.partialPath(open.sum)); got != want {
		t.Fatalf("after the eviction partial files count %d bytes, the one left holds %d", got, want)
	}
}

// onDisk is what a (sparse) file holds.
func onDisk(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return allocated(fi)
}
