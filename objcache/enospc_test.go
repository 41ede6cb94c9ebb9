package objcache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/internal/testutil"
)

var errNoSpace error = syscall.ENOSPC

// TestENOSPC fills a real 1 MiB tmpfs with a 2 MiB object: the write
// fails with a clear error, nothing partial is left or recorded, and the
// cache goes on working once the object is out of the way.
func TestENOSPC(t *testing.T) {
	// Mounting a tmpfs needs root; without it TestWriteFailureLeavesNothing
	// still covers the logic, but CI runs as root and must run this.
	testutil.RequireRoot(t)
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", home, "tmpfs", 0, "size=1m"); err != nil {
		testutil.SkipOrFail(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(home, unix.MNT_DETACH) })
	// Badger preallocates more than this tmpfs holds: keep the index on
	// the disk, the objects on the tmpfs.
	if err := os.Symlink(t.TempDir(), filepath.Join(home, "index")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, home, Options{})

	big := makeObj(1, 2<<20)
	err := s.PutContent(context.Background(), big.sum, big.hdr, bytes.NewReader(big.content), "r")
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put of 2 MiB into 1 MiB = %v, want ENOSPC", err)
	}
	if msg := err.Error(); !strings.Contains(msg, big.sum.String()) || !strings.Contains(msg, "no space left on device") {
		t.Errorf("error %q does not name the object and the cause", msg)
	}
	t.Logf("error: %v", err)
	checkNothingLeft(t, s, home, big)

	small := makeObj(2, 100000)
	put(t, s, small)
	expectContent(t, s, small)
	fsckClean(t, s)
}
