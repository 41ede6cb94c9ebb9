package repo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// GPGSigner makes binary OpenPGP detached signatures (ostree/sign.GPGSigner).
type GPGSigner interface {
	Sign(data []byte) ([]byte, error)
}

// Signer holds the keys commits and summaries are signed with; either may
// be nil.
type Signer struct {
	GPG     GPGSigner
	Ed25519 ed25519.PrivateKey
}

// Empty reports whether no key is configured.
func (s *Signer) Empty() bool { return s == nil || (s.GPG == nil && s.Ed25519 == nil) }

// sign adds signatures over data to the detached-metadata-style dict.
func (s *Signer) sign(dict []any, data []byte) ([]any, error) {
	if s == nil {
		return dict, nil
	}
	if s.GPG != nil {
		sig, err := s.GPG.Sign(data)
		if err != nil {
			return nil, fmt.Errorf("gpg sign: %w", err)
		}
		sigs := append(ostree.Signatures(dict, "ostree.gpgsigs"), sig)
		dict = ostree.SetSignatures(dict, "ostree.gpgsigs", sigs)
	}
	if s.Ed25519 != nil {
		sig := ed25519.Sign(s.Ed25519, data)
		sigs := append(ostree.Signatures(dict, "ostree.sign.ed25519"), sig)
		dict = ostree.SetSignatures(dict, "ostree.sign.ed25519", sigs)
	}
	return dict, nil
}

// KV is one string metadata entry.
type KV struct{ Key, Value string }

// CommitOptions describe a commit. The zero value of every optional field
// is a good default.
type CommitOptions struct {
	Branch    string
	Subject   string
	Body      string
	Metadata  []KV      // string metadata, in order
	Timestamp time.Time // zero: now
	// Orphan makes a commit without a parent; by default the parent is the
	// commit the branch points at, as ostree commit does.
	Orphan bool
	// BindRefs are refs besides Branch the commit may be pulled as.
	BindRefs []string
	// NoBindings leaves out ostree.ref-binding and
	// ostree.collection-binding (ostree commit --no-bindings).
	NoBindings bool
	Signer     *Signer
	// Level is the deflate level of .filez objects (0: default 6).
	Level int
	// Workers bounds the files hashed and compressed at once (0: 2 per CPU).
	Workers int
}

// UnsupportedFileError names a file that OSTree cannot store.
type UnsupportedFileError struct {
	Path string
	Kind string
}

func (e *UnsupportedFileError) Error() string {
	return fmt.Sprintf("commit %s: %s cannot be stored in OSTree (only regular files, symlinks and directories)", e.Path, e.Kind)
}

type node struct {
	name     string
	path     string
	mode     uint32
	uid, gid uint32
	size     int64
	target   string
	xattrs   []ostree.Xattr
	children []*node
	isDir    bool
	sum      ostree.Checksum // content checksum, or dirtree checksum
	meta     ostree.Checksum // dirmeta checksum (directories)
}

// CommitResult describes a new commit.
type CommitResult struct {
	Checksum ostree.Checksum
	Commit   *ostree.Commit
	Files    int
	Bytes    int64
}

// CommitDir commits the directory tree src to the branch and moves the
// branch to the new commit. It records uid, gid, mode, symlink targets and
// xattrs as ostree does, and refuses devices, fifos and sockets.
func (r *Repo) CommitDir(ctx context.Context, src string, opts CommitOptions) (*CommitResult, error) {
	if err := ostree.ValidateRef(opts.Branch); err != nil {
		return nil, err
	}
	root, err := scan(src, "")
	if err != nil {
		return nil, err
	}
	if !root.isDir {
		return nil, fmt.Errorf("commit %s: not a directory", src)
	}
	var files []*node
	var collect func(n *node)
	collect = func(n *node) {
		for _, c := range n.children {
			if c.isDir {
				collect(c)
			} else {
				files = append(files, c)
			}
		}
	}
	collect(root)
	res := &CommitResult{Files: len(files)}
	if err := r.writeFiles(ctx, files, opts); err != nil {
		return nil, err
	}
	for _, f := range files {
		res.Bytes += f.size
	}
	if err := r.writeDirs(root); err != nil {
		return nil, err
	}

	meta := gvariant.VarDict{}
	for _, kv := range opts.Metadata {
		if kv.Key == "" {
			return nil, fmt.Errorf("commit: empty metadata key")
		}
		meta.Set(kv.Key, "s", kv.Value)
	}
	if strings.HasPrefix(opts.Branch, "app/") || strings.HasPrefix(opts.Branch, "runtime/") {
		// What flatpak build-export records, so flatpak accepts the commit.
		if _, ok := gvariant.Lookup(meta, "xa.metadata"); !ok {
			if b, err := os.ReadFile(filepath.Join(src, "metadata")); err == nil {
				meta.Set("xa.metadata", "s", string(b))
			}
		}
	}
	if err := r.addBindings(&meta, opts); err != nil {
		return nil, err
	}
	ts := opts.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	c := &ostree.Commit{Metadata: meta, Subject: opts.Subject, Body: opts.Body, Timestamp: uint64(ts.Unix()), RootTree: root.sum, RootMeta: root.meta}
	if !opts.Orphan {
		parent, ok, err := r.ResolveRef(opts.Branch)
		if err != nil {
			return nil, err
		}
		if ok {
			c.Parent = &parent
		}
	}
	data, err := c.Encode()
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	sum, err := r.WriteMetadata(ostree.ObjCommit, data)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if !opts.Signer.Empty() {
		if err := r.SignCommit(sum, opts.Signer); err != nil {
			return nil, err
		}
	}
	if err := r.SetRef(opts.Branch, sum); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	res.Checksum, res.Commit = sum, c
	return res, nil
}

// addBindings records ostree.ref-binding (the branch and BindRefs, sorted)
// and, for a repository with a collection id, ostree.collection-binding.
func (r *Repo) addBindings(meta *gvariant.VarDict, opts CommitOptions) error {
	if opts.NoBindings {
		return nil
	}
	bind := []string{opts.Branch}
	for _, b := range opts.BindRefs {
		if err := ostree.ValidateRef(b); err != nil {
			return err
		}
		if !slices.Contains(bind, b) {
			bind = append(bind, b)
		}
	}
	sort.Strings(bind)
	bindings := make([]any, len(bind))
	for i, b := range bind {
		bindings[i] = b
	}
	meta.Set(ostree.MetaRefBinding, "as", bindings)
	if r.CollectionID != "" {
		meta.Set(ostree.MetaCollectionBinding, "s", r.CollectionID)
	}
	return nil
}

// SignCommit adds signatures to a stored commit's detached metadata.
func (r *Repo) SignCommit(commit ostree.Checksum, s *Signer) error {
	data, err := r.ReadObject(commit, ostree.ObjCommit)
	if err != nil {
		return err
	}
	dict, err := r.ReadCommitMeta(commit)
	if err != nil {
		return err
	}
	if dict == nil {
		dict = []any{}
	}
	dict, err = s.sign(dict, data)
	if err != nil {
		return fmt.Errorf("sign commit %s: %w", commit, err)
	}
	return r.WriteCommitMeta(commit, gvariant.MustEncode(ostree.TypeVarDict, dict))
}

// scan lstats path and, for directories, everything below it.
func scan(path, name string) (*node, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, fmt.Errorf("commit %s: %w", path, err)
	}
	n := &node{name: name, path: path, mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		n.isDir = true
	case unix.S_IFREG:
	case unix.S_IFLNK:
		t, err := os.Readlink(path)
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", path, err)
		}
		n.target, n.size = t, 0
	case unix.S_IFCHR:
		return nil, &UnsupportedFileError{path, "character device"}
	case unix.S_IFBLK:
		return nil, &UnsupportedFileError{path, "block device"}
	case unix.S_IFIFO:
		return nil, &UnsupportedFileError{path, "fifo"}
	case unix.S_IFSOCK:
		return nil, &UnsupportedFileError{path, "socket"}
	default:
		return nil, &UnsupportedFileError{path, "special file"}
	}
	x, err := readXattrs(path)
	if err != nil {
		return nil, fmt.Errorf("commit %s: xattrs: %w", path, err)
	}
	n.xattrs = x
	if !n.isDir {
		return n, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", path, err)
	}
	for _, e := range ents {
		if err := ostree.ValidateFileName(e.Name()); err != nil {
			return nil, fmt.Errorf("commit %s: %w", filepath.Join(path, e.Name()), err)
		}
		c, err := scan(filepath.Join(path, e.Name()), e.Name())
		if err != nil {
			return nil, err
		}
		n.children = append(n.children, c)
	}
	return n, nil
}

func readXattrs(path string) ([]ostree.Xattr, error) {
	sz, err := unix.Llistxattr(path, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	if sz == 0 {
		return nil, nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var out []ostree.Xattr
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		val := make([]byte, vsz)
		if vsz > 0 {
			if vsz, err = unix.Lgetxattr(path, name, val); err != nil {
				return nil, err
			}
		}
		out = append(out, ostree.Xattr{Name: name, Value: val[:vsz]})
	}
	ostree.SortXattrs(out)
	return out, nil
}

func (n *node) header() *ostree.FileHeader {
	h := &ostree.FileHeader{UID: n.uid, GID: n.gid, Mode: n.mode, Target: n.target, Xattrs: n.xattrs}
	if h.Target == "" {
		h.Size = uint64(n.size)
	}
	return h
}

// writeFiles hashes and compresses files in parallel.
func (r *Repo) writeFiles(ctx context.Context, files []*node, opts CommitOptions) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = 2 * runtime.NumCPU()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, f := range files {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return r.writeFile(f, opts.Level) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

func (r *Repo) writeFile(n *node, level int) error {
	h := n.header()
	tmp, err := os.CreateTemp(filepath.Join(r.Dir, "tmp"), "filez-")
	if err != nil {
		return fmt.Errorf("commit %s: %w", n.path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("commit %s: %w", n.path, err)
	}
	var src *os.File
	if !h.IsSymlink() {
		src, err = os.OpenFile(n.path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fail(err)
		}
		defer src.Close()
	}
	var sum ostree.Checksum
	if src != nil {
		sum, err = ostree.WriteArchive(tmp, h, src, level)
	} else {
		sum, err = ostree.WriteArchive(tmp, h, nil, level)
	}
	if err != nil {
		return fail(err)
	}
	n.sum = sum
	dst := r.objPath(sum, ostree.ObjFile)
	if _, err := os.Lstat(dst); err == nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil
	}
	if err := r.finishTemp(tmp, dst); err != nil {
		return fmt.Errorf("commit %s: %w", n.path, err)
	}
	return nil
}

// writeDirs writes dirtree and dirmeta objects bottom-up.
func (r *Repo) writeDirs(n *node) error {
	t := &ostree.DirTree{}
	for _, c := range n.children {
		if c.isDir {
			if err := r.writeDirs(c); err != nil {
				return err
			}
			t.Dirs = append(t.Dirs, ostree.TreeDir{Name: c.name, Tree: c.sum, Meta: c.meta})
		} else {
			t.Files = append(t.Files, ostree.TreeFile{Name: c.name, Checksum: c.sum})
		}
	}
	t.Sort()
	var err error
	if n.sum, err = r.WriteMetadata(ostree.ObjDirTree, t.Encode()); err != nil {
		return fmt.Errorf("commit %s: %w", n.path, err)
	}
	m := &ostree.DirMeta{UID: n.uid, GID: n.gid, Mode: n.mode, Xattrs: n.xattrs}
	if n.meta, err = r.WriteMetadata(ostree.ObjDirMeta, m.Encode()); err != nil {
		return fmt.Errorf("commit %s: %w", n.path, err)
	}
	return nil
}

// Walk visits every object reachable from a commit's root tree: dirtrees,
// dirmeta and content, each once.
func (r *Repo) Walk(commit *ostree.Commit, visit func(c ostree.Checksum, t ostree.ObjectType) error) error {
	seen := map[ostree.Checksum]bool{}
	var walk func(tree, meta ostree.Checksum) error
	walk = func(tree, meta ostree.Checksum) error {
		if !seen[meta] {
			seen[meta] = true
			if err := visit(meta, ostree.ObjDirMeta); err != nil {
				return err
			}
		}
		if seen[tree] {
			return nil
		}
		seen[tree] = true
		if err := visit(tree, ostree.ObjDirTree); err != nil {
			return err
		}
		b, err := r.ReadObject(tree, ostree.ObjDirTree)
		if err != nil {
			return err
		}
		dt, err := ostree.DecodeDirTree(b)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			if !seen[f.Checksum] {
				seen[f.Checksum] = true
				if err := visit(f.Checksum, ostree.ObjFile); err != nil {
					return err
				}
			}
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Tree, d.Meta); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(commit.RootTree, commit.RootMeta)
}

// objectSize returns the stored size of an object, for download estimates.
func (r *Repo) objectSize(c ostree.Checksum, t ostree.ObjectType) int64 {
	fi, err := os.Stat(r.objPath(c, t))
	if err != nil {
		return 0
	}
	return fi.Size()
}
