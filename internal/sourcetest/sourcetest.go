// Package sourcetest is the conformance suite for fusefs.Source: every
// implementation (the in-memory one of fusefs's tests, internal/reposource
// and the fetch-backed source of the daemon) runs it, so that fusefs can
// rely on the contract fusefs/source.go states rather than on one
// implementation's habits.
package sourcetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
)

// Fixture names what the source under test holds.
type Fixture struct {
	// Remote and Ref name a ref the source lists.
	Remote, Ref string
	// Path is a regular file below the ref's root ("/" separators, at
	// least one directory deep), Content its bytes.
	Path    string
	Content []byte
	// Symlink is a symlink below the root and Target what it points at.
	Symlink, Target string
}

// Run checks src against the Source contract with fx.
func Run(t *testing.T, src fusefs.Source, fx Fixture) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	via := fusefs.Via{Remote: fx.Remote, Ref: fx.Ref}

	t.Run("remotes", func(t *testing.T) {
		rs := src.Remotes()
		if !sortedContains(rs, fx.Remote) {
			t.Fatalf("Remotes() = %q: not sorted, or without %q", rs, fx.Remote)
		}
		if _, err := src.Refs(ctx, "no-such-remote"); !errors.Is(err, fusefs.ErrNotFound) {
			t.Fatalf("Refs of an unknown remote: err = %v, want ErrNotFound", err)
		}
	})

	var commit ostree.Checksum
	t.Run("refs and commits", func(t *testing.T) {
		refs, err := src.Refs(ctx, fx.Remote)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := refs[fx.Ref]
		if !ok {
			t.Fatalf("Refs(%s) = %v: no %s", fx.Remote, refs, fx.Ref)
		}
		commit = c
		if _, err := src.Commit(ctx, via, c); err != nil {
			t.Fatalf("Commit through %+v: %v", via, err)
		}
		if _, err := src.Commit(ctx, fusefs.Via{}, c); err != nil {
			t.Fatalf("Commit by checksum alone: %v", err)
		}
		var missing ostree.Checksum
		copy(missing[:], bytes.Repeat([]byte{0x5a}, len(missing)))
		if _, err := src.Commit(ctx, fusefs.Via{}, missing); !errors.Is(err, fusefs.ErrNotFound) {
			t.Fatalf("Commit of an unknown checksum: err = %v, want ErrNotFound", err)
		}
	})
	if commit == (ostree.Checksum{}) {
		t.Fatal("no commit to walk")
	}

	file := resolve(t, ctx, src, via, commit, fx.Path)
	t.Run("file", func(t *testing.T) {
		h, err := src.FileHeader(ctx, via, file)
		if err != nil {
			t.Fatal(err)
		}
		if h.IsSymlink() || h.Size != uint64(len(fx.Content)) {
			t.Fatalf("header of %s: size %d symlink %v, want a regular file of %d bytes", fx.Path, h.Size, h.IsSymlink(), len(fx.Content))
		}
		if got := read(t, ctx, src, via, file); !bytes.Equal(got, fx.Content) {
			t.Fatalf("%s reads %q, want %q", fx.Path, clip(got), clip(fx.Content))
		}
		if p, ok := src.(fusefs.HeaderPeeker); ok {
			if ph, ok := p.PeekFileHeader(via, file); ok && (ph.Size != h.Size || ph.Mode != h.Mode) {
				t.Fatalf("PeekFileHeader %+v differs from FileHeader %+v", ph, h)
			}
		}
	})

	if fx.Symlink != "" {
		t.Run("symlink", func(t *testing.T) {
			link := resolve(t, ctx, src, via, commit, fx.Symlink)
			h, err := src.FileHeader(ctx, via, link)
			if err != nil {
				t.Fatal(err)
			}
			if !h.IsSymlink() || h.Target != fx.Target {
				t.Fatalf("%s: symlink %v to %q, want a symlink to %q", fx.Symlink, h.IsSymlink(), h.Target, fx.Target)
			}
		})
	}

	t.Run("cancelled context", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		done := make(chan error, 1)
		go func() {
			_, err := src.FileHeader(cctx, via, file)
			done <- err
		}()
		select {
		case err := <-done:
			// Answering from what it has is fine; waiting is not, and an
			// error must say it was the context.
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("FileHeader with a cancelled context: %v, want nil or context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("FileHeader with a cancelled context did not return")
		}
	})

	t.Run("concurrent reads", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() {
				f, err := src.Open(ctx, via, file)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				got, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
				if err != nil || !bytes.Equal(got, fx.Content) {
					errs <- errors.New("a concurrent read gave other bytes")
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("status", func(t *testing.T) {
		if _, err := json.Marshal(src.Status()); err != nil {
			t.Fatalf("Status does not marshal: %v", err)
		}
	})
}

// resolve walks path from the commit's root through verified dirtrees
// (and their dirmetas) and returns the file's content checksum.
func resolve(t *testing.T, ctx context.Context, src fusefs.Source, via fusefs.Via, commit ostree.Checksum, path string) ostree.Checksum {
	t.Helper()
	cm, err := src.Commit(ctx, via, commit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.DirMeta(ctx, via, cm.RootMeta); err != nil {
		t.Fatalf("root dirmeta: %v", err)
	}
	tree := cm.RootTree
	parts := strings.Split(path, "/")
	for i, name := range parts {
		dt, err := src.DirTree(ctx, via, tree)
		if err != nil {
			t.Fatalf("dirtree above %s: %v", name, err)
		}
		if i == len(parts)-1 {
			f, ok := dt.LookupFile(name)
			if !ok {
				t.Fatalf("%s: no file %s", path, name)
			}
			return f.Checksum
		}
		d, ok := dt.LookupDir(name)
		if !ok {
			t.Fatalf("%s: no directory %s", path, name)
		}
		if _, err := src.DirMeta(ctx, via, d.Meta); err != nil {
			t.Fatalf("dirmeta of %s: %v", name, err)
		}
		tree = d.Tree
	}
	panic("unreachable")
}

func read(t *testing.T, ctx context.Context, src fusefs.Source, via fusefs.Via, c ostree.Checksum) []byte {
	t.Helper()
	f, err := src.Open(ctx, via, c)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() < 0 {
		t.Fatalf("size %d", f.Size())
	}
	b, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sortedContains(s []string, want string) bool {
	found := false
	for i, v := range s {
		if i > 0 && s[i-1] >= v {
			return false
		}
		found = found || v == want
	}
	return found
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// VectorRef is the ref of the test-vector repository Vector describes.
const VectorRef = "exampleos/x86_64/stable"

// Vector is the fixture for a source that serves the test-vector
// repository (testdata/vectors/repo) as remote: a file two directories
// deep (with owner and mode of its own) and a relative symlink of its
// stable ref, with the content the real ostree committed.
func Vector(t *testing.T, remote string) Fixture {
	t.Helper()
	dir := t.TempDir()
	testutil.BuildVectorTree2(t, dir)
	content, err := os.ReadFile(filepath.Join(dir, "sub", "dir", "nested.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return Fixture{Remote: remote, Ref: VectorRef, Path: "sub/dir/nested.txt", Content: content, Symlink: "link-to-readme", Target: "README"}
}
