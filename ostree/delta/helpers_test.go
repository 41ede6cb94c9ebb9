package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// vectorRepo is the test-vector archive repository (read-only).
func vectorRepo(t testing.TB) string {
	t.Helper()
	return testutil.VectorPath(t, "repo")
}

func mustChecksum(t testing.TB, s string) ostree.Checksum {
	t.Helper()
	c, err := ostree.ParseChecksum(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// vectorDelta describes one of the three deltas in the vector repo.
type vectorDelta struct {
	name       string
	from       *ostree.Checksum
	to         ostree.Checksum
	endianness byte
	parts      int
	inline     bool
	fallbacks  int
	needsSrc   bool
}

func vectorDeltas(t testing.TB) []vectorDelta {
	c1 := mustChecksum(t, testutil.C1Checksum)
	c2 := mustChecksum(t, testutil.C2Checksum)
	return []vectorDelta{
		{name: "scratch-C1", to: c1, endianness: LittleEndian, parts: 1},
		{name: "C1-C2", from: &c1, to: c2, endianness: LittleEndian, parts: 1, needsSrc: true},
		{name: "scratch-C2-inline-BE", to: c2, endianness: BigEndian, parts: 1, inline: true, fallbacks: 1},
	}
}

func readSuperblock(t testing.TB, repo string, from *ostree.Checksum, to ostree.Checksum) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, ostree.DeltaPath(from, to), "superblock"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// partData returns the bytes of part i: inline, or the file next to the
// superblock.
func partData(t testing.TB, repo string, sb *Superblock, i int) []byte {
	t.Helper()
	if sb.Parts[i].Inline != nil {
		return sb.Parts[i].Inline
	}
	b, err := os.ReadFile(filepath.Join(repo, sb.Path(), fmt.Sprint(i)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// repoSource serves content objects of an archive repository directory,
// inflated and verified, as a Source.
type repoSource struct {
	dir   string
	mu    sync.Mutex
	opens []ostree.Checksum
}

func (s *repoSource) OpenContent(ctx context.Context, c ostree.Checksum) (Blob, error) {
	s.mu.Lock()
	s.opens = append(s.opens, c)
	s.mu.Unlock()
	_, data, err := readContent(s.dir, c)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(data), nil
}

// readContent reads and verifies a .filez object.
func readContent(dir string, c ostree.Checksum) (*ostree.FileHeader, []byte, error) {
	f, err := os.Open(filepath.Join(dir, ostree.ObjectPath(c, ostree.ObjFile, true)))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	cr, err := ostree.NewContentReader(f)
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(cr)
	if err != nil {
		return nil, nil, err
	}
	if cr.Sum() != c {
		return nil, nil, &ostree.ChecksumError{Object: c.String(), Got: cr.Sum(), Want: c}
	}
	return cr.Header, data, nil
}

// memSink keeps every object Apply hands over, and records aborts.
type memSink struct {
	meta    map[ObjRef][]byte
	content map[ostree.Checksum]memContent
	order   []ObjRef
	aborts  int
	skip    map[ostree.Checksum]bool
}

type memContent struct {
	h    *ostree.FileHeader
	data []byte
}

func newMemSink() *memSink {
	return &memSink{meta: map[ObjRef][]byte{}, content: map[ostree.Checksum]memContent{}}
}

var _ Sink = (*memSink)(nil)

func (s *memSink) PutMetadata(ctx context.Context, obj ObjRef, data []byte) error {
	s.meta[obj] = bytes.Clone(data)
	s.order = append(s.order, obj)
	return nil
}

func (s *memSink) CreateContent(ctx context.Context, c ostree.Checksum, h *ostree.FileHeader) (ContentWriter, error) {
	if s.skip[c] {
		return nil, nil
	}
	return &memWriter{s: s, c: c, h: h}, nil
}

type memWriter struct {
	s    *memSink
	c    ostree.Checksum
	h    *ostree.FileHeader
	buf  bytes.Buffer
	done bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("write after commit or abort")
	}
	return w.buf.Write(p)
}

func (w *memWriter) Commit() error {
	if w.done {
		return errors.New("commit twice")
	}
	w.done = true
	w.s.content[w.c] = memContent{w.h, w.buf.Bytes()}
	w.s.order = append(w.s.order, ObjRef{ostree.ObjFile, w.c})
	return nil
}

func (w *memWriter) Abort() {
	w.done = true
	w.s.aborts++
}

// checkAgainstRepo compares every object in the sink with the loose
// object of the same name in the archive repository dir.
func checkAgainstRepo(t *testing.T, dir string, s *memSink) {
	t.Helper()
	for ref, data := range s.meta {
		want, err := os.ReadFile(filepath.Join(dir, ostree.ObjectPath(ref.Checksum, ref.Type, true)))
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if !bytes.Equal(data, want) {
			t.Errorf("%s: bytes differ from the loose object", ref)
		}
	}
	for c, got := range s.content {
		h, data, err := readContent(dir, c)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		if !bytes.Equal(got.data, data) {
			t.Errorf("%s: content differs from the .filez (%d vs %d bytes)", c, len(got.data), len(data))
		}
		if !bytes.Equal(got.h.StreamHeader(), h.StreamHeader()) || got.h.Size != h.Size {
			t.Errorf("%s: header %+v, .filez has %+v", c, got.h, h)
		}
		sum, err := ostree.ContentChecksum(got.h, bytes.NewReader(got.data))
		if err != nil || sum != c {
			t.Errorf("%s: recomputed checksum %s (%v)", c, sum, err)
		}
	}
}

// listObjects lists every loose object of an archive repository.
func listObjects(t testing.TB, dir string) []ObjRef {
	t.Helper()
	var out []ObjRef
	root := filepath.Join(dir, "objects")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := filepath.Base(p)
		ext := filepath.Ext(base)
		c, err := ostree.ParseChecksum(filepath.Base(filepath.Dir(p)) + base[:len(base)-len(ext)])
		if err != nil {
			return err
		}
		types := map[string]ostree.ObjectType{".filez": ostree.ObjFile, ".dirtree": ostree.ObjDirTree, ".dirmeta": ostree.ObjDirMeta, ".commit": ostree.ObjCommit}
		if t, ok := types[ext]; ok {
			out = append(out, ObjRef{t, c})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func readFile(dir, rel string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, rel)) }

func statFile(dir, rel string) (int64, error) {
	st, err := os.Stat(filepath.Join(dir, rel))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func gvariantMustEncode(t *gvariant.Type, v any) []byte { return gvariant.MustEncode(t, v) }

// dropEndianness removes the ostree.endianness key from a superblock.
func dropEndianness(t testing.TB, data []byte) []byte {
	t.Helper()
	v, err := gvariant.Decode(TypeSuperblock, data)
	if err != nil {
		t.Fatal(err)
	}
	f := v.([]any)
	var meta []any
	for _, e := range f[0].([]any) {
		if e.(gvariant.DictEntry).Key != MetaEndianness {
			meta = append(meta, e)
		}
	}
	if meta == nil {
		meta = []any{}
	}
	f[0] = meta
	return gvariant.MustEncode(TypeSuperblock, f)
}

// vectorXZPart is one of the vectors' parts stored apart and xz
// compressed: its header and its file's bytes.
type vectorXZPart struct {
	hdr  PartHeader
	data []byte
}

// vectorXZParts returns the vectors' separate xz parts (there is one or
// more: the test fails otherwise).
func vectorXZParts(t testing.TB) []vectorXZPart {
	t.Helper()
	repo := vectorRepo(t)
	var out []vectorXZPart
	for _, v := range vectorDeltas(t) {
		sb, err := ParseSuperblock(readSuperblock(t, repo, v.from, v.to))
		if err != nil {
			t.Fatal(err)
		}
		for i, ph := range sb.Parts {
			if d := partData(t, repo, sb, i); ph.Inline == nil && len(d) > 0 && d[0] == CompressionXZ {
				out = append(out, vectorXZPart{ph, d})
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the vectors have no xz part")
	}
	return out
}
