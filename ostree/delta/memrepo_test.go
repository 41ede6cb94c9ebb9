package delta

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// memRepo is an in-memory Objects, for generator tests that need no root
// and no disk.
type memRepo struct {
	meta    map[ObjRef][]byte
	content map[ostree.Checksum]memContent
	detach  map[ostree.Checksum][]byte
}

var _ Objects = (*memRepo)(nil)

func newMemRepo() *memRepo {
	return &memRepo{meta: map[ObjRef][]byte{}, content: map[ostree.Checksum]memContent{}, detach: map[ostree.Checksum][]byte{}}
}

func (m *memRepo) ReadMetadata(ctx context.Context, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	b, ok := m.meta[ObjRef{t, c}]
	if !ok {
		return nil, os.ErrNotExist
	}
	return b, nil
}

func (m *memRepo) ReadCommitMeta(ctx context.Context, c ostree.Checksum) ([]byte, error) {
	return m.detach[c], nil
}

func (m *memRepo) OpenContent(ctx context.Context, c ostree.Checksum) (*ostree.FileHeader, io.ReadCloser, error) {
	o, ok := m.content[c]
	if !ok {
		return nil, nil, os.ErrNotExist
	}
	return o.h, io.NopCloser(bytes.NewReader(o.data)), nil
}

func (m *memRepo) StoredSize(ctx context.Context, c ostree.Checksum) (uint64, error) {
	return uint64(len(m.content[c].data)/2 + 100), nil
}

func (m *memRepo) putMeta(t ostree.ObjectType, data []byte) ostree.Checksum {
	c := ostree.Sum(data)
	m.meta[ObjRef{t, c}] = data
	return c
}

func (m *memRepo) putFile(tb testing.TB, h *ostree.FileHeader, data []byte) ostree.Checksum {
	tb.Helper()
	if !h.IsSymlink() {
		h.Size = uint64(len(data))
	}
	c := contentSum(tb, h, data)
	m.content[c] = memContent{h, data}
	return c
}

// commit makes a commit whose root directory holds files (name ->
// checksum).
func (m *memRepo) commit(tb testing.TB, files map[string]ostree.Checksum) ostree.Checksum {
	tb.Helper()
	dt := &ostree.DirTree{}
	for name, c := range files {
		dt.Files = append(dt.Files, ostree.TreeFile{Name: name, Checksum: c})
	}
	dt.Sort()
	tree := m.putMeta(ostree.ObjDirTree, dt.Encode())
	dm := m.putMeta(ostree.ObjDirMeta, (&ostree.DirMeta{Mode: ostree.ModeDir | 0o755}).Encode())
	data, err := (&ostree.Commit{Subject: "test", Timestamp: 1, RootTree: tree, RootMeta: dm}).Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return m.putMeta(ostree.ObjCommit, data)
}

// TestGenerateKeepsPartsOpenable makes objects whose xattr tables dwarf
// their content, so that only the reader's usize-based bound (not the
// payload size) forces new parts, and checks every part still opens.
func TestGenerateKeepsPartsOpenable(t *testing.T) {
	m := newMemRepo()
	files := map[string]ostree.Checksum{}
	for i := range 24 {
		// Just under ostree.MaxFileHeaderSize, the most one object's
		// xattr list may take.
		val := bytes.Repeat([]byte{byte('a' + i)}, 1<<20-4<<10)
		h := &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Xattrs: []ostree.Xattr{{Name: fmt.Sprintf("user.big%02d", i), Value: val}}}
		files[fmt.Sprintf("f%02d", i)] = m.putFile(t, h, []byte{byte(i)})
	}
	to := m.commit(t, files)
	parts := memParts{}
	_, data, err := Generate(context.Background(), m, nil, to, parts.write, GenerateOptions{Timestamp: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	sb, sink := applyGenerated(t, data, parts, nil)
	if len(sb.Parts) < 2 {
		t.Errorf("%d parts: the xattr tables should not fit in one", len(sb.Parts))
	}
	if len(sink.content) != len(files) {
		t.Errorf("%d content objects, want %d", len(sink.content), len(files))
	}
}

// TestGenerateUnsortedXattrs checks that a source object with unsorted
// xattrs is refused rather than written into a part readers reject.
func TestGenerateUnsortedXattrs(t *testing.T) {
	m := newMemRepo()
	h := &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Xattrs: []ostree.Xattr{{Name: "user.b"}, {Name: "user.a"}}}
	to := m.commit(t, map[string]ostree.Checksum{"f": m.putFile(t, h, []byte("x"))})
	_, _, err := Generate(context.Background(), m, nil, to, memParts{}.write, GenerateOptions{})
	if err == nil {
		t.Fatal("no error")
	}
}

// TestGenerateNoRoot runs the generator and reader over an in-memory
// repository with a symlink, an empty file, an incompressible file (a
// stored-xz part), a fallback and a from-commit delta.
func TestGenerateNoRoot(t *testing.T) {
	m := newMemRepo()
	rnd := make([]byte, 200<<10)
	rand.NewChaCha8([32]byte{1}).Read(rnd)
	files := map[string]ostree.Checksum{
		"link":  m.putFile(t, &ostree.FileHeader{Mode: ostree.ModeSymlink | 0o777, Target: "target"}, nil),
		"empty": m.putFile(t, &ostree.FileHeader{Mode: ostree.ModeReg | 0o600, UID: 1000, GID: 1000}, nil),
		"text":  m.putFile(t, &ostree.FileHeader{Mode: ostree.ModeReg | 0o644}, bytes.Repeat([]byte("hello "), 1000)),
		"rnd":   m.putFile(t, &ostree.FileHeader{Mode: ostree.ModeReg | 0o755}, rnd),
		"big":   m.putFile(t, &ostree.FileHeader{Mode: ostree.ModeReg | 0o644}, make([]byte, 600<<10)),
	}
	from := m.commit(t, map[string]ostree.Checksum{"text": files["text"]})
	to := m.commit(t, files)
	meta := gvariant.VarDict{}
	meta.Set("k", "s", "v")
	m.detach[to] = gvariant.MustEncode(ostree.TypeVarDict, []any(meta))
	for _, f := range []*ostree.Checksum{nil, &from} {
		parts := memParts{}
		_, data, err := Generate(context.Background(), m, f, to, parts.write, GenerateOptions{FallbackSize: 512 << 10})
		if err != nil {
			t.Fatal(err)
		}
		sb, sink := applyGenerated(t, data, parts, nil)
		if len(sb.Fallbacks) != 1 || sb.Fallbacks[0].Object.Checksum != files["big"] {
			t.Errorf("fallbacks %+v, want big", sb.Fallbacks)
		}
		want := len(files) - 1
		if f != nil {
			want-- // text is in the from-commit
		}
		if len(sink.content) != want {
			t.Errorf("from %v: %d content objects, want %d", f, len(sink.content), want)
		}
		for c, o := range sink.content {
			if !bytes.Equal(o.data, m.content[c].data) {
				t.Errorf("%s differs", c)
			}
		}
		stored := 0
		for _, p := range parts {
			// rnd is in an xz part of uncompressed chunks, verbatim.
			if p[0] == CompressionXZ && (bytes.Contains(p, rnd[:1024]) || bytes.Contains(p, rnd[100000:101024])) {
				stored++
			}
		}
		if stored != 1 {
			t.Errorf("rnd is verbatim in %d parts, want 1", stored)
		}
		if !bytes.Equal(sb.CommitMeta, m.detach[to]) {
			t.Error("detached metadata not embedded")
		}
	}
}
