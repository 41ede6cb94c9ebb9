package treeindex

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/bits"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// GVariant types of the payload (see doc.go). The payload is decoded a
// table entry at a time: the top level with its tables as plain ay (the
// tables all have alignment 1, so the framing is the same), then each
// table's framing with gvariant.ParseVarArray, then each entry.
var (
	typePayload   = gvariant.MustType("(tuaya(ayay)a(ayay)aay)")
	typeTopLevel  = gvariant.MustType("(tuayayayay)")
	typeObjectEnt = gvariant.MustType("(ayay)")
	typeFileEnt   = gvariant.MustType("(aytayuaya(ttyay))")
)

var (
	encOnce  sync.Once
	enc      *zstd.Encoder
	decOnce  sync.Once
	dec      *zstd.Decoder
	codecErr error
)

// One encoder and one decoder for the process, used through EncodeAll and
// DecodeAll only, which start no goroutines and are safe for concurrent
// use. Concurrency 1 keeps the encoder's output a function of its input.
func encoder() (*zstd.Encoder, error) {
	encOnce.Do(func() {
		// Single segment: the frame header then always carries the
		// content size, which Decode requires (zstd omits it for small
		// multi-segment frames).
		enc, codecErr = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithSingleSegment(true),
			zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderCRC(true))
	})
	return enc, codecErr
}

func decoder() (*zstd.Decoder, error) {
	decOnce.Do(func() {
		var err error
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(MaxDecodedSize), zstd.WithDecoderMaxWindow(MaxDecodedSize))
		if err != nil {
			codecErr = err
		}
	})
	return dec, codecErr
}

// Encode serialises the index (GVariant normal form, then one zstd
// frame). It checks what Decode checks, so it never writes an index that
// Decode rejects. The checksum that the summary carries is
// ostree.Sum of the returned bytes.
func (x *Index) Encode() ([]byte, error) {
	payload, err := x.marshal()
	if err != nil {
		return nil, err
	}
	if len(payload) > MaxDecodedSize {
		return nil, fmt.Errorf("encode tree index: %d bytes, more than %d", len(payload), MaxDecodedSize)
	}
	e, err := encoder()
	if err != nil {
		return nil, fmt.Errorf("encode tree index: %w", err)
	}
	out := e.EncodeAll(payload, nil)
	if len(out) > MaxCompressedSize {
		return nil, fmt.Errorf("encode tree index: %d compressed bytes, more than %d", len(out), MaxCompressedSize)
	}
	return out, nil
}

func (x *Index) marshal() ([]byte, error) {
	if len(x.Trees) > MaxObjects || len(x.Metas) > MaxObjects || len(x.Files) > MaxObjects {
		return nil, fmt.Errorf("encode tree index: more than %d entries in a table", MaxObjects)
	}
	objs := func(what string, list []Object) ([]any, error) {
		out := make([]any, len(list))
		for i, o := range list {
			if i > 0 && bytes.Compare(list[i-1].Checksum[:], o.Checksum[:]) >= 0 {
				return nil, fmt.Errorf("encode tree index: %s table unsorted or duplicated at %s", what, o.Checksum)
			}
			if ostree.Sum(o.Data) != o.Checksum {
				return nil, fmt.Errorf("encode tree index: %s %s: data hashes to %s", what, o.Checksum, ostree.Sum(o.Data))
			}
			out[i] = []any{o.Checksum.Bytes(), o.Data}
		}
		return out, nil
	}
	trees, err := objs("dirtree", x.Trees)
	if err != nil {
		return nil, err
	}
	metas, err := objs("dirmeta", x.Metas)
	if err != nil {
		return nil, err
	}
	files := make([]any, len(x.Files))
	for i := range x.Files {
		f := &x.Files[i]
		if i > 0 && bytes.Compare(x.Files[i-1].Checksum[:], f.Checksum[:]) >= 0 {
			return nil, fmt.Errorf("encode tree index: content table unsorted or duplicated at %s", f.Checksum)
		}
		if err := f.Header.Validate(); err != nil {
			return nil, fmt.Errorf("encode tree index: content %s: %w", f.Checksum, err)
		}
		hdr := f.Header.ArchiveHeader()
		if err := f.check(hdr); err != nil {
			return nil, fmt.Errorf("encode tree index: content %s: %w", f.Checksum, err)
		}
		points := make([]any, len(f.Points))
		for j, p := range f.Points {
			points[j] = []any{uint64(p.Out), uint64(p.In), p.Bits, p.Window}
		}
		digests := f.Digests
		if digests == nil {
			digests = []byte{}
		}
		b, err := gvariant.Encode(typeFileEnt, []any{f.Checksum.Bytes(), f.ArchivedSize, hdr, f.ChunkSize, digests, points})
		if err != nil {
			return nil, fmt.Errorf("encode tree index: content %s: %w", f.Checksum, err)
		}
		files[i] = b
	}
	return gvariant.Encode(typePayload, []any{bits.ReverseBytes64(Magic), uint32(Version), x.Commit.Bytes(), trees, metas, files})
}

// check validates f against its serialised archive header hdr: the rules
// of doc.go for sizes, chunks and points.
func (f *File) check(hdr []byte) error {
	h := &f.Header
	if len(h.Target) > MaxSymlinkTarget {
		return fmt.Errorf("symlink target of %d bytes, more than %d", len(h.Target), MaxSymlinkTarget)
	}
	if f.HeaderSize != uint32(len(hdr)) {
		return fmt.Errorf("header size %d, serialised header is %d bytes", f.HeaderSize, len(hdr))
	}
	if f.ArchivedSize < uint64(f.HeaderSize) || h.IsSymlink() && f.ArchivedSize != uint64(f.HeaderSize) {
		return fmt.Errorf("archived size %d does not fit a %d-byte header", f.ArchivedSize, f.HeaderSize)
	}
	if f.ChunkSize == 0 {
		if len(f.Digests) != 0 || len(f.Points) != 0 {
			return fmt.Errorf("chunk digests or access points without a chunk size")
		}
		return nil
	}
	if h.IsSymlink() || h.Size == 0 || h.Size >= 1<<62 {
		return fmt.Errorf("chunked content of size %d", h.Size)
	}
	if f.ChunkSize < MinChunkSize || f.ChunkSize > MaxChunkSize {
		return fmt.Errorf("chunk size %d outside %d..%d", f.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	cs := uint64(f.ChunkSize)
	n := h.Size / cs
	if h.Size%cs != 0 {
		n++
	}
	if len(f.Digests)%32 != 0 || uint64(len(f.Digests)/32) != n {
		return fmt.Errorf("%d digest bytes for %d chunks", len(f.Digests), n)
	}
	if len(f.Points) > MaxPoints {
		return fmt.Errorf("%d access points, more than %d", len(f.Points), MaxPoints)
	}
	var prevOut, prevBit int64 = 0, int64(f.HeaderSize) * 8
	for j, p := range f.Points {
		bit := p.In*8 - int64(p.Bits)
		switch {
		case p.Bits > 7:
			return fmt.Errorf("access point %d: %d bits", j, p.Bits)
		case p.Out <= prevOut || uint64(p.Out) >= h.Size:
			return fmt.Errorf("access point %d: uncompressed offset %d out of order or range", j, p.Out)
		case p.In > int64(f.ArchivedSize) || bit <= prevBit:
			return fmt.Errorf("access point %d: compressed offset %d.%d out of order or range", j, p.In, p.Bits)
		case len(p.Window) > WindowSize || int64(len(p.Window)) > p.Out:
			return fmt.Errorf("access point %d: window of %d bytes at offset %d", j, len(p.Window), p.Out)
		}
		prevOut, prevBit = p.Out, bit
	}
	return nil
}

// Decode parses a tree index, checking every rule of doc.go: one zstd
// frame with nothing after it, at most MaxCompressedSize bytes in and
// MaxDecodedSize out, a payload in GVariant normal form, sorted unique
// tables within their caps, dirtrees and dirmetas that hash to their
// keys, and content entries whose headers, chunks and points are
// consistent. Every error matches ErrCorrupt. Decode does not check the
// checksum of data itself: the caller compares ostree.Sum(data) with the
// summary's value before calling it.
func Decode(data []byte) (*Index, error) {
	if len(data) > MaxCompressedSize {
		return nil, corrupt("%d bytes, more than %d", len(data), MaxCompressedSize)
	}
	fcs, err := checkFrame(data)
	if err != nil {
		return nil, err
	}
	d, err := decoder()
	if err != nil {
		return nil, fmt.Errorf("decode tree index: %w", err)
	}
	payload, err := d.DecodeAll(data, make([]byte, 0, fcs))
	if err != nil {
		return nil, corrupt("zstd: %v", err)
	}
	if uint64(len(payload)) != fcs {
		return nil, corrupt("decompressed to %d bytes, frame says %d", len(payload), fcs)
	}
	return unmarshal(payload)
}

// checkFrame requires data to be exactly one zstd frame with a declared
// content size of at most MaxDecodedSize, no dictionary and nothing after
// it (zstd decoders otherwise accept concatenated and skippable frames),
// and returns that size. It walks the block headers without decoding.
func checkFrame(data []byte) (uint64, error) {
	var h zstd.Header
	rest, err := h.DecodeAndStrip(data)
	switch {
	case err != nil:
		return 0, corrupt("zstd frame header: %v", err)
	case h.Skippable:
		return 0, corrupt("skippable zstd frame")
	case h.DictionaryID != 0:
		return 0, corrupt("zstd frame needs dictionary %d", h.DictionaryID)
	case !h.HasFCS:
		return 0, corrupt("zstd frame without a content size")
	case h.FrameContentSize > MaxDecodedSize:
		return 0, corrupt("decompresses to %d bytes, more than %d", h.FrameContentSize, MaxDecodedSize)
	}
	for {
		if len(rest) < 3 {
			return 0, corrupt("zstd frame truncated")
		}
		bh := uint32(rest[0]) | uint32(rest[1])<<8 | uint32(rest[2])<<16
		rest = rest[3:]
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 1: // RLE: one byte repeated
			size = 1
		case 3:
			return 0, corrupt("reserved zstd block type")
		}
		if len(rest) < size {
			return 0, corrupt("zstd frame truncated")
		}
		rest = rest[size:]
		if bh&1 != 0 {
			break
		}
	}
	if h.HasCheckSum {
		if len(rest) < 4 {
			return 0, corrupt("zstd frame truncated")
		}
		rest = rest[4:]
	}
	if len(rest) != 0 {
		return 0, corrupt("%d bytes after the zstd frame", len(rest))
	}
	return h.FrameContentSize, nil
}

func unmarshal(payload []byte) (*Index, error) {
	v, err := gvariant.Decode(typeTopLevel, payload)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	top := v.([]any)
	if m := bits.ReverseBytes64(top[0].(uint64)); m != Magic {
		return nil, corrupt("magic %#x, want %#x", m, Magic)
	}
	if ver := top[1].(uint32); ver != Version {
		return nil, corrupt("version %d, want %d", ver, Version)
	}
	x := &Index{}
	if x.Commit, err = ostree.ChecksumFromBytes(top[2].([]byte)); err != nil {
		return nil, corrupt("commit: %v", err)
	}
	if x.Trees, err = unmarshalObjects("dirtree", top[3].([]byte)); err != nil {
		return nil, err
	}
	if x.Metas, err = unmarshalObjects("dirmeta", top[4].([]byte)); err != nil {
		return nil, err
	}
	if x.Files, err = unmarshalFiles(top[5].([]byte)); err != nil {
		return nil, err
	}
	return x, nil
}

func table(what string, b []byte) (gvariant.VarArray, error) {
	a, err := gvariant.ParseVarArray(b)
	if err != nil {
		return a, corrupt("%s table: %v", what, err)
	}
	if a.Len() > MaxObjects {
		return a, corrupt("%s table of %d entries, more than %d", what, a.Len(), MaxObjects)
	}
	return a, nil
}

func unmarshalObjects(what string, b []byte) ([]Object, error) {
	a, err := table(what, b)
	if err != nil {
		return nil, err
	}
	out := make([]Object, a.Len())
	for i := range out {
		v, err := gvariant.Decode(typeObjectEnt, a.Elem(i))
		if err != nil {
			return nil, corrupt("%s entry %d: %v", what, i, err)
		}
		e := v.([]any)
		o := &out[i]
		if o.Checksum, err = ostree.ChecksumFromBytes(e[0].([]byte)); err != nil {
			return nil, corrupt("%s entry %d: %v", what, i, err)
		}
		if i > 0 && bytes.Compare(out[i-1].Checksum[:], o.Checksum[:]) >= 0 {
			return nil, corrupt("%s table unsorted or duplicated at %s", what, o.Checksum)
		}
		o.Data = e[1].([]byte)
		if got := ostree.Checksum(sha256.Sum256(o.Data)); got != o.Checksum {
			return nil, corrupt("%s %s: data hashes to %s", what, o.Checksum, got)
		}
	}
	return out, nil
}

func unmarshalFiles(b []byte) ([]File, error) {
	a, err := table("content", b)
	if err != nil {
		return nil, err
	}
	out := make([]File, a.Len())
	for i := range out {
		v, err := gvariant.Decode(typeFileEnt, a.Elem(i))
		if err != nil {
			return nil, corrupt("content entry %d: %v", i, err)
		}
		e := v.([]any)
		f := &out[i]
		if f.Checksum, err = ostree.ChecksumFromBytes(e[0].([]byte)); err != nil {
			return nil, corrupt("content entry %d: %v", i, err)
		}
		if i > 0 && bytes.Compare(out[i-1].Checksum[:], f.Checksum[:]) >= 0 {
			return nil, corrupt("content table unsorted or duplicated at %s", f.Checksum)
		}
		f.ArchivedSize = e[1].(uint64)
		hdr := e[2].([]byte)
		r := bytes.NewReader(hdr)
		h, err := ostree.ReadArchiveHeader(r)
		if err != nil {
			return nil, corrupt("content %s: %v", f.Checksum, err)
		}
		if r.Len() != 0 || !bytes.Equal(h.ArchiveHeader(), hdr) {
			return nil, corrupt("content %s: header not in canonical form", f.Checksum)
		}
		f.Header, f.HeaderSize = *h, uint32(len(hdr))
		f.ChunkSize = e[3].(uint32)
		f.Digests = e[4].([]byte)
		pts := e[5].([]any)
		if len(pts) > MaxPoints {
			return nil, corrupt("content %s: %d access points, more than %d", f.Checksum, len(pts), MaxPoints)
		}
		if len(pts) > 0 {
			f.Points = make([]AccessPoint, len(pts))
			for j, p := range pts {
				t := p.([]any)
				out, in := t[0].(uint64), t[1].(uint64)
				if out >= 1<<62 || in >= 1<<62 {
					return nil, corrupt("content %s: access point %d out of range", f.Checksum, j)
				}
				f.Points[j] = AccessPoint{Out: int64(out), In: int64(in), Bits: t[2].(uint8), Window: t[3].([]byte)}
			}
		}
		if err := f.check(hdr); err != nil {
			return nil, corrupt("content %s: %v", f.Checksum, err)
		}
	}
	return out, nil
}
