package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Checksums of the test-vector commits (testvectors/README.md, "Commits").
const (
	C1Checksum = "c27dc3c08eac29fffc6a2b4fdfe5cda3dd50ef3866b7c14e5eb9a2e999835c4c"
	C2Checksum = "9dc65a5c5a498a371f3c63892fdc7c02eec8e9cd7ee426f2cf9c605b554417ab"
)

// VectorCollectionID is the collection id of the test-vector repo. Commits
// made in a repo with a collection id get ostree.collection-binding, so C1
// and C2 only reproduce in a repo initialized with it.
const VectorCollectionID = "org.example.TestRepo"

// VectorCommit is how generate.sh made one of the test-vector commits:
// everything besides the tree that goes into the commit checksum.
type VectorCommit struct {
	// Checksum is the commit checksum `ostree commit` printed.
	Checksum string
	// Branch is the ref committed to (-b).
	Branch string
	// BindRefs are extra refs for ostree.ref-binding (--bind-ref); Branch
	// is always bound as well.
	BindRefs []string
	// Timestamp is the commit time in seconds since the epoch.
	Timestamp int64
	Subject   string
	Body      string
	// MetadataStrings are the --add-metadata-string K=V pairs in order.
	MetadataStrings [][2]string
	// Metadata are the --add-metadata K=V pairs in order; V is GVariant
	// text ("uint64 42").
	Metadata [][2]string
	// DetachedMetadataStrings are the --add-detached-metadata-string pairs;
	// they do not change the checksum.
	DetachedMetadataStrings [][2]string
	// GenerateSizes adds ostree.sizes (--generate-sizes).
	GenerateSizes bool
	// HasParent says the commit's parent is the previous commit on Branch
	// (C2's parent is C1), so it reproduces only after that one.
	HasParent bool
}

// VectorC1 describes C1, the first commit on exampleos/x86_64/stable, made
// from the tree BuildVectorTree writes.
func VectorC1() VectorCommit {
	return VectorCommit{
		Checksum:        C1Checksum,
		Branch:          "exampleos/x86_64/stable",
		BindRefs:        []string{"exampleos/x86_64/old"},
		Timestamp:       1704067200,
		Subject:         "Initial commit",
		Body:            "Body line 1\nBody line 2",
		MetadataStrings: [][2]string{{"version", "1.0"}},
		Metadata:        [][2]string{{"custom.u64", "uint64 42"}},
		GenerateSizes:   true,
	}
}

// VectorC2 describes C2, C1's child, made from the tree BuildVectorTree2
// writes.
func VectorC2() VectorCommit {
	return VectorCommit{
		Checksum:                C2Checksum,
		Branch:                  "exampleos/x86_64/stable",
		Timestamp:               1706745600,
		Subject:                 "Second commit",
		MetadataStrings:         [][2]string{{"version", "2.0"}, {"ostree.endoflife", "Test EOL message"}},
		DetachedMetadataStrings: [][2]string{{"custom.detached", "hello"}},
		HasParent:               true,
	}
}

// OstreeInitArgs returns the `ostree` arguments that create an archive repo
// like the test-vector repo (with its collection id) at repo.
func OstreeInitArgs(repo string) []string {
	return []string{"init", "--repo=" + repo, "--mode=archive", "--collection-id=" + VectorCollectionID}
}

// OstreeArgs returns the `ostree` arguments (starting with "commit") that
// commit tree to repo the way generate.sh did. Signing options are left
// out: signatures live in detached metadata and do not change the
// checksum.
func (c VectorCommit) OstreeArgs(repo, tree string) []string {
	args := []string{"commit", "--repo=" + repo, "-b", c.Branch}
	for _, r := range c.BindRefs {
		args = append(args, "--bind-ref="+r)
	}
	args = append(args, "--timestamp=@"+strconv.FormatInt(c.Timestamp, 10), "-s", c.Subject)
	if c.Body != "" {
		args = append(args, "-m", c.Body)
	}
	for _, kv := range c.MetadataStrings {
		args = append(args, "--add-metadata-string="+kv[0]+"="+kv[1])
	}
	for _, kv := range c.Metadata {
		args = append(args, "--add-metadata="+kv[0]+"="+kv[1])
	}
	for _, kv := range c.DetachedMetadataStrings {
		args = append(args, "--add-detached-metadata-string="+kv[0]+"="+kv[1])
	}
	if c.GenerateSizes {
		args = append(args, "--generate-sizes")
	}
	return append(args, tree)
}

// C1CommitArgs returns the `ostree` arguments that commit tree (built by
// BuildVectorTree) to repo (made with OstreeInitArgs) as C1:
//
//	ostree commit --repo=REPO -b exampleos/x86_64/stable
//	    --bind-ref=exampleos/x86_64/old --timestamp=@1704067200
//	    -s 'Initial commit' -m $'Body line 1\nBody line 2'
//	    --add-metadata-string=version=1.0
//	    '--add-metadata=custom.u64=uint64 42' --generate-sizes TREE
func C1CommitArgs(repo, tree string) []string { return VectorC1().OstreeArgs(repo, tree) }

// BuildVectorTree writes the test-vector content tree of C1 into dir
// (created if missing), byte for byte, mode for mode, owner for owner and
// xattr for xattr as generate.sh does, so that committing it with
// C1CommitArgs gives C1Checksum. It needs root (one file is owned by
// 1000:1000) and a file system with user xattrs; without them the test is
// skipped, or failed under CI.
func BuildVectorTree(t testing.TB, dir string) {
	t.Helper()
	buildVectorTree(t, dir, 1)
}

// BuildVectorTree2 writes C2's tree: C1's with README and the two binary
// files changed, alpha removed and new-in-v2.txt added.
func BuildVectorTree2(t testing.TB, dir string) {
	t.Helper()
	buildVectorTree(t, dir, 2)
}

func buildVectorTree(t testing.TB, dir string, version int) {
	t.Helper()
	RequireRoot(t)
	if err := WriteVectorTree(dir, version); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			SkipOrFail(t, "build vector tree: %v", err)
		}
		t.Fatalf("build vector tree: %v", err)
	}
}

// WriteVectorTree is BuildVectorTree (version 1) or BuildVectorTree2
// (version 2) for code without a testing.TB, such as benchmarks' setup
// and tools. It returns the first error.
func WriteVectorTree(dir string, version int) error {
	if version != 1 && version != 2 {
		return fmt.Errorf("vector tree version %d: want 1 or 2", version)
	}
	w := treeWriter{root: dir}
	// Same order as generate.sh's mktree. Directory modes are set at the
	// end, as there, so that building never needs write access it lacks.
	w.mkdir("bin", "sub/dir", "emptydir")
	if version == 1 {
		w.file("README", 0o644, []byte("Hello, OSTree!\n"))
	} else {
		w.file("README", 0o644, []byte("Hello, OSTree! (v2)\n"))
	}
	w.file("empty", 0o644, nil)
	w.file("bin/hello.sh", 0o755, []byte("#!/bin/sh\necho hello\n"))
	w.file("bin/suid", 0o4755, []byte("setuid test\n"))
	w.symlink("README", "link-to-readme")
	w.symlink("/usr/bin/env", "bin/abs-link")
	w.file("sub/dir/nested.txt", 0o600, []byte("nested\n"))
	w.chown("sub/dir/nested.txt", 1000, 1000)
	w.chmod("sub", 0o750)
	w.file("xattr.txt", 0o644, []byte("has xattrs\n"))
	// Set in reverse order on purpose: ostree stores xattrs sorted.
	w.setxattr("xattr.txt", "user.zz-last", "z")
	w.setxattr("xattr.txt", "user.ostree-test", "value-1")
	w.setxattr("sub/dir", "user.dirattr", "dir-xattr")
	w.file("ünïcode.txt", 0o644, []byte("unicode name\n"))
	w.file("Zeta", 0o644, []byte("upper\n"))
	w.file("_under", 0o644, []byte("under\n"))
	if version == 1 {
		w.file("alpha", 0o644, []byte("lower\n"))
	}
	w.file("big.bin", 0o644, VectorBigBin(version))
	w.file("rollsum.bin", 0o644, VectorRollsumBin(version))
	if version == 2 {
		w.file("new-in-v2.txt", 0o644, []byte("new in v2\n"))
	}
	w.chmod(".", 0o755)
	w.chmod("bin", 0o755)
	w.chmod("emptydir", 0o755)
	w.chmod("sub/dir", 0o755)
	return w.err
}

// VectorBigBin returns big.bin of the given tree version: 1 MiB of lines
// "%08d <sha256 hex of (i mod 97) in decimal>\n", cut at 1 MiB; version 2
// has 16 bytes replaced at three offsets.
func VectorBigBin(version int) []byte {
	const size = 1 << 20
	out := make([]byte, 0, size+128)
	for i := 0; len(out) < size; i++ {
		sum := sha256.Sum256([]byte(strconv.Itoa(i % 97)))
		out = fmt.Appendf(out, "%08d %s\n", i, hex.EncodeToString(sum[:]))
	}
	out = out[:size]
	if version == 2 {
		for _, off := range []int{1000, 300000, 700000} {
			copy(out[off:off+16], "CHANGED-IN-V2!!\n")
		}
	}
	return out
}

// VectorRollsumBin returns rollsum.bin of the given tree version: 256 KiB
// of sha256("rollsum-<i>") digests; version 2 has 8 bytes set to 0xff at
// three offsets.
func VectorRollsumBin(version int) []byte {
	const size = 256 * 1024
	out := make([]byte, 0, size)
	for i := 0; len(out) < size; i++ {
		sum := sha256.Sum256([]byte("rollsum-" + strconv.Itoa(i)))
		out = append(out, sum[:]...)
	}
	if version == 2 {
		for _, off := range []int{5000, 100000, 200000} {
			for j := range 8 {
				out[off+j] = 0xff
			}
		}
	}
	return out
}

// treeWriter keeps the first error so that a tree reads as a list of
// steps.
type treeWriter struct {
	root string
	err  error
}

func (w *treeWriter) path(rel string) string { return filepath.Join(w.root, filepath.FromSlash(rel)) }

func (w *treeWriter) do(op, rel string, f func(p string) error) {
	if w.err != nil {
		return
	}
	if err := f(w.path(rel)); err != nil {
		w.err = fmt.Errorf("%s %s: %w", op, rel, err)
	}
}

func (w *treeWriter) mkdir(rels ...string) {
	for _, rel := range rels {
		w.do("mkdir", rel, func(p string) error { return os.MkdirAll(p, 0o755) })
	}
}

func (w *treeWriter) file(rel string, mode os.FileMode, data []byte) {
	w.do("write", rel, func(p string) error {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		return os.Chmod(p, unixMode(mode))
	})
}

func (w *treeWriter) symlink(target, rel string) {
	w.do("symlink", rel, func(p string) error { return os.Symlink(target, p) })
}

func (w *treeWriter) chown(rel string, uid, gid int) {
	w.do("chown", rel, func(p string) error { return os.Lchown(p, uid, gid) })
}

func (w *treeWriter) chmod(rel string, mode os.FileMode) {
	w.do("chmod", rel, func(p string) error { return os.Chmod(p, unixMode(mode)) })
}

func (w *treeWriter) setxattr(rel, name, value string) {
	w.do("setxattr "+name, rel, func(p string) error { return unix.Lsetxattr(p, name, []byte(value), 0) })
}

// unixMode turns the octal notation used in this package (0o4755) into an
// os.FileMode, whose setuid, setgid and sticky bits are not the Unix ones.
func unixMode(m os.FileMode) os.FileMode {
	out := m & os.ModePerm
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}
