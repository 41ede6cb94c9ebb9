package delta

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"unicode/utf8"

	"github.com/therootcompany/xz"
	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// Compression types, the first byte of a part file.
const (
	CompressionNone byte = 0
	CompressionXZ   byte = 'x'
)

// maxXZDict caps the LZMA2 dictionary a part may declare. The decoder
// allocates the whole dictionary up front, and the format allows 4 GiB;
// xz -9 uses 64 MiB and ostree writes preset 8 (32 MiB).
const maxXZDict = 64 << 20

// Mode is one entry of a part's mode table.
type Mode struct {
	UID, GID, Mode uint32
}

// Part is a verified, decompressed and decoded delta part, ready to Apply.
// It is immutable; Apply may be called more than once, but not after
// Close.
//
// A part built to be encoded (Generate) sets Modes, Xattrs, Payload and
// Ops. A part returned by OpenPart or OpenPartStream sets Payload and Ops
// to slices of its body and leaves Modes and Xattrs nil: it keeps the two
// tables as their serialised bytes and decodes an entry only when an op
// uses it, so that a hostile table costs no heap however large it is.
type Part struct {
	Modes   []Mode
	Xattrs  [][]ostree.Xattr
	Payload []byte
	Ops     []byte
	// usize bounds what Apply writes (PartHeader.USize).
	usize uint64

	opened     bool              // the tables below are in use, not Modes and Xattrs
	modeTable  []byte            // a(uuu): 12 bytes per entry
	xattrTable gvariant.VarArray // aa(ayay)
	// mapping is the body mapped read-only (OpenPartStream), or nil.
	mapping []byte
	closed  bool
}

// OpenPart verifies and decodes one part file held in memory. Unless
// inline is set (the part came out of the superblock, whose digest covers
// it), data must have hdr.Size bytes and hash to hdr.Checksum. The part
// may be stored uncompressed or as an xz stream; the decompressed form is
// bounded by a multiple of hdr.USize and by MaxPartSize, and is held on
// the heap. The returned part's Payload and Ops may alias data.
//
// OpenPart is meant for inline parts, whose size the superblock cap
// bounds. Parts fetched as files should go through OpenPartStream, which
// keeps the body off the heap.
func OpenPart(data []byte, hdr PartHeader, inline bool) (*Part, error) {
	what := "delta part " + hdr.Checksum.String()
	if !inline {
		if uint64(len(data)) != hdr.Size {
			return nil, corrupt(what, "%d bytes, header says %d", len(data), hdr.Size)
		}
		if got := ostree.Sum(data); got != hdr.Checksum {
			return nil, &ostree.ChecksumError{Object: what, Got: got, Want: hdr.Checksum}
		}
	}
	if hdr.Version != 0 {
		return nil, unsupported(what, "version %d", hdr.Version)
	}
	if len(data) == 0 {
		return nil, corrupt(what, "empty")
	}
	if len(data) > MaxPartSize {
		return nil, corrupt(what, "%d bytes, more than %d", len(data), MaxPartSize)
	}
	var body []byte
	switch data[0] {
	case CompressionNone:
		body = data[1:]
	case CompressionXZ:
		var err error
		if body, err = unxz(data[1:], int64(partLimit(hdr.USize, len(hdr.Objects)))); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	default:
		return nil, unsupported(what, "compression type %q", data[0])
	}
	p, err := decodePart(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p.usize = hdr.USize
	return p, nil
}

// dropPages lets go of the pages of a mapped body that Apply has read,
// so that they do not add up in the process's resident memory: the
// mapping is shared and read-only, the pages stay in the page cache,
// and a later read of them faults them back in. Apply calls it every
// few dozen objects.
func (p *Part) dropPages() {
	if len(p.mapping) >= dropPagesMin {
		unix.Madvise(p.mapping, unix.MADV_DONTNEED)
	}
}

// dropPagesMin is the smallest mapping dropPages bothers with.
const dropPagesMin = 4 << 20

// Close releases the part's body. For a part from OpenPartStream it
// unmaps the body: Payload, Ops and every slice Apply handed out of them
// (PutMetadata's data) become invalid, and touching them faults. Apply
// keeps no such slice after it returns; after Close it refuses to run.
// Close is idempotent, and must not run while Apply does.
func (p *Part) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	m := p.mapping
	p.mapping, p.Payload, p.Ops, p.modeTable, p.xattrTable = nil, nil, nil, nil, gvariant.VarArray{}
	if m == nil {
		return nil
	}
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("close delta part: munmap: %w", err)
	}
	return nil
}

// partLimit is the most a part with this usize and object count may
// decompress to. The payload is at most usize for splices (less for
// rollsum and bsdiff); the rest is symlink targets, the mode and xattr
// tables and the ops, which grow with the number of objects. Generate
// keeps its parts within it.
func partLimit(usize uint64, objects int) uint64 {
	limit := uint64(MaxPartSize)
	if usize < limit/2 && objects < MaxPartSize/perObjectSlack {
		limit = min(limit, 2*usize+16<<20+uint64(objects)*perObjectSlack)
	}
	return limit
}

// BodyLimit is the most the part's decompressed body may take: what
// OpenPartStream may write to its temporary directory (and OpenPart to
// the heap) for this part. A caller that accounts for disk reserves this
// much before OpenPartStream.
func (h PartHeader) BodyLimit() uint64 { return partLimit(h.USize, len(h.Objects)) }

// perObjectSlack is what partLimit allows per object beyond usize.
const perObjectSlack = 8 << 10

// typePartFrame has the framing of TypePart: the same four members, each
// variable-sized and at offset alignment 1 (a(uuu) is 4-aligned, but it is
// the first member). Decoding the body as it gives the members as slices
// of the body without decoding the tables.
var (
	typePartFrame = gvariant.MustType("(ayayayay)")
	typeXattrList = gvariant.MustType("a(ayay)")
)

// decodePart checks that body is a TypePart in normal form and returns an
// opened part over it. Payload, Ops and the tables alias body; the heap it
// uses does not grow with the tables (one xattr entry, at most
// ostree.MaxFileHeaderSize, is decoded at a time).
func decodePart(body []byte) (*Part, error) {
	v, err := gvariant.Decode(typePartFrame, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ostree.ErrCorrupt, err)
	}
	f := v.([]any)
	p := &Part{opened: true, modeTable: f[0].([]byte), Payload: f[2].([]byte), Ops: f[3].([]byte)}
	if len(p.modeTable)%modeSize != 0 {
		return nil, fmt.Errorf("%w: mode table of %d bytes is not a multiple of %d", ostree.ErrCorrupt, len(p.modeTable), modeSize)
	}
	for i := range len(p.modeTable) / modeSize {
		if _, err := p.mode(uint64(i)); err != nil {
			return nil, err
		}
	}
	if p.xattrTable, err = gvariant.ParseVarArray(f[1].([]byte)); err != nil {
		return nil, fmt.Errorf("%w: xattr table: %v", ostree.ErrCorrupt, err)
	}
	for i := range p.xattrTable.Len() {
		if _, err := decodeXattrs(p.xattrTable.Elem(i), i); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// mode decodes and checks entry i of an opened part's mode table.
func (p *Part) mode(i uint64) (Mode, error) {
	if i >= uint64(len(p.modeTable)/modeSize) {
		return Mode{}, fmt.Errorf("mode index %d out of range (%d entries)", i, len(p.modeTable)/modeSize)
	}
	b := p.modeTable[i*modeSize:]
	// The integers are big-endian inside a little-endian GVariant.
	m := Mode{UID: binary.BigEndian.Uint32(b), GID: binary.BigEndian.Uint32(b[4:]), Mode: binary.BigEndian.Uint32(b[8:])}
	if k := m.Mode & ostree.ModeTypeMask; k != ostree.ModeReg && k != ostree.ModeSymlink || m.Mode&^(ostree.ModeTypeMask|ostree.ModePerm) != 0 {
		return Mode{}, fmt.Errorf("%w: mode table entry %d: invalid mode %o", ostree.ErrCorrupt, i, m.Mode)
	}
	return m, nil
}

// decodeXattrs decodes and checks xattr table entry i. Names are copied;
// values alias b.
func decodeXattrs(b []byte, i int) ([]ostree.Xattr, error) {
	// A content header holds the xattrs and is capped; an object with a
	// larger list could not be read back.
	if len(b) > ostree.MaxFileHeaderSize {
		return nil, fmt.Errorf("%w: xattr table entry %d: %d bytes, more than %d", ostree.ErrCorrupt, i, len(b), ostree.MaxFileHeaderSize)
	}
	v, err := gvariant.Decode(typeXattrList, b)
	if err != nil {
		return nil, fmt.Errorf("%w: xattr table entry %d: %v", ostree.ErrCorrupt, i, err)
	}
	entries := v.([]any)
	xs := make([]ostree.Xattr, len(entries))
	for j, e := range entries {
		pair := e.([]any)
		name := pair[0].([]byte)
		if len(name) < 2 || name[len(name)-1] != 0 || bytes.IndexByte(name[:len(name)-1], 0) >= 0 {
			return nil, fmt.Errorf("%w: xattr table entry %d: malformed name %q", ostree.ErrCorrupt, i, clip(name))
		}
		xs[j] = ostree.Xattr{Name: string(name[:len(name)-1]), Value: pair[1].([]byte)}
		if j > 0 && xs[j-1].Name >= xs[j].Name {
			return nil, fmt.Errorf("%w: xattr table entry %d: names unsorted or duplicated at %q", ostree.ErrCorrupt, i, xs[j].Name)
		}
	}
	return xs, nil
}

// Encode serialises the part's GVariant (the part file without the
// compression byte).
func (p *Part) Encode() ([]byte, error) {
	payload, ops := p.Payload, p.Ops
	if payload == nil {
		payload = []byte{}
	}
	if ops == nil {
		ops = []byte{}
	}
	if p.opened {
		if p.closed {
			return nil, errors.New("encode delta part: part is closed")
		}
		// The tables were checked to be in normal form; framing them
		// again gives back the body.
		return gvariant.Encode(typePartFrame, []any{nonNil(p.modeTable), nonNil(p.xattrTable.Bytes()), payload, ops})
	}
	modes := make([]any, len(p.Modes))
	for i, m := range p.Modes {
		modes[i] = []any{bits.ReverseBytes32(m.UID), bits.ReverseBytes32(m.GID), bits.ReverseBytes32(m.Mode)}
	}
	xattrs := make([]any, len(p.Xattrs))
	for i, xs := range p.Xattrs {
		l := make([]any, len(xs))
		for j, x := range xs {
			l[j] = []any{append([]byte(x.Name), 0), x.Value}
		}
		xattrs[i] = l
	}
	return gvariant.Encode(TypePart, []any{modes, xattrs, payload, ops})
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// xattrCache holds the last xattr entry an applier decoded: objects of a
// part mostly share one.
type xattrCache struct {
	valid bool
	idx   uint64
	xs    []ostree.Xattr
}

// header builds the content header an op describes. For an opened part
// the xattr values are copied out of the body, since the sink may keep
// the header after the part is closed.
func (p *Part) header(modeIdx, xattrIdx uint64, cache *xattrCache) (*ostree.FileHeader, error) {
	if !p.opened {
		if modeIdx >= uint64(len(p.Modes)) {
			return nil, fmt.Errorf("mode index %d out of range (%d entries)", modeIdx, len(p.Modes))
		}
		if xattrIdx >= uint64(len(p.Xattrs)) {
			return nil, fmt.Errorf("xattr index %d out of range (%d entries)", xattrIdx, len(p.Xattrs))
		}
		m := p.Modes[modeIdx]
		return &ostree.FileHeader{UID: m.UID, GID: m.GID, Mode: m.Mode, Xattrs: p.Xattrs[xattrIdx]}, nil
	}
	m, err := p.mode(modeIdx)
	if err != nil {
		return nil, err
	}
	if xattrIdx >= uint64(p.xattrTable.Len()) {
		return nil, fmt.Errorf("xattr index %d out of range (%d entries)", xattrIdx, p.xattrTable.Len())
	}
	if !cache.valid || cache.idx != xattrIdx {
		xs, err := decodeXattrs(p.xattrTable.Elem(int(xattrIdx)), int(xattrIdx))
		if err != nil {
			return nil, err
		}
		for i := range xs {
			xs[i].Value = bytes.Clone(xs[i].Value)
		}
		*cache = xattrCache{valid: true, idx: xattrIdx, xs: xs}
	}
	return &ostree.FileHeader{UID: m.UID, GID: m.GID, Mode: m.Mode, Xattrs: cache.xs}, nil
}

// validTarget reports whether b can be a symlink target: the GVariant
// string in the content header must be valid UTF-8 without NUL.
func validTarget(b []byte) bool {
	return len(b) > 0 && bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// newXZReader decodes the one xz stream of r, with a dictionary of at
// most maxXZDict, holding one of d's decoder slots (waiting for one). It
// uses the system's liblzma when it can be loaded (see liblzma), else a
// port of XZ Embedded (github.com/therootcompany/xz, a kept fork of
// xi2/xz), one of d's when it has one free: on a 32 MB part of ostree's
// the port took 0.95 s and 34 MB of heap where github.com/ulikunitz/xz
// took 1.43 s and 66 MB (xz -d: 0.72 s). Both refuse a dictionary over
// the maximum before allocating it. Call done when finished with the
// reader.
func (d *Decoders) newXZReader(ctx context.Context, r io.Reader) (_ io.Reader, done func(), err error) {
	if d != nil {
		select {
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, func() {}, ctx.Err()
		}
		defer func() {
			if err != nil {
				<-d.slots
			}
		}()
	}
	release := func() {
		if d != nil {
			<-d.slots
		}
	}
	if useLiblzma() {
		// Its dictionary and a few tables: nothing is pooled, the
		// dictionary goes back to the system when the part is decoded.
		z, err := newLzmaReader(r, maxXZDict+1<<20)
		if err != nil {
			return nil, func() {}, err
		}
		return z, func() { z.Close(); release() }, nil
	}
	var xr *xz.Reader
	if d != nil {
		select {
		case xr = <-d.free:
			err = xr.Reset(r)
		default:
		}
	}
	if xr == nil {
		xr, err = xz.NewReader(r, maxXZDict)
	}
	if err != nil {
		return nil, func() {}, err
	}
	// One stream: what follows it is not decoded (the part's digest
	// covers every byte, and the caller checks the chunk total).
	xr.Multistream(false)
	return xr, func() {
		if d == nil {
			return
		}
		xr.Reset(eofReader{}) // lets go of r
		select {
		case d.free <- xr:
		default:
		}
		release()
	}, nil
}

// useLiblzma says whether xz is decoded by liblzma; tests set it to
// check one decoder against the other.
var useLiblzma = liblzma

// eofReader is an empty input.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// unxz decompresses a single xz stream of at most limit bytes. It first
// walks the container and LZMA2 chunk headers without decoding, so that an
// oversized dictionary or output is refused before anything is allocated.
func unxz(data []byte, limit int64) ([]byte, error) {
	total, err := scanXZ(data, limit)
	if err != nil {
		return nil, err
	}
	r, done, err := (*Decoders)(nil).newXZReader(context.Background(), bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: xz: %v", ostree.ErrCorrupt, err)
	}
	defer done()
	out := make([]byte, total)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("%w: xz: %v", ostree.ErrCorrupt, err)
	}
	var one [1]byte
	if n, err := r.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("more data than its chunk headers declare")
		}
		return nil, fmt.Errorf("%w: xz: %v", ostree.ErrCorrupt, err)
	}
	return out, nil
}

// scanXZ checks the framing of an xz stream (header, block headers, LZMA2
// chunk headers) and returns the uncompressed size the chunks declare.
// Integrity (CRCs, index, footer) is left to the decoder.
func scanXZ(data []byte, limit int64) (int64, error) {
	g := newXZGuard(bufio.NewReaderSize(bytes.NewReader(data), 4096), limit)
	if err := g.skipAll(); err != nil {
		return 0, err
	}
	return g.total, nil
}

// xzVarint reads an xz multibyte integer (at most 9 bytes); n is 0 when
// the input is malformed.
func xzVarint(b []byte) (v uint64, n int) {
	for i := 0; i < 9 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if i > 0 && b[i] == 0 {
				return 0, 0
			}
			return v, i + 1
		}
	}
	return 0, 0
}

// xzDictSize decodes the LZMA2 dictionary-size property (0..40).
func xzDictSize(c byte) int64 {
	if c == 40 {
		return 1<<32 - 1
	}
	return int64(2|c&1) << (c/2 + 11)
}
