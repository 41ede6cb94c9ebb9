package testutil

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// VectorsEnv overrides where VectorsDir looks for the test vectors.
const VectorsEnv = "LAZYTREE_VECTORS"

var moduleRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && st.Mode().IsRegular() {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find module root: no go.mod above %s", dir)
		}
	}
})

// ModuleRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (go test runs each package's
// tests in that package's directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// VectorsDir returns the absolute path of the OSTree test vectors (the
// tree described by their README.md). It looks, in order, at
// $LAZYTREE_VECTORS, <module root>/testdata/vectors (the copy committed
// with the module, which a fresh clone has), and
// <parent of module root>/shared/testvectors (the original). It fails the
// test when none holds a commits.txt.
func VectorsDir(t testing.TB) string {
	t.Helper()
	var candidates []string
	if env := os.Getenv(VectorsEnv); env != "" {
		candidates = append(candidates, env)
	}
	root := ModuleRoot(t)
	candidates = append(candidates,
		filepath.Join(root, "testdata", "vectors"),
		filepath.Join(filepath.Dir(root), "shared", "testvectors"))
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "commits.txt")); err == nil {
			abs, err := filepath.Abs(c)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	t.Fatalf("test vectors not found; looked in %s", strings.Join(candidates, ", "))
	return ""
}

// VectorPath joins elems to VectorsDir, for example
// VectorPath(t, "keys", "test-gpg-pubkey.gpg").
func VectorPath(t testing.TB, elems ...string) string {
	t.Helper()
	return filepath.Join(append([]string{VectorsDir(t)}, elems...)...)
}

// CopyVectorRepo copies one of the test-vector repositories ("repo" or
// "flatpak-repo") into a fresh temporary directory and returns its path.
// Use it whenever a tool may write to the repo: the ostree CLI creates
// tmp/ and .lock even for read-only commands, and the vectors in testdata
// must stay untouched.
func CopyVectorRepo(t testing.TB, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := CopyDir(VectorPath(t, name), dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// CopyDir copies the tree at src to dst (which must not exist): regular
// files, directories and symlinks with their permission bits. Owners and
// xattrs are not copied.
func CopyDir(src, dst string) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case info.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := CopyDir(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
		// The mode is set after the children are written so that a
		// read-only source directory still copies.
		return os.Chmod(dst, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	case info.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(link, dst)
	case info.Mode().IsRegular():
		return copyFile(src, dst, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	default:
		return fmt.Errorf("copy %s: unsupported file type %v", src, info.Mode().Type())
	}
}

func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// Chmod, not the OpenFile mode: that one goes through the umask and
	// drops setuid.
	return out.Chmod(perm)
}
