package treeindex

import (
	"io"

	"github.com/lazytree/lazytree/ostree/zran"
)

// ZranScan is the ScanFunc over ostree/zran: access points at deflate
// block starts at least span apart. A point's Prev byte is not kept: it
// is the byte at In-1 of the .filez, which a reader fetches with the rest.
func ZranScan(r io.Reader, span int64, fn func(AccessPoint) error) error {
	_, err := zran.Scan(r, zran.Options{Span: span}, func(p zran.Point) error {
		return fn(AccessPoint{Out: p.Out, In: p.In, Bits: p.Bits, Window: p.Window})
	})
	return err
}
