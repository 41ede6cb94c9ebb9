package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/lazytree/lazytree/ostree"
)

// emptyDir fails the test if dir holds anything: OpenPartStream must
// leave no temporary file behind.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in the temporary directory: %s", e.Name())
	}
}

// TestOpenPartStreamVectors streams every separate vector part and checks
// that it applies to the same objects as the loose ones.
func TestOpenPartStreamVectors(t *testing.T) {
	repo := vectorRepo(t)
	for _, v := range vectorDeltas(t) {
		sb, err := ParseSuperblock(readSuperblock(t, repo, v.from, v.to))
		if err != nil {
			t.Fatal(err)
		}
		for i, ph := range sb.Parts {
			if ph.Inline != nil {
				continue
			}
			tmp := t.TempDir()
			p, err := OpenPartStream(context.Background(), iotest.HalfReader(bytes.NewReader(partData(t, repo, sb, i))), ph, tmp)
			if err != nil {
				t.Fatalf("%s part %d: %v", v.name, i, err)
			}
			if p.mapping == nil {
				t.Errorf("%s part %d: body not mapped", v.name, i)
			}
			emptyDir(t, tmp) // unlinked while open
			sink := newMemSink()
			if err := p.Apply(context.Background(), ph.Objects, &repoSource{dir: repo}, sink); err != nil {
				t.Fatalf("%s part %d: %v", v.name, i, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if err := p.Apply(context.Background(), ph.Objects, nil, sink); err == nil {
				t.Error("Apply after Close succeeded")
			}
			if len(sink.order) != len(ph.Objects) {
				t.Errorf("%s part %d: %d objects, want %d", v.name, i, len(sink.order), len(ph.Objects))
			}
			checkAgainstRepo(t, repo, sink)
		}
	}
}

func TestOpenPartStreamHostile(t *testing.T) {
	repo := vectorRepo(t)
	vs := vectorDeltas(t)
	sb, err := ParseSuperblock(readSuperblock(t, repo, vs[0].from, vs[0].to))
	if err != nil {
		t.Fatal(err)
	}
	good := partData(t, repo, sb, 0)
	hdr := sb.Parts[0]
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	transfer := errors.New("connection reset")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		r        io.Reader
		hdr      PartHeader
		want     error // matched with errors.Is
		checksum bool  // want a *ostree.ChecksumError
	}{
		{"flipped byte", nil, bytes.NewReader(flip(len(good) / 2)), hdr, ostree.ErrCorrupt, true},
		{"flipped xz header", nil, bytes.NewReader(flip(3)), hdr, ostree.ErrCorrupt, true},
		{"flipped compression byte", nil, bytes.NewReader(flip(0)), hdr, ostree.ErrCorrupt, true},
		{"truncated", nil, bytes.NewReader(good[:len(good)-1]), hdr, ostree.ErrCorrupt, false},
		{"longer than the header says", nil, bytes.NewReader(append(bytes.Clone(good), 0)), hdr, ostree.ErrCorrupt, false},
		{"version 1", nil, bytes.NewReader(good), PartHeader{Version: 1, Checksum: hdr.Checksum, Size: hdr.Size, USize: hdr.USize}, ErrUnsupported, false},
		{"size 0", nil, bytes.NewReader(good), PartHeader{Checksum: hdr.Checksum, USize: hdr.USize}, ostree.ErrCorrupt, false},
		{"transfer error", nil, io.MultiReader(bytes.NewReader(good[:len(good)/2]), iotest.ErrReader(transfer)), hdr, transfer, false},
		{"cancelled", cancelled, bytes.NewReader(good), hdr, context.Canceled, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			tmp := t.TempDir()
			p, err := OpenPartStream(ctx, tc.r, tc.hdr, tmp)
			if err == nil {
				p.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q does not match %v", err, tc.want)
			}
			if tc.want == transfer && errors.Is(err, ostree.ErrCorrupt) {
				t.Errorf("transfer error %q taken for a corrupt part", err)
			}
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) != tc.checksum {
				t.Errorf("error %q: checksum error %v, want %v", err, !tc.checksum, tc.checksum)
			}
			emptyDir(t, tmp)
		})
	}
}

// storedXZStream writes, in a goroutine, the part file 'x' + an xz stream
// of uncompressed LZMA2 chunks holding size bytes of body. It needs no
// memory for the body, so tests can make parts of any size. sent counts
// the bytes the reader handed out.
func storedXZStream(body io.Reader, size int64, sent *atomic.Int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		w := &sentWriter{w: pw, n: sent}
		flags := []byte{0, 0x04}
		hdr := []byte{12/4 - 1, 0, 0x21, 0x01, 8, 0, 0, 0}
		head := append([]byte{CompressionXZ}, xzMagic...)
		head = append(head, flags...)
		head = binary.LittleEndian.AppendUint32(head, crc32.ChecksumIEEE(flags))
		head = append(head, hdr...)
		head = binary.LittleEndian.AppendUint32(head, crc32.ChecksumIEEE(hdr))
		if _, err := w.Write(head); err != nil {
			return
		}
		crc := crc64.New(crc64.MakeTable(crc64.ECMA))
		buf := make([]byte, 3+1<<16)
		var compressed int64
		for off := int64(0); off < size; off += 1 << 16 {
			n := min(1<<16, size-off)
			buf[0] = 2
			if off == 0 {
				buf[0] = 1
			}
			binary.BigEndian.PutUint16(buf[1:], uint16(n-1))
			if _, err := io.ReadFull(body, buf[3:3+n]); err != nil {
				pw.CloseWithError(err)
				return
			}
			crc.Write(buf[3 : 3+n])
			if _, err := w.Write(buf[:3+n]); err != nil {
				return
			}
			compressed += 3 + n
		}
		tail := []byte{0}
		compressed++
		for (compressed+int64(len(tail))-1)%4 != 0 {
			tail = append(tail, 0)
		}
		tail = append(tail, crc.Sum(nil)[:]...)
		// crc64's Sum is big-endian; xz stores the check little-endian.
		c := tail[len(tail)-8:]
		binary.LittleEndian.PutUint64(c, binary.BigEndian.Uint64(c))
		index := []byte{0, 1}
		index = appendXZVarint(index, uint64(12+compressed+8))
		index = appendXZVarint(index, uint64(size))
		for len(index)%4 != 0 {
			index = append(index, 0)
		}
		index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
		tail = append(tail, index...)
		footer := binary.LittleEndian.AppendUint32(nil, uint32(len(index)/4-1))
		footer = append(footer, flags...)
		tail = binary.LittleEndian.AppendUint32(tail, crc32.ChecksumIEEE(footer))
		tail = append(tail, footer...)
		tail = append(tail, 'Y', 'Z')
		if _, err := w.Write(tail); err != nil {
			return
		}
		pw.Close()
	}()
	return pr
}

type sentWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *sentWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if c.n != nil {
		c.n.Add(int64(n))
	}
	return n, err
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// heapPeak runs f and returns the largest HeapInuse seen while it ran,
// less HeapInuse before it (after a GC), and the bytes it allocated.
func heapPeak(t *testing.T, f func()) (peak, alloc uint64) {
	t.Helper()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var max atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > max.Load() {
				max.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if after.HeapInuse > max.Load() {
		max.Store(after.HeapInuse)
	}
	if max.Load() > before.HeapInuse {
		peak = max.Load() - before.HeapInuse
	}
	return peak, after.TotalAlloc - before.TotalAlloc
}

// heapBound is what opening and applying one part may add to the heap:
// the xz dictionary (8 MiB in these tests) and a few buffers, whatever
// the part's size.
const heapBound = 64 << 20

// TestOpenPartStreamHostileSize serves the 512 MiB part of issue 8 (hole
// 3) behind a header that declares a small part: it must be refused once
// the output passes the part's limit, with the heap bounded and no more
// than the limit read.
func TestOpenPartStreamHostileSize(t *testing.T) {
	const size = 512 << 20
	hdr := PartHeader{Size: MaxPartSize, USize: 1 << 10, Objects: []ObjRef{{ostree.ObjFile, ostree.Sum(nil)}}}
	limit := int64(partLimit(hdr.USize, len(hdr.Objects)))
	tmp := t.TempDir()
	var sent atomic.Int64
	r := storedXZStream(zeroReader{}, size, &sent)
	defer r.Close()
	var err error
	peak, alloc := heapPeak(t, func() {
		_, err = OpenPartStream(context.Background(), r, hdr, tmp)
	})
	if !errors.Is(err, ostree.ErrCorrupt) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("error %v, want a refusal for size", err)
	}
	t.Logf("512 MiB part, limit %d: refused after %d bytes read; heap peak +%d KiB, %d KiB allocated", limit, sent.Load(), peak>>10, alloc>>10)
	if got := sent.Load(); got > limit+1<<20 {
		t.Errorf("read %d bytes, limit %d", got, limit)
	}
	if peak > heapBound {
		t.Errorf("heap grew by %d bytes, bound %d", peak, heapBound)
	}
	emptyDir(t, tmp)

	// The same stream behind a header that says 1 MiB: no more than
	// that (and one byte to see the end) is read.
	hdr = PartHeader{Size: 1 << 20, USize: 256 << 20, Objects: hdr.Objects}
	sent.Store(0)
	r2 := storedXZStream(zeroReader{}, size, &sent)
	defer r2.Close()
	if _, err = OpenPartStream(context.Background(), r2, hdr, tmp); !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("error %v, want ErrCorrupt", err)
	}
	if got := sent.Load(); got > 1<<20+1 {
		t.Errorf("read %d bytes of a part whose header says %d", got, 1<<20)
	}
	emptyDir(t, tmp)
}

// TestOpenPartStreamBomb decompresses a small xz stream of zeros that
// declares (in its chunk headers) far more than the part may hold: it is
// refused when the declared size passes the limit, before the decoder
// writes that much.
func TestOpenPartStreamBomb(t *testing.T) {
	n := 64 << 20
	if raceEnabled {
		n = 24 << 20
	}
	var buf bytes.Buffer
	buf.WriteByte(CompressionXZ)
	w, err := xz.WriterConfig{DictCap: 1 << 20}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(w, zeroReader{}, int64(n)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	data := buf.Bytes()
	hdr := PartHeader{Checksum: sha256.Sum256(data), Size: uint64(len(data)), USize: 1 << 10}
	tmp := t.TempDir()
	var p *Part
	peak, _ := heapPeak(t, func() {
		p, err = OpenPartStream(context.Background(), bytes.NewReader(data), hdr, tmp)
	})
	if err == nil {
		p.Close()
		t.Fatal("no error")
	}
	if !errors.Is(err, ostree.ErrCorrupt) || !errors.Is(err, errTooLarge) {
		t.Fatalf("error %v, want a refusal for size", err)
	}
	t.Logf("%d-byte xz of %d MiB: heap peak +%d KiB", len(data), n>>20, peak>>10)
	if peak > heapBound {
		t.Errorf("heap grew by %d bytes, bound %d", peak, heapBound)
	}
	emptyDir(t, tmp)
}

// TestLimitWriter checks that the output limit refuses the write that
// would pass it and writes none of it.
func TestLimitWriter(t *testing.T) {
	var out bytes.Buffer
	lw := &limitWriter{w: &out, left: 10}
	if _, err := lw.Write(make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := lw.Write(make([]byte, 5)); !errors.Is(err, errTooLarge) {
		t.Fatalf("error %v, want errTooLarge", err)
	}
	if out.Len() != 6 {
		t.Errorf("%d bytes written, want 6", out.Len())
	}
}

// bigPart is one content object of n bytes spliced from the payload,
// compressed with xz (8 MiB dictionary, like Generate) into a file.
type bigPart struct {
	path string
	hdr  PartHeader
}

func makeBigPart(t testing.TB, n int) bigPart {
	t.Helper()
	data := make([]byte, n)
	for i := range data {
		if i%4096 < 16 {
			data[i] = byte(i >> 12)
		}
	}
	h := regHeader(n)
	obj := ObjRef{ostree.ObjFile, contentSum(t, h, data)}
	p := &Part{Modes: []Mode{{0, 0, h.Mode}}, Xattrs: [][]ostree.Xattr{{}}, Payload: data, Ops: *(&opsBuilder{}).op('S', 0, 0, uint64(n), 0)}
	body, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "part")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hs := sha256.New()
	mw := io.MultiWriter(f, hs)
	mw.Write([]byte{CompressionXZ})
	w, err := xz.WriterConfig{DictCap: xzDictCap, CheckSum: xz.CRC64}.NewWriter(mw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return bigPart{path, PartHeader{Checksum: ostree.Checksum(hs.Sum(nil)), Size: uint64(st.Size()), USize: uint64(n), Objects: []ObjRef{obj}}}
}

// countSink verifies like any sink and counts content bytes.
type countSink struct{ n atomic.Int64 }

func (s *countSink) PutMetadata(ctx context.Context, obj ObjRef, data []byte) error { return nil }
func (s *countSink) CreateContent(ctx context.Context, c ostree.Checksum, h *ostree.FileHeader) (ContentWriter, error) {
	return countWriterSink{s}, nil
}

type countWriterSink struct{ s *countSink }

func (w countWriterSink) Write(p []byte) (int, error) { w.s.n.Add(int64(len(p))); return len(p), nil }
func (countWriterSink) Commit() error                 { return nil }
func (countWriterSink) Abort()                        {}

// TestOpenPartStreamLarge streams a legitimate 64 MiB part (16 MiB under
// the race detector) from a file and applies it: the heap must stay
// within heapBound, and nothing may be left in the temporary directory.
func TestOpenPartStreamLarge(t *testing.T) {
	n := 64 << 20
	if raceEnabled {
		n = 16 << 20
	}
	bp := makeBigPart(t, n)
	tmp := t.TempDir()
	f, err := os.Open(bp.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sink := &countSink{}
	peak, alloc := heapPeak(t, func() {
		p, err := OpenPartStream(context.Background(), f, bp.hdr, tmp)
		if err != nil {
			t.Error(err)
			return
		}
		defer p.Close()
		if err := p.Apply(context.Background(), bp.hdr.Objects, nil, sink); err != nil {
			t.Error(err)
		}
	})
	if sink.n.Load() != int64(n) {
		t.Errorf("%d content bytes applied, want %d", sink.n.Load(), n)
	}
	t.Logf("%d MiB part (%d bytes compressed): heap peak +%d KiB, %d KiB allocated", n>>20, bp.hdr.Size, peak>>10, alloc>>10)
	if peak > heapBound {
		t.Errorf("heap grew by %d bytes, bound %d", peak, heapBound)
	}
	emptyDir(t, tmp)
}

// goDecoder makes xz decode with the Go port for the rest of the test.
func goDecoder(t *testing.T) {
	old := useLiblzma
	useLiblzma = func() bool { return false }
	t.Cleanup(func() { useLiblzma = old })
}

// TestDecodersReuseDictionaries: parts opened through one Decoders reuse
// its decoders: the second part allocates no new dictionary, where the
// package's OpenPartStream allocates one per part.
func TestDecodersReuseDictionaries(t *testing.T) {
	goDecoder(t) // liblzma's dictionary is not on the Go heap, nor pooled
	p := vectorXZParts(t)[0]
	hdr, data := p.hdr, p.data
	open := func(d *Decoders) uint64 {
		_, alloc := heapPeak(t, func() {
			p, err := d.OpenPartStream(context.Background(), bytes.NewReader(data), hdr, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
		})
		return alloc
	}
	d := NewDecoders(1)
	first := open(d)
	second := open(d)
	fresh := open(nil)
	if first < 1<<20 || fresh < 1<<20 {
		t.Fatalf("a fresh decoder allocated %d and %d bytes: no dictionary?", first, fresh)
	}
	if second > first/4 {
		t.Fatalf("the second part through one Decoders allocated %d bytes, the first %d: its dictionary was not reused", second, first)
	}
}
