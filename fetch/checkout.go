package fetch

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/ostree"
)

// Checkout writes the tree of a commit in the cache into dir (which must
// not exist), with modes, owners, symlinks and xattrs as ostree checkout
// writes them. Objects missing from the cache are fetched from remote.
func (f *Fetcher) Checkout(ctx context.Context, remote string, commit ostree.Checksum, dir string) error {
	cm, err := f.Commit(ctx, remote, "", commit)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	// Directories are made writable first and get their own modes last,
	// deepest first, so that read-only ones can be filled.
	type made struct {
		path string
		meta ostree.Checksum
	}
	var mu sync.Mutex
	var dirs []made // what is kept until the end: not the dirtrees
	_, err = f.Walk(ctx, cm.RootTree, cm.RootMeta, WalkOptions{Remote: remote}, func(ctx context.Context, d Dir) error {
		at := filepath.Join(dir, filepath.FromSlash(d.Path))
		for _, e := range d.DirTree.Files {
			if err := f.checkoutFile(ctx, remote, e.Checksum, filepath.Join(at, e.Name)); err != nil {
				return err
			}
		}
		for _, sub := range d.DirTree.Dirs {
			if err := os.Mkdir(filepath.Join(at, sub.Name), 0o700); err != nil {
				return err
			}
		}
		mu.Lock()
		dirs = append(dirs, made{d.Path, d.Meta})
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		m, err := f.DirMeta(ctx, remote, d.meta)
		if err != nil {
			return err
		}
		if err := applyMeta(filepath.Join(dir, filepath.FromSlash(d.path)), m.UID, m.GID, m.Mode, m.Xattrs, false); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fetcher) checkoutFile(ctx context.Context, remote string, c ostree.Checksum, path string) error {
	h, err := f.FileHeader(ctx, remote, c)
	if err != nil {
		return err
	}
	if h.IsSymlink() {
		if err := os.Symlink(h.Target, path); err != nil {
			return err
		}
		return applyMeta(path, h.UID, h.GID, h.Mode, h.Xattrs, true)
	}
	src, err := f.Content(ctx, remote, c)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, 0, src.Size())); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return applyMeta(path, h.UID, h.GID, h.Mode, h.Xattrs, false)
}

func applyMeta(path string, uid, gid, mode uint32, xattrs []ostree.Xattr, symlink bool) error {
	if err := os.Lchown(path, int(uid), int(gid)); err != nil && os.Geteuid() == 0 {
		return fmt.Errorf("checkout %s: %w", path, err)
	}
	for _, x := range xattrs {
		if err := unix.Lsetxattr(path, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("checkout %s: xattr %s: %w", path, x.Name, err)
		}
	}
	if symlink {
		return nil
	}
	// After chown, which clears setuid and setgid.
	return unix.Chmod(path, mode&ostree.ModePerm)
}
