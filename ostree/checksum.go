package ostree

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Checksum is a SHA-256 object checksum.
type Checksum [32]byte

// ErrCorrupt is matched by every verification failure: an object whose
// checksum or structure is not what its name promises.
var ErrCorrupt = errors.New("ostree: corrupt object")

// ChecksumError reports a checksum mismatch.
type ChecksumError struct {
	Object string
	Got    Checksum
	Want   Checksum
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: checksum mismatch: got %s, want %s", e.Object, e.Got, e.Want)
}

// Is makes a ChecksumError match ErrCorrupt.
func (e *ChecksumError) Is(target error) bool { return target == ErrCorrupt }

// String returns the 64-character lowercase hex form.
func (c Checksum) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is all zero bytes (never a real object).
func (c Checksum) IsZero() bool { return c == Checksum{} }

// Bytes returns the 32 raw bytes as a new slice.
func (c Checksum) Bytes() []byte { return append([]byte(nil), c[:]...) }

// ModifiedBase64 returns the 43-character name static deltas use: base64
// with '/' replaced by '_' and no padding.
func (c Checksum) ModifiedBase64() string {
	s := base64.RawStdEncoding.EncodeToString(c[:])
	b := []byte(s)
	for i := range b {
		if b[i] == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}

// ParseChecksum parses exactly 64 lowercase hex characters.
func ParseChecksum(s string) (Checksum, error) {
	var c Checksum
	if len(s) != 64 {
		return c, fmt.Errorf("invalid checksum %q: want 64 hex characters", clip(s))
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f') {
			return c, fmt.Errorf("invalid checksum %q: want lowercase hex", clip(s))
		}
	}
	hex.Decode(c[:], []byte(s))
	return c, nil
}

// ChecksumFromBytes converts a 32-byte GVariant ay into a Checksum.
func ChecksumFromBytes(b []byte) (Checksum, error) {
	var c Checksum
	if len(b) != 32 {
		return c, fmt.Errorf("checksum of %d bytes, want 32", len(b))
	}
	copy(c[:], b)
	return c, nil
}

// Sum returns the SHA-256 of data.
func Sum(data []byte) Checksum { return sha256.Sum256(data) }

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ObjectType is an OSTree object type id.
type ObjectType uint8

// Object types (ostree-format.md 2.1).
const (
	ObjFile          ObjectType = 1
	ObjDirTree       ObjectType = 2
	ObjDirMeta       ObjectType = 3
	ObjCommit        ObjectType = 4
	ObjTombstone     ObjectType = 5
	ObjCommitMeta    ObjectType = 6
	ObjPayloadLink   ObjectType = 7
	ObjFileXattrs    ObjectType = 8
	ObjFileXattrLink ObjectType = 9
)

var objectExt = map[ObjectType]string{
	ObjFile: "file", ObjDirTree: "dirtree", ObjDirMeta: "dirmeta", ObjCommit: "commit",
	ObjTombstone: "commit-tombstone", ObjCommitMeta: "commitmeta", ObjPayloadLink: "payload-link",
	ObjFileXattrs: "file-xattrs", ObjFileXattrLink: "file-xattrs-link",
}

// String returns the type's name, which is also its file extension.
func (t ObjectType) String() string {
	if s, ok := objectExt[t]; ok {
		return s
	}
	return fmt.Sprintf("objtype(%d)", uint8(t))
}

// Core reports whether t is one of the six types of an archive
// repository's objects/ (file through commitmeta), the types a cache
// stores; the others (payload links, xattrs) belong to bare repositories.
func (t ObjectType) Core() bool { return t >= ObjFile && t <= ObjCommitMeta }

// ContentAddressed reports whether an object of type t is named by the
// SHA-256 of its bytes (file, dirtree, dirmeta, commit). Commitmeta and
// tombstones are keyed by the commit they belong to instead.
func (t ObjectType) ContentAddressed() bool { return t >= ObjFile && t <= ObjCommit }

// IsMeta reports whether t is a metadata type (dirtree through commitmeta).
func (t ObjectType) IsMeta() bool { return t >= ObjDirTree && t <= ObjCommitMeta }

// ObjectPath returns the path of an object relative to the repository root,
// e.g. objects/ab/cdef....dirtree. Content objects of archive repositories
// end in .filez.
func ObjectPath(c Checksum, t ObjectType, archive bool) string {
	s := c.String()
	ext := t.String()
	if t == ObjFile && archive {
		ext = "filez"
	}
	return "objects/" + s[:2] + "/" + s[2:] + "." + ext
}

// ObjectName is the "checksum.type" form ostree prints.
func ObjectName(c Checksum, t ObjectType) string { return c.String() + "." + t.String() }
