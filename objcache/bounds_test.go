package objcache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lazytree/lazytree/index"
)

// endless is a hostile body: it never ends, and counts what was read.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += int64(len(p))
	return len(p), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

// tmpWatch wraps every temp file writer and records the largest total
// size tmp/ reached after a write, and the usage seen at the first one.
type tmpWatch struct {
	t          *testing.T
	s          *Store
	mu         sync.Mutex
	maxTmp     int64
	written    int64
	firstUsage int64
	writes     int
}

func (w *tmpWatch) wrap(f *os.File) io.Writer { return &tmpWriter{w: w, f: f} }

type tmpWriter struct {
	w *tmpWatch
	f *os.File
}

func (tw *tmpWriter) Write(p []byte) (int, error) {
	w := tw.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.writes == 0 {
		w.firstUsage, _ = w.s.Usage()
	}
	w.writes++
	k, err := tw.f.Write(p)
	w.written += int64(k)
	var total int64
	for _, p := range dirFiles(w.t, w.s.tmpDir) {
		if fi, err := os.Stat(p); err == nil {
			total += fi.Size()
		}
	}
	w.maxTmp = max(w.maxTmp, total)
	return k, err
}

func checkTmpEmpty(t *testing.T, home string) {
	t.Helper()
	if files := dirFiles(t, filepath.Join(home, "tmp")); len(files) != 0 {
		t.Errorf("temp files left: %v", files)
	}
}

// TestDeclaredSizeOverQuota is hole 3 of issue 8: a .filez declaring
// 2 GiB against a 10 MiB quota was written whole into tmp/ before its
// checksum failed. It is now refused before a byte is read or written,
// and evicts nothing.
func TestDeclaredSizeOverQuota(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{MaxBytes: 10 << 20, NoSync: true})
	keep := makeObj(1, 4<<20)
	put(t, s, keep)
	w := &tmpWatch{t: t, s: s}
	s.wrapTempWriter = w.wrap

	o := makeObj(2, 10)
	hdr := o.hdr
	hdr.Size = 2 << 30
	body := &endless{}
	err := s.PutContent(ctx, o.sum, hdr, body, "hostile")
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("PutContent declaring 2 GiB = %v, want ErrTooLarge", err)
	}
	if body.n != 0 {
		t.Errorf("read %d bytes of the body, want 0", body.n)
	}
	if w.writes != 0 {
		t.Errorf("%d writes to tmp/, want 0", w.writes)
	}
	checkTmpEmpty(t, home)
	if b, n := s.Usage(); b != 4<<20 || n != 1 {
		t.Errorf("Usage = %d, %d; want %d, 1", b, n, 4<<20)
	}
	expectContent(t, s, keep)

	// Just over the quota is refused too; a declared size that overflows
	// int64 as well.
	hdr.Size = 10<<20 + 1
	if err := s.PutContent(ctx, o.sum, hdr, &endless{}, "hostile"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("PutContent declaring quota+1 = %v, want ErrTooLarge", err)
	}
	hdr.Size = 1 << 63
	if err := s.PutContent(ctx, o.sum, hdr, &endless{}, "hostile"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("PutContent declaring 2^63 = %v, want ErrTooLarge", err)
	}
	checkTmpEmpty(t, home)
	fsckClean(t, s)
}

// TestContentLongerThanDeclared: a body that goes on past its declared
// size is cut off after size+1 bytes, and tmp/ never holds more than the
// declared size.
func TestContentLongerThanDeclared(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{MaxBytes: 10 << 20, NoSync: true})
	w := &tmpWatch{t: t, s: s}
	s.wrapTempWriter = w.wrap

	for _, tc := range []struct {
		name string
		size int
		body func(o obj) io.Reader
	}{
		// The right bytes, then more without end.
		{"endless tail", 1 << 20, func(o obj) io.Reader { return io.MultiReader(bytes.NewReader(o.content), &endless{}) }},
		// A body that never ends, from the start.
		{"endless", 3 << 20, func(obj) io.Reader { return &endless{} }},
		// One byte too many.
		{"one more", 5000, func(o obj) io.Reader { return io.MultiReader(bytes.NewReader(o.content), bytes.NewReader([]byte{0})) }},
		// An empty file declared, then content.
		{"declared empty", 0, func(obj) io.Reader { return &endless{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			*w = tmpWatch{t: t, s: s}
			o := makeObj(uint64(tc.size)+7, tc.size)
			body := &countingReader{r: tc.body(o)}
			err := s.PutContent(ctx, o.sum, o.hdr, body, "hostile")
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.What != "size" {
				t.Fatalf("PutContent = %v, want a size CorruptError", err)
			}
			if want := int64(tc.size) + 1; body.n > want {
				t.Errorf("read %d bytes, want at most %d", body.n, want)
			}
			if w.written > int64(tc.size) || w.maxTmp > int64(tc.size) {
				t.Errorf("wrote %d bytes, tmp/ reached %d; declared %d", w.written, w.maxTmp, tc.size)
			}
			checkNothingLeft(t, s, home, o)
		})
	}
}

// TestContentShorterThanDeclared: a body that ends early is a size
// CorruptError, even before the checksum is looked at.
func TestContentShorterThanDeclared(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true})
	o := makeObj(1, 5000)
	err := s.PutContent(context.Background(), o.sum, o.hdr, bytes.NewReader(o.content[:4999]), "t")
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.What != "size" || ce.Got != "4999" || ce.Want != "5000" {
		t.Fatalf("PutContent of a short body = %v", err)
	}
	checkNothingLeft(t, s, home, o)
}

// TestReserveBeforeWrite: the declared size is reserved, and room made
// by eviction, before the first byte reaches tmp/; a stored object is
// counted once.
func TestReserveBeforeWrite(t *testing.T) {
	home := t.TempDir()
	const quota = 10 << 20
	s := openStore(t, home, Options{MaxBytes: quota, NoSync: true})
	var old []obj
	for i := range 9 {
		o := makeObj(uint64(100+i), 1<<20)
		put(t, s, o)
		old = append(old, o)
	}
	w := &tmpWatch{t: t, s: s}
	s.wrapTempWriter = w.wrap
	o := makeObj(1, 5<<20)
	put(t, s, o)
	if w.firstUsage > quota || w.firstUsage < 5<<20 {
		t.Errorf("usage at the first write = %d; want the 5 MiB reservation, within the quota %d", w.firstUsage, quota)
	}
	var left int64
	for _, p := range old {
		if ok, _ := s.Has(p.id().Type, p.sum); ok {
			left += int64(len(p.content))
		}
	}
	if b, _ := s.Usage(); b != left+5<<20 || b > quota {
		t.Errorf("Usage = %d, want %d (old objects left) + %d, within %d", b, left, 5<<20, quota)
	}
	if d := diskBytes(t, home); d != left+5<<20 {
		t.Errorf("objects/ holds %d bytes, want %d", d, left+5<<20)
	}
	fsckClean(t, s)
}

// TestReservationReleased: every way a write can end without adding the
// object gives its reservation back.
func TestReservationReleased(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true})
	o := makeObj(1, 300000)

	// Cancelled part-way.
	ctx, cancel := context.WithCancel(context.Background())
	cr := &cancelReader{r: bytes.NewReader(o.content), cancel: cancel}
	if err := s.PutContent(ctx, o.sum, o.hdr, cr, "t"); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutContent cancelled = %v", err)
	}
	checkNothingLeft(t, s, home, o)

	// A reader error.
	errBody := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(o.content[:1000]), &errReader{errBody})
	if err := s.PutContent(context.Background(), o.sum, o.hdr, r, "t"); !errors.Is(err, errBody) {
		t.Fatalf("PutContent with a failing body = %v", err)
	}
	checkNothingLeft(t, s, home, o)

	// The same object from many writers at once: counted once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := s.PutContent(context.Background(), o.sum, o.hdr, bytes.NewReader(o.content), "t"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if b, n := s.Usage(); b != int64(len(o.content)) || n != 1 {
		t.Errorf("Usage = %d, %d; want %d, 1", b, n, len(o.content))
	}
	checkTmpEmpty(t, home)

	// Metadata over the quota is refused as well.
	small := openStore(t, t.TempDir(), Options{MaxBytes: 100, NoSync: true})
	data := bytes.Repeat([]byte{1}, 101)
	if err := small.PutMeta(context.Background(), index.TypeCommitMeta, o.sum, data, "t"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("PutMeta over the quota = %v, want ErrTooLarge", err)
	}
	if b, n := small.Usage(); b != 0 || n != 0 {
		t.Errorf("Usage after a refused PutMeta = %d, %d", b, n)
	}
}

type cancelReader struct {
	r      io.Reader
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	c.cancel()
	return c.r.Read(p[:min(len(p), 1000)])
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// TestPutFileSizeMismatch: a delta's output that is not the size its
// header declares is refused before it is hashed or reserved.
func TestPutFileSizeMismatch(t *testing.T) {
	home := t.TempDir()
	s := openStore(t, home, Options{NoSync: true})
	o := makeObj(1, 7000)
	f, err := s.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	f.Write(o.content[:6999])
	err = s.PutFile(context.Background(), o.sum, o.hdr, f, "delta")
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.What != "size" {
		t.Fatalf("PutFile of a short file = %v", err)
	}
	checkNothingLeft(t, s, home, o)
}
