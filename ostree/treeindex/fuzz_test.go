package treeindex

import (
	"bytes"
	"strings"
	"testing"
)

// seedIndexes returns encoded indexes of the sample: plain, and chunked
// with access points (the windows make it large, so it is one seed).
func seedIndexes(f *testing.F) [][]byte {
	s := newSample(f)
	var out [][]byte
	for _, opts := range []BuildOptions{{Threshold: 8 << 20}, {Scan: s.replay(f)}} {
		b, err := s.build(f, opts).Encode()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkAccepted is what must hold of every index Decode accepts from
// payload: it marshals back to the same payload, encodes and decodes
// again, and its lookups and chunk helpers stay in range.
func checkAccepted(t *testing.T, x *Index, payload []byte) {
	again, err := x.marshal()
	if err != nil {
		t.Fatalf("accepted index does not marshal: %v", err)
	}
	if payload != nil && !bytes.Equal(again, payload) {
		t.Fatal("accepted index marshals to other bytes")
	}
	enc, err := x.Encode()
	if err != nil {
		t.Fatalf("accepted index does not encode: %v", err)
	}
	y, err := Decode(enc)
	if err != nil {
		t.Fatalf("re-encoded index is rejected: %v", err)
	}
	if err := equalIndex(x, y); err != nil {
		t.Fatal(err)
	}
	for _, o := range x.Trees {
		if _, ok := x.DirTree(o.Checksum); !ok {
			t.Fatal("DirTree misses an entry")
		}
	}
	for i := range x.Files {
		f := &x.Files[i]
		if g, ok := x.File(f.Checksum); !ok || g != f {
			t.Fatal("File misses an entry")
		}
		for c := range f.Chunks() {
			off, n, _ := f.Chunk(c)
			if n <= 0 || uint64(off+n) > f.Header.Size {
				t.Fatalf("chunk %d: %d+%d outside %d bytes", c, off, n, f.Header.Size)
			}
			if p := f.PointBefore(off); p.Out > off {
				t.Fatalf("PointBefore(%d) = %d", off, p.Out)
			}
		}
		f.StreamHeader()
	}
}

func FuzzDecodeTreeIndex(f *testing.F) {
	for _, b := range seedIndexes(f) {
		f.Add(b)
	}
	f.Add(rawFrame(3, []byte("abc")))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := Decode(data)
		if err != nil {
			return
		}
		checkAccepted(t, x, nil)
	})
}

// FuzzUnmarshalTreeIndex mutates the decompressed payload, which the
// compressed target rarely reaches.
func FuzzUnmarshalTreeIndex(f *testing.F) {
	s := newSample(f)
	for _, opts := range []BuildOptions{{Threshold: 8 << 20}, {ChunkSize: MinChunkSize}} {
		p, err := s.build(f, opts).marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		x, err := unmarshal(payload)
		if err != nil {
			return
		}
		checkAccepted(t, x, payload)
	})
}

func FuzzDecodeProfile(f *testing.F) {
	f.Add([]byte(`{"version":1,"commit":"` + strings.Repeat("ab", 32) + `","paths":["files/bin/sh","metadata"]}`))
	f.Add([]byte(`{"version":1,"commit":"` + strings.Repeat("00", 32) + `","paths":[]}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeProfile(bytes.NewReader(data))
		if err != nil {
			return
		}
		b, err := p.Encode()
		if err != nil {
			t.Fatalf("accepted profile does not encode: %v", err)
		}
		q, err := DecodeProfile(bytes.NewReader(b))
		if err != nil || q.Commit != p.Commit || len(q.Paths) != len(p.Paths) {
			t.Fatalf("re-encoded profile differs (%v)", err)
		}
		for i := range p.Paths {
			if p.Paths[i] != q.Paths[i] || ValidateProfilePath(p.Paths[i]) != nil {
				t.Fatalf("path %d: %q vs %q", i, p.Paths[i], q.Paths[i])
			}
		}
	})
}
