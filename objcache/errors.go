package objcache

import (
	"errors"
	"fmt"

	"github.com/lazytree/lazytree/ostree"
)

// Sentinel errors.
var (
	// ErrNotPresent: the object is not in the cache (never stored,
	// evicted, or dropped because its file was missing or corrupt).
	ErrNotPresent = errors.New("objcache: object not present")
	// ErrCorrupt is matched by every *CorruptError.
	ErrCorrupt = errors.New("objcache: corrupt object")
	// ErrClosed: the store or handle was closed.
	ErrClosed = errors.New("objcache: closed")
	// ErrTooLarge: an object declares more bytes than the quota
	// (Options.MaxBytes) could ever hold. It is refused before anything
	// is written.
	ErrTooLarge = errors.New("objcache: object larger than the quota")
	// ErrBusy: Remove met an object that is open.
	ErrBusy = errors.New("objcache: object open")
	// ErrPinned: Remove met an object that is pinned.
	ErrPinned = errors.New("objcache: object pinned")
)

// CorruptError reports an object whose bytes are not what its name
// promises: offered to Put with the wrong checksum, or found damaged on
// disk (in which case it has been dropped from the cache). It matches
// ErrCorrupt, and ostree.ErrCorrupt: every verification failure of the
// module is one family.
type CorruptError struct {
	// Object is the "checksum.type" name.
	Object string
	// What differs: "checksum", "size" or "header".
	What      string
	Got, Want string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("objcache: object %s corrupt: %s is %s, want %s", e.Object, e.What, e.Got, e.Want)
}

// Is makes a CorruptError match ErrCorrupt and ostree.ErrCorrupt.
func (e *CorruptError) Is(target error) bool {
	return target == ErrCorrupt || target == ostree.ErrCorrupt
}
