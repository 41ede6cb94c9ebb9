package treeindex

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/flate"

	"github.com/lazytree/lazytree/ostree"
)

// memSource is a repository in memory: metadata by checksum and .filez
// bytes by content checksum.
type memSource struct {
	meta  map[ostree.Checksum][]byte
	filez map[ostree.Checksum][]byte
}

func (m *memSource) ReadMetadata(ctx context.Context, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	b, ok := m.meta[c]
	if !ok {
		return nil, fmt.Errorf("%s: not found", ostree.ObjectName(c, t))
	}
	return b, nil
}

func (m *memSource) OpenArchive(ctx context.Context, c ostree.Checksum) (io.ReadCloser, error) {
	b, ok := m.filez[c]
	if !ok {
		return nil, fmt.Errorf("%s: not found", ostree.ObjectName(c, ostree.ObjFile))
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memSource) put(b []byte) ostree.Checksum {
	c := ostree.Sum(b)
	m.meta[c] = b
	return c
}

// sample is a commit in a memSource with what the test knows of it.
type sample struct {
	src     *memSource
	commit  ostree.Checksum
	root    *ostree.Commit
	content map[ostree.Checksum][]byte // uncompressed content by checksum
	// points are real access points of big.bin's .filez, recorded while
	// writing it with a sync flush every pointSpan bytes (In counted
	// from the start of the deflate stream, as a ScanFunc reports them).
	big    ostree.Checksum
	points []AccessPoint
}

const pointSpan = 512 << 10

// newSample commits a small tree into memory: regular files (empty,
// small, one of 2.5 MiB with xattrs), a symlink, nested directories with
// their own dirmeta, and an empty directory.
func newSample(t testing.TB) *sample {
	t.Helper()
	s := &sample{src: &memSource{meta: map[ostree.Checksum][]byte{}, filez: map[ostree.Checksum][]byte{}}, content: map[ostree.Checksum][]byte{}}
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 5<<19) // 2.5 MiB: three chunks of 1 MiB, the last short
	for i := range big {
		big[i] = byte('a' + rng.IntN(8)) // compressible, but not trivially
	}
	addFile := func(h *ostree.FileHeader, data []byte) ostree.Checksum {
		var buf bytes.Buffer
		c, err := ostree.WriteArchive(&buf, h, bytes.NewReader(data), 0)
		if err != nil {
			t.Fatal(err)
		}
		s.src.filez[c] = buf.Bytes()
		s.content[c] = data
		return c
	}
	reg := func(mode uint32, data []byte) ostree.Checksum {
		return addFile(&ostree.FileHeader{Size: uint64(len(data)), Mode: ostree.ModeReg | mode}, data)
	}
	s.big = s.addBig(t, &ostree.FileHeader{Size: uint64(len(big)), UID: 1000, GID: 1000, Mode: ostree.ModeReg | 0o644,
		Xattrs: []ostree.Xattr{{Name: "user.a", Value: []byte("1")}, {Name: "user.b", Value: []byte{0, 1}}}}, big)
	link := addFile(&ostree.FileHeader{Mode: ostree.ModeSymlink | 0o777, Target: "../big.bin"}, nil)
	dirMeta := s.src.put((&ostree.DirMeta{Mode: ostree.ModeDir | 0o755}).Encode())
	subMeta := s.src.put((&ostree.DirMeta{UID: 5, Mode: ostree.ModeDir | 0o700, Xattrs: []ostree.Xattr{{Name: "user.d", Value: []byte("x")}}}).Encode())
	empty := s.src.put(ostree.EmptyDirTree)
	sub := &ostree.DirTree{Files: []ostree.TreeFile{{Name: "link", Checksum: link}, {Name: "run", Checksum: reg(0o755, []byte("#!/bin/sh\n"))}}}
	sub.Sort()
	subTree := s.src.put(sub.Encode())
	root := &ostree.DirTree{
		Files: []ostree.TreeFile{{Name: "big.bin", Checksum: s.big}, {Name: "empty", Checksum: reg(0o644, nil)}, {Name: "small", Checksum: reg(0o600, []byte("hello\n"))},
			{Name: "same", Checksum: reg(0o600, []byte("hello\n"))}},
		Dirs: []ostree.TreeDir{{Name: "sub", Tree: subTree, Meta: subMeta}, {Name: "void", Tree: empty, Meta: dirMeta}, {Name: "again", Tree: subTree, Meta: subMeta}},
	}
	root.Sort()
	s.root = &ostree.Commit{Subject: "sample", Timestamp: 1, RootTree: s.src.put(root.Encode()), RootMeta: dirMeta}
	cb, err := s.root.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s.commit = s.src.put(cb)
	return s
}

// addBig writes a .filez whose deflate stream is sync-flushed every
// pointSpan bytes and records an access point at each flush.
func (s *sample) addBig(t testing.TB, h *ostree.FileHeader, data []byte) ostree.Checksum {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(h.ArchiveHeader())
	start := buf.Len()
	zw, err := flate.NewWriter(&buf, 6)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += pointSpan {
		if off > 0 {
			if err := zw.Flush(); err != nil {
				t.Fatal(err)
			}
			w := data[max(0, off-WindowSize):off]
			s.points = append(s.points, AccessPoint{Out: int64(off), In: int64(buf.Len() - start), Window: w})
		}
		zw.Write(data[off:min(len(data), off+pointSpan)])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := ostree.ContentChecksum(h, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	s.src.filez[c] = buf.Bytes()
	s.content[c] = data
	return c
}

// replay is a ScanFunc that reports the recorded points after reading
// the stream (as a scanner would), checking that it was handed the
// deflate stream and not the header.
func (s *sample) replay(t testing.TB) ScanFunc {
	return func(r io.Reader, span int64, fn func(AccessPoint) error) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, flate.NewReader(bytes.NewReader(b))); err != nil {
			t.Errorf("scan was not handed a raw deflate stream: %v", err)
		}
		for _, p := range s.points {
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
}

func (s *sample) build(t testing.TB, opts BuildOptions) *Index {
	t.Helper()
	x, err := Build(context.Background(), s.src, s.commit, opts)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// equalIndex reports the first difference between two indexes.
func equalIndex(a, b *Index) error {
	if a.Commit != b.Commit {
		return fmt.Errorf("commit %s vs %s", a.Commit, b.Commit)
	}
	for _, tab := range []struct {
		what string
		a, b []Object
	}{{"dirtrees", a.Trees, b.Trees}, {"dirmetas", a.Metas, b.Metas}} {
		if len(tab.a) != len(tab.b) {
			return fmt.Errorf("%s: %d vs %d", tab.what, len(tab.a), len(tab.b))
		}
		for i := range tab.a {
			if tab.a[i].Checksum != tab.b[i].Checksum || !bytes.Equal(tab.a[i].Data, tab.b[i].Data) {
				return fmt.Errorf("%s %d differs", tab.what, i)
			}
		}
	}
	if len(a.Files) != len(b.Files) {
		return fmt.Errorf("files: %d vs %d", len(a.Files), len(b.Files))
	}
	for i := range a.Files {
		fa, fb := &a.Files[i], &b.Files[i]
		if fa.Checksum != fb.Checksum || fa.ArchivedSize != fb.ArchivedSize || fa.HeaderSize != fb.HeaderSize ||
			fa.ChunkSize != fb.ChunkSize || !bytes.Equal(fa.Digests, fb.Digests) || len(fa.Points) != len(fb.Points) ||
			!bytes.Equal(fa.Header.ArchiveHeader(), fb.Header.ArchiveHeader()) {
			return fmt.Errorf("file %s differs", fa.Checksum)
		}
		for j := range fa.Points {
			pa, pb := fa.Points[j], fb.Points[j]
			if pa.Out != pb.Out || pa.In != pb.In || pa.Bits != pb.Bits || !bytes.Equal(pa.Window, pb.Window) {
				return fmt.Errorf("file %s point %d differs", fa.Checksum, j)
			}
		}
	}
	return nil
}
