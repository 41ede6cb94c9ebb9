//go:build !cgo

package delta

import (
	"errors"
	"io"
)

// Without cgo xz parts are decoded by the Go port alone.
func liblzma() bool { return false }

type lzmaReader struct{ io.Reader }

func newLzmaReader(io.Reader, uint64) (*lzmaReader, error) {
	return nil, errors.New("built without cgo: no liblzma")
}

func (*lzmaReader) Close() {}
