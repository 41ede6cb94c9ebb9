package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// largePub is a repo with one large file, exported with a tree index.
type largePub struct {
	pub     string
	content []byte
	entry   *treeindex.File
	rel     string // the file's path under the ref
}

// publishLarge commits a size-byte file of host programs (and a small
// file) with lazytree, signed, and exports it with a tree index.
func publishLarge(t testing.TB, dir string, size int64) *largePub {
	t.Helper()
	src := filepath.Join(dir, "src")
	rel := "files/lib/libbig.so"
	if err := os.MkdirAll(filepath.Join(src, "files/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteHostBlob(filepath.Join(src, rel), size); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "files/hello"), []byte("hello\n"), 0o644)
	pub := filepath.Join(dir, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "os/x86_64/stable", "--gpg-sign", secret, src)
	lt(t, "export", "--repo", pub, "--gpg-sign", secret, "--tree-index")
	content, err := os.ReadFile(filepath.Join(src, rel))
	if err != nil {
		t.Fatal(err)
	}
	return &largePub{pub: pub, content: content, entry: indexEntryOfSize(t, pub, uint64(size)), rel: rel}
}

// indexEntryOfSize finds, in the tree index the summary of pub names,
// the content entry of the given size.
func indexEntryOfSize(t testing.TB, pub string, size uint64) *treeindex.File {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(pub, "summary"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ostree.DecodeSummary(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Refs {
		sum, ok := r.TreeIndex()
		if !ok {
			continue
		}
		data, err := os.ReadFile(filepath.Join(pub, ostree.TreeIndexPath(sum)))
		if err != nil {
			t.Fatal(err)
		}
		x, err := treeindex.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range x.Files {
			if fl := &x.Files[i]; fl.Header.Size == size && !fl.Header.IsSymlink() {
				if fl.Chunks() < 2 || len(fl.Points) == 0 {
					t.Fatalf("the large file is not chunked: %d chunks, %d access points", fl.Chunks(), len(fl.Points))
				}
				return fl
			}
		}
	}
	t.Fatal("no tree index entry for the large file")
	return nil
}

func (lp *largePub) filezPath() string {
	return "/" + ostree.ObjectPath(lp.entry.Checksum, ostree.ObjFile, true)
}

// pyPages prints, for each offset, the SHA-256 of the 4 KiB there, read
// with pread or through a PROT_EXEC mapping (as a loader maps code), in
// a child process (the test process serves the mount).
const pyPages = `import hashlib, mmap, os, sys
mode, path, offs = sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]]
fd = os.open(path, os.O_RDONLY)
if mode == "mmap":
    m = mmap.mmap(fd, 0, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_EXEC)
for off in offs:
    b = m[off:off+4096] if mode == "mmap" else os.pread(fd, 4096, off)
    print(hashlib.sha256(b).hexdigest(), flush=True)
`

func pyRead(t *testing.T, mode, path string, offs ...int64) ([]string, error) {
	t.Helper()
	args := []string{"-c", pyPages, mode, path}
	for _, o := range offs {
		args = append(args, strconv.FormatInt(o, 10))
	}
	cmd := exec.Command("python3", args...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.Output()
	if err != nil {
		err = errors.Join(err, errors.New(strings.TrimSpace(errOut.String())))
	}
	return strings.Fields(string(out)), err
}

func pageSum(b []byte, off int64) string {
	s := sha256.Sum256(b[off:min(off+4096, int64(len(b)))])
	return hex.EncodeToString(s[:])
}

// TestLargeFileMount: through the mount, a large file whose chunks the
// tree index vouches for is served before it is whole: a read far into
// it costs about two chunks of compressed bytes, a PROT_EXEC mapping
// reads verified pages, and a tampered chunk is never served: pread gets
// EIO, a mapped page SIGBUS, status.json names the object; once the
// server is mended the same read succeeds.
func TestLargeFileMount(t *testing.T) {
	requireFuse(t)
	testutil.RequireTool(t, "python3")
	dir := t.TempDir()
	lp := publishLarge(t, dir, 24<<20)
	fl := lp.entry
	orig, err := os.ReadFile(filepath.Join(lp.pub, lp.filezPath()))
	if err != nil {
		t.Fatal(err)
	}
	// The damage: one flipped bit inside the compressed bytes after the
	// access point before 18.5 MiB.
	badOff := int64(18<<20 + 512<<10)
	pt := fl.PointBefore(badOff)
	tampered := append([]byte(nil), orig...)
	tampered[pt.In+1500] ^= 0x08
	var spoil atomic.Bool
	srv, err := fetchtest.New(lp.pub, fetchtest.Options{Override: func(path string) ([]byte, bool) {
		if spoil.Load() && path == lp.filezPath() {
			return tampered, true
		}
		return nil, false
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	home := filepath.Join(dir, "home")
	lt(t, "--home", home, "remote", "add", "r", srv.URL(), "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	m := &mounted{home: home, mp: filepath.Join(dir, "mnt"), srv: srv, pub: lp.pub}
	m.runDaemon(t, mountOptions{Prefetch: "metadata"})
	path := m.path(lp.rel)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for m.status(t).Source.TreeIndexes() != "loaded" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	// A read far into the file.
	srv.Reset()
	off := int64(20<<20 + 4321)
	got, err := pyRead(t, "pread", path, off)
	if err != nil || len(got) != 1 || got[0] != pageSum(lp.content, off) {
		t.Fatalf("pread at 20 MiB: %v %v", got, err)
	}
	var filez int64
	for _, r := range srv.Log() {
		if r.Path == lp.filezPath() {
			filez += r.Bytes
		}
	}
	perChunk := int64(fl.ArchivedSize) / int64(fl.Chunks())
	t.Logf("4 KiB at 20 MiB: %d compressed bytes fetched; object %d, %d per chunk", filez, fl.ArchivedSize, perChunk)
	if filez == 0 || filez > 2*perChunk+perChunk/2 {
		t.Fatalf("4 KiB at 20 MiB fetched %d compressed bytes; two chunks' worth is about %d", filez, 2*perChunk)
	}
	st := m.status(t)
	if st.FS.StreamingOpens == 0 {
		t.Fatal("status.json counts no streaming open")
	}

	// Executable mapping of verified pages.
	offs := []int64{0, 4 << 20, 12<<20 + 8192}
	got, err = pyRead(t, "mmap", path, offs...)
	if err != nil || len(got) != len(offs) {
		t.Fatalf("mmap read: %v %v", got, err)
	}
	for i, o := range offs {
		if got[i] != pageSum(lp.content, o) {
			t.Fatalf("mapped page at %d differs from the file", o)
		}
	}

	// Tampered: never served.
	spoil.Store(true)
	_, err = pyRead(t, "pread", path, badOff)
	if err == nil || !strings.Contains(err.Error(), "Input/output error") {
		t.Fatalf("pread of the tampered chunk: %v, want EIO", err)
	}
	got, err = pyRead(t, "mmap", path, badOff)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGBUS || len(got) != 0 {
		t.Fatalf("mapped tampered page: output %v, %v; want SIGBUS and nothing read", got, err)
	}
	found := false
	for _, e := range m.status(t).FS.LastErrors {
		if strings.Contains(e.Object, fl.Checksum.String()) && strings.Contains(e.Cause, "chunk") {
			found = true
		}
	}
	if !found {
		t.Fatalf("status.json does not name the tampered chunk: %+v", m.status(t).FS.LastErrors)
	}

	// Mended: read again.
	spoil.Store(false)
	got, err = pyRead(t, "pread", path, badOff)
	if err != nil || len(got) != 1 || got[0] != pageSum(lp.content, badOff) {
		t.Fatalf("pread after the server was mended: %v %v", got, err)
	}
}

// mountStatus is the part of status.json these tests read.
type mountStatus struct {
	FS struct {
		StreamingOpens   uint64 `json:"streaming_opens"`
		PassthroughFiles uint64 `json:"passthrough_files"`
		LastErrors       []struct {
			Object string `json:"object"`
			Cause  string `json:"cause"`
		} `json:"last_errors"`
	} `json:"fusefs"`
	Source statusSource `json:"source"`
}

type statusSource struct {
	Indexes map[string]string `json:"tree_indexes"`
}

// TreeIndexes is the state of the one commit's index ("" with none).
func (s statusSource) TreeIndexes() string {
	for _, v := range s.Indexes {
		return v
	}
	return ""
}

func (m *mounted) status(t *testing.T) mountStatus {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.mp, ".lazytree", "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st mountStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
