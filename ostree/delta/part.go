package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"unicode/utf8"

	"github.com/ulikunitz/xz"

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
// It is immutable; Apply may be called more than once.
type Part struct {
	Modes   []Mode
	Xattrs  [][]ostree.Xattr
	Payload []byte
	Ops     []byte
	// usize bounds what Apply writes (PartHeader.USize).
	usize uint64
}

// OpenPart verifies and decodes one part file. Unless inline is set (the
// part came out of the superblock, whose digest covers it), data must
// have hdr.Size bytes and hash to hdr.Checksum. The part may be stored
// uncompressed or as an xz stream; the decompressed form is bounded by a
// multiple of hdr.USize and by MaxPartSize.
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

// perObjectSlack is what partLimit allows per object beyond usize.
const perObjectSlack = 8 << 10

func decodePart(body []byte) (*Part, error) {
	v, err := gvariant.Decode(TypePart, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ostree.ErrCorrupt, err)
	}
	f := v.([]any)
	modes, xattrs := f[0].([]any), f[1].([]any)
	p := &Part{Modes: make([]Mode, len(modes)), Xattrs: make([][]ostree.Xattr, len(xattrs)), Payload: f[2].([]byte), Ops: f[3].([]byte)}
	for i, m := range modes {
		t := m.([]any)
		p.Modes[i] = Mode{UID: bits.ReverseBytes32(t[0].(uint32)), GID: bits.ReverseBytes32(t[1].(uint32)), Mode: bits.ReverseBytes32(t[2].(uint32))}
		if k := p.Modes[i].Mode & ostree.ModeTypeMask; k != ostree.ModeReg && k != ostree.ModeSymlink || p.Modes[i].Mode&^(ostree.ModeTypeMask|ostree.ModePerm) != 0 {
			return nil, fmt.Errorf("%w: mode table entry %d: invalid mode %o", ostree.ErrCorrupt, i, p.Modes[i].Mode)
		}
	}
	for i, list := range xattrs {
		entries := list.([]any)
		xs := make([]ostree.Xattr, len(entries))
		for j, e := range entries {
			pair := e.([]any)
			name := pair[0].([]byte)
			if len(name) < 2 || name[len(name)-1] != 0 || bytes.IndexByte(name[:len(name)-1], 0) >= 0 {
				return nil, fmt.Errorf("%w: xattr table entry %d: malformed name %q", ostree.ErrCorrupt, i, name)
			}
			xs[j] = ostree.Xattr{Name: string(name[:len(name)-1]), Value: pair[1].([]byte)}
			if j > 0 && xs[j-1].Name >= xs[j].Name {
				return nil, fmt.Errorf("%w: xattr table entry %d: names unsorted or duplicated at %q", ostree.ErrCorrupt, i, xs[j].Name)
			}
		}
		p.Xattrs[i] = xs
	}
	return p, nil
}

// Encode serialises the part's GVariant (the part file without the
// compression byte).
func (p *Part) Encode() ([]byte, error) {
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
	payload, ops := p.Payload, p.Ops
	if payload == nil {
		payload = []byte{}
	}
	if ops == nil {
		ops = []byte{}
	}
	return gvariant.Encode(TypePart, []any{modes, xattrs, payload, ops})
}

// header builds the content header an op describes.
func (p *Part) header(modeIdx, xattrIdx uint64) (*ostree.FileHeader, error) {
	if modeIdx >= uint64(len(p.Modes)) {
		return nil, fmt.Errorf("mode index %d out of range (%d entries)", modeIdx, len(p.Modes))
	}
	if xattrIdx >= uint64(len(p.Xattrs)) {
		return nil, fmt.Errorf("xattr index %d out of range (%d entries)", xattrIdx, len(p.Xattrs))
	}
	m := p.Modes[modeIdx]
	return &ostree.FileHeader{UID: m.UID, GID: m.GID, Mode: m.Mode, Xattrs: p.Xattrs[xattrIdx]}, nil
}

// validTarget reports whether b can be a symlink target: the GVariant
// string in the content header must be valid UTF-8 without NUL.
func validTarget(b []byte) bool {
	return len(b) > 0 && bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// unxz decompresses a single xz stream of at most limit bytes. It first
// walks the container and LZMA2 chunk headers without decoding, so that an
// oversized dictionary or output is refused before anything is allocated.
func unxz(data []byte, limit int64) ([]byte, error) {
	total, err := scanXZ(data, limit)
	if err != nil {
		return nil, err
	}
	r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: xz: %v", ostree.ErrCorrupt, err)
	}
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

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// scanXZ checks the framing of an xz stream (header, block headers, LZMA2
// chunk headers) and returns the uncompressed size the chunks declare.
// Integrity (CRCs, index, footer) is left to the decoder.
func scanXZ(data []byte, limit int64) (int64, error) {
	bad := func(format string, args ...any) (int64, error) {
		return 0, fmt.Errorf("%w: xz: %s", ostree.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(data) < 12 || !bytes.Equal(data[:6], xzMagic) {
		return bad("not an xz stream")
	}
	if data[6] != 0 || data[7]&0xf0 != 0 {
		return bad("bad stream flags")
	}
	var checkSize int
	switch data[7] {
	case 0x0:
	case 0x1:
		checkSize = 4
	case 0x4:
		checkSize = 8
	case 0xa:
		checkSize = 32
	default:
		return 0, fmt.Errorf("%w: xz: check type %d", ErrUnsupported, data[7])
	}
	pos, total := 12, int64(0)
	for {
		if pos >= len(data) {
			return bad("truncated")
		}
		if data[pos] == 0 {
			return total, nil // index: the decoder checks it and the footer
		}
		hsize := (int(data[pos]) + 1) * 4
		if pos+hsize > len(data) {
			return bad("truncated block header")
		}
		h := data[pos+1 : pos+hsize-4]
		flags := h[0]
		if flags&0x3c != 0 {
			return bad("reserved block flags")
		}
		if flags&3 != 0 {
			return 0, fmt.Errorf("%w: xz: more than one filter", ErrUnsupported)
		}
		var vals [4]uint64
		nv, q := 0, 1
		for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0, true, true} {
			if !present {
				continue
			}
			v, n := xzVarint(h[q:])
			if n == 0 {
				return bad("bad block header")
			}
			vals[nv], nv, q = v, nv+1, q+n
		}
		// The last two are the filter id and the size of its properties.
		if vals[nv-2] != 0x21 || vals[nv-1] != 1 || q >= len(h) {
			return 0, fmt.Errorf("%w: xz: only LZMA2 is supported", ErrUnsupported)
		}
		if dc := h[q]; dc > 40 || xzDictSize(dc) > maxXZDict {
			return 0, fmt.Errorf("%w: xz: dictionary larger than %d bytes", ErrUnsupported, maxXZDict)
		}
		pos += hsize
		start := pos
	chunks:
		for {
			if pos >= len(data) {
				return bad("truncated LZMA2 data")
			}
			c := data[pos]
			switch {
			case c == 0:
				pos++
				break chunks
			case c == 1 || c == 2:
				if pos+3 > len(data) {
					return bad("truncated LZMA2 chunk")
				}
				n := int(binary.BigEndian.Uint16(data[pos+1:])) + 1
				total += int64(n)
				pos += 3 + n
			case c >= 0x80:
				hl := 5
				if c >= 0xc0 {
					hl = 6
				}
				if pos+hl > len(data) {
					return bad("truncated LZMA2 chunk")
				}
				u := int(c&0x1f)<<16 | int(binary.BigEndian.Uint16(data[pos+1:]))
				p := int(binary.BigEndian.Uint16(data[pos+3:]))
				total += int64(u) + 1
				pos += hl + p + 1
			default:
				return bad("invalid LZMA2 control byte %#x", c)
			}
			if total > limit {
				return 0, fmt.Errorf("%w: xz: decompresses to more than %d bytes", ostree.ErrCorrupt, limit)
			}
		}
		pos += (4 - (pos-start)%4) % 4
		pos += checkSize
	}
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
