package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// diffBase writes a small tree with one of everything TreeDiff compares.
func diffBase(t *testing.T, dir string) {
	t.Helper()
	w := treeWriter{root: dir}
	w.mkdir("d/e")
	w.file("d/file", 0o644, []byte("content\n"))
	w.file("d/e/exe", 0o755, []byte("#!/bin/sh\n"))
	w.file("suid", 0o4755, []byte("x"))
	w.symlink("d/file", "link")
	w.file("xa", 0o644, []byte("x"))
	w.setxattr("xa", "user.k", "v")
	if w.err != nil {
		if errors.Is(w.err, unix.ENOTSUP) {
			SkipOrFail(t, "no user xattrs here: %v", w.err)
		}
		t.Fatal(w.err)
	}
}

func TestTreeDiff(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, b string)
		opts   DiffOptions
		kind   DiffKind // "" means the trees must compare equal
		path   string
	}{
		{name: "equal", change: func(*testing.T, string) {}},
		{name: "content", change: writeFile("d/file", "CONTENT\n"), kind: DiffContent, path: "d/file"},
		{name: "size", change: writeFile("d/file", "longer content\n"), kind: DiffSize, path: "d/file"},
		{name: "mode", change: chmod("d/e/exe", 0o744), kind: DiffMode, path: "d/e/exe"},
		{name: "dir mode", change: chmod("d/e", 0o700), kind: DiffMode, path: "d/e"},
		{name: "setuid", change: chmod("suid", 0o755), kind: DiffMode, path: "suid"},
		{name: "setuid masked", change: chmod("suid", 0o755), opts: DiffOptions{MaskSpecialBits: true}},
		{name: "owner", change: chown("d/file", 1000, 1000), kind: DiffOwner, path: "d/file"},
		{name: "owner ignored", change: chown("d/file", 1000, 1000), opts: DiffOptions{IgnoreOwner: true}},
		{name: "symlink target", change: relink("link", "d/e/exe"), kind: DiffSymlink, path: "link"},
		{name: "type", change: replaceWithDir("d/file"), kind: DiffType, path: "d/file"},
		{name: "only in a", change: remove("d/e/exe"), kind: DiffOnlyInA, path: "d/e/exe"},
		{name: "only in b", change: writeFile("d/new", "n"), kind: DiffOnlyInB, path: "d/new"},
		{name: "xattr value", change: setxattr("xa", "user.k", "w"), kind: DiffXattr, path: "xa"},
		{name: "xattr added", change: setxattr("d/e", "user.new", ""), kind: DiffXattr, path: "d/e"},
		{name: "xattr ignored", change: setxattr("xa", "user.k", "w"), opts: DiffOptions{IgnoreXattrs: true}},
		{name: "root mode", change: chmod(".", 0o700), kind: DiffMode, path: "."},
		{name: "root mode ignored", change: chmod(".", 0o700), opts: DiffOptions{IgnoreRootMode: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
			diffBase(t, a)
			diffBase(t, b)
			tc.change(t, b)
			err := TreeDiff(a, b, tc.opts)
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("want equal trees, got %v", err)
				}
				return
			}
			var de *DiffError
			if !errors.As(err, &de) {
				t.Fatalf("want a *DiffError, got %v", err)
			}
			if !de.Has(tc.kind, tc.path) {
				t.Errorf("want %q at %s, got %v", tc.kind, tc.path, err)
			}
		})
	}
}

func TestTreeDiffMaxDiffs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for i := range 10 {
		name := string(rune('a' + i))
		if err := os.WriteFile(filepath.Join(a, name), []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b, name), []byte("2"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var de *DiffError
	if err := TreeDiff(a, b, DiffOptions{MaxDiffs: 3}); !errors.As(err, &de) {
		t.Fatalf("want a *DiffError, got %v", err)
	}
	if len(de.Diffs) != 3 || !de.Truncated {
		t.Errorf("got %d differences, truncated=%v; want 3, true", len(de.Diffs), de.Truncated)
	}
	if de.Diffs[0].Path != "a" || de.Diffs[2].Path != "c" {
		t.Errorf("differences not in path order: %v", de)
	}
}

func TestTreeDiffLargeFile(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	data := VectorRollsumBin(1) // 256 KiB, one read buffer exactly
	data = append(data, data...)
	if err := os.WriteFile(filepath.Join(a, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(filepath.Join(b, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var de *DiffError
	if err := TreeDiff(a, b, DiffOptions{}); !errors.As(err, &de) || !de.Has(DiffContent, "f") {
		t.Fatalf("want a content difference in f, got %v", err)
	}
	if want := "first differing byte at offset 524287"; de.Diffs[0].A != want {
		t.Errorf("got %q, want %q", de.Diffs[0].A, want)
	}
}

func TestTreeDiffBadRoot(t *testing.T) {
	if err := TreeDiff(filepath.Join(t.TempDir(), "missing"), t.TempDir(), DiffOptions{}); err == nil {
		t.Error("no error for a missing root")
	}
}

func writeFile(rel, content string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		if err := os.WriteFile(filepath.Join(root, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func chmod(rel string, mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		if err := os.Chmod(filepath.Join(root, rel), unixMode(mode)); err != nil {
			t.Fatal(err)
		}
	}
}

func chown(rel string, uid, gid int) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		RequireRoot(t)
		if err := os.Lchown(filepath.Join(root, rel), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

func relink(rel, target string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		p := filepath.Join(root, rel)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

func replaceWithDir(rel string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		p := filepath.Join(root, rel)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(rel string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		if err := os.Remove(filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

func setxattr(rel, name, value string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		if err := unix.Lsetxattr(filepath.Join(root, rel), name, []byte(value), 0); err != nil {
			t.Fatal(err)
		}
	}
}
