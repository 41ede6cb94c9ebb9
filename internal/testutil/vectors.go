package testutil

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/lazytree/lazytree/internal/vectors"
)

// VectorsEnv overrides where VectorsDir looks for the test vectors.
const VectorsEnv = vectors.Env

// ModuleRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (go test runs each package's
// tests in that package's directory).
func ModuleRoot(t testing.TB) string { return vectors.ModuleRoot(t) }

// VectorsDir returns the absolute path of the OSTree test vectors; see
// internal/vectors.Dir.
func VectorsDir(t testing.TB) string { return vectors.Dir(t) }

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
