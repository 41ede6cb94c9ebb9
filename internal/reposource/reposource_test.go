package reposource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

func newVectors(t *testing.T) (*Source, string) {
	t.Helper()
	dir := testutil.CopyVectorRepo(t, "repo")
	s, err := New(t.TempDir(), map[string]string{"v": dir})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// rootFile resolves a file in the root of the stable ref.
func rootFile(t *testing.T, s *Source, name string) ostree.Checksum {
	t.Helper()
	ctx := context.Background()
	refs, err := s.Refs(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	cm, err := s.Commit(ctx, fusefs.Via{}, refs["exampleos/x86_64/stable"])
	if err != nil {
		t.Fatal(err)
	}
	dt, err := s.DirTree(ctx, fusefs.Via{}, cm.RootTree)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DirMeta(ctx, fusefs.Via{}, cm.RootMeta); err != nil {
		t.Fatal(err)
	}
	f, ok := dt.LookupFile(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	return f.Checksum
}

func TestContentAndErrors(t *testing.T) {
	s, dir := newVectors(t)
	ctx := context.Background()
	if got := s.Remotes(); len(got) != 1 || got[0] != "v" {
		t.Errorf("remotes %q", got)
	}
	if _, err := s.Refs(ctx, "nope"); !errors.Is(err, fusefs.ErrNotFound) {
		t.Errorf("unknown remote: %v", err)
	}
	if _, err := s.Commit(ctx, fusefs.Via{}, ostree.Sum([]byte("x"))); !errors.Is(err, fusefs.ErrNotFound) {
		t.Errorf("unknown commit: %v", err)
	}

	c := rootFile(t, s, "big.bin")
	if _, ok := s.PeekFileHeader(fusefs.Via{}, c); ok {
		t.Error("a header is known before the object was verified")
	}
	f, err := s.Open(ctx, fusefs.Via{}, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil || !bytes.Equal(got, testutil.VectorBigBin(2)) {
		t.Errorf("content: %d bytes, %v", len(got), err)
	}
	if s.OpenFiles() != 1 {
		t.Errorf("open files %d", s.OpenFiles())
	}
	f.Close()
	f.Close()
	if s.OpenFiles() != 0 {
		t.Errorf("open files after close %d", s.OpenFiles())
	}
	if h, ok := s.PeekFileHeader(fusefs.Via{}, c); !ok || h.Size != 1<<20 {
		t.Errorf("peek after open: %+v %v", h, ok)
	}

	link := rootFile(t, s, "link-to-readme")
	if h, err := s.FileHeader(ctx, fusefs.Via{}, link); err != nil || h.Target != "README" {
		t.Errorf("symlink header: %+v %v", h, err)
	}
	if _, err := s.Open(ctx, fusefs.Via{}, link); err == nil {
		t.Error("opened a symlink")
	}

	// A corrupt object fails, is not cached, and works once repaired.
	readme := rootFile(t, s, "README")
	p := filepath.Join(dir, ostree.ObjectPath(readme, ostree.ObjFile, true))
	orig, _ := os.ReadFile(p)
	bad := bytes.Clone(orig)
	bad[len(bad)-3] ^= 0xff
	os.WriteFile(p, bad, 0o644)
	if _, err := s.FileHeader(ctx, fusefs.Via{}, readme); !errors.Is(err, ostree.ErrCorrupt) {
		t.Errorf("corrupt object: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.cacheDir, readme.String()+".file")); err == nil {
		t.Error("an unverified object reached the cache")
	}
	os.WriteFile(p, orig, 0o644)
	if h, err := s.FileHeader(ctx, fusefs.Via{}, readme); err != nil || h.Size != uint64(len("Hello, OSTree! (v2)\n")) {
		t.Errorf("after repair: %+v %v", h, err)
	}

	// A corrupt metadata object.
	refs, _ := s.Refs(ctx, "v")
	old := refs["exampleos/x86_64/old"]
	cp := filepath.Join(dir, ostree.ObjectPath(old, ostree.ObjCommit, true))
	cb, _ := os.ReadFile(cp)
	cb[0] ^= 1
	os.WriteFile(cp, cb, 0o644)
	if _, err := s.Commit(ctx, fusefs.Via{}, old); !errors.Is(err, ostree.ErrCorrupt) {
		t.Errorf("corrupt commit: %v", err)
	}
}

func TestSharedInflation(t *testing.T) {
	s, _ := newVectors(t)
	c := rootFile(t, s, "big.bin")
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			f, err := s.Open(context.Background(), fusefs.Via{}, c)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			b := make([]byte, 8)
			if _, err := f.ReadAt(b, 0); err != nil || string(b) != "00000000" {
				t.Errorf("read %q %v", b, err)
			}
		})
	}
	wg.Wait()
	if n := s.Loads()[c]; n != 1 {
		t.Errorf("inflated %d times", n)
	}

	// A caller that gives up does not stop the shared work.
	if err := s.Forget(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.FileHeader(ctx, fusefs.Via{}, c); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := s.FileHeader(context.Background(), fusefs.Via{}, c); err != nil {
		t.Fatal(err)
	}
	if n := s.Loads()[c]; n != 1 {
		t.Errorf("after Forget: inflated %d times", n)
	}
}

func TestRefsFollowTheRepo(t *testing.T) {
	tree := t.TempDir()
	os.WriteFile(filepath.Join(tree, "f"), []byte("1"), 0o644)
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := repo.Init(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	res1, err := r.CommitDir(context.Background(), tree, repo.CommitOptions{Branch: "b"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(t.TempDir(), map[string]string{"r": dir})
	if err != nil {
		t.Fatal(err)
	}
	if refs, _ := s.Refs(context.Background(), "r"); refs["b"] != res1.Checksum {
		t.Errorf("refs %v", refs)
	}
	os.WriteFile(filepath.Join(tree, "f"), []byte("2"), 0o644)
	res2, err := r.CommitDir(context.Background(), tree, repo.CommitOptions{Branch: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if refs, _ := s.Refs(context.Background(), "r"); refs["b"] != res2.Checksum {
		t.Errorf("refs after a new commit %v", refs)
	}
	s.RecordAccess(fusefs.Via{}, res2.Checksum, "f")
	s.RecordAccess(fusefs.Via{}, res2.Checksum, "f")
	if a := s.Accesses(); len(a) != 1 || a[0].Path != "f" {
		t.Errorf("accesses %+v", a)
	}
}
