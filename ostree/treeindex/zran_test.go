package treeindex

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/lazytree/lazytree/ostree/zran"
)

// TestZranScanPointsResume: the index Build writes with ZranScan has
// access points from which the content inflates to exactly its bytes
// from that offset on, and chunk digests that match those bytes: what a
// ranged reader (issue 15) relies on.
func TestZranScanPointsResume(t *testing.T) {
	s := newSample(t)
	x := s.build(t, BuildOptions{Scan: ZranScan, Span: 256 << 10})
	f, ok := x.File(s.big)
	if !ok {
		t.Fatal("big file missing from the index")
	}
	if len(f.Points) < 3 {
		t.Fatalf("%d access points in 2.5 MiB with a 256 KiB span", len(f.Points))
	}
	filez, content := s.src.filez[s.big], s.content[s.big]
	for _, p := range f.Points {
		zp := zran.Point{Out: p.Out, In: p.In, Bits: p.Bits, Window: p.Window}
		if p.Bits > 0 {
			zp.Prev = filez[p.In-1]
		}
		r, err := zran.NewReader(bytes.NewReader(filez[p.In:]), zp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("inflate from the point at %d: %v", p.Out, err)
		}
		if !bytes.Equal(got, content[p.Out:]) {
			t.Fatalf("inflating from the point at %d gives other bytes", p.Out)
		}
	}
	for i := range f.Chunks() {
		off, n, d := f.Chunk(i)
		if sha256.Sum256(content[off:off+n]) != d {
			t.Fatalf("chunk %d digest does not match the content", i)
		}
	}
}
