package fusefs

// Tier 1: the tree logic without a kernel. The nodes are driven through
// go-fuse's raw bridge (fs.NewNodeFS) exactly as the kernel would drive
// them, but in-process, over an in-memory Source.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazytree/lazytree/ostree"
)

func TestToErrno(t *testing.T) {
	corrupt := &ostree.ChecksumError{Object: "x.file"}
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{ErrNotFound, syscall.ENOENT},
		{fmt.Errorf("ref a/b: %w", ErrNotFound), syscall.ENOENT},
		{referenced(fmt.Errorf("x.dirtree: %w", ErrNotFound)), syscall.EIO},
		{referenced(errors.New("other")), syscall.EIO},
		{corrupt, syscall.EIO},
		{fmt.Errorf("open: %w", ostree.ErrCorrupt), syscall.EIO},
		{context.DeadlineExceeded, syscall.EIO},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), syscall.EIO},
		{context.Canceled, syscall.EINTR},
		{fmt.Errorf("interrupted: %w", context.Canceled), syscall.EINTR},
		{syscall.EROFS, syscall.EROFS},
		{fs.ErrNotExist, syscall.EIO}, // only ErrNotFound means ENOENT
		{errors.New("connection refused"), syscall.EIO},
	} {
		if got := toErrno(tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func sum(s string) ostree.Checksum { return ostree.Sum([]byte(s)) }

func TestRefChildren(t *testing.T) {
	a, b, c := sum("a"), sum("b"), sum("c")
	refs := map[string]ostree.Checksum{
		"app/org.x/x86_64/stable": a,
		"app/org.y/x86_64/stable": b,
		"runtime/org.z/x86_64/1":  c,
		"os":                      a,
		"os/shadowed":             b, // "os" is a ref: this one is unreachable
		"bad//ref":                c,
		"../etc":                  c,
	}
	names := func(es []refEntry) string {
		var s []string
		for _, e := range es {
			if e.Leaf {
				s = append(s, e.Name+"="+e.Commit.String()[:4])
			} else {
				s = append(s, e.Name+"/")
			}
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct{ prefix, want string }{
		{"", "app/ os=" + a.String()[:4] + " runtime/"},
		{"app/", "org.x/ org.y/"},
		{"app/org.x/x86_64/", "stable=" + a.String()[:4]},
		{"os/", ""},
		{"nothing/", ""},
	} {
		if got := names(refChildren(refs, tc.prefix)); got != tc.want {
			t.Errorf("refChildren(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	for _, tc := range []struct {
		prefix, name string
		ok, leaf     bool
	}{
		{"", "app", true, false},
		{"app/org.x/x86_64/", "stable", true, true},
		{"", "os", true, true},
		{"os/", "shadowed", false, false},
		{"", "bad", false, false},
		{"", "..", false, false},
		{"", "", false, false},
		{"app/", "org", false, false},
	} {
		e, ok := refChild(refs, tc.prefix, tc.name)
		if ok != tc.ok || e.Leaf != tc.leaf {
			t.Errorf("refChild(%q, %q) = %+v, %v; want ok %v leaf %v", tc.prefix, tc.name, e, ok, tc.ok, tc.leaf)
		}
	}
}

func TestInodeNumbers(t *testing.T) {
	c1, c2 := sum("one"), sum("two")
	// The documented derivation, spelled out byte by byte: the first 8
	// bytes (big-endian) of SHA-256 over the kind tag and each part with
	// a 4-byte big-endian length. It pins the numbers across versions.
	wantIno := func(parts ...string) uint64 {
		h := sha256.Sum256([]byte(strings.Join(parts, "")))
		return binary.BigEndian.Uint64(h[:8])
	}
	if got, want := contentIno("r", c1), wantIno("content", "\x00\x00\x00\x01", "r", "\x00\x00\x00\x20", string(c1[:])); got != want {
		t.Errorf("contentIno(r, %s) = %#x, want %#x", c1, got, want)
	}
	if contentIno("r", c1) == contentIno("r", c2) {
		t.Error("two checksums share a content inode")
	}
	if contentIno("r", c1) == contentIno("q", c1) || contentIno("r", c1) == contentIno("", c1) {
		t.Error("one checksum under two remotes shares a content inode")
	}
	p := refRootIno("r", "a/b", c1)
	if p == refRootIno("r", "a/b", c2) {
		t.Error("a moved ref must get a new root inode")
	}
	if p == refRootIno("r", "a/c", c1) || p == refRootIno("s", "a/b", c1) || p == commitIno(c1) {
		t.Error("the same commit under two names must not share a root inode")
	}
	pb := binary.BigEndian.AppendUint64(nil, p)
	if got, want := dirIno(p, "x"), wantIno("dir", "\x00\x00\x00\x08", string(pb), "\x00\x00\x00\x01", "x"); got != want {
		t.Errorf("dirIno(%#x, x) = %#x, want %#x", p, got, want)
	}
	if got, want := commitIno(c1), wantIno("commit", "\x00\x00\x00\x20", string(c1[:])); got != want {
		t.Errorf("commitIno = %#x, want %#x", got, want)
	}
	if dirIno(p, "x") == dirIno(p, "y") || dirIno(p, "x") == dirIno(commitIno(c1), "x") {
		t.Error("directory inodes must be unique per path")
	}
	// Length-prefixed parts: ("ab","c") and ("a","bc") differ.
	if refDirIno("ab", "c") == refDirIno("a", "bc") {
		t.Error("ambiguous inode derivation")
	}
	for _, v := range []uint64{0, 1, ^uint64(0)} {
		if fixIno(v) <= 1 || fixIno(v) == ^uint64(0) {
			t.Errorf("fixIno(%d) = %d is reserved", v, fixIno(v))
		}
	}
}

func TestAttrMapping(t *testing.T) {
	d := dirAttr(7, &ostree.DirMeta{UID: 1, GID: 2, Mode: ostree.ModeDir | 0o3775})
	if d.Mode != syscall.S_IFDIR|0o1775 || d.Uid != 1 || d.Gid != 2 || d.Nlink != 1 || d.Ino != 7 || d.Mtime != 0 {
		t.Errorf("dirAttr = %+v (want setgid dropped, sticky kept)", d)
	}
	f := fileAttr(9, &ostree.FileHeader{Size: 42, UID: 3, GID: 4, Mode: ostree.ModeReg | 0o6755})
	if f.Mode != syscall.S_IFREG|0o755 || f.Size != 42 || f.Uid != 3 || f.Gid != 4 || f.Nlink != 1 {
		t.Errorf("fileAttr = %+v (want setuid and setgid dropped)", f)
	}
	z := fileAttr(9, &ostree.FileHeader{Mode: ostree.ModeReg})
	if z.Mode != syscall.S_IFREG {
		t.Errorf("mode 0 must stay 0, got %o", z.Mode)
	}
	l := fileAttr(9, &ostree.FileHeader{Mode: ostree.ModeSymlink | 0o777, Target: "../lib/x.so"})
	if l.Mode != syscall.S_IFLNK|0o777 || l.Size != uint64(len("../lib/x.so")) {
		t.Errorf("symlink attr = %+v", l)
	}
}

func TestXattrs(t *testing.T) {
	xs := visibleXattrs([]ostree.Xattr{
		{Name: "security.capability", Value: []byte{1, 2}},
		{Name: "user.a", Value: []byte("va")},
		{Name: "user.b", Value: []byte("")},
	})
	if len(xs) != 2 || xs[0].Name != "user.a" {
		t.Fatalf("visibleXattrs = %+v", xs)
	}
	if n, e := getxattr(xs, "security.capability", make([]byte, 10)); e != syscall.ENODATA {
		t.Errorf("hidden xattr: %d %v", n, e)
	}
	if n, e := getxattr(xs, "user.a", nil); e != syscall.ERANGE || n != 2 {
		t.Errorf("size query: %d %v", n, e)
	}
	buf := make([]byte, 8)
	if n, e := getxattr(xs, "user.a", buf); e != 0 || string(buf[:n]) != "va" {
		t.Errorf("getxattr: %q %v", buf[:n], e)
	}
	if n, e := listxattr(xs, nil); e != syscall.ERANGE || n != uint32(len("user.a\x00user.b\x00")) {
		t.Errorf("listxattr size: %d %v", n, e)
	}
	buf = make([]byte, 64)
	if n, e := listxattr(xs, buf); e != 0 || string(buf[:n]) != "user.a\x00user.b\x00" {
		t.Errorf("listxattr: %q %v", buf[:n], e)
	}
}

// rawFS drives the nodes through go-fuse's bridge without a kernel.
type rawFS struct {
	t         *testing.T
	raw       fuse.RawFileSystem
	f         *fsys
	openFlags uint32 // of the last open
}

func newRaw(t *testing.T, src Source, opts Options) *rawFS {
	t.Helper()
	f := newFS(src, opts.withDefaults(), "/mnt/test")
	return &rawFS{t: t, raw: gofs.NewNodeFS(f.root, f.fuseOptions()), f: f}
}

func (r *rawFS) lookup(parent uint64, name string) (fuse.EntryOut, fuse.Status) {
	var out fuse.EntryOut
	st := r.raw.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out)
	return out, st
}

// walk resolves a slash-separated path from the root, failing the test on
// any error.
func (r *rawFS) walk(path string) fuse.EntryOut {
	r.t.Helper()
	out := fuse.EntryOut{NodeId: fuse.FUSE_ROOT_ID}
	for _, name := range strings.Split(path, "/") {
		var st fuse.Status
		parent := out.NodeId
		out, st = r.lookup(parent, name)
		if !st.Ok() || out.NodeId == 0 {
			r.t.Fatalf("lookup %q in %s: %v (nodeid %d)", name, path, st, out.NodeId)
		}
	}
	return out
}

func (r *rawFS) read(node uint64) ([]byte, fuse.Status) {
	var oo fuse.OpenOut
	if st := r.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: node}, Flags: syscall.O_RDONLY}, &oo); !st.Ok() {
		return nil, st
	}
	r.openFlags = oo.OpenFlags
	defer r.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: oo.Fh})
	var data []byte
	buf := make([]byte, 3) // small, to exercise offsets
	for {
		res, st := r.raw.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: node}, Fh: oo.Fh, Offset: uint64(len(data)), Size: uint32(len(buf))}, buf)
		if !st.Ok() {
			return nil, st
		}
		b, st := res.Bytes(make([]byte, len(buf)))
		if !st.Ok() {
			return nil, st
		}
		if len(b) == 0 {
			return data, fuse.OK
		}
		data = append(data, b...)
	}
}

// sampleTree has identical subdirectories at two paths, identical files,
// a symlink, a setuid file and xattrs.
func sampleTree() map[string]entry {
	same := map[string]entry{"f": {Mode: 0o644, Data: "same\n"}}
	return map[string]entry{
		"a":        {Mode: 0o755, Dir: map[string]entry{"same": {Mode: 0o755, Dir: same}}},
		"b":        {Mode: 0o755, Dir: map[string]entry{"same": {Mode: 0o755, Dir: same}}},
		"f1":       {Mode: 0o644, Data: "identical"},
		"f2":       {Mode: 0o644, Data: "identical"},
		"link":     {Target: "f1"},
		"suid":     {Mode: 0o4755, UID: 5, GID: 6, Data: "#!/bin/sh\n"},
		"caps":     {Mode: 0o755, Data: "bin", Xattrs: []ostree.Xattr{{Name: "security.capability", Value: []byte{1}}, {Name: "user.k", Value: []byte("v")}}},
		"private":  {Mode: 0o700, UID: 1000, GID: 1000, Xattrs: []ostree.Xattr{{Name: "user.d", Value: []byte("dv")}}, Dir: map[string]entry{}},
		"zero":     {Mode: 0, Data: ""},
		"big.data": {Mode: 0o644, Data: strings.Repeat("0123456789", 100)},
	}
}

func TestResolveAndAttributes(t *testing.T) {
	src := newMemSource(t)
	commit := src.commit("r", "app/org.x/x86_64/stable", sampleTree())
	src.commit("r", "runtime/org.y/x86_64/1", map[string]entry{"g": {Mode: 0o644, Data: "g"}})
	raw := newRaw(t, src, Options{})
	const ref = "r/app/org.x/x86_64/stable"

	// Root, remotes and the fixed entries.
	if _, st := raw.lookup(1, "nope"); st != fuse.ENOENT {
		t.Errorf("unknown remote: %v, want ENOENT", st)
	}
	for _, p := range []string{"r", ".commits", ".lazytree", ".lazytree/status.json", "r/app/org.x"} {
		raw.walk(p)
	}
	refDir := raw.walk("r/app")
	if refDir.EntryTimeout() != time.Second || refDir.Mode != syscall.S_IFDIR|0o755 {
		t.Errorf("ref dir entry: timeout %v mode %o", refDir.EntryTimeout(), refDir.Mode)
	}
	if _, st := raw.lookup(raw.walk("r").NodeId, "missing"); st != fuse.ENOENT {
		t.Errorf("missing ref: %v", st)
	}

	// The commit root: a short entry (the ref may move), long attributes.
	root := raw.walk(ref)
	if root.EntryTimeout() != time.Second || root.AttrTimeout() != 24*time.Hour {
		t.Errorf("ref leaf timeouts: entry %v attr %v", root.EntryTimeout(), root.AttrTimeout())
	}
	if root.Ino != refRootIno("r", "app/org.x/x86_64/stable", commit) {
		t.Errorf("root ino %d", root.Ino)
	}
	byCommit := raw.walk(".commits/" + commit.String())
	if byCommit.Ino == root.Ino || byCommit.NodeId == root.NodeId {
		t.Error("a commit under a ref and under .commits must be different directories")
	}

	// Identical directories at two paths do not share; identical files do.
	sa, sb := raw.walk(ref+"/a/same"), raw.walk(ref+"/b/same")
	if sa.Ino == sb.Ino || sa.NodeId == sb.NodeId {
		t.Errorf("identical dirtrees share inode %d", sa.Ino)
	}
	// The same path gets the same number from its path alone: in this
	// tree, and in a fresh one (a restarted daemon) that never saw it.
	if want := dirIno(dirIno(root.Ino, "a"), "same"); sa.Ino != want {
		t.Errorf("a/same has inode %#x, want %#x (from its path)", sa.Ino, want)
	}
	if again := raw.walk(ref + "/a/same"); again.NodeId != sa.NodeId {
		t.Errorf("a/same looked up twice: nodes %d and %d", sa.NodeId, again.NodeId)
	}
	if again := newRaw(t, src, Options{}).walk(ref + "/a/same"); again.Ino != sa.Ino {
		t.Errorf("a/same after a restart: inode %#x, was %#x", again.Ino, sa.Ino)
	}
	f1, f2 := raw.walk(ref+"/f1"), raw.walk(ref+"/f2")
	f1Entry, _ := src.trees[src.commits[commit].RootTree].LookupFile("f1")
	if f1.Ino != f2.Ino || f1.Ino != contentIno("r", f1Entry.Checksum) {
		t.Errorf("identical files: inos %d, %d", f1.Ino, f2.Ino)
	}
	if f1.EntryTimeout() != 24*time.Hour {
		t.Errorf("tree entry timeout %v", f1.EntryTimeout())
	}
	if a, b := raw.walk(ref+"/a/same/f"), raw.walk(ref+"/b/same/f"); a.Ino != b.Ino {
		t.Error("the same file under identical dirs must share an inode")
	}

	// Attributes.
	if s := raw.walk(ref + "/suid"); s.Mode != syscall.S_IFREG|0o755 || s.Uid != 5 || s.Gid != 6 || s.Size != uint64(len("#!/bin/sh\n")) {
		t.Errorf("suid attrs: %+v", s.Attr)
	}
	if z := raw.walk(ref + "/zero"); z.Mode != syscall.S_IFREG {
		t.Errorf("mode 0 became %o", z.Mode)
	}
	if p := raw.walk(ref + "/private"); p.Mode != syscall.S_IFDIR|0o700 || p.Uid != 1000 || p.Nlink != 1 {
		t.Errorf("private dir attrs: %+v", p.Attr)
	}
	var ao fuse.AttrOut
	if st := raw.raw.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: sa.NodeId}}, &ao); !st.Ok() || ao.Ino != sa.Ino || ao.Timeout() != 24*time.Hour {
		t.Errorf("getattr: %v %+v", st, ao)
	}
	link := raw.walk(ref + "/link")
	if link.Mode&syscall.S_IFMT != syscall.S_IFLNK || link.Size != 2 {
		t.Errorf("symlink attrs: %+v", link.Attr)
	}
	if target, st := raw.raw.Readlink(nil, &fuse.InHeader{NodeId: link.NodeId}); !st.Ok() || string(target) != "f1" {
		t.Errorf("readlink: %q %v", target, st)
	}

	// Xattrs, minus security.capability.
	caps := raw.walk(ref + "/caps")
	buf := make([]byte, 256)
	if n, st := raw.raw.ListXAttr(nil, &fuse.InHeader{NodeId: caps.NodeId}, buf); !st.Ok() || string(buf[:n]) != "user.k\x00" {
		t.Errorf("listxattr: %q %v", buf[:n], st)
	}
	if _, st := raw.raw.GetXAttr(nil, &fuse.InHeader{NodeId: caps.NodeId}, "security.capability", buf); st != fuse.ENOATTR {
		t.Errorf("getxattr security.capability: %v, want ENODATA", st)
	}
	priv := raw.walk(ref + "/private")
	if n, st := raw.raw.GetXAttr(nil, &fuse.InHeader{NodeId: priv.NodeId}, "user.d", buf); !st.Ok() || string(buf[:n]) != "dv" {
		t.Errorf("dir getxattr: %q %v", buf[:n], st)
	}

	// Names not in an immutable tree are cached negative entries.
	neg, st := raw.lookup(root.NodeId, "not-there")
	if !st.Ok() || neg.NodeId != 0 || neg.EntryTimeout() != 24*time.Hour {
		t.Errorf("negative entry: %v nodeid %d timeout %v", st, neg.NodeId, neg.EntryTimeout())
	}

	// Content, and the access record.
	data, st := raw.read(raw.walk(ref + "/big.data").NodeId)
	if !st.Ok() || string(data) != strings.Repeat("0123456789", 100) {
		t.Errorf("read: %v, %d bytes", st, len(data))
	}
	if raw.openFlags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Errorf("open of an immutable file without FOPEN_KEEP_CACHE (flags %#x)", raw.openFlags)
	}
	if src.callCount("access:big.data") != 1 {
		t.Error("open was not recorded as an access")
	}
	if src.opened != src.closed || src.opened == 0 {
		t.Errorf("files opened %d, closed %d", src.opened, src.closed)
	}
	if got := raw.f.st.bytesServed.Load(); got != 1000 {
		t.Errorf("bytes served %d", got)
	}
	if data, st := raw.read(raw.walk(ref + "/a/same/f").NodeId); !st.Ok() || string(data) != "same\n" {
		t.Errorf("read nested: %q %v", data, st)
	}
	if src.callCount("access:a/same/f")+src.callCount("access:b/same/f") != 1 {
		t.Error("nested open not recorded with its path in the commit")
	}
}

func TestRefMove(t *testing.T) {
	src := newMemSource(t)
	src.commit("r", "os/stable", map[string]entry{"v": {Mode: 0o644, Data: "one"}})
	raw := newRaw(t, src, Options{})
	oldRoot := raw.walk("r/os/stable")
	oldFile := raw.walk("r/os/stable/v")

	src.commit("r", "os/stable", map[string]entry{"v": {Mode: 0o644, Data: "two"}})
	newRoot := raw.walk("r/os/stable")
	if newRoot.Ino == oldRoot.Ino || newRoot.NodeId == oldRoot.NodeId {
		t.Fatal("a moved ref must resolve to a new directory")
	}
	if data, _ := raw.read(raw.walk("r/os/stable/v").NodeId); string(data) != "two" {
		t.Errorf("new lookup reads %q", data)
	}
	// The kernel still holds the old nodes: they keep the old tree.
	if data, _ := raw.read(oldFile.NodeId); string(data) != "one" {
		t.Errorf("old file reads %q", data)
	}
	if out, st := raw.lookup(oldRoot.NodeId, "v"); !st.Ok() || out.Ino != oldFile.Ino {
		t.Errorf("lookup in the old root: %v", st)
	}

	// A ref that becomes a prefix of another ref turns into a directory.
	src.mu.Lock()
	delete(src.refs["r"], "os/stable")
	src.mu.Unlock()
	src.commit("r", "os/stable/v2", map[string]entry{})
	if out := raw.walk("r/os/stable"); out.Ino != refDirIno("r", "os/stable") {
		t.Error("os/stable should now be a ref directory")
	}
	raw.walk("r/os/stable/v2")
}

func TestDeadlineAndInterrupt(t *testing.T) {
	src := newMemSource(t)
	src.commit("r", "x", map[string]entry{"slow": {Mode: 0o644, Data: "s"}, "d": {Mode: 0o755, Dir: map[string]entry{}}})
	raw := newRaw(t, src, Options{RequestTimeout: 100 * time.Millisecond})
	root := raw.walk("r/x")
	src.setBlock(make(chan struct{}))

	start := time.Now()
	if _, st := raw.lookup(root.NodeId, "slow"); st != fuse.EIO {
		t.Errorf("blocked lookup: %v, want EIO", st)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("blocked lookup took %v", d)
	}
	// Other requests are served meanwhile (the directory needs no
	// header).
	raw.walk("r/x/d")
	if raw.f.st.timeouts.Load() != 1 {
		t.Errorf("timeouts = %d", raw.f.st.timeouts.Load())
	}
	errs := raw.f.status().FS.LastErrors
	if len(errs) != 1 || errs[0].Errno != "EIO" || !strings.Contains(errs[0].Cause, "deadline") || !strings.HasSuffix(errs[0].Object, ".file") || !strings.HasSuffix(errs[0].Path, "/slow") {
		t.Errorf("status errors: %+v", errs)
	}

	// A kernel INTERRUPT (the cancel channel) gives EINTR at once.
	raw2 := newRaw(t, src, Options{RequestTimeout: time.Hour})
	src.setBlock(nil)
	root2 := raw2.walk("r/x")
	src.setBlock(make(chan struct{}))
	cancel := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { close(cancel) })
	var out fuse.EntryOut
	if st := raw2.raw.Lookup(cancel, &fuse.InHeader{NodeId: root2.NodeId}, "slow", &out); st != fuse.Status(syscall.EINTR) {
		t.Errorf("interrupted lookup: %v, want EINTR", st)
	}
	if raw2.f.st.interrupts.Load() != 1 {
		t.Errorf("interrupts = %d", raw2.f.st.interrupts.Load())
	}
}

// lateFile records whether it was closed.
type lateFile struct {
	memFile
	closed chan struct{}
}

func (f *lateFile) Close() error { close(f.closed); return nil }

func TestAbandonedCallDiscardsResult(t *testing.T) {
	f := newFS(newMemSource(t), Options{RequestTimeout: 20 * time.Millisecond}.withDefaults(), "/x")
	release := make(chan struct{})
	lf := &lateFile{closed: make(chan struct{})}
	_, err := call(f, context.Background(), func(ctx context.Context) (File, error) {
		<-release // a Source that ignores its context
		return lf, nil
	}, func(fl File) { fl.Close() })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(release)
	select {
	case <-lf.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("a File returned after the deadline was never closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.st.inflight.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := f.st.inflight.Load(); n != 0 {
		t.Errorf("in flight %d", n)
	}
}

func TestCorruptAndMissingObjects(t *testing.T) {
	src := newMemSource(t)
	src.commit("r", "x", map[string]entry{
		"bad": {Mode: 0o644, Data: "tampered"},
		"sub": {Mode: 0o755, Dir: map[string]entry{"f": {Mode: 0o644, Data: "f"}}},
	})
	raw := newRaw(t, src, Options{})
	root := raw.walk("r/x")
	dt := src.trees[src.commits[src.refs["r"]["x"]].RootTree]
	bad, _ := dt.LookupFile("bad")
	sub, _ := dt.LookupDir("sub")

	src.fail[bad.Checksum] = &ostree.ChecksumError{Object: ostree.ObjectName(bad.Checksum, ostree.ObjFile), Got: sum("x"), Want: bad.Checksum}
	if _, st := raw.lookup(root.NodeId, "bad"); st != fuse.EIO {
		t.Errorf("corrupt object: %v, want EIO", st)
	}
	errs := raw.f.status().FS.LastErrors
	if len(errs) != 1 || errs[0].Object != ostree.ObjectName(bad.Checksum, ostree.ObjFile) || !strings.Contains(errs[0].Cause, "checksum mismatch") {
		t.Errorf("status errors: %+v", errs)
	}
	// Failures are not cached: once the Source is fixed, it works.
	delete(src.fail, bad.Checksum)
	if out, st := raw.lookup(root.NodeId, "bad"); !st.Ok() || out.NodeId == 0 {
		t.Errorf("after repair: %v", st)
	}

	// A dirtree named by a verified parent but missing: EIO, not ENOENT.
	delete(src.trees, sub.Tree)
	subOut := raw.walk("r/x/sub")
	if _, st := raw.lookup(subOut.NodeId, "f"); st != fuse.EIO {
		t.Errorf("missing referenced dirtree: %v, want EIO", st)
	}
	// An unknown commit is ENOENT and not an error worth recording.
	n := len(raw.f.status().FS.LastErrors)
	if _, st := raw.lookup(raw.walk(".commits").NodeId, sum("nope").String()); st != fuse.ENOENT {
		t.Errorf("unknown commit: %v", st)
	}
	if _, st := raw.lookup(raw.walk(".commits").NodeId, "NOT-A-CHECKSUM"); st != fuse.ENOENT {
		t.Errorf("bad commit name: %v", st)
	}
	if len(raw.f.status().FS.LastErrors) != n {
		t.Error("ENOENT was recorded as an error")
	}
}

func TestReaddirPlusNeverFetchesHeaders(t *testing.T) {
	for _, peek := range []bool{false, true} {
		t.Run(fmt.Sprintf("peek=%v", peek), func(t *testing.T) {
			src := newMemSource(t)
			src.peek = peek
			src.commit("r", "x", sampleTree())
			raw := newRaw(t, src, Options{})
			root := raw.walk("r/x")
			var oo fuse.OpenOut
			if st := raw.raw.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: root.NodeId}}, &oo); !st.Ok() {
				t.Fatal(st)
			}
			if oo.OpenFlags&fuse.FOPEN_CACHE_DIR == 0 {
				t.Error("immutable directory without FOPEN_CACHE_DIR")
			}
			before := src.callCount("header")
			sourceCalls := func() int {
				return src.callCount("header") + src.callCount("dirmeta") + src.callCount("dirtree") + src.callCount("commit") + src.callCount("refs")
			}
			callsBefore := sourceCalls()
			buf := make([]byte, 64<<10)
			if st := raw.raw.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: root.NodeId}, Fh: oo.Fh, Size: uint32(len(buf))}, fuse.NewDirEntryList(buf, 0)); !st.Ok() {
				t.Fatal(st)
			}
			raw.raw.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: root.NodeId}, Fh: oo.Fh})
			if got := sourceCalls() - callsBefore; got != 0 {
				t.Errorf("READDIRPLUS made %d Source calls", got)
			}
			// With peeking, the files were linked: a lookup needs no
			// header either.
			raw.walk("r/x/f1")
			want := 1
			if peek {
				want = 0
			}
			if got := src.callCount("header") - before; got != want {
				t.Errorf("lookup after READDIRPLUS fetched %d headers, want %d", got, want)
			}
		})
	}
}

func TestStatusFile(t *testing.T) {
	src := newMemSource(t)
	src.commit("r", "x", map[string]entry{"f": {Mode: 0o644, Data: "f"}})
	raw := newRaw(t, src, Options{})
	raw.walk("r/x/f")
	st := raw.walk(".lazytree/status.json")
	if st.Mode != syscall.S_IFREG|0o444 || st.Size == 0 {
		t.Errorf("status.json attrs %+v", st.Attr)
	}
	data, code := raw.read(st.NodeId)
	if !code.Ok() {
		t.Fatal(code)
	}
	var doc struct {
		Mountpoint string
		FS         Stats `json:"fusefs"`
		Source     map[string]string
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("status.json: %v\n%s", err, data)
	}
	if doc.Mountpoint != "/mnt/test" || doc.FS.Ops["lookup"] == 0 || doc.Source["kind"] != "mem" {
		t.Errorf("status.json: %s", data)
	}
}
