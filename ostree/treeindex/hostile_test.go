package treeindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"testing"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// rawFile is a content entry as the test writes it, unchecked.
type rawFile struct {
	sum      []byte
	archived uint64
	hdr      []byte
	chunk    uint32
	digests  []byte
	points   []any
}

func (f rawFile) encode() []byte {
	return gvariant.MustEncode(typeFileEnt, []any{f.sum, f.archived, f.hdr, f.chunk, f.digests, f.points})
}

// rawIndex is a payload as the test writes it, unchecked.
type rawIndex struct {
	magic   uint64
	version uint32
	commit  []byte
	trees   []any
	metas   []any
	files   []any
}

func (r rawIndex) payload() []byte {
	return gvariant.MustEncode(typePayload, []any{bits.ReverseBytes64(r.magic), r.version, r.commit, r.trees, r.metas, r.files})
}

func compress(t *testing.T, payload []byte) []byte {
	t.Helper()
	e, err := encoder()
	if err != nil {
		t.Fatal(err)
	}
	return e.EncodeAll(payload, nil)
}

// rawFrame is a zstd frame with one raw block and whatever content size
// it is told to declare.
func rawFrame(fcs uint64, content []byte) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0} // magic; FHD: 8-byte FCS, single segment
	b = binary.LittleEndian.AppendUint64(b, fcs)
	bh := uint32(len(content))<<3 | 1 // raw, last
	b = append(b, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(b, content...)
}

func validRaw(t *testing.T) (rawIndex, rawFile) {
	t.Helper()
	tree := ostree.EmptyDirTree
	meta := (&ostree.DirMeta{Mode: ostree.ModeDir | 0o755}).Encode()
	h := &ostree.FileHeader{Size: 3 << 20, Mode: ostree.ModeReg | 0o644}
	hdr := h.ArchiveHeader()
	f := rawFile{sum: bytes.Repeat([]byte{7}, 32), archived: uint64(len(hdr)) + 1000, hdr: hdr, chunk: 1 << 20,
		digests: make([]byte, 96), points: []any{[]any{uint64(1 << 20), uint64(len(hdr)) + 300, uint8(3), []byte("window")}}}
	sumTree, sumMeta := ostree.Sum(tree), ostree.Sum(meta)
	return rawIndex{magic: Magic, version: Version, commit: make([]byte, 32),
		trees: []any{[]any{sumTree.Bytes(), tree}}, metas: []any{[]any{sumMeta.Bytes(), meta}}}, f
}

func TestDecodeValidRaw(t *testing.T) {
	r, f := validRaw(t)
	r.files = []any{f.encode()}
	if _, err := Decode(compress(t, r.payload())); err != nil {
		t.Fatalf("the baseline of the hostile cases is rejected: %v", err)
	}
	if _, err := Decode(rawFrame(uint64(len(r.payload())), r.payload())); err != nil {
		t.Fatalf("a raw-block frame is rejected: %v", err)
	}
}

func TestDecodeHostile(t *testing.T) {
	sym := &ostree.FileHeader{Mode: ostree.ModeSymlink | 0o777, Target: "x"}
	for _, tc := range []struct {
		name string
		raw  func(r *rawIndex, f *rawFile)
	}{
		{"magic", func(r *rawIndex, f *rawFile) { r.magic++ }},
		{"version", func(r *rawIndex, f *rawFile) { r.version = 2 }},
		{"short commit", func(r *rawIndex, f *rawFile) { r.commit = r.commit[:31] }},
		{"dirtree hash", func(r *rawIndex, f *rawFile) { r.trees = []any{[]any{make([]byte, 32), []byte{0}}} }},
		{"dirtree key length", func(r *rawIndex, f *rawFile) { r.trees = []any{[]any{[]byte{1}, []byte{0}}} }},
		{"duplicate dirmeta", func(r *rawIndex, f *rawFile) { r.metas = append(r.metas, r.metas[0]) }},
		{"unsorted content", func(r *rawIndex, f *rawFile) {
			g := *f
			g.sum = bytes.Repeat([]byte{1}, 32)
			r.files = []any{f.encode(), g.encode()}
		}},
		{"entry not normal", func(r *rawIndex, f *rawFile) { r.files = []any{append(f.encode(), 0)} }},
		{"entry empty", func(r *rawIndex, f *rawFile) { r.files = []any{[]byte{}} }},
		{"header pad", func(r *rawIndex, f *rawFile) { f.hdr = append([]byte(nil), f.hdr...); f.hdr[5] = 1 }},
		{"header trailing", func(r *rawIndex, f *rawFile) { f.hdr = append(append([]byte(nil), f.hdr...), 0) }},
		{"header device", func(r *rawIndex, f *rawFile) {
			f.hdr = (&ostree.FileHeader{Mode: 0o020644}).ArchiveHeader()
			f.chunk, f.digests, f.points = 0, []byte{}, []any{}
		}},
		{"archived short", func(r *rawIndex, f *rawFile) { f.archived = 3 }},
		{"symlink payload", func(r *rawIndex, f *rawFile) {
			f.hdr = sym.ArchiveHeader()
			f.archived = uint64(len(f.hdr)) + 2
			f.chunk, f.digests, f.points = 0, []byte{}, []any{}
		}},
		{"symlink chunked", func(r *rawIndex, f *rawFile) {
			f.hdr = sym.ArchiveHeader()
			f.archived = uint64(len(f.hdr))
			f.points = []any{}
		}},
		{"long symlink", func(r *rawIndex, f *rawFile) {
			f.hdr = (&ostree.FileHeader{Mode: ostree.ModeSymlink | 0o777, Target: string(bytes.Repeat([]byte("a"), MaxSymlinkTarget+1))}).ArchiveHeader()
			f.archived = uint64(len(f.hdr))
			f.chunk, f.digests, f.points = 0, []byte{}, []any{}
		}},
		{"digests without chunk size", func(r *rawIndex, f *rawFile) { f.chunk, f.points = 0, []any{} }},
		{"chunk size small", func(r *rawIndex, f *rawFile) { f.chunk = 4096 }},
		{"chunk size huge", func(r *rawIndex, f *rawFile) { f.chunk = 1 << 31 }},
		{"digest short", func(r *rawIndex, f *rawFile) { f.digests = f.digests[:95] }},
		{"digest missing", func(r *rawIndex, f *rawFile) { f.digests = f.digests[:64] }},
		{"point at 0", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[0] = uint64(0) }},
		{"point past size", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[0] = uint64(3 << 20) }},
		{"point in header", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[1] = uint64(len(f.hdr)) }},
		{"point past archive", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[1] = f.archived + 1 }},
		{"point huge", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[1] = uint64(1) << 63 }},
		{"point bits", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[2] = uint8(8) }},
		{"window too big", func(r *rawIndex, f *rawFile) { f.points[0].([]any)[3] = make([]byte, WindowSize+1) }},
		{"window before start", func(r *rawIndex, f *rawFile) {
			f.points = []any{[]any{uint64(5), uint64(len(f.hdr)) + 1, uint8(0), []byte("123456")}}
		}},
		{"points out of order", func(r *rawIndex, f *rawFile) {
			p := f.points[0].([]any)
			f.points = []any{p, []any{p[0].(uint64) + 1, p[1], p[2], p[3]}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, f := validRaw(t)
			tc.raw(&r, &f)
			if r.files == nil {
				r.files = []any{f.encode()}
			}
			_, err := Decode(compress(t, r.payload()))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want an error matching ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

func TestDecodeHostileFrames(t *testing.T) {
	s := newSample(t)
	good, err := s.build(t, BuildOptions{Threshold: 8 << 20}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := s.build(t, BuildOptions{Threshold: 8 << 20}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	skippable := []byte{0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 'h', 'i'}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a tree index at all")},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"two frames", append(append([]byte(nil), good...), good...)},
		{"skippable after", append(append([]byte(nil), good...), skippable...)},
		{"skippable before", append(append([]byte(nil), skippable...), good...)},
		{"declared size too big", rawFrame(MaxDecodedSize+1, payload)},
		{"declared size wrong", rawFrame(uint64(len(payload))+1, payload)},
		{"payload with a byte more", rawFrame(uint64(len(payload))+1, append(append([]byte(nil), payload...), 0))},
		{"too large", make([]byte, MaxCompressedSize+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want an error matching ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
	// Every truncation fails cleanly.
	for n := range len(good) {
		if _, err := Decode(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(good), err)
		}
	}
	// Every single-bit flip fails or decodes to something that
	// re-encodes (never a panic).
	for i := range len(good) {
		b := append([]byte(nil), good...)
		b[i] ^= 1 << (i % 8)
		if x, err := Decode(b); err == nil {
			if _, err := x.Encode(); err != nil {
				t.Fatalf("flip at %d: accepted, then Encode: %v", i, err)
			}
		}
	}
}
