package fusefs_test

// Tier 2: real mounts in t.TempDir(), unmounted (by mount point) in
// t.Cleanup, over internal/reposource.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/reposource"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

// requireFUSE skips (fails under CI) without a usable /dev/fuse and root,
// which mounting without fusermount needs.
func requireFUSE(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		testutil.SkipOrFail(t, "no usable /dev/fuse: %v", err)
		return
	}
	f.Close()
	testutil.RequireRoot(t)
}

// mountSource mounts src in a fresh directory and unmounts it (and checks
// that nothing is left mounted there) when the test ends.
func mountSource(t testing.TB, src fusefs.Source, opts fusefs.Options) (*fusefs.Server, string) {
	t.Helper()
	requireFUSE(t)
	mnt := t.TempDir()
	srv, err := fusefs.Mount(mnt, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if err := fusefs.Unmount(mnt); err != nil {
			t.Errorf("unmount by mount point: %v", err)
		}
		if isMounted(t, mnt) {
			t.Errorf("%s is still mounted", mnt)
		}
	})
	return srv, mnt
}

func isMounted(t testing.TB, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// vectorSource serves copies of both test-vector repositories as remotes
// "vectors" (repo) and "flatpak" (flatpak-repo).
func vectorSource(t testing.TB) (*reposource.Source, map[string]string) {
	t.Helper()
	dirs := map[string]string{
		"vectors": testutil.CopyVectorRepo(t, "repo"),
		"flatpak": testutil.CopyVectorRepo(t, "flatpak-repo"),
	}
	src, err := reposource.New(t.TempDir(), dirs)
	if err != nil {
		t.Fatal(err)
	}
	return src, dirs
}

// commitTree commits dir to branch of a new (or existing) archive repo and
// returns the repo directory and the commit.
func commitTree(t testing.TB, repoDir, tree, branch string) (string, ostree.Checksum) {
	t.Helper()
	var r *repo.Repo
	var err error
	if repoDir == "" {
		repoDir = filepath.Join(t.TempDir(), "repo")
		r, err = repo.Init(repoDir, "")
	} else {
		r, err = repo.Open(repoDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.CommitDir(context.Background(), tree, repo.CommitOptions{Branch: branch, Subject: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return repoDir, res.Checksum
}

func readStatus(t testing.TB, mnt string) fusefs.Status {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, ".lazytree/status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st fusefs.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status.json: %v\n%s", err, b)
	}
	return st
}

func TestMountEqualsCheckout(t *testing.T) {
	testutil.RequireTool(t, "ostree")
	src, dirs := vectorSource(t)
	_, mnt := mountSource(t, src, fusefs.Options{})
	n := 0
	for _, remote := range []string{"vectors", "flatpak"} {
		r, err := repo.Open(dirs[remote])
		if err != nil {
			t.Fatal(err)
		}
		refs, err := r.Refs()
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range repo.SortedRefs(refs) {
			t.Run(remote+":"+ref, func(t *testing.T) {
				co := filepath.Join(t.TempDir(), "checkout")
				testutil.Run(t, "", nil, "ostree", "checkout", "--repo="+dirs[remote], ref, co)
				if err := testutil.TreeDiff(co, filepath.Join(mnt, remote, ref), testutil.DiffOptions{MaskSpecialBits: true}); err != nil {
					t.Error(err)
				}
				// The same commit by checksum.
				byCommit := filepath.Join(mnt, ".commits", refs[ref].String())
				if err := testutil.TreeDiff(co, byCommit, testutil.DiffOptions{MaskSpecialBits: true}); err != nil {
					t.Error(err)
				}
			})
			n++
		}
	}
	if n < 5 {
		t.Errorf("only %d refs compared", n)
	}
	// The setuid bit, masked in the comparison, is dropped by the mount.
	st, err := os.Lstat(filepath.Join(mnt, "vectors/exampleos/x86_64/stable/bin/suid"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 || st.Mode().Perm() != 0o755 {
		t.Errorf("bin/suid mode %v", st.Mode())
	}
	// Everything read was verified; nothing failed.
	if s := readStatus(t, mnt); s.FS.Errors != 0 {
		t.Errorf("errors during the walk: %+v", s.FS.LastErrors)
	}
}

func TestLayout(t *testing.T) {
	src, dirs := vectorSource(t)
	_, mnt := mountSource(t, src, fusefs.Options{})
	// names lists a directory: directories with a trailing slash.
	names := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(mnt, dir))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, e.Name()+"/")
			} else {
				out = append(out, e.Name())
			}
		}
		return out
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"", []string{".commits/", ".lazytree/", "flatpak/", "vectors/"}},
		{".lazytree", []string{"refs.json", "status.json"}},
		{"flatpak", []string{"app/", "runtime/"}},
		{"vectors", []string{"exampleos/", "ostree-metadata/"}},
		{"flatpak/app/org.example.Hello/x86_64", []string{"stable/"}},
		{"flatpak/app/org.example.Hello/x86_64/stable", []string{"export/", "files/", "metadata"}},
	} {
		if got := names(tc.dir); !slices.Equal(got, tc.want) {
			t.Errorf("%s/ lists %q, want %q", tc.dir, got, tc.want)
		}
	}
	// refs.json: every ref with the commit its directory shows.
	b, err := os.ReadFile(filepath.Join(mnt, ".lazytree", "refs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refs map[string]map[string]string
	if err := json.Unmarshal(b, &refs); err != nil {
		t.Fatalf("refs.json: %v\n%s", err, b)
	}
	if c := refs["flatpak"]["app/org.example.Hello/x86_64/stable"]; len(c) != 64 {
		t.Errorf("refs.json has no commit for flatpak:app/org.example.Hello/x86_64/stable:\n%s", b)
	}
	r, _ := repo.Open(dirs["vectors"])
	stable, _, _ := r.ResolveRef("exampleos/x86_64/stable")
	if _, err := os.Stat(filepath.Join(mnt, "vectors/exampleos/x86_64/stable")); err != nil {
		t.Fatal(err)
	}
	if got := names(".commits"); !slices.Contains(got, stable.String()+"/") {
		t.Errorf(".commits lists %q, want the commit just used", got)
	}
	for _, p := range []string{"nope", "vectors/nope", ".commits/nope", ".commits/" + strings.Repeat("0", 64)} {
		if _, err := os.Stat(filepath.Join(mnt, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %s: %v, want ENOENT", p, err)
		}
	}

	// Read-only, nosuid, nodev, allow_other, default_permissions.
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.SplitSeq(string(info), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == mnt {
			line = l
		}
	}
	for _, opt := range []string{"ro", "nosuid", "nodev", "allow_other", "default_permissions"} {
		if !strings.Contains(line, opt) {
			t.Errorf("mount lacks %s: %s", opt, line)
		}
	}
	for _, err := range []error{
		os.WriteFile(filepath.Join(mnt, "vectors/exampleos/x86_64/stable/README"), []byte("x"), 0o644),
		os.Mkdir(filepath.Join(mnt, "vectors/exampleos/x86_64/stable/newdir"), 0o755),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("write: %v, want EROFS", err)
		}
	}
}

// TestColdReadTouchesOnlyItsPath reads one file from a cold mount and
// checks that the only content object read is that file's, and that the
// only metadata read is on its path.
func TestColdReadTouchesOnlyItsPath(t *testing.T) {
	src, dirs := vectorSource(t)
	_, mnt := mountSource(t, src, fusefs.Options{})

	// What the path needs: commit, root and bin dirtrees and dirmetas, and
	// the file.
	r, _ := repo.Open(dirs["vectors"])
	commit, _, _ := r.ResolveRef("exampleos/x86_64/stable")
	cm, _, err := r.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	rootTree := decodeTree(t, r, cm.RootTree)
	bin, _ := rootTree.LookupDir("bin")
	hello, _ := decodeTree(t, r, bin.Tree).LookupFile("hello.sh")
	onPath := map[reposource.Read]bool{
		{Type: ostree.ObjCommit, Checksum: commit}:       true,
		{Type: ostree.ObjDirTree, Checksum: cm.RootTree}: true,
		{Type: ostree.ObjDirMeta, Checksum: cm.RootMeta}: true,
		{Type: ostree.ObjDirTree, Checksum: bin.Tree}:    true,
		{Type: ostree.ObjDirMeta, Checksum: bin.Meta}:    true,
		{Type: ostree.ObjFile, Checksum: hello.Checksum}: true,
	}

	got, err := os.ReadFile(filepath.Join(mnt, "vectors/exampleos/x86_64/stable/bin/hello.sh"))
	if err != nil || string(got) != "#!/bin/sh\necho hello\n" {
		t.Fatalf("read: %q %v", got, err)
	}
	var content int
	for _, rd := range src.Reads() {
		if !onPath[rd] {
			t.Errorf("read %s, which is not on the path", ostree.ObjectName(rd.Checksum, rd.Type))
		}
		if rd.Type == ostree.ObjFile {
			content++
		}
	}
	if content != 1 {
		t.Errorf("%d content objects read, want 1", content)
	}
	if acc := src.Accesses(); len(acc) != 1 || acc[0].Commit != commit || acc[0].Path != "bin/hello.sh" {
		t.Errorf("accesses %+v", acc)
	}
}

func decodeTree(t testing.TB, r *repo.Repo, c ostree.Checksum) *ostree.DirTree {
	t.Helper()
	b, err := r.ReadObject(c, ostree.ObjDirTree)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := ostree.DecodeDirTree(b)
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// hostBinary finds a program to copy into a test tree.
func hostBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(testutil.RequireTool(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// runFromMount runs a program that lives in the mount. The fork happens
// here, but the exec of the mount's file happens in /bin/sh, a process
// that shares nothing with this one: Go forks with vfork, and a vfork
// child that execs a file from this process's own FUSE mount deadlocks it
// (the parent thread is stopped in a raw syscall, so a stop-the-world
// never completes and the request that exec waits for is never served).
func runFromMount(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `exec "$0" "$@"`, prog}, args...)...)
	return cmd.CombinedOutput()
}

// TestRunFromMount runs an ELF binary and a script that live in the
// mount, each in a child process (never in the serving process).
func TestRunFromMount(t *testing.T) {
	tree := t.TempDir()
	copyFile(t, hostBinary(t, "echo"), filepath.Join(tree, "bin/echo"), 0o755)
	if err := os.WriteFile(filepath.Join(tree, "bin/hello.sh"), []byte("#!/bin/sh\nexec \"$(dirname \"$0\")/echo\" hello from \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	repoDir, _ := commitTree(t, "", tree, "app/test/x86_64/stable")
	for _, passthrough := range []bool{true, false} {
		t.Run(fmt.Sprintf("passthrough=%v", passthrough), func(t *testing.T) {
			src, err := reposource.New(t.TempDir(), map[string]string{"local": repoDir})
			if err != nil {
				t.Fatal(err)
			}
			_, mnt := mountSource(t, src, fusefs.Options{NoPassthrough: !passthrough, PassthroughMin: -1})
			bin := filepath.Join(mnt, "local/app/test/x86_64/stable/bin")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := runFromMount(ctx, filepath.Join(bin, "echo"), "direct")
			if err != nil || string(out) != "direct\n" {
				t.Errorf("echo from the mount: %q %v", out, err)
			}
			out, err = runFromMount(ctx, filepath.Join(bin, "hello.sh"), "script")
			if err != nil || string(out) != "hello from script\n" {
				t.Errorf("script from the mount: %q %v", out, err)
			}
		})
	}
}

// TestChildrenDoNotInheritTheConnection checks that a program the daemon
// starts holds no /dev/fuse descriptor.
func TestChildrenDoNotInheritTheConnection(t *testing.T) {
	src, _ := vectorSource(t)
	mountSource(t, src, fusefs.Options{})
	out, err := exec.Command("/bin/sh", "-c", `for f in /proc/$$/fd/*; do readlink "$f"; done; true`).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Errorf("a child inherited the FUSE connection:\n%s", out)
	}
}

// tamper replaces a content object with a well-formed .filez of other
// content (so only the checksum gives it away) and returns a function that
// puts the original back.
func tamper(t testing.TB, repoDir string, c ostree.Checksum) (restore func()) {
	t.Helper()
	p := filepath.Join(repoDir, ostree.ObjectPath(c, ostree.ObjFile, true))
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := ostree.NewContentReader(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	h := *cr.Header
	evil := []byte("tampered content\n")
	h.Size = uint64(len(evil))
	var buf bytes.Buffer
	if _, err := ostree.WriteArchive(&buf, &h, bytes.NewReader(evil), 6); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fileChecksum(t testing.TB, repoDir, ref string, path ...string) ostree.Checksum {
	t.Helper()
	r, err := repo.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	commit, _, _ := r.ResolveRef(ref)
	cm, _, err := r.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	dt := decodeTree(t, r, cm.RootTree)
	for _, d := range path[:len(path)-1] {
		sub, ok := dt.LookupDir(d)
		if !ok {
			t.Fatalf("no directory %s", d)
		}
		dt = decodeTree(t, r, sub.Tree)
	}
	f, ok := dt.LookupFile(path[len(path)-1])
	if !ok {
		t.Fatalf("no file %s", path[len(path)-1])
	}
	return f.Checksum
}

func TestCorruptObjectIsEIO(t *testing.T) {
	src, dirs := vectorSource(t)
	_, mnt := mountSource(t, src, fusefs.Options{})
	c := fileChecksum(t, dirs["vectors"], "exampleos/x86_64/stable", "README")
	restore := tamper(t, dirs["vectors"], c)
	p := filepath.Join(mnt, "vectors/exampleos/x86_64/stable/README")

	got, err := os.ReadFile(p)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a tampered object: %q, %v; want EIO", got, err)
	}
	st := readStatus(t, mnt)
	found := false
	for _, e := range st.FS.LastErrors {
		if e.Object == ostree.ObjectName(c, ostree.ObjFile) && e.Errno == "EIO" && strings.Contains(e.Cause, "checksum") {
			found = true
		}
	}
	if !found {
		t.Errorf("status.json has no entry for %s: %+v", c, st.FS.LastErrors)
	}

	// Repaired at the source: the same path works without a remount.
	restore()
	got, err = os.ReadFile(p)
	if err != nil || string(got) != "Hello, OSTree! (v2)\n" {
		t.Errorf("after repair: %q %v", got, err)
	}
}

// stallingSource never answers FileHeader or Open for one object (and
// ignores its context while at it), to check that nothing hangs.
type stallingSource struct {
	*reposource.Source
	stall   ostree.Checksum
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (s *stallingSource) wait(c ostree.Checksum) {
	if c == s.stall {
		s.once.Do(func() { close(s.entered) })
		<-s.release
	}
}

func (s *stallingSource) FileHeader(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.FileHeader, error) {
	s.wait(c)
	return s.Source.FileHeader(ctx, via, c)
}

func (s *stallingSource) Open(ctx context.Context, via fusefs.Via, c ostree.Checksum) (fusefs.File, error) {
	s.wait(c)
	return s.Source.Open(ctx, via, c)
}

func TestStalledSourceGivesEIOWithinDeadline(t *testing.T) {
	inner, dirs := vectorSource(t)
	src := &stallingSource{
		Source:  inner,
		stall:   fileChecksum(t, dirs["vectors"], "exampleos/x86_64/stable", "big.bin"),
		release: make(chan struct{}),
		entered: make(chan struct{}),
	}
	t.Cleanup(func() { close(src.release) })
	const deadline = time.Second
	_, mnt := mountSource(t, src, fusefs.Options{RequestTimeout: deadline})
	ref := filepath.Join(mnt, "vectors/exampleos/x86_64/stable")
	if _, err := os.ReadFile(filepath.Join(ref, "README")); err != nil { // warm
		t.Fatal(err)
	}

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(filepath.Join(ref, "big.bin"))
		done <- err
	}()
	<-src.entered
	// Meanwhile, cached and cold reads are served.
	for _, name := range []string{"README", "xattr.txt", "bin/hello.sh"} {
		if _, err := os.ReadFile(filepath.Join(ref, name)); err != nil {
			t.Errorf("read %s while another request stalls: %v", name, err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the stalled read ended before the other reads were done checking: %v", err)
	default:
	}
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("stalled read: %v, want EIO", err)
		}
		if d := time.Since(start); d < deadline || d > deadline+10*time.Second {
			t.Errorf("stalled read took %v with a %v deadline", d, deadline)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled read hung")
	}
	st := readStatus(t, mnt)
	if st.FS.Timeouts != 1 || len(st.FS.LastErrors) == 0 || !strings.HasSuffix(st.FS.LastErrors[0].Path, "/big.bin") {
		t.Errorf("status: timeouts %d, errors %+v", st.FS.Timeouts, st.FS.LastErrors)
	}
}

func TestInterruptCancelsWait(t *testing.T) {
	inner, dirs := vectorSource(t)
	src := &stallingSource{
		Source:  inner,
		stall:   fileChecksum(t, dirs["vectors"], "exampleos/x86_64/stable", "big.bin"),
		release: make(chan struct{}),
		entered: make(chan struct{}),
	}
	t.Cleanup(func() { close(src.release) })
	_, mnt := mountSource(t, src, fusefs.Options{RequestTimeout: time.Hour})
	cmd := exec.Command("cat", filepath.Join(mnt, "vectors/exampleos/x86_64/stable/big.bin"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.entered:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("cat never reached the source")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("an interrupted request did not end")
	}
	deadline := time.Now().Add(10 * time.Second)
	for readStatus(t, mnt).FS.Interrupts == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the interrupt never reached fusefs")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConcurrentReaders(t *testing.T) {
	tree := t.TempDir()
	if err := testutil.GenTree(tree, 300, 8<<20, 7); err != nil {
		t.Fatal(err)
	}
	repoDir, _ := commitTree(t, "", tree, "gen")
	type want struct {
		rel string
		sum [32]byte
	}
	var files []want
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(tree, p)
			files = append(files, want{rel, sha256.Sum256(b)})
		}
		return err
	})
	for _, passthrough := range []bool{true, false} {
		t.Run(fmt.Sprintf("passthrough=%v", passthrough), func(t *testing.T) {
			src, err := reposource.New(t.TempDir(), map[string]string{"gen": repoDir})
			if err != nil {
				t.Fatal(err)
			}
			_, mnt := mountSource(t, src, fusefs.Options{NoPassthrough: !passthrough, PassthroughMin: -1})
			root := filepath.Join(mnt, "gen/gen")
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 64 {
				wg.Go(func() {
					// Every reader reads every eighth file from its own
					// starting point, so each file has 8 readers at
					// overlapping times.
					for i := g % 8; i < len(files); i += 8 {
						f := files[(i+g)%len(files)]
						b, err := os.ReadFile(filepath.Join(root, f.rel))
						if err != nil {
							errs <- err
							return
						}
						if sha256.Sum256(b) != f.sum {
							errs <- fmt.Errorf("%s: wrong bytes", f.rel)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for c, n := range src.Loads() {
				if n != 1 {
					t.Errorf("%s inflated %d times", c, n)
				}
			}
			if src.OpenFiles() != 0 {
				// The kernel releases asynchronously after close.
				deadline := time.Now().Add(10 * time.Second)
				for src.OpenFiles() != 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := src.OpenFiles(); n != 0 {
					t.Errorf("%d files still open", n)
				}
			}
		})
	}
}

func TestRefMoveKeepsOpenFiles(t *testing.T) {
	tree := t.TempDir()
	os.WriteFile(filepath.Join(tree, "version"), []byte("one\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "only-in-one"), nil, 0o644)
	repoDir, first := commitTree(t, "", tree, "os/x86_64/stable")
	src, err := reposource.New(t.TempDir(), map[string]string{"local": repoDir})
	if err != nil {
		t.Fatal(err)
	}
	// A long ref timeout: only Refresh can make the move visible in time.
	srv, mnt := mountSource(t, src, fusefs.Options{RefTimeout: time.Hour})
	refDir := filepath.Join(mnt, "local/os/x86_64/stable")

	old, err := os.Open(filepath.Join(refDir, "version"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldDir, err := os.Open(refDir)
	if err != nil {
		t.Fatal(err)
	}
	defer oldDir.Close()

	os.WriteFile(filepath.Join(tree, "version"), []byte("two\n"), 0o644)
	os.Remove(filepath.Join(tree, "only-in-one"))
	_, second := commitTree(t, repoDir, tree, "os/x86_64/stable")
	if second == first {
		t.Fatal("the second commit is the first")
	}
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(refDir, "version")); err != nil || string(b) != "two\n" {
		t.Errorf("after the move: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(refDir, "only-in-one")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file of the old commit is still visible: %v", err)
	}
	b := make([]byte, 16)
	if n, err := old.ReadAt(b, 0); string(b[:n]) != "one\n" {
		t.Errorf("the open file now reads %q (%v)", b[:n], err)
	}
	names, err := oldDir.Readdirnames(-1)
	if err != nil || !slices.Contains(names, "only-in-one") {
		t.Errorf("the open directory now lists %q (%v)", names, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, ".commits", first.String(), "only-in-one")); err != nil {
		t.Errorf("the old commit by checksum: %v", err)
	}
}

func TestPassthrough(t *testing.T) {
	src, dirs := vectorSource(t)
	want := testutil.VectorBigBin(2)
	_ = dirs
	for _, passthrough := range []bool{true, false} {
		t.Run(fmt.Sprintf("passthrough=%v", passthrough), func(t *testing.T) {
			srv, mnt := mountSource(t, src, fusefs.Options{NoPassthrough: !passthrough, PassthroughMin: -1})
			got, err := os.ReadFile(filepath.Join(mnt, "vectors/exampleos/x86_64/stable/big.bin"))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read big.bin: %d bytes, %v", len(got), err)
			}
			st := srv.Status().FS
			t.Logf("kernel offers passthrough: %v; reads through the daemon: %d (%d bytes); backing files: %d",
				st.PassthroughKernel, st.Ops["read"], st.BytesServed, st.PassthroughFiles)
			switch {
			case passthrough && st.PassthroughKernel:
				if st.Ops["read"] != 0 || st.PassthroughFiles == 0 {
					t.Errorf("passthrough on, yet %d reads reached the daemon", st.Ops["read"])
				}
			case passthrough:
				testutil.SkipOrFail(t, "the kernel does not offer FUSE passthrough")
			default:
				if st.BytesServed != uint64(len(want)) || st.PassthroughFiles != 0 {
					t.Errorf("passthrough off: %d bytes served, %d backing files", st.BytesServed, st.PassthroughFiles)
				}
			}
		})
	}
}

func TestHiddenCapabilities(t *testing.T) {
	tree := t.TempDir()
	p := filepath.Join(tree, "ping")
	if err := os.WriteFile(p, []byte("binary"), 0o4755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o4755)
	// VFS_CAP_REVISION_2 granting CAP_NET_RAW (bit 13), permitted and
	// effective.
	capv2 := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	// Setting security.capability needs CAP_SETFCAP; CI runs as root on
	// a file system with xattrs, so there a failure is a broken setup.
	testutil.RequireRoot(t)
	if err := unix.Setxattr(p, "security.capability", capv2, 0); err != nil {
		testutil.SkipOrFail(t, "cannot set security.capability here: %v", err)
	}
	if err := unix.Setxattr(p, "user.kept", []byte("yes"), 0); err != nil {
		testutil.SkipOrFail(t, "no user xattrs here: %v", err)
	}
	repoDir, _ := commitTree(t, "", tree, "caps")
	src, err := reposource.New(t.TempDir(), map[string]string{"local": repoDir})
	if err != nil {
		t.Fatal(err)
	}
	_, mnt := mountSource(t, src, fusefs.Options{})
	mp := filepath.Join(mnt, "local/caps/ping")
	buf := make([]byte, 256)
	n, err := unix.Llistxattr(mp, buf)
	if err != nil || string(buf[:n]) != "user.kept\x00" {
		t.Errorf("listxattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(mp, "security.capability", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("getxattr security.capability: %v, want ENODATA", err)
	}
	if n, err := unix.Lgetxattr(mp, "user.kept", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("getxattr user.kept: %q %v", buf[:n], err)
	}
	st, err := os.Stat(mp)
	if err != nil || st.Mode() != 0o755 {
		t.Errorf("mode %v (%v), want -rwxr-xr-x", st.Mode(), err)
	}
}

func TestStatusJSON(t *testing.T) {
	src, _ := vectorSource(t)
	_, mnt := mountSource(t, src, fusefs.Options{})
	if _, err := os.ReadFile(filepath.Join(mnt, "vectors/exampleos/x86_64/stable/README")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(mnt, ".lazytree/status.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	doc := map[string]map[string]any{}
	for _, k := range []string{"fusefs", "source"} {
		var m map[string]any
		if err := json.Unmarshal(raw[k], &m); err != nil {
			t.Fatalf("status.json %s: %v\n%s", k, err, b)
		}
		doc[k] = m
	}
	for _, k := range []string{"ops", "errors", "bytes_served", "opens", "last_errors", "passthrough_kernel"} {
		if _, ok := doc["fusefs"][k]; !ok {
			t.Errorf("status.json lacks fusefs.%s", k)
		}
	}
	if doc["source"]["calls_open"] == nil || doc["fusefs"]["opens"].(float64) < 1 {
		t.Errorf("status.json: %s", b)
	}
	// Regenerated on open: a second read sees the first open counted.
	b2, _ := os.ReadFile(filepath.Join(mnt, ".lazytree/status.json"))
	if bytes.Equal(b, b2) {
		t.Error("status.json did not change between opens")
	}
}

// refutingSource serves one object as a StreamingFile that is refuted
// on demand: its bytes become bad (the daemon would fail its reads)
// and Refuted closes, as fetch's PartialFile does when a lying index's
// chunks all matched but the whole object did not.
type refutingSource struct {
	*reposource.Source
	target  ostree.Checksum
	refuted chan struct{}
	bad     atomic.Bool
}

type refutingFile struct {
	fusefs.File
	s *refutingSource
}

func (f *refutingFile) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if f.s.bad.Load() {
		return 0, fmt.Errorf("refuted: %w", ostree.ErrCorrupt)
	}
	return f.File.ReadAt(p, off)
}

func (f *refutingFile) Refuted() <-chan struct{} { return f.s.refuted }

func (s *refutingSource) Open(ctx context.Context, via fusefs.Via, c ostree.Checksum) (fusefs.File, error) {
	f, err := s.Source.Open(ctx, via, c)
	if err != nil || c != s.target {
		return f, err
	}
	return &refutingFile{File: f, s: s}, nil
}

// TestRefutedPagesAreDropped: when a file served before it was whole is
// refuted, the pages the kernel cached from it go at once, so a reader
// that keeps its descriptor open does not go on reading them (issue 15).
func TestRefutedPagesAreDropped(t *testing.T) {
	tree := t.TempDir()
	data := bytes.Repeat([]byte("verified by chunk only\n"), 8<<10)
	if err := os.WriteFile(filepath.Join(tree, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	repoDir, _ := commitTree(t, "", tree, "r")
	base, err := reposource.New(t.TempDir(), map[string]string{"x": repoDir})
	if err != nil {
		t.Fatal(err)
	}
	src := &refutingSource{Source: base, target: fileChecksum(t, repoDir, "r", "big"), refuted: make(chan struct{})}
	_, mnt := mountSource(t, src, fusefs.Options{NoPassthrough: true})
	f, err := os.Open(filepath.Join(mnt, "x/r/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	// Cached now: a second read of the same page is the kernel's.
	src.bad.Store(true)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("a cached page went to the daemon: %v", err)
	}
	close(src.refuted)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := f.ReadAt(buf, 0)
		if errors.Is(err, syscall.EIO) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refuted page is still served from the page cache: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
