package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// DiffOptions relax TreeDiff. The zero value compares everything it
// knows: names, types, permission bits including setuid, setgid and
// sticky, owners, sizes, content, symlink targets and user.* xattrs.
// Modification times are never compared (ostree does not keep them).
type DiffOptions struct {
	// MaskSpecialBits ignores setuid, setgid and sticky (checkouts with -U
	// and the lazytree mount drop them).
	MaskSpecialBits bool
	// IgnoreOwner ignores uid and gid.
	IgnoreOwner bool
	// IgnoreXattrs ignores extended attributes.
	IgnoreXattrs bool
	// IgnoreRootMode ignores the mode and owner of the two top directories
	// themselves (for example t.TempDir's 0700 against a checkout's 0755).
	IgnoreRootMode bool
	// MaxDiffs caps how many differences are collected; 0 means 20.
	MaxDiffs int
}

// DiffKind names what differs.
type DiffKind string

// The kinds of difference TreeDiff reports.
const (
	DiffOnlyInA  DiffKind = "only in a"
	DiffOnlyInB  DiffKind = "only in b"
	DiffType     DiffKind = "type"
	DiffMode     DiffKind = "mode"
	DiffOwner    DiffKind = "owner"
	DiffSize     DiffKind = "size"
	DiffContent  DiffKind = "content"
	DiffSymlink  DiffKind = "symlink target"
	DiffXattr    DiffKind = "xattr"
	DiffReadFail DiffKind = "unreadable"
)

// Difference is one way in which the trees differ.
type Difference struct {
	// Path is relative to the tree roots, "." for the roots.
	Path string
	Kind DiffKind
	// A and B describe each side (a mode, a size, an xattr value...).
	A, B string
}

func (d Difference) String() string {
	if d.A == "" && d.B == "" {
		return fmt.Sprintf("%s: %s", d.Path, d.Kind)
	}
	return fmt.Sprintf("%s: %s: %s vs %s", d.Path, d.Kind, d.A, d.B)
}

// DiffError is TreeDiff's error when the trees differ.
type DiffError struct {
	A, B  string
	Diffs []Difference
	// Truncated says more differences were found than MaxDiffs.
	Truncated bool
}

func (e *DiffError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "trees %s and %s differ:", e.A, e.B)
	for _, d := range e.Diffs {
		b.WriteString("\n  ")
		b.WriteString(d.String())
	}
	if e.Truncated {
		b.WriteString("\n  (more differences not shown)")
	}
	return b.String()
}

// Has reports whether any collected difference is of kind k at path p
// (any path when p is empty).
func (e *DiffError) Has(k DiffKind, p string) bool {
	for _, d := range e.Diffs {
		if d.Kind == k && (p == "" || d.Path == p) {
			return true
		}
	}
	return false
}

// TreeDiff compares the trees rooted at a and b and returns nil when they
// are equal under opts, a *DiffError listing the first differences (in
// byte-wise path order) otherwise, or another error when a root cannot be
// read. Symlinks are compared, never followed.
func TreeDiff(a, b string, opts DiffOptions) error {
	if opts.MaxDiffs <= 0 {
		opts.MaxDiffs = 20
	}
	for _, root := range []string{a, b} {
		st, err := os.Lstat(root)
		if err != nil {
			return fmt.Errorf("tree diff: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("tree diff: %s is not a directory", root)
		}
	}
	d := &differ{a: a, b: b, opts: opts, err: &DiffError{A: a, B: b}}
	d.compare(".")
	if len(d.err.Diffs) == 0 {
		return nil
	}
	return d.err
}

type differ struct {
	a, b string
	opts DiffOptions
	err  *DiffError
}

// errFull stops the walk once MaxDiffs differences are collected.
var errFull = errors.New("enough differences")

func (d *differ) add(rel string, k DiffKind, a, b string) error {
	if len(d.err.Diffs) >= d.opts.MaxDiffs {
		d.err.Truncated = true
		return errFull
	}
	d.err.Diffs = append(d.err.Diffs, Difference{Path: rel, Kind: k, A: a, B: b})
	return nil
}

// compare compares the entry rel in both trees, recursing into
// directories. It returns errFull when no more differences are wanted.
func (d *differ) compare(rel string) error {
	pa, pb := filepath.Join(d.a, rel), filepath.Join(d.b, rel)
	sa, err := os.Lstat(pa)
	if err != nil {
		return d.add(rel, DiffReadFail, err.Error(), "")
	}
	sb, err := os.Lstat(pb)
	if err != nil {
		return d.add(rel, DiffReadFail, "", err.Error())
	}
	if ta, tb := sa.Mode().Type(), sb.Mode().Type(); ta != tb {
		return d.add(rel, DiffType, typeName(ta), typeName(tb))
	}
	isRoot := rel == "."
	if !(isRoot && d.opts.IgnoreRootMode) {
		if err := d.compareMeta(rel, pa, pb, sa, sb); err != nil {
			return err
		}
	}
	switch {
	case sa.Mode().Type() == fs.ModeSymlink:
		la, errA := os.Readlink(pa)
		lb, errB := os.Readlink(pb)
		if errA != nil || errB != nil {
			return d.add(rel, DiffReadFail, errString(errA), errString(errB))
		}
		if la != lb {
			return d.add(rel, DiffSymlink, strconvQuote(la), strconvQuote(lb))
		}
	case sa.Mode().IsRegular():
		if sa.Size() != sb.Size() {
			return d.add(rel, DiffSize, fmt.Sprint(sa.Size()), fmt.Sprint(sb.Size()))
		}
		if off, err := firstDifference(pa, pb); err != nil {
			return d.add(rel, DiffReadFail, err.Error(), "")
		} else if off >= 0 {
			return d.add(rel, DiffContent, fmt.Sprintf("first differing byte at offset %d", off), "")
		}
	case sa.IsDir():
		return d.compareDir(rel, pa, pb)
	}
	return nil
}

func (d *differ) compareDir(rel, pa, pb string) error {
	na, errA := dirNames(pa)
	nb, errB := dirNames(pb)
	if errA != nil || errB != nil {
		return d.add(rel, DiffReadFail, errString(errA), errString(errB))
	}
	// Merge the two sorted name lists.
	i, j := 0, 0
	for i < len(na) || j < len(nb) {
		var err error
		switch {
		case j == len(nb) || (i < len(na) && na[i] < nb[j]):
			err = d.add(filepath.Join(rel, na[i]), DiffOnlyInA, "", "")
			i++
		case i == len(na) || nb[j] < na[i]:
			err = d.add(filepath.Join(rel, nb[j]), DiffOnlyInB, "", "")
			j++
		default:
			err = d.compare(filepath.Join(rel, na[i]))
			i++
			j++
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *differ) compareMeta(rel, pa, pb string, sa, sb fs.FileInfo) error {
	if sa.Mode().Type() != fs.ModeSymlink { // symlink permissions mean nothing on Linux
		mask := fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
		if d.opts.MaskSpecialBits {
			mask = fs.ModePerm
		}
		if ma, mb := sa.Mode()&mask, sb.Mode()&mask; ma != mb {
			if err := d.add(rel, DiffMode, octal(ma), octal(mb)); err != nil {
				return err
			}
		}
	}
	if !d.opts.IgnoreOwner {
		ua, ub := owner(sa), owner(sb)
		if ua != ub {
			if err := d.add(rel, DiffOwner, ua, ub); err != nil {
				return err
			}
		}
	}
	if !d.opts.IgnoreXattrs {
		xa, errA := userXattrs(pa)
		xb, errB := userXattrs(pb)
		if errA != nil || errB != nil {
			return d.add(rel, DiffReadFail, errString(errA), errString(errB))
		}
		if xa != xb {
			return d.add(rel, DiffXattr, xa, xb)
		}
	}
	return nil
}

// firstDifference returns the offset of the first differing byte of two
// files of equal size, or -1 when they are equal.
func firstDifference(pa, pb string) (int64, error) {
	fa, err := os.Open(pa)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(pb)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	var off int64
	for {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		if na != nb {
			return off + int64(min(na, nb)), nil
		}
		if i := firstMismatch(ba[:na], bb[:nb]); i >= 0 {
			return off + int64(i), nil
		}
		off += int64(na)
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		if errA != nil && !endA {
			return 0, errA
		}
		if errB != nil && !endB {
			return 0, errB
		}
		if endA || endB {
			return -1, nil
		}
	}
}

func firstMismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// dirNames returns a directory's entry names sorted byte-wise, the order
// ostree uses.
func dirNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// noEINTR retries a system call that a signal interrupted. Go's os
// package does this for its own calls, x/sys does not; a FUSE mount
// answers an interrupted request (a SIGCHLD or the runtime's preemption
// signal reaching the thread that waits on a slow lookup) with EINTR, and
// the walk must not take that for a difference. The interrupted fetch
// goes on, so a retry joins it; 1,000 tries bound the loop.
func noEINTR(call func() (int, error)) (int, error) {
	for i := 0; ; i++ {
		n, err := call()
		if !errors.Is(err, unix.EINTR) || i == 1000 {
			return n, err
		}
	}
}

// userXattrs renders the user.* xattrs of p (not following symlinks) as
// one sorted, quoted string; file systems without xattrs give "".
func userXattrs(p string) (string, error) {
	size, err := noEINTR(func() (int, error) { return unix.Llistxattr(p, nil) })
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return "", nil
		}
		return "", fmt.Errorf("listxattr %s: %w", p, err)
	}
	if size == 0 {
		return "", nil
	}
	buf := make([]byte, size)
	size, err = noEINTR(func() (int, error) { return unix.Llistxattr(p, buf) })
	if err != nil {
		return "", fmt.Errorf("listxattr %s: %w", p, err)
	}
	var names []string
	for n := range strings.SplitSeq(string(buf[:size]), "\x00") {
		if strings.HasPrefix(n, "user.") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		v, err := getxattr(p, n)
		if err != nil {
			return "", err
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%q", n, v)
	}
	return b.String(), nil
}

func getxattr(p, name string) ([]byte, error) {
	for {
		size, err := noEINTR(func() (int, error) { return unix.Lgetxattr(p, name, nil) })
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		buf := make([]byte, size)
		n, err := noEINTR(func() (int, error) { return unix.Lgetxattr(p, name, buf) })
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		return buf[:n], nil
	}
}

func owner(st fs.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", s.Uid, s.Gid)
	}
	return "?"
}

// octal prints a mode the Unix way (04755), not os.FileMode's way.
func octal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

func typeName(t fs.FileMode) string {
	switch {
	case t == 0:
		return "regular file"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "char device"
	case t&fs.ModeDevice != 0:
		return "block device"
	}
	return t.String()
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }
