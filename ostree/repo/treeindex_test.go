package repo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
	"github.com/lazytree/lazytree/ostree/repo"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// ostreeRepo commits the test-vector tree plus a 3 MiB file with the real
// ostree into a fresh archive repository and returns it and the commit.
func ostreeRepo(t *testing.T) (string, ostree.Checksum) {
	t.Helper()
	ostreeBin := testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	testutil.BuildVectorTree(t, src)
	big := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range big {
		big[i] = byte(rng.IntN(16))
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "large.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "pub")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+pub, "--mode=archive")
	out := testutil.Output(t, "", nil, ostreeBin, "commit", "--repo="+pub, "-b", "test/ref", "-s", "by ostree", src)
	c, err := ostree.ParseChecksum(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return pub, c
}

func readSummaryRef(t *testing.T, dir, ref string) *ostree.SummaryRef {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ostree.DecodeSummary(b)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s.Ref(ref)
	if !ok {
		t.Fatalf("summary has no ref %s", ref)
	}
	return r
}

// readIndex follows the summary's lazytree.tree-index key of ref to the
// stored index, checks its name and decodes it.
func readIndex(t *testing.T, dir, ref string) *treeindex.Index {
	t.Helper()
	sum, ok := readSummaryRef(t, dir, ref).TreeIndex()
	if !ok {
		t.Fatalf("summary ref %s has no %s", ref, ostree.RefTreeIndex)
	}
	b, err := os.ReadFile(filepath.Join(dir, ostree.TreeIndexPath(sum)))
	if err != nil {
		t.Fatal(err)
	}
	if ostree.Checksum(sha256.Sum256(b)) != sum {
		t.Fatalf("%s does not hash to its name", ostree.TreeIndexPath(sum))
	}
	x, err := treeindex.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestTreeIndexOfOstreeRepo exports a repository the real ostree made
// and checks the index against the repository's own files: exactly its
// dirtrees and dirmetas (each hashing to its name), and for every .filez
// the header, the size and the chunk digests of its inflated content.
func TestTreeIndexOfOstreeRepo(t *testing.T) {
	pub, commit := ostreeRepo(t)
	r, err := repo.Open(pub)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Export(context.Background(), repo.ExportOptions{TreeIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.TreeIndexes != 1 {
		t.Fatalf("export: %d tree indexes, want 1", res.TreeIndexes)
	}
	x := readIndex(t, pub, "test/ref")
	if x.Commit != commit {
		t.Fatalf("index of %s, want %s", x.Commit, commit)
	}
	// One commit in a fresh repository: every object file is reachable.
	files := map[string]string{}
	filepath.WalkDir(filepath.Join(pub, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(pub, "objects"), p)
			hex, ext, _ := strings.Cut(strings.Replace(rel, "/", "", 1), ".")
			files[hex] = ext
		}
		return err
	})
	want := map[string]int{}
	for _, ext := range files {
		want[ext]++
	}
	if want["dirtree"] != len(x.Trees) || want["dirmeta"] != len(x.Metas) || want["filez"] != len(x.Files) {
		t.Fatalf("index has %d dirtrees, %d dirmetas, %d files; the repository %v", len(x.Trees), len(x.Metas), len(x.Files), want)
	}
	for _, tab := range []struct {
		ext  string
		typ  ostree.ObjectType
		objs []treeindex.Object
	}{{"dirtree", ostree.ObjDirTree, x.Trees}, {"dirmeta", ostree.ObjDirMeta, x.Metas}} {
		for _, o := range tab.objs {
			disk, err := os.ReadFile(filepath.Join(pub, ostree.ObjectPath(o.Checksum, tab.typ, true)))
			if err != nil {
				t.Fatalf("%s %s is not in the repository: %v", tab.ext, o.Checksum, err)
			}
			if ostree.Sum(o.Data) != o.Checksum || !bytes.Equal(disk, o.Data) {
				t.Fatalf("%s %s: bytes differ from the repository's or do not hash to the name", tab.ext, o.Checksum)
			}
		}
	}
	chunked := 0
	for i := range x.Files {
		f := &x.Files[i]
		if files[f.Checksum.String()] != "filez" {
			t.Fatalf("content %s is not in the repository", f.Checksum)
		}
		raw, err := os.ReadFile(filepath.Join(pub, ostree.ObjectPath(f.Checksum, ostree.ObjFile, true)))
		if err != nil {
			t.Fatal(err)
		}
		cr, err := ostree.NewContentReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(cr)
		if err != nil {
			t.Fatal(err)
		}
		if cr.Sum() != f.Checksum {
			t.Fatalf("%s: the repository's object hashes to %s", f.Checksum, cr.Sum())
		}
		h := cr.Header
		if f.Header.Size != h.Size || f.Header.UID != h.UID || f.Header.GID != h.GID || f.Header.Mode != h.Mode ||
			f.Header.Target != h.Target || !bytes.Equal(f.StreamHeader(), h.StreamHeader()) || !bytes.Equal(raw[:f.HeaderSize], h.ArchiveHeader()) {
			t.Fatalf("%s: header %+v, the .filez has %+v", f.Checksum, f.Header, *h)
		}
		if f.ArchivedSize != uint64(len(raw)) {
			t.Fatalf("%s: archived size %d, the .filez is %d bytes", f.Checksum, f.ArchivedSize, len(raw))
		}
		if h.Size > treeindex.DefaultThreshold {
			chunked++
			if f.Chunks() != int((h.Size+treeindex.DefaultChunkSize-1)/treeindex.DefaultChunkSize) {
				t.Fatalf("%s: %d chunks for %d bytes", f.Checksum, f.Chunks(), h.Size)
			}
			for c := range f.Chunks() {
				off, n, d := f.Chunk(c)
				if d != sha256.Sum256(content[off:off+n]) {
					t.Fatalf("%s: chunk %d digest differs", f.Checksum, c)
				}
			}
		} else if f.ChunkSize != 0 {
			t.Fatalf("%s: %d bytes chunked", f.Checksum, h.Size)
		}
	}
	if chunked != 1 {
		t.Fatalf("%d chunked objects, want 1 (large.bin)", chunked)
	}
	cb, err := os.ReadFile(filepath.Join(pub, ostree.ObjectPath(commit, ostree.ObjCommit, true)))
	if err != nil {
		t.Fatal(err)
	}
	cm, err := ostree.DecodeCommit(cb)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.CheckComplete(cm.RootTree, cm.RootMeta); err != nil {
		t.Fatal(err)
	}
	if out := testutil.Run(t, "", nil, testutil.RequireTool(t, "ostree"), "fsck", "--repo="+pub); !strings.Contains(out, "no errors") {
		t.Fatalf("ostree fsck after export: %s", out)
	}
}

// TestExportWithoutIndexUnchanged: without the options the summary has no
// lazytree keys, so a plain export stays what it was; with them, the
// summary differs only by the added per-ref keys.
func TestExportWithoutIndexUnchanged(t *testing.T) {
	pub, _ := ostreeRepo(t)
	r, err := repo.Open(pub)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	if _, err := r.Export(context.Background(), repo.ExportOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(filepath.Join(pub, "summary"))
	if err != nil {
		t.Fatal(err)
	}
	ref := readSummaryRef(t, pub, "test/ref")
	if _, ok := ref.TreeIndex(); ok {
		t.Fatal("plain export names a tree index")
	}
	if _, ok := ref.Profile(); ok {
		t.Fatal("plain export names a profile")
	}
	if _, err := os.Stat(filepath.Join(pub, "lazytree")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("plain export wrote lazytree/: %v", err)
	}
	if _, err := r.Export(context.Background(), repo.ExportOptions{Now: now, TreeIndex: true}); err != nil {
		t.Fatal(err)
	}
	withIndex, err := os.ReadFile(filepath.Join(pub, "summary"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ostree.DecodeSummary(withIndex)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Refs {
		var kept []any
		for _, e := range s.Refs[i].Metadata {
			if k := e.(gvariant.DictEntry).Key; k != ostree.RefTreeIndex && k != ostree.RefProfile {
				kept = append(kept, e)
			}
		}
		s.Refs[i].Metadata = kept
	}
	stripped, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stripped, plain) || bytes.Equal(withIndex, plain) {
		t.Fatal("the summary with a tree index is not the plain one plus the key")
	}
}

func TestExportProfiles(t *testing.T) {
	pub, commit := ostreeRepo(t)
	r, err := repo.Open(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	doc := `{"version": 1, "commit": "` + commit.String() + `", "paths": ["bin/hello.sh", "README"]}`
	if err := os.WriteFile(good, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.Export(context.Background(), repo.ExportOptions{Profiles: []string{good}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Profiles != 1 {
		t.Fatalf("%d profiles attached, want 1", res.Profiles)
	}
	sum, ok := readSummaryRef(t, pub, "test/ref").Profile()
	if !ok {
		t.Fatal("summary names no profile")
	}
	b, err := os.ReadFile(filepath.Join(pub, ostree.ProfilePath(sum)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := treeindex.DecodeProfile(bytes.NewReader(b))
	if err != nil || ostree.Sum(b) != sum || p.Commit != commit || strings.Join(p.Paths, ",") != "bin/hello.sh,README" {
		t.Fatalf("stored profile %q (%v)", b, err)
	}

	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"version":1,"commit":"`+ostree.Sum(nil).String()+`","paths":[]}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version":1,"commit":"`+commit.String()+`","paths":["../x"]}`), 0o644)
	for _, f := range []string{other, bad, filepath.Join(dir, "missing.json")} {
		if _, err := r.Export(context.Background(), repo.ExportOptions{Profiles: []string{f}}); err == nil || !strings.Contains(err.Error(), f) {
			t.Fatalf("export with %s: %v, want an error naming the file", f, err)
		}
	}
}

// TestTreeIndexOfVectorRepos exports copies of the test-vector
// repositories, made by the real ostree and flatpak build-export, with
// tree indexes: every ref gets a complete index.
func TestTreeIndexOfVectorRepos(t *testing.T) {
	for _, name := range []string{"repo", "flatpak-repo"} {
		t.Run(name, func(t *testing.T) {
			dir := testutil.CopyVectorRepo(t, name)
			r, err := repo.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			refs, err := r.Refs()
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Export(context.Background(), repo.ExportOptions{TreeIndex: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.TreeIndexes != len(refs) {
				t.Fatalf("%d tree indexes for %d refs", res.TreeIndexes, len(refs))
			}
			for ref, c := range refs {
				x := readIndex(t, dir, ref)
				cm, _, err := r.ReadCommit(c)
				if err != nil {
					t.Fatal(err)
				}
				if x.Commit != c {
					t.Fatalf("%s: index of %s, want %s", ref, x.Commit, c)
				}
				if err := x.CheckComplete(cm.RootTree, cm.RootMeta); err != nil {
					t.Fatalf("%s: %v", ref, err)
				}
			}
		})
	}
}
