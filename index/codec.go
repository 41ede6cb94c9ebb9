package index

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Key prefixes. doc.go describes each key and value.
const (
	pMeta       = 'm'
	pObject     = 'o'
	pLRU        = 'a'
	pHeader     = 'h'
	pData       = 'd'
	pRef        = 'r'
	pSummary    = 's'
	pPin        = 'p'
	pPinName    = 'n'
	pPinMember  = 'q'
	pProfile    = 'f'
	recVersion  = 1
	maxNameLen  = 255
	objKeyLen   = 1 + 1 + 32
	lruKeyLen   = 1 + 8 + 1 + 32
	memberKeyLn = 1 + 8 + 1 + 32
)

// Meta keys.
const (
	metaState  = "state"
	metaPinSeq = "pinseq"
)

func objectKey(id ObjectID) []byte {
	k := make([]byte, objKeyLen)
	k[0] = pObject
	k[1] = byte(id.Type)
	copy(k[2:], id.Sum[:])
	return k
}

func dataKey(id ObjectID) []byte {
	k := objectKey(id)
	k[0] = pData
	return k
}

func idFromObjectKey(k []byte) (ObjectID, bool) {
	if len(k) != objKeyLen {
		return ObjectID{}, false
	}
	var id ObjectID
	id.Type = ObjType(k[1])
	copy(id.Sum[:], k[2:])
	return id, id.Type.Core()
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// lruKey orders eviction candidates by last access, oldest first. Times
// before 1970 (a broken clock) sort as 1970.
func lruKey(access int64, id ObjectID) []byte {
	k := make([]byte, lruKeyLen)
	k[0] = pLRU
	if access < 0 {
		access = 0
	}
	binary.BigEndian.PutUint64(k[1:9], uint64(access))
	k[9] = byte(id.Type)
	copy(k[10:], id.Sum[:])
	return k
}

func idFromLRUKey(k []byte) (ObjectID, bool) {
	if len(k) != lruKeyLen {
		return ObjectID{}, false
	}
	var id ObjectID
	id.Type = ObjType(k[9])
	copy(id.Sum[:], k[10:])
	return id, id.Type.Core()
}

func headerKey(s Sum) []byte {
	k := make([]byte, 33)
	k[0] = pHeader
	copy(k[1:], s[:])
	return k
}

func profileKey(s Sum) []byte {
	k := headerKey(s)
	k[0] = pProfile
	return k
}

func metaKey(name string) []byte { return append([]byte{pMeta}, name...) }

func checkName(what, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("invalid %s name %q: want 1 to %d bytes", what, clip(s), maxNameLen)
	}
	return nil
}

// refKey is 'r', the remote's length, the remote, the ref: the length
// keeps ("a", "bc") and ("ab", "c") apart and lets Refs scan one remote.
func refKey(remote, ref string) []byte {
	k := make([]byte, 0, 2+len(remote)+len(ref))
	k = append(k, pRef, byte(len(remote)))
	k = append(k, remote...)
	return append(k, ref...)
}

func summaryKey(remote string) []byte { return append([]byte{pSummary}, remote...) }

func pinKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = pPin
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func pinNameKey(kind PinKind, remote, ref string, commit Sum) []byte {
	k := []byte{pPinName, byte(kind)}
	if kind == PinRef {
		k = append(k, byte(len(remote)))
		k = append(k, remote...)
		return append(k, ref...)
	}
	return append(k, commit[:]...)
}

func memberPrefix(pin uint64) []byte {
	k := make([]byte, 9, memberKeyLn)
	k[0] = pPinMember
	binary.BigEndian.PutUint64(k[1:], pin)
	return k
}

func memberKey(pin uint64, id ObjectID) []byte {
	k := memberPrefix(pin)
	k = append(k, byte(id.Type))
	return append(k, id.Sum[:]...)
}

func idFromMemberKey(k []byte) (ObjectID, bool) {
	if len(k) != memberKeyLn {
		return ObjectID{}, false
	}
	var id ObjectID
	id.Type = ObjType(k[9])
	copy(id.Sum[:], k[10:])
	return id, id.Type.Core()
}

// reader decodes a value; the first error sticks, so callers check once
// at the end. Every length is checked against what is left, so a damaged
// value cannot make it allocate more than the value's own size.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrBadRecord
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	v := r.uvarint()
	if v > 1<<32-1 {
		r.fail()
		return 0
	}
	return uint32(v)
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	b := make([]byte, n)
	copy(b, r.b[:n])
	r.b = r.b[n:]
	return b
}

func (r *reader) sum() Sum {
	var s Sum
	if len(r.b) < 32 {
		r.fail()
		return s
	}
	copy(s[:], r.b[:32])
	r.b = r.b[32:]
	return s
}

func (r *reader) version() {
	if v := r.byte(); v != recVersion && r.err == nil {
		r.fail()
	}
}

// done reports the sticky error; trailing bytes are allowed so that a
// later version can append fields that this one ignores.
func (r *reader) done() error { return r.err }

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func encodeObject(o *Object) []byte {
	b := make([]byte, 0, 40+len(o.Origin))
	b = append(b, recVersion, byte(o.State))
	b = binary.AppendUvarint(b, uint64(o.Size))
	b = binary.AppendUvarint(b, uint64(o.Pins))
	b = binary.AppendVarint(b, unixNano(o.Added))
	b = binary.AppendVarint(b, unixNano(o.Access))
	return appendBytes(b, []byte(o.Origin))
}

func decodeObject(id ObjectID, v []byte) (Object, error) {
	r := reader{b: v}
	r.version()
	o := Object{ID: id}
	o.State = State(r.byte())
	size := r.uvarint()
	o.Pins = r.u32()
	o.Added = fromUnixNano(r.varint())
	o.Access = fromUnixNano(r.varint())
	o.Origin = string(r.bytes())
	if err := r.done(); err != nil {
		return Object{}, fmt.Errorf("decode record of %s: %w", id, err)
	}
	if size > 1<<62 || (o.State != StatePresent && o.State != StateAbsent) {
		return Object{}, fmt.Errorf("decode record of %s: %w", id, ErrBadRecord)
	}
	o.Size = int64(size)
	return o, nil
}

func encodeHeader(h *FileHeader) []byte {
	b := make([]byte, 0, 24+len(h.Symlink)+len(h.Raw))
	b = append(b, recVersion)
	b = binary.AppendUvarint(b, uint64(h.UID))
	b = binary.AppendUvarint(b, uint64(h.GID))
	b = binary.AppendUvarint(b, uint64(h.Mode))
	b = binary.AppendUvarint(b, h.Size)
	b = appendBytes(b, []byte(h.Symlink))
	return appendBytes(b, h.Raw)
}

func decodeHeader(v []byte) (FileHeader, error) {
	r := reader{b: v}
	r.version()
	var h FileHeader
	h.UID = r.u32()
	h.GID = r.u32()
	h.Mode = r.u32()
	h.Size = r.uvarint()
	h.Symlink = string(r.bytes())
	h.Raw = r.bytes()
	if err := r.done(); err != nil {
		return FileHeader{}, err
	}
	return h, nil
}

func encodeRef(r Ref) []byte {
	b := make([]byte, 0, 1+32+10)
	b = append(b, recVersion)
	b = append(b, r.Commit[:]...)
	b = binary.AppendVarint(b, unixNano(r.Verified))
	return binary.AppendUvarint(b, r.Timestamp)
}

func decodeRef(v []byte) (Ref, error) {
	r := reader{b: v}
	r.version()
	var ref Ref
	ref.Commit = r.sum()
	ref.Verified = fromUnixNano(r.varint())
	if len(r.b) > 0 { // records written before the commit time was kept
		ref.Timestamp = r.uvarint()
	}
	return ref, r.done()
}

func encodeSummary(s *Summary) []byte {
	b := make([]byte, 0, 24+len(s.Data)+len(s.Sig))
	b = append(b, recVersion)
	b = binary.AppendVarint(b, unixNano(s.Verified))
	b = appendBytes(b, s.Data)
	return appendBytes(b, s.Sig)
}

func decodeSummary(v []byte) (Summary, error) {
	r := reader{b: v}
	r.version()
	var s Summary
	s.Verified = fromUnixNano(r.varint())
	s.Data = r.bytes()
	s.Sig = r.bytes()
	return s, r.done()
}

// Pin record states: a pin that is not complete when the index opens was
// interrupted while it was being added or removed, and is rolled back.
const (
	pinComplete = 1
	pinPending  = 2
)

type pinRecord struct {
	Pin
	state byte
}

func encodePin(p *pinRecord) []byte {
	b := make([]byte, 0, 64+len(p.Remote)+len(p.Ref))
	b = append(b, recVersion, byte(p.Kind), p.state)
	b = binary.AppendVarint(b, unixNano(p.Created))
	b = append(b, p.Commit[:]...)
	b = binary.AppendUvarint(b, uint64(p.Objects))
	b = appendBytes(b, []byte(p.Remote))
	return appendBytes(b, []byte(p.Ref))
}

func decodePin(v []byte) (pinRecord, error) {
	r := reader{b: v}
	r.version()
	var p pinRecord
	p.Kind = PinKind(r.byte())
	p.state = r.byte()
	p.Created = fromUnixNano(r.varint())
	p.Commit = r.sum()
	p.Objects = int64(r.uvarint() & (1<<62 - 1))
	p.Remote = string(r.bytes())
	p.Ref = string(r.bytes())
	return p, r.done()
}

func encodeProfile(entries []string, updated time.Time) []byte {
	n := 16
	for _, e := range entries {
		n += len(e) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, recVersion)
	b = binary.AppendVarint(b, unixNano(updated))
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendBytes(b, []byte(e))
	}
	return b
}

func decodeProfile(v []byte) ([]string, time.Time, error) {
	r := reader{b: v}
	r.version()
	updated := fromUnixNano(r.varint())
	n := r.uvarint()
	// Each entry takes at least one byte, so n is bounded by the value.
	if n > uint64(len(r.b)) {
		r.fail()
		return nil, time.Time{}, r.err
	}
	out := make([]string, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		out = append(out, string(r.bytes()))
	}
	if err := r.done(); err != nil {
		return nil, time.Time{}, err
	}
	return out, updated, nil
}
