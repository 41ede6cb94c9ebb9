package fusefs

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/lazytree/lazytree/ostree"
)

// errMissing marks an object that a verified parent names but the Source
// could not produce. It overrides ErrNotFound in toErrno: a listed name
// must never turn into ENOENT.
var errMissing = errors.New("object named by a verified tree is missing")

// toErrno is the one place where errors become errnos.
//
//	nil                                    -> 0
//	errMissing (referenced object missing) -> EIO
//	ErrNotFound                            -> ENOENT
//	context.Canceled (kernel INTERRUPT)    -> EINTR
//	context.DeadlineExceeded               -> EIO
//	ostree.ErrCorrupt                      -> EIO
//	a syscall.Errno (raised by fusefs)     -> itself
//	anything else                          -> EIO
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errMissing):
		return syscall.EIO
	case errors.Is(err, ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.EIO
	case errors.Is(err, ostree.ErrCorrupt):
		return syscall.EIO
	case errors.As(err, &errno) && errno != 0:
		return errno
	}
	return syscall.EIO
}

// referenced rewraps err for an object that a verified parent named, so
// that ErrNotFound from the Source becomes EIO rather than ENOENT.
func referenced(err error) error {
	if err == nil || !errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %w", errMissing, err)
}
