package delta

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// GVariant types of the static-delta formats (ostree-format.md 4.2, 4.3).
var (
	TypeSuperblock = gvariant.MustType("(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))")
	TypePart       = gvariant.MustType("(a(uuu)aa(ayay)ayay)")
	typeInlinePart = gvariant.MustType("(yay)")
	typeSigned     = gvariant.MustType("(taya{sv})")
)

// Limits that keep a hostile superblock or part from making the parser
// allocate without bound. Legitimate deltas stay far below them: ostree
// splits parts at 32 MB of payload and turns big files into fallbacks.
const (
	// MaxSuperblockSize is the largest superblock accepted, the cap ostree
	// puts on every metadata fetch.
	MaxSuperblockSize = ostree.MaxMetadataSize
	// MaxParts is the most part headers a superblock may list.
	MaxParts = 1 << 16
	// MaxPartSize caps a part file and its decompressed form.
	MaxPartSize = 1 << 30
	// maxObjectSize bounds every size field so that sums cannot overflow.
	maxObjectSize = 1 << 50
)

// MetaEndianness is the superblock metadata key ('l' or 'B') that gives the
// byte order of the part-header and fallback integers.
const MetaEndianness = "ostree.endianness"

// Byte orders of the integers in part headers and fallbacks.
const (
	LittleEndian byte = 'l'
	BigEndian    byte = 'B'
)

// signedMagic is "OSTSGNDT", the first field of a signed superblock.
const signedMagic = 0x4F535453474E4454

// ObjRef names one object: its type and checksum.
type ObjRef struct {
	Type     ostree.ObjectType
	Checksum ostree.Checksum
}

// String returns the "checksum.type" form ostree prints.
func (o ObjRef) String() string { return ostree.ObjectName(o.Checksum, o.Type) }

// Superblock is a parsed static-delta superblock.
type Superblock struct {
	// Metadata is the whole a{sv}, as decoded, including the keys that
	// the fields below are taken from.
	Metadata []any
	// Timestamp is when the delta was generated, in seconds since the
	// epoch.
	Timestamp uint64
	// From is the commit the delta applies to; nil for a delta from
	// scratch.
	From *ostree.Checksum
	// To is the commit the delta produces.
	To ostree.Checksum
	// Commit is the embedded to-commit, and CommitData its serialised
	// bytes (the .commit object, whose sha256 is To).
	Commit     *ostree.Commit
	CommitData []byte
	// CommitMeta is the to-commit's detached metadata (an a{sv}) copied
	// into the superblock, or nil.
	CommitMeta []byte
	// Endianness is LittleEndian or BigEndian. EndiannessGuessed is set
	// when the superblock had no ostree.endianness key and the order was
	// guessed as ostree does.
	Endianness        byte
	EndiannessGuessed bool
	Parts             []PartHeader
	Fallbacks         []Fallback
}

// PartHeader describes one part of a delta.
type PartHeader struct {
	// Version is the part format version; only 0 exists.
	Version uint32
	// Checksum is the sha256 of the part file.
	Checksum ostree.Checksum
	// Size is the length of the part file.
	Size uint64
	// USize is the total uncompressed size of the objects the part
	// produces (ostree counts metadata and regular-file content, not
	// symlink targets). Apply writes at most this much.
	USize uint64
	// Objects are the objects the part produces, in order.
	Objects []ObjRef
	// Inline holds the part file when the superblock carries it, and is
	// nil when the part is a separate file.
	Inline []byte
}

// Fallback is an object the delta does not carry; clients fetch it as a
// loose object.
type Fallback struct {
	Object ObjRef
	// Size is the stored (.filez) size and USize the uncompressed size.
	Size, USize uint64
}

// Path returns the delta's directory relative to the repository root,
// e.g. "deltas/wn/3DwI…EXEw".
func (s *Superblock) Path() string { return ostree.DeltaPath(s.From, s.To) }

// ParseSuperblock parses and validates a superblock file: the embedded
// commit must hash to the to-checksum, every part header must have
// version 0 and a well-formed object list of dirtree, dirmeta and content
// objects only, fallbacks must be content objects, and inline parts and detached
// metadata are taken out of the metadata. Malformed input gives an error
// matching ostree.ErrCorrupt; a signed superblock gives ErrUnsupported.
func ParseSuperblock(data []byte) (*Superblock, error) {
	const what = "delta superblock"
	if len(data) > MaxSuperblockSize {
		return nil, corrupt(what, "%d bytes, more than %d", len(data), MaxSuperblockSize)
	}
	v, err := gvariant.Decode(TypeSuperblock, data)
	if err != nil {
		if isSigned(data) {
			return nil, unsupported(what, "signed superblock (OSTSGNDT)")
		}
		return nil, corrupt(what, "%v", err)
	}
	f := v.([]any)
	s := &Superblock{Metadata: f[0].([]any), Timestamp: bits.ReverseBytes64(f[1].(uint64))}
	switch from := f[2].([]byte); len(from) {
	case 0:
	case 32:
		c, _ := ostree.ChecksumFromBytes(from)
		s.From = &c
	default:
		return nil, corrupt(what, "from-checksum of %d bytes", len(from))
	}
	if s.To, err = ostree.ChecksumFromBytes(f[3].([]byte)); err != nil {
		return nil, corrupt(what, "to-checksum: %v", err)
	}
	// The decoder accepts only normal form, so re-encoding gives back the
	// exact bytes of the embedded commit.
	if s.CommitData, err = gvariant.Encode(ostree.TypeCommit, f[4]); err != nil {
		return nil, corrupt(what, "embedded commit: %v", err)
	}
	if got := ostree.Sum(s.CommitData); got != s.To {
		return nil, &ostree.ChecksumError{Object: "commit embedded in " + what + " " + ostree.DeltaName(s.From, s.To), Got: got, Want: s.To}
	}
	if s.Commit, err = ostree.DecodeCommit(s.CommitData); err != nil {
		return nil, corrupt(what, "embedded commit: %v", err)
	}

	headers, fallbacks := f[6].([]any), f[7].([]any)
	if len(headers) > MaxParts {
		return nil, corrupt(what, "%d parts, more than %d", len(headers), MaxParts)
	}
	if s.Endianness, s.EndiannessGuessed, err = endianness(s.Metadata, headers); err != nil {
		return nil, err
	}
	swap := s.Endianness == BigEndian
	s.Parts = make([]PartHeader, len(headers))
	prefix := s.Path() + "/"
	// The keys under the delta's path, indexed once: a lookup per part
	// would be quadratic in a hostile superblock.
	own := map[string]gvariant.Variant{}
	for _, m := range s.Metadata {
		de := m.(gvariant.DictEntry)
		if k := de.Key.(string); strings.HasPrefix(k, prefix) {
			if _, dup := own[k]; !dup {
				own[k] = de.Value.(gvariant.Variant)
			}
		}
	}
	for i, h := range headers {
		hf := h.([]any)
		p := &s.Parts[i]
		p.Version, p.Size, p.USize = hf[0].(uint32), hf[2].(uint64), hf[3].(uint64)
		if swap {
			p.Version, p.Size, p.USize = bits.ReverseBytes32(p.Version), bits.ReverseBytes64(p.Size), bits.ReverseBytes64(p.USize)
		}
		pw := what + " part " + strconv.Itoa(i)
		if p.Version != 0 {
			return nil, unsupported(pw, "version %d (only 0 exists)", p.Version)
		}
		if p.Checksum, err = ostree.ChecksumFromBytes(hf[1].([]byte)); err != nil {
			return nil, corrupt(pw, "%v", err)
		}
		if p.Size > MaxPartSize {
			return nil, corrupt(pw, "size %d, more than %d", p.Size, MaxPartSize)
		}
		if p.USize > maxObjectSize {
			return nil, corrupt(pw, "uncompressed size %d out of range", p.USize)
		}
		if p.Objects, err = parseObjects(hf[4].([]byte)); err != nil {
			return nil, corrupt(pw, "%v", err)
		}
		if iv, ok := own[prefix+strconv.Itoa(i)]; ok {
			if iv.Type.String() != "(yay)" {
				return nil, corrupt(pw, "inline part has type %s, want (yay)", iv.Type)
			}
			t := iv.Value.([]any)
			p.Inline = append([]byte{t[0].(uint8)}, t[1].([]byte)...)
		}
	}
	s.Fallbacks = make([]Fallback, len(fallbacks))
	for i, fb := range fallbacks {
		ff := fb.([]any)
		o := &s.Fallbacks[i]
		o.Object.Type = ostree.ObjectType(ff[0].(uint8))
		o.Size, o.USize = ff[2].(uint64), ff[3].(uint64)
		if swap {
			o.Size, o.USize = bits.ReverseBytes64(o.Size), bits.ReverseBytes64(o.USize)
		}
		fw := what + " fallback " + strconv.Itoa(i)
		if !fallbackObjType(o.Object.Type) {
			return nil, corrupt(fw, "object type %d: fallbacks are content objects", o.Object.Type)
		}
		if o.Object.Checksum, err = ostree.ChecksumFromBytes(ff[1].([]byte)); err != nil {
			return nil, corrupt(fw, "%v", err)
		}
		if o.Size > maxObjectSize || o.USize > maxObjectSize {
			return nil, corrupt(fw, "size out of range")
		}
	}
	if cv, ok := own[prefix+"commitmeta"]; ok {
		if cv.Type.String() != "a{sv}" {
			return nil, corrupt(what, "detached metadata has type %s, want a{sv}", cv.Type)
		}
		if s.CommitMeta, err = gvariant.Encode(ostree.TypeVarDict, cv.Value); err != nil {
			return nil, corrupt(what, "detached metadata: %v", err)
		}
		if s.CommitMeta == nil {
			s.CommitMeta = []byte{} // present but empty
		}
	}
	return s, nil
}

// endianness reads ostree.endianness, or guesses like ostree when the key
// is missing: a part whose compressed size is over 1.2 times its
// uncompressed size, or an average object over 4 GiB, means the integers
// were written in the other byte order.
func endianness(meta []any, headers []any) (byte, bool, error) {
	if v, ok := gvariant.Lookup(meta, MetaEndianness); ok {
		if v.Type.String() != "y" {
			return 0, false, corrupt("delta superblock", "%s has type %s, want y", MetaEndianness, v.Type)
		}
		switch e := v.Value.(uint8); e {
		case LittleEndian, BigEndian:
			return e, false, nil
		default:
			return 0, false, corrupt("delta superblock", "%s is %q, want 'l' or 'B'", MetaEndianness, e)
		}
	}
	var totalSize, objects uint64
	for _, h := range headers {
		hf := h.([]any)
		size, usize := hf[2].(uint64), hf[3].(uint64)
		if size > usize && float64(size)/float64(usize) > 1.2 {
			return BigEndian, true, nil
		}
		totalSize += size
		objects += uint64(len(hf[4].([]byte)) / objRecordSize)
	}
	if objects > 0 && totalSize/objects > 0xffffffff {
		return BigEndian, true, nil
	}
	return LittleEndian, true, nil
}

// objRecordSize is the length of one object-list entry: type and checksum.
const objRecordSize = 33

// partObjType reports whether a part may produce objects of type t:
// dirtree, dirmeta and content, the types ostree's generator puts in
// parts. The to-commit travels in the superblock itself, where the caller
// checks its signature; a commit (or commitmeta, tombstone…) produced by
// a part would be verified by sha256 only, and the superblock digest is
// not signed when it comes from a delta index.
func partObjType(t ostree.ObjectType) bool {
	return t == ostree.ObjFile || t == ostree.ObjDirTree || t == ostree.ObjDirMeta
}

// fallbackObjType reports whether a fallback may name an object of type
// t. ostree's generator only makes content objects fallbacks, and its pull
// refuses a metadata fallback it does not already have ("Found metadata
// object as fallback").
func fallbackObjType(t ostree.ObjectType) bool { return t == ostree.ObjFile }

func parseObjects(b []byte) ([]ObjRef, error) {
	if len(b)%objRecordSize != 0 {
		return nil, fmt.Errorf("object list of %d bytes is not a multiple of %d", len(b), objRecordSize)
	}
	out := make([]ObjRef, len(b)/objRecordSize)
	for i := range out {
		r := b[i*objRecordSize : (i+1)*objRecordSize]
		out[i].Type = ostree.ObjectType(r[0])
		if !partObjType(out[i].Type) {
			return nil, fmt.Errorf("object %d has type %d: parts carry only dirtree, dirmeta and content objects", i, r[0])
		}
		copy(out[i].Checksum[:], r[1:])
	}
	return out, nil
}

func encodeObjects(objs []ObjRef) []byte {
	out := make([]byte, 0, len(objs)*objRecordSize)
	for _, o := range objs {
		out = append(out, byte(o.Type))
		out = append(out, o.Checksum[:]...)
	}
	return out
}

func isSigned(data []byte) bool {
	v, err := gvariant.Decode(typeSigned, data)
	if err != nil {
		return false
	}
	return bits.ReverseBytes64(v.([]any)[0].(uint64)) == signedMagic
}

// Encode serialises the superblock. The metadata is s.Metadata without
// the keys Encode manages, followed by ostree.endianness, the inline parts
// and the detached metadata, in the order ostree writes them. A zero
// Endianness means LittleEndian.
func (s *Superblock) Encode() ([]byte, error) {
	e := s.Endianness
	if e == 0 {
		e = LittleEndian
	}
	if e != LittleEndian && e != BigEndian {
		return nil, unsupported("encode delta superblock", "endianness %q", e)
	}
	s64, s32 := func(v uint64) uint64 { return v }, func(v uint32) uint32 { return v }
	if e == BigEndian {
		s64, s32 = bits.ReverseBytes64, bits.ReverseBytes32
	}
	prefix := s.Path() + "/"
	meta := gvariant.VarDict{}
	for _, m := range s.Metadata {
		if de, ok := m.(gvariant.DictEntry); ok {
			if k, _ := de.Key.(string); k == MetaEndianness || strings.HasPrefix(k, prefix) {
				continue
			}
		}
		meta = append(meta, m)
	}
	meta.Set(MetaEndianness, "y", e)
	headers := make([]any, len(s.Parts))
	for i, p := range s.Parts {
		headers[i] = []any{s32(p.Version), p.Checksum[:], s64(p.Size), s64(p.USize), encodeObjects(p.Objects)}
		if p.Inline != nil {
			if len(p.Inline) == 0 {
				return nil, corrupt("encode delta superblock", "inline part %d is empty", i)
			}
			meta.Set(prefix+strconv.Itoa(i), "(yay)", []any{p.Inline[0], p.Inline[1:]})
		}
	}
	if s.CommitMeta != nil {
		cm, err := gvariant.Decode(ostree.TypeVarDict, s.CommitMeta)
		if err != nil {
			return nil, corrupt("encode delta superblock", "detached metadata: %v", err)
		}
		meta = append(meta, gvariant.DictEntry{Key: prefix + "commitmeta", Value: gvariant.Variant{Type: ostree.TypeVarDict, Value: cm}})
	}
	fallbacks := make([]any, len(s.Fallbacks))
	for i, f := range s.Fallbacks {
		fallbacks[i] = []any{uint8(f.Object.Type), f.Object.Checksum[:], s64(f.Size), s64(f.USize)}
	}
	commit, err := gvariant.Decode(ostree.TypeCommit, s.CommitData)
	if err != nil {
		return nil, corrupt("encode delta superblock", "commit: %v", err)
	}
	var from []byte
	if s.From != nil {
		from = s.From[:]
	}
	return gvariant.Encode(TypeSuperblock, []any{[]any(meta), bits.ReverseBytes64(s.Timestamp), from, s.To[:], commit, []byte{}, headers, fallbacks})
}
