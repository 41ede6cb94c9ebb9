package index

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lazytree/lazytree/ostree"
)

// Sum is a SHA-256 object checksum: ostree's own type, so that the
// layers above pass checksums through without conversions.
type Sum = ostree.Checksum

// ParseSum parses exactly 64 lowercase hex characters. Upper case is
// refused because checksums become file names, and two spellings of one
// object must never be two files.
func ParseSum(s string) (Sum, error) { return ostree.ParseChecksum(s) }

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ObjType is an OSTree object type: ostree's own. The cache stores the
// six core types (ObjType.Core).
type ObjType = ostree.ObjectType

// The object types the cache stores.
const (
	TypeFile            = ostree.ObjFile
	TypeDirTree         = ostree.ObjDirTree
	TypeDirMeta         = ostree.ObjDirMeta
	TypeCommit          = ostree.ObjCommit
	TypeCommitTombstone = ostree.ObjTombstone
	TypeCommitMeta      = ostree.ObjCommitMeta
)

// ParseObjType parses the name of a core type, as ObjType.String gives it.
func ParseObjType(s string) (ObjType, error) {
	for t := TypeFile; t <= TypeCommitMeta; t++ {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown object type %q", clip(s))
}

// ObjectID names one object: OSTree keys objects by checksum and type (a
// commit and its commitmeta share a checksum).
type ObjectID struct {
	Sum  Sum
	Type ObjType
}

// String returns the "checksum.type" form ostree prints.
func (id ObjectID) String() string { return id.Sum.String() + "." + id.Type.String() }

// ParseObjectName parses the "checksum.type" form.
func ParseObjectName(s string) (ObjectID, error) {
	sum, typ, ok := strings.Cut(s, ".")
	if !ok {
		return ObjectID{}, fmt.Errorf("invalid object name %q: want checksum.type", clip(s))
	}
	c, err := ParseSum(sum)
	if err != nil {
		return ObjectID{}, err
	}
	t, err := ParseObjType(typ)
	if err != nil {
		return ObjectID{}, err
	}
	return ObjectID{Sum: c, Type: t}, nil
}

// State is where an object stands in the cache.
type State uint8

const (
	// StatePresent: the object's bytes are stored and verified.
	StatePresent State = 1
	// StateAbsent: the record exists only because a pin names the object;
	// its bytes are not stored (yet, or any more).
	StateAbsent State = 2
)

func (s State) String() string {
	switch s {
	case StatePresent:
		return "present"
	case StateAbsent:
		return "absent"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Object is the record of one object.
type Object struct {
	ID    ObjectID
	State State
	// Size is what the object costs the cache: the file's size for
	// content objects, the stored bytes for metadata objects.
	Size int64
	// Origin is the remote the object was fetched from (informational:
	// objects are content-addressed, so any remote's copy is as good).
	Origin string
	// Pins is how many pins name the object. A pinned object is never
	// evicted.
	Pins uint32
	// Added is when the object became present; Access its last use as of
	// the last flush of access times (see DB.Touch).
	Added, Access time.Time
}

// FileHeader is the cached header of a content object: what stat needs,
// without opening the content.
type FileHeader struct {
	UID, GID, Mode uint32
	// Size is the length of the uncompressed content.
	Size uint64
	// Symlink is the target when Mode is a symlink.
	Symlink string
	// Raw is the content-stream header prefix exactly as OSTree hashes it
	// (big-endian u32 length, four zero bytes, the GVariant file header);
	// the object's checksum is SHA-256(Raw || content). Xattrs live only
	// here: callers parse them with the ostree package when asked.
	Raw []byte
}

// Ref is the last verified state of a (remote, ref).
type Ref struct {
	Commit   Sum
	Verified time.Time
	// Timestamp is the commit's own time (seconds since the epoch), kept
	// so that an older commit for the ref can be refused as a downgrade.
	Timestamp uint64
}

// Summary is the last verified summary of a remote, kept so that a mount
// works offline.
type Summary struct {
	Data []byte
	// Sig is the detached signature (summary.sig), empty when the remote
	// is not signed.
	Sig      []byte
	Verified time.Time
}

// PinKind says what a pin is named by.
type PinKind uint8

const (
	// PinRef pins what a (remote, ref) points at; re-pinning the ref moves
	// the pin to the new commit.
	PinRef PinKind = 1
	// PinCommit pins one commit by checksum.
	PinCommit PinKind = 2
)

func (k PinKind) String() string {
	switch k {
	case PinRef:
		return "ref"
	case PinCommit:
		return "commit"
	}
	return fmt.Sprintf("pinkind(%d)", uint8(k))
}

// Pin is one pin, as Pins lists it.
type Pin struct {
	Kind PinKind
	// Remote and Ref are set for PinRef.
	Remote, Ref string
	Commit      Sum
	Created     time.Time
	// Objects is how many objects the pin names; Present and PresentBytes
	// how many of them are stored, and their size.
	Objects      int64
	Present      int64
	PresentBytes int64
}

// Sentinel errors. Every error that means "no such record" matches
// ErrNotFound.
var (
	ErrNotFound = errors.New("index: not found")
	ErrClosed   = errors.New("index: closed")
	// ErrLocked: another process has the index open (Badger allows one).
	ErrLocked = errors.New("index: in use by another process")
	// ErrBadRecord: a stored value does not decode (a bug or disk damage).
	ErrBadRecord = errors.New("index: undecodable record")
)
