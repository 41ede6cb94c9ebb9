package fusefs

import (
	"context"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazytree/lazytree/ostree"
)

// Names of the fixed entries in the mount's root. Remote names cannot
// start with a dot, so they never collide.
const (
	commitsDirName  = ".commits"
	lazytreeDirName = ".lazytree"
	statusFileName  = "status.json"
	refsFileName    = "refs.json"
)

// rootNode is MOUNT/: the remotes, .commits and .lazytree.
type rootNode struct {
	fs.Inode
	f *fsys
}

func (r *rootNode) OnAdd(ctx context.Context) {
	commits := r.NewPersistentInode(ctx, &commitsNode{f: r.f},
		fs.StableAttr{Mode: syscall.S_IFDIR, Ino: specialIno(commitsDirName)})
	r.AddChild(commitsDirName, commits, false)
	lt := r.NewPersistentInode(ctx, &lazytreeNode{f: r.f},
		fs.StableAttr{Mode: syscall.S_IFDIR, Ino: specialIno(lazytreeDirName)})
	r.AddChild(lazytreeDirName, lt, false)
	status := lt.NewPersistentInode(ctx, &statusNode{f: r.f, name: statusFileName, render: r.f.statusDoc},
		fs.StableAttr{Mode: syscall.S_IFREG, Ino: specialIno(statusFileName)})
	lt.AddChild(statusFileName, status, false)
	refs := lt.NewPersistentInode(ctx, &statusNode{f: r.f, name: refsFileName, render: r.f.refsDoc},
		fs.StableAttr{Mode: syscall.S_IFREG, Ino: specialIno(refsFileName)})
	lt.AddChild(refsFileName, refs, false)
}

func (r *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.f.st.count(opGetattr)
	out.Attr = syntheticDirAttr(fuse.FUSE_ROOT_ID)
	out.SetTimeout(r.f.opts.RefTimeout)
	return 0
}

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r.f.st.count(opLookup)
	switch name {
	case commitsDirName, lazytreeDirName:
		ch := r.GetChild(name)
		out.Attr = syntheticDirAttr(ch.StableAttr().Ino)
		r.f.treeEntry(out)
		return ch, 0
	}
	if _, ok := slices.BinarySearch(r.f.src.Remotes(), name); !ok {
		noNegativeEntry(out)
		return nil, syscall.ENOENT
	}
	ino := remoteIno(name)
	out.Attr = syntheticDirAttr(ino)
	r.f.refEntry(out)
	if ch := r.GetChild(name); ch != nil {
		if _, ok := ch.Operations().(*refDirNode); ok {
			return ch, 0
		}
	}
	return r.NewInode(ctx, &refDirNode{f: r.f, remote: name, ino: ino},
		fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
}

func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	r.f.st.count(opReaddir)
	remotes := r.f.src.Remotes()
	entries := make([]fuse.DirEntry, 0, len(remotes)+2)
	for _, name := range []string{commitsDirName, lazytreeDirName} {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: specialIno(name)})
	}
	for _, name := range remotes {
		if ostree.ValidateRemoteName(name) != nil {
			continue
		}
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: remoteIno(name)})
	}
	return fs.NewListDirStream(entries), 0
}

// refDirNode is MOUNT/<remote>/ (prefix "") or a directory made of ref
// name components, MOUNT/<remote>/<prefix> (prefix ends in "/"). Its
// children are refs (the root of their commit) or more ref directories.
type refDirNode struct {
	fs.Inode
	f      *fsys
	remote string
	prefix string
	ino    uint64
}

func (n *refDirNode) where() string { return n.remote + "/" + n.prefix }

func (n *refDirNode) refs(ctx context.Context) (map[string]ostree.Checksum, error) {
	return call(n.f, ctx, func(ctx context.Context) (map[string]ostree.Checksum, error) {
		return n.f.src.Refs(ctx, n.remote)
	}, nil)
}

func (n *refDirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.st.count(opGetattr)
	out.Attr = syntheticDirAttr(n.ino)
	out.SetTimeout(n.f.opts.RefTimeout)
	return 0
}

func (n *refDirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.f.st.count(opLookup)
	ctx, cancel := n.f.request(ctx)
	defer cancel()
	refs, err := n.refs(ctx)
	if err != nil {
		noNegativeEntry(out)
		return nil, n.f.failure(opLookup, n.where()+name, "", err)
	}
	e, ok := refChild(refs, n.prefix, name)
	if !ok {
		noNegativeEntry(out)
		return nil, syscall.ENOENT
	}
	existing := n.GetChild(name)
	if !e.Leaf {
		prefix := n.prefix + name + "/"
		ino := refDirIno(n.remote, n.prefix+name)
		out.Attr = syntheticDirAttr(ino)
		n.f.refEntry(out)
		if existing != nil {
			if rd, ok := existing.Operations().(*refDirNode); ok && rd.prefix == prefix {
				return existing, 0
			}
		}
		return n.NewInode(ctx, &refDirNode{f: n.f, remote: n.remote, prefix: prefix, ino: ino},
			fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	}
	n.f.recent.add(e.Commit)
	// The entry is short-lived (the ref may move); the attributes
	// belong to this commit's root and never change.
	out.SetEntryTimeout(n.f.opts.RefTimeout)
	out.SetAttrTimeout(n.f.opts.TreeTimeout)
	if existing != nil {
		if d, ok := existing.Operations().(*dirNode); ok && d.commit == e.Commit {
			out.Attr = d.attr
			return existing, 0
		}
	}
	ref := n.prefix + name
	root, err := n.f.commitRoot(ctx, Via{Remote: n.remote, Ref: ref}, e.Commit, refRootIno(n.remote, ref, e.Commit))
	if err != nil {
		// The ref exists, so its commit must be there: a missing
		// commit is an I/O error, not ENOENT.
		noNegativeEntry(out)
		return nil, n.f.failure(opLookup, n.where()+name, ostree.ObjectName(e.Commit, ostree.ObjCommit), referenced(err))
	}
	out.Attr = root.attr
	return n.NewInode(ctx, root, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: root.attr.Ino}), 0
}

func (n *refDirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	n.f.st.count(opReaddir)
	ctx, cancel := n.f.request(ctx)
	defer cancel()
	refs, err := n.refs(ctx)
	if err != nil {
		return nil, n.f.failure(opReaddir, n.where(), "", err)
	}
	children := refChildren(refs, n.prefix)
	entries := make([]fuse.DirEntry, 0, len(children))
	for _, e := range children {
		ino := refDirIno(n.remote, n.prefix+e.Name)
		if e.Leaf {
			ino = refRootIno(n.remote, n.prefix+e.Name, e.Commit)
		}
		entries = append(entries, fuse.DirEntry{Name: e.Name, Mode: syscall.S_IFDIR, Ino: ino})
	}
	return fs.NewListDirStream(entries), 0
}

// invalidateChanged tells the kernel to forget the entries of this
// directory (and, recursively, of the ref directories below it) that no
// longer match refs.
func (n *refDirNode) invalidateChanged(refs map[string]ostree.Checksum) {
	for name, ch := range n.Children() {
		e, ok := refChild(refs, n.prefix, name)
		switch node := ch.Operations().(type) {
		case *refDirNode:
			if !ok || e.Leaf {
				n.NotifyEntry(name)
				continue
			}
			node.invalidateChanged(refs)
		case *dirNode:
			if !ok || !e.Leaf || e.Commit != node.commit {
				n.NotifyEntry(name)
			}
		}
	}
}

// commitRoot returns the node for the root directory of commit c,
// numbered ino.
func (f *fsys) commitRoot(ctx context.Context, via Via, c ostree.Checksum, ino uint64) (*dirNode, error) {
	cm, err := call(f, ctx, func(ctx context.Context) (*ostree.Commit, error) {
		return f.src.Commit(ctx, via, c)
	}, nil)
	if err != nil {
		return nil, err
	}
	m, err := call(f, ctx, func(ctx context.Context) (*ostree.DirMeta, error) {
		return f.src.DirMeta(ctx, via, cm.RootMeta)
	}, nil)
	if err != nil {
		return nil, referenced(err)
	}
	return &dirNode{
		f:         f,
		via:       via,
		commit:    c,
		treeSum:   cm.RootTree,
		attr:      dirAttr(ino, m),
		xattrs:    visibleXattrs(m.Xattrs),
		parentIno: ino,
	}, nil
}

// commitsNode is MOUNT/.commits: any commit by checksum. Listing shows the
// commits used most recently; lookup takes any checksum.
type commitsNode struct {
	fs.Inode
	f *fsys
}

func (n *commitsNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.st.count(opGetattr)
	out.Attr = syntheticDirAttr(specialIno(commitsDirName))
	out.SetTimeout(n.f.opts.TreeTimeout)
	return 0
}

func (n *commitsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.f.st.count(opLookup)
	c, err := ostree.ParseChecksum(name)
	if err != nil {
		noNegativeEntry(out)
		return nil, syscall.ENOENT
	}
	if ch := n.GetChild(name); ch != nil {
		if d, ok := ch.Operations().(*dirNode); ok {
			n.f.recent.add(c)
			out.Attr = d.attr
			n.f.treeEntry(out)
			return ch, 0
		}
	}
	ctx, cancel := n.f.request(ctx)
	defer cancel()
	root, err := n.f.commitRoot(ctx, Via{}, c, commitIno(c))
	if err != nil {
		noNegativeEntry(out)
		return nil, n.f.failure(opLookup, commitsDirName+"/"+name, ostree.ObjectName(c, ostree.ObjCommit), err)
	}
	n.f.recent.add(c)
	out.Attr = root.attr
	n.f.treeEntry(out)
	return n.NewInode(ctx, root, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: root.attr.Ino}), 0
}

func (n *commitsNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	n.f.st.count(opReaddir)
	recent := n.f.recent.snapshot()
	entries := make([]fuse.DirEntry, 0, len(recent))
	for _, c := range recent {
		entries = append(entries, fuse.DirEntry{Name: c.String(), Mode: syscall.S_IFDIR, Ino: commitIno(c)})
	}
	slices.SortFunc(entries, func(a, b fuse.DirEntry) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return fs.NewListDirStream(entries), 0
}

// lazytreeNode is MOUNT/.lazytree, which holds status.json.
type lazytreeNode struct {
	fs.Inode
	f *fsys
}

var (
	_ fs.NodeGetattrer = (*lazytreeNode)(nil)
	_ fs.NodeLookuper  = (*lazytreeNode)(nil)
)

func (n *lazytreeNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.st.count(opGetattr)
	out.Attr = syntheticDirAttr(specialIno(lazytreeDirName))
	out.SetTimeout(n.f.opts.TreeTimeout)
	return 0
}

func (n *lazytreeNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.f.st.count(opLookup)
	ch := n.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	st := ch.Operations().(*statusNode)
	out.Attr = st.attr()
	// The size changes with every read: let the kernel ask again.
	out.SetEntryTimeout(n.f.opts.TreeTimeout)
	out.SetAttrTimeout(time.Nanosecond)
	return ch, 0
}

// statusNode is a file in MOUNT/.lazytree (status.json, refs.json),
// generated afresh on every open (and for every stat, to report a size
// that matches).
type statusNode struct {
	fs.Inode
	f      *fsys
	name   string
	render func() []byte
}

func (n *statusNode) attr() fuse.Attr {
	return fuse.Attr{
		Ino:   specialIno(n.name),
		Mode:  syscall.S_IFREG | 0o444,
		Nlink: 1,
		Size:  uint64(len(n.render())),
	}
}

func (n *statusNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.st.count(opGetattr)
	if h, ok := fh.(*statusHandle); ok {
		// fstat on an open status.json: the size of its snapshot.
		out.Attr = fuse.Attr{Ino: specialIno(n.name), Mode: syscall.S_IFREG | 0o444, Nlink: 1, Size: uint64(len(h.data))}
	} else {
		out.Attr = n.attr()
	}
	out.SetTimeout(time.Nanosecond)
	return 0
}

func (n *statusNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.f.st.count(opOpen)
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	return &statusHandle{data: n.render()}, fuse.FOPEN_DIRECT_IO, 0
}

// statusHandle holds the snapshot taken when status.json was opened.
type statusHandle struct{ data []byte }

func (h *statusHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))]), 0
}
