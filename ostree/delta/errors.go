package delta

import (
	"errors"
	"fmt"

	"github.com/lazytree/lazytree/ostree"
)

// ErrUnsupported is matched by errors about deltas that are well formed but
// use something this package does not implement: a part version other than
// 0, a compression other than none and xz, a signed superblock.
var ErrUnsupported = errors.New("delta: unsupported")

// corrupt reports malformed input. The error matches ostree.ErrCorrupt, so
// callers treat a broken delta like any other object that is not what its
// name promises.
func corrupt(what, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", what, ostree.ErrCorrupt, fmt.Sprintf(format, args...))
}

func unsupported(what, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", what, ErrUnsupported, fmt.Sprintf(format, args...))
}
