package fusefs

import (
	"crypto/sha256"
	"encoding/binary"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazytree/lazytree/ostree"
)

// Inode numbers.
//
// Regular files and symlinks are numbered by their content checksum, so
// identical files share an inode (and, through it, the kernel's page
// cache): they look like hard links, which is harmless read-only.
//
// Directories must never share an inode, because the kernel keeps one
// dentry per directory inode and would move it between the two paths.
// A directory's number is therefore derived from its parent's number and
// its name, down from a per-ref-per-commit (or per-commit under .commits)
// root number: two identical dirtrees at different paths, or the same
// commit under two refs, get different numbers, and the same path always
// gets the same number.
//
// All numbers are the first 8 bytes of a SHA-256 over a kind tag and the
// identity, so a collision (which would merge two nodes) needs a 64-bit
// hash collision.

const (
	kindContent = "content"
	kindDir     = "dir"
	kindRemote  = "remote"
	kindRefDir  = "refdir"
	kindRefRoot = "refroot"
	kindCommit  = "commit"
	kindSpecial = "special"
)

func hashIno(kind string, parts ...[]byte) uint64 {
	h := sha256.New()
	h.Write([]byte(kind))
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var sum [sha256.Size]byte
	return fixIno(binary.BigEndian.Uint64(h.Sum(sum[:0])))
}

// fixIno keeps clear of the numbers go-fuse reserves (0, 1 for the root,
// and all ones).
func fixIno(v uint64) uint64 {
	if v <= 1 || v == ^uint64(0) {
		return 2
	}
	return v
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// contentIno numbers a regular file or symlink as seen through remote
// ("" for MOUNT/.commits). The same content under two remotes is two
// inodes: a node fetches through the Via of the first path that found it,
// and a large file may be served chunk by chunk on the word of that
// remote's tree index (StreamingFile), so a reader who came through
// another remote must never share its node, its handles or its page cache.
func contentIno(remote string, c ostree.Checksum) uint64 {
	return hashIno(kindContent, []byte(remote), c[:])
}

// dirIno numbers the directory name inside the directory numbered parent.
func dirIno(parent uint64, name string) uint64 { return hashIno(kindDir, u64(parent), []byte(name)) }

// remoteIno numbers MOUNT/<remote>.
func remoteIno(remote string) uint64 { return hashIno(kindRemote, []byte(remote)) }

// refDirIno numbers a synthetic directory MOUNT/<remote>/<prefix>.
func refDirIno(remote, prefix string) uint64 {
	return hashIno(kindRefDir, []byte(remote), []byte(prefix))
}

// refRootIno numbers the root tree of commit as shown at
// MOUNT/<remote>/<ref>. A moved ref gets a new number, so the kernel never
// mixes the old tree's cached pages or entries with the new one.
func refRootIno(remote, ref string, commit ostree.Checksum) uint64 {
	return hashIno(kindRefRoot, []byte(remote), []byte(ref), commit[:])
}

// commitIno numbers MOUNT/.commits/<commit>.
func commitIno(commit ostree.Checksum) uint64 { return hashIno(kindCommit, commit[:]) }

// specialIno numbers the fixed entries (.commits, .lazytree, status.json).
func specialIno(name string) uint64 { return hashIno(kindSpecial, []byte(name)) }

// Mode bits never shown: the mount is nosuid, but a copy out of it must
// not carry them either.
const hiddenModeBits = syscall.S_ISUID | syscall.S_ISGID

// dirAttr maps a dirmeta to directory attributes: mode and owner from the
// dirmeta, setuid and setgid dropped, nlink 1 (as ostree's own FUSE tools
// and checkouts do; it also tells find(1) not to count subdirectories),
// times 0 (OSTree keeps no times; checkouts use 0 too).
func dirAttr(ino uint64, m *ostree.DirMeta) fuse.Attr {
	return fuse.Attr{
		Ino:   ino,
		Mode:  syscall.S_IFDIR | (m.Mode & ostree.ModePerm &^ hiddenModeBits),
		Nlink: 1,
		Owner: fuse.Owner{Uid: m.UID, Gid: m.GID},
	}
}

// syntheticDirAttr is the attributes of the directories fusefs makes up
// (root, remotes, ref prefixes, .commits, .lazytree).
func syntheticDirAttr(ino uint64) fuse.Attr {
	return fuse.Attr{Ino: ino, Mode: syscall.S_IFDIR | 0o755, Nlink: 1}
}

// fileAttr maps a content header to attributes: size, mode (type and
// permissions, setuid and setgid dropped) and owner from the header; a
// symlink's size is its target's length, as lstat(2) reports it.
func fileAttr(ino uint64, h *ostree.FileHeader) fuse.Attr {
	a := fuse.Attr{
		Ino:   ino,
		Size:  h.Size,
		Mode:  h.Mode & (ostree.ModeTypeMask | ostree.ModePerm) &^ hiddenModeBits,
		Nlink: 1,
		Owner: fuse.Owner{Uid: h.UID, Gid: h.GID},
	}
	if h.IsSymlink() {
		a.Size = uint64(len(h.Target))
	}
	return a
}

// fileType is the S_IFMT bits of a header.
func fileType(h *ostree.FileHeader) uint32 {
	if h.IsSymlink() {
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// hiddenXattr lists the xattrs the mount never shows: file capabilities
// would grant privileges to whoever runs a binary copied out of the mount.
func hiddenXattr(name string) bool { return name == "security.capability" }

// visibleXattrs returns xs without the hidden ones (sharing xs when
// nothing is hidden).
func visibleXattrs(xs []ostree.Xattr) []ostree.Xattr {
	for i := range xs {
		if hiddenXattr(xs[i].Name) {
			out := make([]ostree.Xattr, 0, len(xs)-1)
			for _, x := range xs {
				if !hiddenXattr(x.Name) {
					out = append(out, x)
				}
			}
			return out
		}
	}
	return xs
}

// getxattr answers getxattr(2) from a visible xattr list: ENODATA when
// absent, ERANGE with the size when dest is too small (dest is empty when
// the caller asks for the size only).
func getxattr(xs []ostree.Xattr, name string, dest []byte) (uint32, syscall.Errno) {
	for _, x := range xs {
		if x.Name == name {
			if len(dest) < len(x.Value) {
				return uint32(len(x.Value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.Value)), 0
		}
	}
	return 0, syscall.ENODATA
}

// listxattr answers listxattr(2): NUL-terminated names.
func listxattr(xs []ostree.Xattr, dest []byte) (uint32, syscall.Errno) {
	n := 0
	for _, x := range xs {
		n += len(x.Name) + 1
	}
	if len(dest) < n {
		return uint32(n), syscall.ERANGE
	}
	off := 0
	for _, x := range xs {
		off += copy(dest[off:], x.Name)
		dest[off] = 0
		off++
	}
	return uint32(n), 0
}
