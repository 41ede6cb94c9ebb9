package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/lazytree/lazytree/ostree"
)

// opsBuilder assembles an op stream.
type opsBuilder []byte

func (b *opsBuilder) op(op byte, args ...uint64) *opsBuilder {
	*b = append(*b, op)
	for _, a := range args {
		*b = binary.AppendUvarint(*b, a)
	}
	return b
}

func regHeader(size int) *ostree.FileHeader {
	return &ostree.FileHeader{Size: uint64(size), Mode: ostree.ModeReg | 0o644}
}

func contentSum(t testing.TB, h *ostree.FileHeader, data []byte) ostree.Checksum {
	t.Helper()
	c, err := ostree.ContentChecksum(h, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// synthetic is a small hand-made part: a dirmeta, a file spliced whole, a
// symlink, and a file built with open/write/close from the payload and a
// source object.
type synthetic struct {
	part    *Part
	objects []ObjRef
	src     *memSource
	usize   uint64
}

type memSource map[ostree.Checksum][]byte

func (m memSource) OpenContent(ctx context.Context, c ostree.Checksum) (Blob, error) {
	b, ok := m[c]
	if !ok {
		return nil, os.ErrNotExist
	}
	return bytes.NewReader(b), nil
}

func newSynthetic(t testing.TB) *synthetic {
	dirmeta := (&ostree.DirMeta{Mode: ostree.ModeDir | 0o755}).Encode()
	file := []byte("hello, world\n")
	target := []byte("../target")
	old := []byte("0123456789abcdefghij")
	built := append(append([]byte("PAYLOAD"), old[5:15]...), '!')

	var payload []byte
	payload = append(payload, dirmeta...)
	fileOff := len(payload)
	payload = append(payload, file...)
	targetOff := len(payload)
	payload = append(payload, target...)
	oldSum := contentSum(t, regHeader(len(old)), old)
	srcOff := len(payload)
	payload = append(payload, oldSum[:]...)
	patch := makePatch(ctrl{diff: make([]byte, 10), seek: 5}, ctrl{diff: []byte{1, 1, 1}, extra: []byte("XYZ")})
	patched := []byte("0123456789ghiXYZ")
	patchOff := len(payload)
	payload = append(payload, patch...)
	litOff := len(payload)
	payload = append(payload, "PAYLOAD!"...)

	link := &ostree.FileHeader{Mode: ostree.ModeSymlink | 0o777, Target: string(target)}
	objects := []ObjRef{
		{ostree.ObjDirMeta, ostree.Sum(dirmeta)},
		{ostree.ObjFile, contentSum(t, regHeader(len(file)), file)},
		{ostree.ObjFile, contentSum(t, link, nil)},
		{ostree.ObjFile, contentSum(t, regHeader(len(built)), built)},
		{ostree.ObjFile, contentSum(t, regHeader(len(patched)), patched)},
	}
	var ops opsBuilder
	ops.op('S', uint64(len(dirmeta)), 0)
	ops.op('S', 0, 0, uint64(len(file)), uint64(fileOff))
	ops.op('S', 1, 0, uint64(len(target)), uint64(targetOff))
	ops.op('o', 0, 0, uint64(len(built)))
	ops.op('w', 7, uint64(litOff))
	ops.op('r', uint64(srcOff))
	ops.op('w', 10, 5)
	ops.op('R')
	ops.op('w', 1, uint64(litOff+7))
	ops.op('c')
	ops.op('r', uint64(srcOff))
	ops.op('o', 0, 0, uint64(len(patched)))
	ops.op('B', uint64(patchOff), uint64(len(patch)))
	ops.op('c')
	ops.op('R')
	return &synthetic{
		part: &Part{
			Modes:   []Mode{{0, 0, ostree.ModeReg | 0o644}, {0, 0, ostree.ModeSymlink | 0o777}},
			Xattrs:  [][]ostree.Xattr{{}},
			Payload: payload,
			Ops:     ops,
		},
		objects: objects,
		src:     &memSource{oldSum: old},
		usize:   uint64(len(dirmeta) + len(file) + len(built) + len(patched)),
	}
}

// apply encodes the part uncompressed, opens it as an inline part and
// applies it.
func (s *synthetic) apply(t testing.TB) (*memSink, error) {
	t.Helper()
	enc, err := s.part.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenPart(append([]byte{0}, enc...), PartHeader{USize: s.usize, Objects: s.objects}, true)
	if err != nil {
		return nil, err
	}
	sink := newMemSink()
	err = p.Apply(context.Background(), s.objects, s.src, sink)
	return sink, err
}

func TestApplySynthetic(t *testing.T) {
	s := newSynthetic(t)
	sink, err := s.apply(t)
	if err != nil {
		t.Fatal(err)
	}
	if len(sink.order) != 5 || sink.aborts != 0 {
		t.Fatalf("%d objects, %d aborts", len(sink.order), sink.aborts)
	}
	if got := sink.content[s.objects[3].Checksum].data; string(got) != "PAYLOAD56789abcde!" {
		t.Errorf("built object = %q", got)
	}
	if got := sink.content[s.objects[4].Checksum].data; string(got) != "0123456789ghiXYZ" {
		t.Errorf("patched object = %q", got)
	}
	if got := sink.content[s.objects[2].Checksum].h.Target; got != "../target" {
		t.Errorf("symlink target = %q", got)
	}
}

func TestApplySkip(t *testing.T) {
	s := newSynthetic(t)
	enc, _ := s.part.Encode()
	p, err := OpenPart(append([]byte{0}, enc...), PartHeader{USize: s.usize}, true)
	if err != nil {
		t.Fatal(err)
	}
	sink := newMemSink()
	sink.skip = map[ostree.Checksum]bool{s.objects[1].Checksum: true, s.objects[3].Checksum: true, s.objects[4].Checksum: true}
	if err := p.Apply(context.Background(), s.objects, s.src, sink); err != nil {
		t.Fatal(err)
	}
	if len(sink.content) != 1 {
		t.Errorf("%d content objects stored, want only the symlink", len(sink.content))
	}
}

func TestApplyHostile(t *testing.T) {
	type mut func(s *synthetic)
	setOps := func(f func(b *opsBuilder)) mut {
		return func(s *synthetic) {
			var b opsBuilder
			f(&b)
			s.part.Ops = b
		}
	}
	payloadLen := func(s *synthetic) uint64 { return uint64(len(s.part.Payload)) }
	tests := []struct {
		name     string
		mutate   mut
		checksum bool // want a *ostree.ChecksumError
		want     string
	}{
		{"flipped payload byte in metadata", func(s *synthetic) { s.part.Payload[0] ^= 1 }, true, ""},
		{"flipped payload byte in content", func(s *synthetic) { s.part.Payload[len(s.part.Payload)-1] ^= 1 }, true, ""},
		{"wrong source content", func(s *synthetic) {
			for k, v := range *s.src {
				(*s.src)[k] = bytes.ToUpper(v)
			}
		}, true, ""},
		{"unknown opcode", setOps(func(b *opsBuilder) { b.op('Z') }), false, "unknown opcode"},
		{"truncated varint", func(s *synthetic) { s.part.Ops = append(s.part.Ops[:1:1], 0x80) }, false, "varint"},
		{"overlong varint", func(s *synthetic) {
			s.part.Ops = append([]byte{'S'}, bytes.Repeat([]byte{0xff}, 11)...)
		}, false, "varint"},
		{"splice offset out of range", setOps(func(b *opsBuilder) { b.op('S', 12, 1<<40) }), false, "outside"},
		{"splice offset+size overflows", setOps(func(b *opsBuilder) { b.op('S', 1<<63, 1<<63) }), false, "outside"},
		{"content splice out of range", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, payloadLen(s))
		}, false, "outside"},
		{"mode index out of range", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 7, 0, 13, 12)
		}, false, "mode index"},
		{"xattr index out of range", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 9, 13, 12)
		}, false, "xattr index"},
		{"content op for metadata object", setOps(func(b *opsBuilder) { b.op('o', 0, 0, 12) }), false, "content op"},
		{"more objects than listed", func(s *synthetic) {
			for range 5 {
				s.part.Ops = append(s.part.Ops, 'S', 12, 0)
			}
		}, false, "more objects"},
		{"fewer objects than listed", setOps(func(b *opsBuilder) { b.op('S', 12, 0) }), false, "produce 1 of its 5"},
		{"write with nothing open", setOps(func(b *opsBuilder) { b.op('w', 1, 0) }), false, "no object is open"},
		{"close with nothing open", setOps(func(b *opsBuilder) { b.op('c') }), false, "no object open"},
		{"write past size", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 9, 25).op('o', 0, 0, 18).op('w', 19, 0)
		}, false, "overflows its size"},
		{"close too early", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 9, 25).op('o', 0, 0, 18).op('w', 3, 0).op('c')
		}, false, "closed after 3 of 18"},
		{"ops end with object open", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 9, 25).op('o', 0, 0, 18)
		}, false, "is open"},
		{"open while open", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 9, 25).op('o', 0, 0, 18).op('o', 0, 0, 18)
		}, false, "still open"},
		{"read source out of range", setOps(func(b *opsBuilder) { b.op('r', 1<<20) }), false, "outside"},
		{"write from source out of range", func(s *synthetic) {
			s.part.Ops = bytes.Replace(s.part.Ops, []byte{'w', 10, 5}, []byte{'w', 10, 15}, 1)
		}, false, "outside the 20-byte source"},
		{"bspatch without source", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 9, 25).op('o', 0, 0, 18).op('B', 0, 24)
		}, false, "no read source"},
		{"alternating read sources", func(s *synthetic) {
			var other ostree.Checksum
			copy(other[:], s.part.Payload[:32])
			(*s.src)[other] = []byte("another source")
			var b opsBuilder
			for range 4 {
				b.op('r', 34).op('r', 0)
			}
			s.part.Ops = b
		}, false, "more read sources than objects"},
		{"bspatch with nothing open", setOps(func(b *opsBuilder) { b.op('B', 0, 24) }), false, "no object open"},
		{"symlink target with NUL", func(s *synthetic) { s.part.Payload[25+2] = 0 }, false, "symlink target"},
		{"empty symlink target", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 0, 25)
		}, false, "symlink target"},
		{"open for a symlink", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('o', 1, 0, 9)
		}, false, "symlink"},
		{"objects larger than usize", func(s *synthetic) { s.usize = 20 }, false, "uncompressed size"},
		{"open larger than usize", func(s *synthetic) {
			s.part.Ops = *(&opsBuilder{}).op('S', 12, 0).op('S', 0, 0, 13, 12).op('S', 1, 0, 9, 25).op('o', 0, 0, 1<<62)
		}, false, "uncompressed size"},
		{"metadata with the right checksum but not a dirmeta", func(s *synthetic) {
			s.part.Payload[10] = 0x81 // mode 040755 -> 0100755, then fix the name
			s.objects[0].Checksum = ostree.Sum(s.part.Payload[:12])
		}, false, "dirmeta"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynthetic(t)
			tc.mutate(s)
			sink, err := s.apply(t)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ostree.ErrCorrupt) {
				t.Fatalf("error %q does not match ErrCorrupt", err)
			}
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) != tc.checksum {
				t.Fatalf("error %q: checksum error = %v, want %v", err, !tc.checksum, tc.checksum)
			}
			if tc.checksum && !strings.Contains(err.Error(), ce.Want.String()) {
				t.Errorf("error %q does not name the object", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if sink == nil {
				return
			}
			for c := range sink.content {
				for _, o := range s.objects {
					if o.Checksum == c && ce != nil && ce.Want == c {
						t.Errorf("the corrupt object %s was committed", c)
					}
				}
			}
		})
	}
}

// TestApplyHostileAborts checks that an object built with open/write
// whose checksum fails is aborted, not committed.
func TestApplyHostileAborts(t *testing.T) {
	s := newSynthetic(t)
	s.part.Payload[len(s.part.Payload)-2] ^= 1 // in the literal run of the built object
	sink, err := s.apply(t)
	var ce *ostree.ChecksumError
	if !errors.As(err, &ce) || ce.Want != s.objects[3].Checksum {
		t.Fatalf("error %v, want a checksum error for %s", err, s.objects[3])
	}
	if sink.aborts != 1 || len(sink.content) != 2 {
		t.Errorf("%d aborts and %d content objects, want 1 and 2", sink.aborts, len(sink.content))
	}
}

// TestApplyCancel checks that Apply stops when its context is cancelled.
func TestApplyCancel(t *testing.T) {
	s := newSynthetic(t)
	enc, _ := s.part.Encode()
	p, err := OpenPart(append([]byte{0}, enc...), PartHeader{USize: s.usize}, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Apply(ctx, s.objects, s.src, newMemSink()); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestApplyMissingSource(t *testing.T) {
	s := newSynthetic(t)
	s.src = &memSource{}
	if _, err := s.apply(t); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want os.ErrNotExist", err)
	}
	s = newSynthetic(t)
	enc, _ := s.part.Encode()
	p, err := OpenPart(append([]byte{0}, enc...), PartHeader{USize: s.usize}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background(), s.objects, nil, newMemSink()); err == nil || !strings.Contains(err.Error(), "no source") {
		t.Fatalf("error %v, want a missing-source error", err)
	}
}

func TestOpenPartHostile(t *testing.T) {
	repo := vectorRepo(t)
	vs := vectorDeltas(t)
	sb, err := ParseSuperblock(readSuperblock(t, repo, vs[0].from, vs[0].to))
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(repo, sb.Path(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := sb.Parts[0]
	xzOf := func(data []byte, dict int) []byte {
		var buf bytes.Buffer
		w, err := xz.WriterConfig{DictCap: dict}.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		return append([]byte{'x'}, buf.Bytes()...)
	}
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0x40; return b }
	tests := []struct {
		name        string
		data        []byte
		hdr         PartHeader
		inline      bool
		unsupported bool
	}{
		{"flipped byte", flip(good, len(good)/2), hdr, false, false},
		{"flipped compression byte", flip(good, 0), hdr, false, false},
		{"truncated", good[:len(good)-1], hdr, false, false},
		{"truncated inline", good[:len(good)/2], hdr, true, false},
		{"flipped byte inline", flip(good, len(good)/2), hdr, true, false},
		{"flipped xz header inline", flip(good, 3), hdr, true, false},
		{"empty inline", []byte{}, hdr, true, false},
		{"version 1", good, PartHeader{Version: 1, Checksum: hdr.Checksum, Size: hdr.Size, USize: hdr.USize}, false, true},
		{"gzip compression", append([]byte{'g'}, good[1:]...), PartHeader{USize: hdr.USize}, true, true},
		{"unknown compression", append([]byte{'?'}, good[1:]...), PartHeader{USize: hdr.USize}, true, true},
		{"uncompressed garbage", []byte{0, 1, 2, 3}, PartHeader{}, true, false},
		{"xz bomb", xzOf(make([]byte, 24<<20), 1<<20), PartHeader{USize: 1 << 10}, true, false},
		{"xz dictionary too large", xzOf([]byte("x"), 256<<20), PartHeader{USize: 1 << 10}, true, true},
		{"xz not a part", xzOf([]byte("hello"), 1<<20), PartHeader{USize: 1 << 10}, true, false},
		{"xz with trailing data", append(xzOf([]byte("hello"), 1<<20), 0, 0, 0, 0), PartHeader{USize: 1 << 10}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenPart(tc.data, tc.hdr, tc.inline)
			if err == nil {
				t.Fatal("no error")
			}
			want := ostree.ErrCorrupt
			if tc.unsupported {
				want = ErrUnsupported
			}
			if !errors.Is(err, want) {
				t.Fatalf("error %q does not match %v", err, want)
			}
			var ce *ostree.ChecksumError
			if strings.HasPrefix(tc.name, "flipped") && !tc.inline && (!errors.As(err, &ce) || ce.Want != hdr.Checksum) {
				t.Errorf("error %q is not a checksum error for the part", err)
			}
		})
	}
}

func TestParseSuperblockHostile(t *testing.T) {
	repo := vectorRepo(t)
	vs := vectorDeltas(t)
	good := readSuperblock(t, repo, vs[0].from, vs[0].to)
	sb, err := ParseSuperblock(good)
	if err != nil {
		t.Fatal(err)
	}
	reencode := func(f func(s *Superblock)) []byte {
		s, _ := ParseSuperblock(good)
		f(s)
		b, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name        string
		data        []byte
		unsupported bool
	}{
		{"empty", nil, false},
		{"truncated", good[:len(good)-1], false},
		{"flipped byte in the commit", bytes.Replace(good, sb.CommitData[:40], append([]byte{sb.CommitData[0] ^ 1}, sb.CommitData[1:40]...), 1), false},
		{"version 1", reencode(func(s *Superblock) { s.Parts[0].Version = 1 }), true},
		{"bad object type", reencode(func(s *Superblock) { s.Parts[0].Objects[0].Type = ostree.ObjCommitMeta }), false},
		{"bad fallback type", reencode(func(s *Superblock) {
			s.Fallbacks = []Fallback{{Object: ObjRef{Type: 9}}}
		}), false},
		{"part too large", reencode(func(s *Superblock) { s.Parts[0].Size = MaxPartSize + 1 }), false},
		{"signed superblock", signedSuperblock(good), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSuperblock(tc.data)
			want := ostree.ErrCorrupt
			if tc.unsupported {
				want = ErrUnsupported
			}
			if !errors.Is(err, want) {
				t.Fatalf("error %v does not match %v", err, want)
			}
		})
	}
}

func signedSuperblock(plain []byte) []byte {
	return gvariantMustEncode(typeSigned, []any{uint64(0x54444e475354534f), plain, []any{}})
}

// TestEndiannessGuess checks ostree's heuristic on superblocks without the
// ostree.endianness key.
func TestEndiannessGuess(t *testing.T) {
	repo := vectorRepo(t)
	for _, v := range vectorDeltas(t) {
		good := readSuperblock(t, repo, v.from, v.to)
		s, err := ParseSuperblock(good)
		if err != nil {
			t.Fatal(err)
		}
		// Encode the integers in v's order, then drop the key.
		data, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		data = dropEndianness(t, data)
		g, err := ParseSuperblock(data)
		if err != nil {
			t.Fatal(err)
		}
		if !g.EndiannessGuessed || g.Endianness != v.endianness {
			t.Errorf("%s: guessed %q (%v), want %q", v.name, g.Endianness, g.EndiannessGuessed, v.endianness)
		}
		if g.Parts[0].Size != s.Parts[0].Size || g.Parts[0].USize != s.Parts[0].USize {
			t.Errorf("%s: sizes %d/%d, want %d/%d", v.name, g.Parts[0].Size, g.Parts[0].USize, s.Parts[0].Size, s.Parts[0].USize)
		}
	}
}
