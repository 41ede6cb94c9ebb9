package testutil

import (
	"io/fs"
	"path/filepath"
	"testing"
)

type treeStats struct {
	files, symlinks, execs, dirs int
	bytes                        int64
}

func statTree(t *testing.T, root string) treeStats {
	t.Helper()
	var s treeStats
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			s.symlinks++
		case d.IsDir():
			s.dirs++
		case info.Mode().IsRegular():
			s.files++
			s.bytes += info.Size()
			if info.Mode()&0o111 != 0 {
				s.execs++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGenTree(t *testing.T) {
	const files, total = 1234, 5 << 20
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	if err := GenTree(a, files, total, 1); err != nil {
		t.Fatal(err)
	}
	s := statTree(t, a)
	if s.files != files || s.bytes != total {
		t.Errorf("%d files, %d bytes; want %d, %d", s.files, s.bytes, files, total)
	}
	if s.symlinks == 0 || s.execs == 0 || s.dirs < files/100 {
		t.Errorf("stats %+v: want symlinks, executables and about 100 files per directory", s)
	}
	if err := GenTree(b, files, total, 1); err != nil {
		t.Fatal(err)
	}
	if err := TreeDiff(a, b, DiffOptions{}); err != nil {
		t.Errorf("same seed, different trees: %v", err)
	}
	if err := GenTree(c, files, total, 2); err != nil {
		t.Fatal(err)
	}
	if err := TreeDiff(a, c, DiffOptions{}); err == nil {
		t.Error("different seeds gave the same tree")
	}
}

func TestGenTreeBadArgs(t *testing.T) {
	if err := GenTree(t.TempDir(), 0, 10, 1); err == nil {
		t.Error("no error for zero files")
	}
	if err := GenTree(t.TempDir(), 1, -1, 1); err == nil {
		t.Error("no error for negative size")
	}
}

func BenchmarkGenTree(b *testing.B) {
	for b.Loop() {
		if err := GenTree(b.TempDir(), 1000, 20<<20, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(20 << 20)
}
