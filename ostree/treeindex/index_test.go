package treeindex

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/klauspost/compress/flate"

	"github.com/lazytree/lazytree/ostree"
)

func TestBuildAndRoundTrip(t *testing.T) {
	s := newSample(t)
	x := s.build(t, BuildOptions{Scan: s.replay(t), Concurrency: 3})
	if x.Commit != s.commit || len(x.Trees) != 3 || len(x.Metas) != 2 || len(x.Files) != 5 {
		t.Fatalf("index of %s: %d dirtrees, %d dirmetas, %d files; want 3, 2, 5", x.Commit, len(x.Trees), len(x.Metas), len(x.Files))
	}
	if err := x.CheckComplete(s.root.RootTree, s.root.RootMeta); err != nil {
		t.Fatal(err)
	}
	for _, o := range append(append([]Object(nil), x.Trees...), x.Metas...) {
		if ostree.Sum(o.Data) != o.Checksum || !bytes.Equal(o.Data, s.src.meta[o.Checksum]) {
			t.Fatalf("object %s: bytes are not the repository's", o.Checksum)
		}
	}
	for i := range x.Files {
		f := &x.Files[i]
		filez := s.src.filez[f.Checksum]
		h, err := ostree.ReadArchiveHeader(bytes.NewReader(filez))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Header.ArchiveHeader(), h.ArchiveHeader()) || !bytes.Equal(filez[:f.HeaderSize], h.ArchiveHeader()) {
			t.Fatalf("%s: header differs from the .filez", f.Checksum)
		}
		if f.ArchivedSize != uint64(len(filez)) {
			t.Fatalf("%s: archived size %d, .filez is %d bytes", f.Checksum, f.ArchivedSize, len(filez))
		}
		if got, _ := ostree.ContentChecksum(&f.Header, bytes.NewReader(s.content[f.Checksum])); got != f.Checksum {
			t.Fatalf("%s: stream header and content hash to %s", f.Checksum, got)
		}
		if f.Checksum != s.big && (f.ChunkSize != 0 || f.Chunks() != 0 || len(f.Points) != 0) {
			t.Fatalf("%s: small content chunked", f.Checksum)
		}
	}
	big, ok := x.File(s.big)
	if !ok {
		t.Fatal("big.bin missing")
	}
	content := s.content[s.big]
	if big.ChunkSize != DefaultChunkSize || big.Chunks() != 3 {
		t.Fatalf("big.bin: chunk size %d, %d chunks; want %d, 3", big.ChunkSize, big.Chunks(), DefaultChunkSize)
	}
	for i := range big.Chunks() {
		off, n, d := big.Chunk(i)
		if d != sha256.Sum256(content[off:off+n]) {
			t.Fatalf("chunk %d (%d+%d): digest differs", i, off, n)
		}
	}
	if _, n, _ := big.Chunk(2); n != 1<<19 {
		t.Fatalf("last chunk of %d bytes, want %d", n, 1<<19)
	}
	if len(big.Points) != len(s.points) {
		t.Fatalf("%d points, want %d", len(big.Points), len(s.points))
	}
	// Every point must really resume inflating: from In with the window
	// as dictionary, the output is the content from Out on.
	filez := s.src.filez[s.big]
	for _, off := range []int64{0, 1, pointSpan - 1, pointSpan, pointSpan + 7, 2*pointSpan + 100, int64(len(content)) - 1} {
		p := big.PointBefore(off)
		if p.Out > off || off-p.Out >= pointSpan {
			t.Fatalf("PointBefore(%d) = point at %d", off, p.Out)
		}
		zr := flate.NewReaderDict(bytes.NewReader(filez[p.In:]), p.Window)
		got := make([]byte, off-p.Out+1)
		if _, err := io.ReadFull(zr, got); err != nil {
			t.Fatalf("inflate from the point at %d: %v", p.Out, err)
		}
		if !bytes.Equal(got, content[p.Out:off+1]) {
			t.Fatalf("inflate from the point at %d: wrong bytes", p.Out)
		}
	}

	enc, err := x.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := x.Encode()
	if err != nil || !bytes.Equal(enc, again) {
		t.Fatalf("Encode is not deterministic (%v)", err)
	}
	y, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if err := equalIndex(x, y); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if b, ok := y.DirTree(s.root.RootTree); !ok || ostree.Sum(b) != s.root.RootTree {
		t.Fatal("DirTree(root) after decoding")
	}
	if _, ok := y.DirMeta(s.root.RootTree); ok {
		t.Fatal("DirMeta found a dirtree's checksum")
	}
	if _, ok := y.File(ostree.Checksum{}); ok {
		t.Fatal("File found the zero checksum")
	}
	t.Logf("index: %d bytes compressed", len(enc))
}

func TestBuildOptions(t *testing.T) {
	s := newSample(t)
	x := s.build(t, BuildOptions{Threshold: 4 << 20, Scan: s.replay(t)})
	if f, _ := x.File(s.big); f.ChunkSize != 0 || len(f.Points) != 0 {
		t.Fatal("content under the threshold was chunked")
	}
	x = s.build(t, BuildOptions{ChunkSize: 1 << 17})
	if f, _ := x.File(s.big); f.Chunks() != 20 || len(f.Points) != 0 {
		t.Fatalf("128 KiB chunks: %d chunks, %d points; want 20, 0", f.Chunks(), len(f.Points))
	}
	if _, err := Build(context.Background(), s.src, s.commit, BuildOptions{ChunkSize: 100}); err == nil {
		t.Fatal("chunk size 100 accepted")
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  func(s *sample)
		scan    func(s *sample) ScanFunc
		corrupt bool
	}{
		{name: "content byte flipped", corrupt: true, tamper: func(s *sample) {
			b := s.src.filez[s.big]
			b[len(b)/2] ^= 0x40
		}},
		{name: "dirtree replaced", corrupt: true, tamper: func(s *sample) {
			s.src.meta[s.root.RootTree] = ostree.EmptyDirTree
		}},
		{name: "content missing", tamper: func(s *sample) { delete(s.src.filez, s.big) }},
		{name: "points out of order", scan: func(s *sample) ScanFunc {
			return func(r io.Reader, span int64, fn func(AccessPoint) error) error {
				fn(s.points[1])
				return fn(s.points[0])
			}
		}},
		{name: "point past the end", scan: func(s *sample) ScanFunc {
			return func(r io.Reader, span int64, fn func(AccessPoint) error) error {
				return fn(AccessPoint{Out: 1, In: 1 << 40})
			}
		}},
		{name: "scanner error", scan: func(s *sample) ScanFunc {
			return func(r io.Reader, span int64, fn func(AccessPoint) error) error { return errors.New("boom") }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSample(t)
			if tc.tamper != nil {
				tc.tamper(s)
			}
			opts := BuildOptions{}
			if tc.scan != nil {
				opts.Scan = tc.scan(s)
			}
			_, err := Build(context.Background(), s.src, s.commit, opts)
			if err == nil {
				t.Fatal("built an index")
			}
			if tc.corrupt && !errors.Is(err, ostree.ErrCorrupt) {
				t.Fatalf("error %v does not match ostree.ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

func TestBuildTrimsWindows(t *testing.T) {
	s := newSample(t)
	// A scanner that hands out 64 KiB windows, zero-padded at the front
	// when the point is early, as some zran ports do.
	x := s.build(t, BuildOptions{Scan: func(r io.Reader, span int64, fn func(AccessPoint) error) error {
		io.Copy(io.Discard, r)
		for _, p := range s.points {
			w := make([]byte, 64<<10)
			copy(w[len(w)-len(p.Window):], p.Window)
			p.Window = w
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}})
	f, _ := x.File(s.big)
	for i, p := range f.Points {
		if !bytes.Equal(p.Window, s.points[i].Window) {
			t.Fatalf("point %d: window of %d bytes not trimmed to the recorded %d", i, len(p.Window), len(s.points[i].Window))
		}
	}
}

func TestCheckComplete(t *testing.T) {
	s := newSample(t)
	x := s.build(t, BuildOptions{})
	y := *x
	y.Files = nil
	if err := y.CheckComplete(s.root.RootTree, s.root.RootMeta); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("index without content: %v", err)
	}
	y = *x
	y.Metas = x.Metas[:1]
	if err := y.CheckComplete(s.root.RootTree, s.root.RootMeta); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("index missing a dirmeta: %v", err)
	}
}

// TestEncodeSmall covers payloads of every size class of the zstd frame
// header's content-size field, down to an index of an empty tree.
func TestEncodeSmall(t *testing.T) {
	meta := (&ostree.DirMeta{Mode: ostree.ModeDir | 0o755}).Encode()
	for _, n := range []int{0, 1, 200, 300, 70000} {
		x := &Index{Trees: []Object{{Checksum: ostree.Sum(ostree.EmptyDirTree), Data: ostree.EmptyDirTree}}}
		for i := range n {
			d := append(append([]byte(nil), meta...), byte(i), byte(i>>8), byte(i>>16))
			x.Metas = append(x.Metas, Object{Checksum: ostree.Sum(d), Data: d})
		}
		slices.SortFunc(x.Metas, func(a, b Object) int { return bytes.Compare(a.Checksum[:], b.Checksum[:]) })
		b, err := x.Encode()
		if err != nil {
			t.Fatal(err)
		}
		y, err := Decode(b)
		if err != nil {
			t.Fatalf("%d dirmetas (%d bytes): %v", n, len(b), err)
		}
		if err := equalIndex(x, y); err != nil {
			t.Fatal(err)
		}
	}
}
