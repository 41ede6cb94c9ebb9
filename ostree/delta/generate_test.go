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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
	"github.com/lazytree/lazytree/ostree/repo"
)

// repoObjects adapts an archive repository to Objects.
type repoObjects struct{ r *repo.Repo }

var _ Objects = repoObjects{}

func (o repoObjects) ReadMetadata(ctx context.Context, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	return o.r.ReadObject(c, t)
}

func (o repoObjects) ReadCommitMeta(ctx context.Context, c ostree.Checksum) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(o.r.Dir, ostree.ObjectPath(c, ostree.ObjCommitMeta, true)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (o repoObjects) OpenContent(ctx context.Context, c ostree.Checksum) (*ostree.FileHeader, io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(o.r.Dir, ostree.ObjectPath(c, ostree.ObjFile, true)))
	if err != nil {
		return nil, nil, err
	}
	cr, err := ostree.NewContentReader(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return cr.Header, struct {
		io.Reader
		io.Closer
	}{cr, f}, nil
}

func (o repoObjects) StoredSize(ctx context.Context, c ostree.Checksum) (uint64, error) {
	st, err := os.Stat(filepath.Join(o.r.Dir, ostree.ObjectPath(c, ostree.ObjFile, true)))
	if err != nil {
		return 0, err
	}
	return uint64(st.Size()), nil
}

// memParts collects part files by index.
type memParts map[int][]byte

func (m memParts) write(ctx context.Context, i int, data []byte) error {
	if _, dup := m[i]; dup {
		return fmt.Errorf("part %d written twice", i)
	}
	m[i] = bytes.Clone(data)
	return nil
}

// vectorCommits commits C1's and C2's trees with ostree/repo into a new
// repository and returns it with both commit checksums.
func vectorCommits(t *testing.T) (*repo.Repo, ostree.Checksum, ostree.Checksum) {
	t.Helper()
	base := t.TempDir()
	r, err := repo.Init(filepath.Join(base, "repo"), testutil.VectorCollectionID)
	if err != nil {
		t.Fatal(err)
	}
	var sums []ostree.Checksum
	for i, build := range []func(testing.TB, string){testutil.BuildVectorTree, testutil.BuildVectorTree2} {
		tree := filepath.Join(base, fmt.Sprintf("tree%d", i+1))
		build(t, tree)
		res, err := r.CommitDir(context.Background(), tree, repo.CommitOptions{
			Branch: "exampleos/x86_64/stable", Subject: fmt.Sprintf("commit %d", i+1),
			Timestamp: time.Unix(1704067200+int64(i), 0),
		})
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, res.Checksum)
	}
	// Detached metadata, so that it is embedded in the superblock.
	meta := gvariant.VarDict{}
	meta.Set("custom.detached", "s", "hello")
	if err := r.WriteCommitMeta(sums[1], gvariant.MustEncode(ostree.TypeVarDict, []any(meta))); err != nil {
		t.Fatal(err)
	}
	return r, sums[0], sums[1]
}

// reachable lists the dirtree, dirmeta and content objects of a commit.
func reachable(t *testing.T, r *repo.Repo, c ostree.Checksum) map[ObjRef]bool {
	t.Helper()
	cm, _, err := r.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	out := map[ObjRef]bool{}
	if err := r.Walk(cm, func(c ostree.Checksum, typ ostree.ObjectType) error {
		out[ObjRef{typ, c}] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// applyGenerated parses a generated delta with this package's own reader
// and applies it.
func applyGenerated(t *testing.T, data []byte, parts memParts, src Source) (*Superblock, *memSink) {
	t.Helper()
	sb, err := ParseSuperblock(data)
	if err != nil {
		t.Fatal(err)
	}
	sink := newMemSink()
	for i, ph := range sb.Parts {
		file := ph.Inline
		if file == nil {
			file = parts[i]
		}
		p, err := OpenPart(file, ph, ph.Inline != nil)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if err := p.Apply(context.Background(), ph.Objects, src, sink); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	return sb, sink
}

func TestGenerate(t *testing.T) {
	r, c1, c2 := vectorCommits(t)
	objs := repoObjects{r}
	reach1, reach2 := reachable(t, r, c1), reachable(t, r, c2)
	tests := []struct {
		name string
		from *ostree.Checksum
		opts GenerateOptions
		// wantParts is a lower bound.
		wantParts, wantFallbacks int
	}{
		{"scratch defaults", nil, GenerateOptions{}, 1, 0},
		{"scratch small parts and a fallback", nil, GenerateOptions{MaxPartSize: 100, FallbackSize: 512 << 10}, 8, 1},
		{"scratch inline", nil, GenerateOptions{Inline: true, FallbackSize: 512 << 10}, 1, 1},
		{"scratch all xz", nil, GenerateOptions{AlwaysXZ: true, FallbackSize: -1}, 1, 0},
		{"from C1", &c1, GenerateOptions{}, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := memParts{}
			w := parts.write
			if tc.opts.Inline {
				w = nil
			}
			tc.opts.Timestamp = time.Unix(1800000000, 0)
			tc.opts.Metadata = []any{}
			gen, data, err := Generate(context.Background(), objs, tc.from, c2, w, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			sb, sink := applyGenerated(t, data, parts, nil)
			if len(sb.Parts) < tc.wantParts || len(sb.Fallbacks) != tc.wantFallbacks {
				t.Errorf("%d parts and %d fallbacks, want at least %d and %d", len(sb.Parts), len(sb.Fallbacks), tc.wantParts, tc.wantFallbacks)
			}
			if len(gen.Parts) != len(sb.Parts) || sb.Timestamp != 1800000000 || sb.To != c2 || sb.Endianness != LittleEndian || sb.EndiannessGuessed {
				t.Errorf("parsed superblock differs from the generated one: %+v", sb)
			}
			if (sb.From == nil) != (tc.from == nil) {
				t.Errorf("from = %v", sb.From)
			}
			if want, _ := objs.ReadCommitMeta(context.Background(), c2); !bytes.Equal(sb.CommitMeta, want) {
				t.Error("detached metadata not embedded")
			}
			if !tc.opts.Inline && len(parts) != len(sb.Parts) {
				t.Errorf("%d part files for %d parts", len(parts), len(sb.Parts))
			}
			for i, p := range sb.Parts {
				if p.Size == 0 || (tc.opts.MaxPartSize != 0 && p.USize > max(tc.opts.MaxPartSize, 300<<10)) {
					t.Errorf("part %d: size %d usize %d", i, p.Size, p.USize)
				}
			}
			checkAgainstRepo(t, r.Dir, sink)
			// Every object of the to-commit that the from-commit lacks is
			// produced or a fallback, exactly once.
			want := map[ObjRef]bool{}
			for o := range reach2 {
				if tc.from == nil || !reach1[o] {
					want[o] = true
				}
			}
			got := map[ObjRef]int{}
			for _, o := range sink.order {
				got[o]++
			}
			for _, f := range sb.Fallbacks {
				got[f.Object]++
				if f.USize <= 512<<10 || f.Size == 0 {
					t.Errorf("fallback %s: size %d usize %d", f.Object, f.Size, f.USize)
				}
			}
			for o := range want {
				if got[o] != 1 {
					t.Errorf("%s delivered %d times", o, got[o])
				}
			}
			for o := range got {
				if !want[o] {
					t.Errorf("%s delivered but not wanted", o)
				}
			}
		})
	}
}

// TestGenerateVerifiesSource checks that a corrupt object in the source
// repository fails generation, naming it.
func TestGenerateVerifiesSource(t *testing.T) {
	r, _, c2 := vectorCommits(t)
	cm, _, err := r.ReadCommit(c2)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the root dirmeta on disk.
	p := filepath.Join(r.Dir, ostree.ObjectPath(cm.RootMeta, ostree.ObjDirMeta, true))
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = Generate(context.Background(), repoObjects{r}, nil, c2, memParts{}.write, GenerateOptions{})
	var ce *ostree.ChecksumError
	if !errors.As(err, &ce) || ce.Want != cm.RootMeta {
		t.Fatalf("error %v, want a checksum error for the root dirmeta", err)
	}
}

// TestGenerateOstreeApplyOffline hands deltas made by Generate to the real
// ostree: `static-delta show` parses the superblock, and `static-delta
// apply-offline` (which refuses fallbacks, so none are made) applies the
// from-scratch delta to C1 and then the C1->C2 delta into a fresh repo.
// fsck then checks every object, and checkouts are compared with the trees
// that were committed.
func TestGenerateOstreeApplyOffline(t *testing.T) {
	ostreeBin := testutil.RequireTool(t, "ostree")
	r, c1, c2 := vectorCommits(t)
	objs := repoObjects{r}
	for _, mode := range []string{"archive", "bare"} {
		t.Run(mode, func(t *testing.T) {
			client := filepath.Join(t.TempDir(), "client")
			testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client, "--mode="+mode)
			for _, d := range []struct {
				from *ostree.Checksum
				to   ostree.Checksum
			}{{nil, c1}, {&c1, c2}} {
				dir := writeDelta(t, objs, d.from, d.to, GenerateOptions{FallbackSize: -1, MaxPartSize: 256 << 10})
				show := testutil.Run(t, "", nil, ostreeBin, "static-delta", "show", "--repo="+r.Dir, ostree.DeltaName(d.from, d.to))
				if !strings.Contains(show, d.to.String()) || !strings.Contains(show, "Endianness: little") {
					t.Errorf("static-delta show:\n%s", show)
				}
				testutil.Run(t, "", nil, ostreeBin, "static-delta", "apply-offline", "--repo="+client, dir)
				testutil.Run(t, "", nil, ostreeBin, "fsck", "--repo="+client)
				out := testutil.Run(t, "", nil, ostreeBin, "show", "--repo="+client, d.to.String())
				if !strings.Contains(out, d.to.String()) {
					t.Errorf("ostree show:\n%s", out)
				}
				co := filepath.Join(t.TempDir(), "co")
				testutil.Run(t, "", nil, ostreeBin, "checkout", "--repo="+client, d.to.String(), co)
				tree := filepath.Join(filepath.Dir(r.Dir), "tree1")
				if d.to == c2 {
					tree = filepath.Join(filepath.Dir(r.Dir), "tree2")
				}
				opts := testutil.DiffOptions{IgnoreRootMode: true}
				if mode == "archive" {
					// Archive checkouts are user-mode: no owners, no
					// xattrs, no special bits.
					opts.IgnoreOwner, opts.IgnoreXattrs, opts.MaskSpecialBits = true, true, true
				}
				if err := testutil.TreeDiff(tree, co, opts); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// writeDelta generates a delta and writes it into the repository, as
// `ostree static-delta generate` would.
func writeDelta(t *testing.T, objs repoObjects, from *ostree.Checksum, to ostree.Checksum, opts GenerateOptions) string {
	t.Helper()
	dir := filepath.Join(objs.r.Dir, ostree.DeltaPath(from, to))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(ctx context.Context, i int, data []byte) error {
		return os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), data, 0o644)
	}
	_, data, err := Generate(context.Background(), objs, from, to, write, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "superblock"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGenerateOstreePull serves a repository holding deltas made by
// Generate (one with a fallback, one inline, one from C1) and no summary,
// and pulls with the real ostree into a bare repository, which makes
// ostree look for deltas (archive clients never use them).
func TestGenerateOstreePull(t *testing.T) {
	ostreeBin := testutil.RequireTool(t, "ostree")
	r, c1, c2 := vectorCommits(t)
	objs := repoObjects{r}
	// A pull by commit without a summary finds deltas through the delta
	// indexes (the summary writer does not list deltas yet).
	index := map[ostree.Checksum]gvariant.VarDict{}
	for _, d := range []struct {
		from *ostree.Checksum
		to   ostree.Checksum
		opts GenerateOptions
	}{
		{nil, c1, GenerateOptions{Inline: true, FallbackSize: 512 << 10}},
		{nil, c2, GenerateOptions{FallbackSize: 512 << 10}},
		{&c1, c2, GenerateOptions{}},
	} {
		sb, err := os.ReadFile(filepath.Join(writeDelta(t, objs, d.from, d.to, d.opts), "superblock"))
		if err != nil {
			t.Fatal(err)
		}
		sum := ostree.Sum(sb)
		e := index[d.to]
		e.Set(ostree.DeltaName(d.from, d.to), "ay", sum[:])
		index[d.to] = e
	}
	for to, deltas := range index {
		dict := gvariant.VarDict{}
		dict.Set(ostree.SummaryStaticDeltas, "a{sv}", []any(deltas))
		p := filepath.Join(r.Dir, ostree.DeltaIndexPath(to))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, gvariant.MustEncode(ostree.TypeVarDict, []any(dict)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.Config.Set("core", "indexed-deltas", "true")
	if err := os.WriteFile(filepath.Join(r.Dir, "config"), r.Config.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testutil.ServeDir(t, r.Dir)
	client := filepath.Join(t.TempDir(), "client")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare")
	testutil.Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--no-gpg-verify", "origin", srv.URL)
	for _, step := range []struct {
		commit ostree.Checksum
		delta  string
		tree   string
	}{
		{c1, ostree.DeltaPath(nil, c1), "tree1"},
		{c2, ostree.DeltaPath(&c1, c2), "tree2"},
	} {
		srv.Log.Reset()
		testutil.Run(t, "", nil, ostreeBin, "pull", "--repo="+client, "--require-static-deltas", "origin", step.commit.String())
		paths := srv.Log.Paths()
		if !slices.Contains(paths, "/"+step.delta+"/superblock") {
			t.Errorf("pull of %s did not use %s; requests: %q", step.tree, step.delta, paths)
		}
		testutil.Run(t, "", nil, ostreeBin, "fsck", "--repo="+client)
		co := filepath.Join(t.TempDir(), "co")
		testutil.Run(t, "", nil, ostreeBin, "checkout", "--repo="+client, step.commit.String(), co)
		if err := testutil.TreeDiff(filepath.Join(filepath.Dir(r.Dir), step.tree), co, testutil.DiffOptions{IgnoreRootMode: true}); err != nil {
			t.Error(err)
		}
		t.Logf("pull of %s: %q", step.tree, paths)
	}
}
