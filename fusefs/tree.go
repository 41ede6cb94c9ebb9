package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazytree/lazytree/ostree"
)

// dirNode is a directory inside a commit (or a commit's root). Everything
// about it is immutable; its dirtree is fetched on the first lookup or
// listing and kept while the kernel keeps the node.
type dirNode struct {
	fs.Inode
	f         *fsys
	via       Via
	commit    ostree.Checksum
	path      string // relative to the commit root; "" for the root
	treeSum   ostree.Checksum
	attr      fuse.Attr
	xattrs    []ostree.Xattr // without the hidden ones
	parentIno uint64

	tree atomic.Pointer[ostree.DirTree]
	// hinted is set once the Source was told of this directory
	// (DirHinter), listed once it was told of a listing.
	hinted, listed atomic.Bool
	// scanNext is one past the index in the tree's files of the last
	// cold file looked up, scanRun how many cold lookups in a row went
	// forward in listing order (ScanHinter), scanned that the Source was
	// told of the scan.
	scanNext, scanRun atomic.Int32
	scanned           atomic.Bool
}

// where names the directory for status.json as a path under the mount
// that reaches it whatever ref it was found through.
func (n *dirNode) where() string { return commitPath(n.commit, n.path) }

func commitPath(commit ostree.Checksum, path string) string {
	if path == "" {
		return commitsDirName + "/" + commit.String()
	}
	return commitsDirName + "/" + commit.String() + "/" + path
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (n *dirNode) loadTree(ctx context.Context) (*ostree.DirTree, error) {
	if t := n.tree.Load(); t != nil {
		return t, nil
	}
	t, err := call(n.f, ctx, func(ctx context.Context) (*ostree.DirTree, error) {
		return n.f.src.DirTree(ctx, n.via, n.treeSum)
	}, nil)
	if err != nil {
		return nil, referenced(err)
	}
	n.tree.Store(t)
	return t, nil
}

func (n *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.st.count(opGetattr)
	out.Attr = n.attr
	out.SetTimeout(n.f.opts.TreeTimeout)
	return 0
}

func (n *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.f.st.count(opGetxattr)
	return getxattr(n.xattrs, attr, dest)
}

func (n *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.f.st.count(opListxattr)
	return listxattr(n.xattrs, dest)
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.f.st.count(opLookup)
	return n.lookup(ctx, name, out, false)
}

// errNoPeek is the answer to a READDIRPLUS entry that would cost a Source
// call: the kernel gets no attributes for it (nodeid 0) and looks it up
// when someone asks.
var errNoPeek = syscall.EAGAIN

// lookup resolves name. With plus (READDIRPLUS) it never calls the Source
// (one READDIRPLUS request covers many names, so waiting on the Source
// per name could multiply the request's deadline): it answers for known
// children and for files whose header the Source can peek at, and skips
// the rest.
func (n *dirNode) lookup(ctx context.Context, name string, out *fuse.EntryOut, plus bool) (*fs.Inode, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil {
		// Immutable: a child once found is the answer for good.
		if a, ok := nodeAttr(ch); ok {
			out.Attr = a
			n.f.treeEntry(out)
			return ch, 0
		}
	}
	if plus {
		return n.peekChild(ctx, name, out)
	}
	ctx, cancel := n.f.request(ctx)
	defer cancel()
	t, err := n.loadTree(ctx)
	if err != nil {
		return nil, n.f.failure(opLookup, n.where(), ostree.ObjectName(n.treeSum, ostree.ObjDirTree), err)
	}
	if d, ok := t.LookupDir(name); ok {
		m, err := call(n.f, ctx, func(ctx context.Context) (*ostree.DirMeta, error) {
			return n.f.src.DirMeta(ctx, n.via, d.Meta)
		}, nil)
		if err != nil {
			return nil, n.f.failure(opLookup, joinPath(n.where(), name), ostree.ObjectName(d.Meta, ostree.ObjDirMeta), referenced(err))
		}
		return n.addDir(ctx, name, d, m, out), 0
	}
	if fe, ok := t.LookupFile(name); ok {
		if n.f.hint != nil {
			if !n.hinted.Load() {
				if _, ok := n.peekHeader(fe.Checksum); !ok {
					n.hinted.Store(true)
					// A cold file: its siblings are likely next.
					n.f.hint.HintDir(n.via, n.commit, n.path, n.treeSum, t, false)
				}
			}
			// Every first lookup counts, warm or cold: with a tree
			// index, ls -l finds every header at hand.
			n.noteScan(t, name)
			if lh, ok := n.f.hint.(LookupHinter); ok && !n.scanned.Load() {
				// Even with the header at hand (a tree index), the
				// content may be cold; a scan (ls -l, find -ls) wants
				// none of it.
				lh.HintLookup(n.via, n.commit, joinPath(n.path, name))
			}
		}
		h, err := call(n.f, ctx, func(ctx context.Context) (*ostree.FileHeader, error) {
			return n.f.src.FileHeader(ctx, n.via, fe.Checksum)
		}, nil)
		if err != nil {
			return nil, n.f.failure(opLookup, joinPath(n.where(), name), ostree.ObjectName(fe.Checksum, ostree.ObjFile), referenced(err))
		}
		return n.addFile(ctx, fe.Checksum, h, out), 0
	}
	// Not in this immutable tree: go-fuse caches the negative entry for
	// TreeTimeout.
	return nil, syscall.ENOENT
}

// scanSteps is how many first lookups in a row, each a little further on
// in listing order, make a scan.
const scanSteps = 4

// noteScan tells a ScanHinter when first lookups in the directory walk
// its files in listing order, the way ls -l stats every entry it listed;
// then scanned is set, and no lookup of it is hinted one by one.
func (n *dirNode) noteScan(t *ostree.DirTree, name string) {
	if n.scanned.Load() {
		return
	}
	sh, ok := n.f.hint.(ScanHinter)
	if !ok {
		return
	}
	i := int32(sort.Search(len(t.Files), func(i int) bool { return t.Files[i].Name >= name }))
	// Racing lookups may skew the count (Swap, then Add or Store): it
	// is a heuristic, and one lookup more or less changes nothing.
	prev := n.scanNext.Swap(i + 1)
	// The entries between may have been looked up already (the kernel
	// keeps its entries), and so not come here.
	if i >= prev && i < prev+4 {
		if n.scanRun.Add(1) >= scanSteps && !n.scanned.Swap(true) {
			sh.HintScan(n.via, n.commit, n.path, n.treeSum, t)
		}
		return
	}
	n.scanRun.Store(0)
}

// peekChild is lookup for READDIRPLUS: no Source calls.
func (n *dirNode) peekChild(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t := n.tree.Load()
	if t == nil || n.f.peek == nil {
		return nil, errNoPeek
	}
	fe, ok := t.LookupFile(name)
	if !ok {
		return nil, errNoPeek
	}
	h, ok := n.f.peek.PeekFileHeader(n.via, fe.Checksum)
	if !ok {
		return nil, errNoPeek
	}
	return n.addFile(ctx, fe.Checksum, h, out), 0
}

func (n *dirNode) addDir(ctx context.Context, name string, d ostree.TreeDir, m *ostree.DirMeta, out *fuse.EntryOut) *fs.Inode {
	ino := dirIno(n.attr.Ino, name)
	child := &dirNode{
		f:         n.f,
		via:       n.via,
		commit:    n.commit,
		path:      joinPath(n.path, name),
		treeSum:   d.Tree,
		attr:      dirAttr(ino, m),
		xattrs:    visibleXattrs(m.Xattrs),
		parentIno: n.attr.Ino,
	}
	out.Attr = child.attr
	n.f.treeEntry(out)
	return n.NewInode(ctx, child, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino})
}

func (n *dirNode) addFile(ctx context.Context, sum ostree.Checksum, h *ostree.FileHeader, out *fuse.EntryOut) *fs.Inode {
	child := newFileNode(n.f, n.via, sum, h)
	out.Attr = child.attr
	n.f.treeEntry(out)
	return n.NewInode(ctx, child, fs.StableAttr{Mode: fileType(h), Ino: child.attr.Ino})
}

// nodeAttr returns the attributes of a node inside a commit.
func nodeAttr(in *fs.Inode) (fuse.Attr, bool) {
	switch n := in.Operations().(type) {
	case *dirNode:
		return n.attr, true
	case *fileNode:
		return n.attr, true
	}
	return fuse.Attr{}, false
}

func (n *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.f.st.count(opReaddir)
	ctx, cancel := n.f.request(ctx)
	defer cancel()
	t, err := n.loadTree(ctx)
	if err != nil {
		return nil, 0, n.f.failure(opReaddir, n.where(), ostree.ObjectName(n.treeSum, ostree.ObjDirTree), err)
	}
	if n.f.hint != nil && !n.listed.Swap(true) {
		n.hinted.Store(true)
		n.f.hint.HintDir(n.via, n.commit, n.path, n.treeSum, t, true)
	}
	return &dirHandle{n: n, tree: t}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// peekHeader returns a file's header when the Source has it at hand.
func (n *dirNode) peekHeader(c ostree.Checksum) (*ostree.FileHeader, bool) {
	if n.f.peek == nil {
		return nil, false
	}
	return n.f.peek.PeekFileHeader(n.via, c)
}

// dirEntries lists the directory in byte order, with "." and "..". A
// file's type is given only when it is known without a fetch (a node
// exists, or the Source can peek at its header); otherwise it is
// DT_UNKNOWN and readers that care stat the entry.
func (n *dirNode) dirEntries(t *ostree.DirTree) []fuse.DirEntry {
	out := make([]fuse.DirEntry, 0, len(t.Files)+len(t.Dirs)+2)
	out = append(out,
		fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.attr.Ino},
		fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: n.parentIno})
	children := n.Children()
	i, j := 0, 0
	for i < len(t.Files) || j < len(t.Dirs) {
		if j == len(t.Dirs) || (i < len(t.Files) && t.Files[i].Name < t.Dirs[j].Name) {
			fe := t.Files[i]
			i++
			var mode uint32
			if ch, ok := children[fe.Name]; ok {
				mode = ch.StableAttr().Mode
			} else if n.f.peek != nil {
				if h, ok := n.f.peek.PeekFileHeader(n.via, fe.Checksum); ok {
					mode = fileType(h)
				}
			}
			out = append(out, fuse.DirEntry{Name: fe.Name, Mode: mode, Ino: contentIno(n.via.Remote, fe.Checksum)})
			continue
		}
		d := t.Dirs[j]
		j++
		out = append(out, fuse.DirEntry{Name: d.Name, Mode: syscall.S_IFDIR, Ino: dirIno(n.attr.Ino, d.Name)})
	}
	return out
}

// dirHandle is an open directory inside a commit. go-fuse serialises the
// calls on one handle. The listing is made on the first read: with
// FOPEN_CACHE_DIR the kernel lists a directory it has read before from
// its own cache, so most opens never read.
type dirHandle struct {
	n       *dirNode
	tree    *ostree.DirTree
	entries []fuse.DirEntry // nil until the first read
	next    int
}

func (h *dirHandle) list() []fuse.DirEntry {
	if h.entries == nil {
		h.entries = h.n.dirEntries(h.tree)
	}
	return h.entries
}

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.next >= len(h.list()) {
		return nil, 0
	}
	e := h.entries[h.next]
	h.next++
	e.Off = uint64(h.next)
	return &e, 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(h.list())) {
		return syscall.EINVAL
	}
	h.next = int(off)
	return 0
}

// Lookup answers the attribute half of READDIRPLUS.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return h.n.lookup(ctx, name, out, true)
}

// fileNode is a regular file or symlink, shared by every path (in every
// commit and ref of one remote) where the same content object appears.
type fileNode struct {
	fs.Inode
	f      *fsys
	via    Via // of the first path that found it: where to fetch from
	sum    ostree.Checksum
	attr   fuse.Attr
	target string
	xattrs []ostree.Xattr
	// streaming counts open StreamingFile handles: no passthrough for
	// the inode meanwhile.
	streaming atomic.Int32
	// streamed is set by a StreamingFile open and cleared by the first
	// open after the last one closed: that open drops the inode's page
	// cache (no FOPEN_KEEP_CACHE), because pages read while streaming
	// were verified against chunk digests only, and the whole-object
	// hash may since have refuted them.
	streamed atomic.Bool
}

func newFileNode(f *fsys, via Via, sum ostree.Checksum, h *ostree.FileHeader) *fileNode {
	return &fileNode{
		f:      f,
		via:    via,
		sum:    sum,
		attr:   fileAttr(contentIno(via.Remote, sum), h),
		target: h.Target,
		xattrs: visibleXattrs(h.Xattrs),
	}
}

// location returns a commit and path where the file was found (one of
// them, when the object appears in several places).
func (n *fileNode) location() (commit ostree.Checksum, path string, ok bool) {
	name, parent := n.Parent()
	if parent == nil {
		return commit, "", false
	}
	d, ok := parent.Operations().(*dirNode)
	if !ok {
		return commit, "", false
	}
	return d.commit, joinPath(d.path, name), true
}

func (n *fileNode) where() string {
	if c, p, ok := n.location(); ok {
		return commitPath(c, p)
	}
	return ""
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.st.count(opGetattr)
	out.Attr = n.attr
	out.SetTimeout(n.f.opts.TreeTimeout)
	return 0
}

func (n *fileNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	n.f.st.count(opReadlink)
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	return []byte(n.target), 0
}

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.f.st.count(opGetxattr)
	return getxattr(n.xattrs, attr, dest)
}

func (n *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.f.st.count(opListxattr)
	return listxattr(n.xattrs, dest)
}

// Open fetches (or finds in the cache) the verified content. Nothing is
// served before the Source has verified the whole object.
func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.f.st.count(opOpen)
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.ELOOP
	}
	ctx, cancel := n.f.request(ctx)
	defer cancel()
	file, err := call(n.f, ctx, func(ctx context.Context) (File, error) {
		return n.f.src.Open(ctx, n.via, n.sum)
	}, func(f File) { f.Close() })
	if err != nil {
		return nil, 0, n.f.failure(opOpen, n.where(), ostree.ObjectName(n.sum, ostree.ObjFile), referenced(err))
	}
	if got := file.Size(); got != int64(n.attr.Size) {
		file.Close()
		err := fmt.Errorf("content is %d bytes, header says %d: %w", got, n.attr.Size, ostree.ErrCorrupt)
		return nil, 0, n.f.failure(opOpen, n.where(), ostree.ObjectName(n.sum, ostree.ObjFile), err)
	}
	if c, p, ok := n.location(); ok {
		n.f.src.RecordAccess(n.via, c, p)
	}
	n.f.st.opens.Add(1)
	n.f.st.openFiles.Add(1)
	h := &fileHandle{n: n, file: file}
	keep := uint32(fuse.FOPEN_KEEP_CACHE)
	if sf, ok := file.(StreamingFile); ok {
		h.stream = sf
		n.streaming.Add(1)
		n.streamed.Store(true)
		n.f.st.streamingOpens.Add(1)
		keep = 0
		if r, ok := file.(Refutable); ok {
			h.released = make(chan struct{})
			go n.dropPagesIfRefuted(r.Refuted(), h.released)
		}
	} else if n.streaming.Load() > 0 || n.streamed.Swap(false) {
		keep = 0
	}
	return h, keep | fuse.FOPEN_NOFLUSH, 0
}

// dropPagesIfRefuted drops the inode's cached pages when refuted closes
// before released: open descriptors and mappings of the file then read
// through the daemon again instead of keeping what the kernel cached.
func (n *fileNode) dropPagesIfRefuted(refuted, released <-chan struct{}) {
	select {
	case <-refuted:
		n.streamed.Store(true) // and the next open drops them too
		n.NotifyContent(0, 0)
	case <-released:
	}
}

// fileHandle is an open regular file. With passthrough the kernel reads
// the Source's file itself and Read is never called.
type fileHandle struct {
	n        *fileNode
	file     File
	stream   StreamingFile // file, when it is served before it is whole
	released chan struct{} // closed at Release, for a Refutable stream
}

// PassthroughFd hands the kernel the cached file, for files of at least
// Options.PassthroughMin bytes (the choice is per inode, as the kernel
// requires: an inode is not open in passthrough and cached mode at once).
// go-fuse asks once per inode while it has no backing file registered,
// and falls back to Read for the whole mount if the kernel refuses.
func (h *fileHandle) PassthroughFd() (int, bool) {
	if h.n.f.opts.NoPassthrough || int64(h.n.attr.Size) < h.n.f.opts.PassthroughMin || h.stream != nil || h.n.streaming.Load() > 0 {
		return 0, false
	}
	h.n.f.st.passthroughFiles.Add(1)
	return int(h.file.Fd()), true
}

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.n.f
	f.st.count(opRead)
	var n int
	var err error
	if h.stream != nil {
		// The deadline, and the kernel's INTERRUPT (go-fuse's ctx): the
		// read waits for the network, so it must stop at either.
		rctx, cancel := f.request(ctx)
		ictx, icancel := context.WithCancel(rctx)
		stop := context.AfterFunc(ctx, icancel)
		n, err = h.stream.ReadAtContext(ictx, dest, off)
		stop()
		icancel()
		cancel()
	} else {
		n, err = h.file.ReadAt(dest, off)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.failure(opRead, h.n.where(), ostree.ObjectName(h.n.sum, ostree.ObjFile), err)
	}
	f.st.bytesServed.Add(uint64(n))
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.n.f.st.openFiles.Add(-1)
	if h.stream != nil {
		h.n.streaming.Add(-1)
	}
	if h.released != nil {
		close(h.released)
	}
	h.file.Close()
	return 0
}
