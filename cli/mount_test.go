package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
)

// requireFuse skips (outside CI) when this machine cannot mount.
func requireFuse(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "cannot mount FUSE here (need root and /dev/fuse): %v", err)
	}
}

type mounted struct {
	home, mp string
	srv      *fetchtest.Server
	pub      string
	done     chan struct{} // closed when the daemon returned
	err      error         // what it returned
	cancel   context.CancelFunc
}

// startMount publishes files (signed), serves them through fetchtest,
// adds the remote "r" and runs the daemon in process.
func startMount(t *testing.T, files map[string]string, sopts fetchtest.Options, mopts mountOptions) *mounted {
	t.Helper()
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, files)
	pub := filepath.Join(dir, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "os/x86_64/stable", "--gpg-sign", secret, src)
	lt(t, "export", "--repo", pub, "--gpg-sign", secret)
	srv, err := fetchtest.New(pub, sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	home := filepath.Join(dir, "home")
	lt(t, "--home", home, "remote", "add", "r", srv.URL(), "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	m := &mounted{home: home, mp: filepath.Join(dir, "mnt"), srv: srv, pub: pub}
	m.runDaemon(t, mopts)
	return m
}

// runDaemon runs the daemon of m.home at m.mp in process until the test
// ends.
func (m *mounted) runDaemon(t *testing.T, mopts mountOptions) {
	t.Helper()
	m.done = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	ready := make(chan struct{})
	if mopts.Prefetch == "" {
		mopts.Prefetch = "none"
	}
	if mopts.Timeout == 0 {
		mopts.Timeout = 10 * time.Second
	}
	go func() {
		m.err = runDaemon(ctx, &globalOptions{Home: m.home}, m.mp, &mopts, func(*fusefs.Server) { close(ready) })
		close(m.done)
	}()
	select {
	case <-ready:
	case <-m.done:
		t.Fatalf("daemon: %v", m.err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.done:
		case <-time.After(20 * time.Second):
			t.Error("daemon did not stop")
		}
		if fusefs.Mounted(m.mp) {
			syscall.Unmount(m.mp, syscall.MNT_DETACH)
			t.Error("mount left behind")
		}
	})
}

func (m *mounted) path(p string) string { return filepath.Join(m.mp, "r", "os/x86_64/stable", p) }

// readInChild reads a file with cat in a child process (never do I/O on
// the mount in ways that could deadlock the serving process).
func readInChild(t *testing.T, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "cat", path).CombinedOutput()
	return string(out), err
}

func TestMountReadsOneFileCold(t *testing.T) {
	files := map[string]string{"a/b/target.txt": "the target\n", "a/other.txt": "other\n", "c/d/e.txt": "e\n", "top.txt": "top\n"}
	m := startMount(t, files, fetchtest.Options{}, mountOptions{})
	got, err := readInChild(t, m.path("a/b/target.txt"))
	if err != nil || got != "the target\n" {
		t.Fatalf("read: %q, %v", got, err)
	}
	var filez []string
	for _, r := range m.srv.Log() {
		if strings.HasSuffix(r.Path, ".filez") {
			filez = append(filez, r.Path)
		}
	}
	if len(filez) != 1 {
		t.Fatalf("a cold read fetched %d content objects: %v", len(filez), filez)
	}
	// Metadata on the path only: root, a, a/b (dirtree + dirmeta each,
	// shared dirmeta fetched once) — never c/ or c/d.
	if n := m.srv.Count("/objects/**.dirtree"); n != 3 {
		t.Fatalf("%d dirtrees fetched, want 3 (root, a, a/b): %v", n, m.srv.Paths())
	}
	// status.json is there and parses.
	b, err := os.ReadFile(filepath.Join(m.mp, ".lazytree", "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Source struct {
			BytesFetched int64 `json:"bytes_fetched"`
			Refs         map[string]struct {
				Known  int     `json:"files_known"`
				Cached int     `json:"files_cached"`
				Share  float64 `json:"fetched_share"`
			} `json:"refs"`
		} `json:"source"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status.json: %v\n%s", err, b)
	}
	ref := st.Source.Refs["r:os/x86_64/stable"]
	if st.Source.BytesFetched == 0 || ref.Cached != 1 || ref.Known < 2 || ref.Share <= 0 || ref.Share >= 1 {
		t.Fatalf("status.json counters: %+v\n%s", st.Source, b)
	}
	// Unmount through the control socket.
	if out, _, code := ltCode(t, "--home", m.home, "unmount", m.mp); code != 0 {
		t.Fatalf("unmount: %d %s", code, out)
	}
	select {
	case <-m.done:
		if m.err != nil {
			t.Fatal(m.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon still running after unmount")
	}
	if fusefs.Mounted(m.mp) {
		t.Fatal("still mounted")
	}
}

func TestMountTamperedThenFixed(t *testing.T) {
	files := map[string]string{"x.txt": strings.Repeat("payload ", 100)}
	m := startMount(t, files, fetchtest.Options{}, mountOptions{})
	// Every .filez is served with a byte of its compressed payload
	// flipped. (fetchtest's Corrupt flips a byte at a random offset of
	// each attempt, which in a 60-byte object can land in the header's
	// padding, which no checksum covers and no reader uses.)
	m.srv.Update(func(o *fetchtest.Options) {
		o.Override = func(path string) ([]byte, bool) {
			if !strings.HasSuffix(path, ".filez") {
				return nil, false
			}
			b, err := os.ReadFile(filepath.Join(m.pub, filepath.FromSlash(path)))
			if err != nil || len(b) < 16 {
				return nil, false
			}
			b[len(b)-8] ^= 0xff
			return b, true
		}
	})
	if _, err := readInChild(t, m.path("x.txt")); err == nil {
		t.Fatal("read of a tampered object succeeded")
	}
	b, _ := os.ReadFile(filepath.Join(m.mp, ".lazytree", "status.json"))
	if !strings.Contains(string(b), ".file") || !strings.Contains(string(b), "checksum") {
		t.Fatalf("status.json does not report the corrupt object:\n%s", b)
	}
	m.srv.Update(func(o *fetchtest.Options) { o.Override = nil })
	got, err := readInChild(t, m.path("x.txt"))
	if err != nil || got != files["x.txt"] {
		t.Fatalf("read after fixing the server: %v", err)
	}
}

func TestMountStalledServer(t *testing.T) {
	// In another directory: a lookup in the first one fetches its
	// siblings ahead (speculation), which would cache stalls.txt.
	files := map[string]string{"cached.txt": "cached\n", "sub/stalls.txt": "never\n"}
	m := startMount(t, files, fetchtest.Options{}, mountOptions{Timeout: 2 * time.Second})
	if got, err := readInChild(t, m.path("cached.txt")); err != nil || got != "cached\n" {
		t.Fatalf("read: %q %v", got, err)
	}
	m.srv.Update(func(o *fetchtest.Options) { o.Stall = fetchtest.Rule{P: 1, After: fetchtest.Seeded} })
	start := time.Now()
	_, err := readInChild(t, m.path("sub/stalls.txt"))
	if err == nil {
		t.Fatal("read from a stalled server succeeded")
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("EIO took %s", el)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("cat: %v", err)
	}
	// Cached data is still served.
	if got, err := readInChild(t, m.path("cached.txt")); err != nil || got != "cached\n" {
		t.Fatalf("cached read during the stall: %q %v", got, err)
	}
}

// TestMountControlSocket: while the daemon owns the cache, cache, pin and
// remote commands go through its socket, and a remote added meanwhile
// appears in the mount without a restart.
func TestMountControlSocket(t *testing.T) {
	m := startMount(t, map[string]string{"f.txt": "f\n"}, fetchtest.Options{}, mountOptions{})
	out := lt(t, "--home", m.home, "cache", "stats", "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cache stats via the daemon: %v\n%s", err, out)
	}
	if out := lt(t, "--home", m.home, "pin", "r:os/x86_64/stable"); !strings.Contains(out, "pinned r:os/x86_64/stable") {
		t.Fatalf("pin via the daemon: %s", out)
	}
	if out := lt(t, "--home", m.home, "pins"); !strings.Contains(out, "r:os/x86_64/stable") {
		t.Fatalf("pins via the daemon: %s", out)
	}
	if out := lt(t, "--home", m.home, "cache", "fsck"); !strings.Contains(out, "checked") {
		t.Fatalf("fsck via the daemon: %s", out)
	}
	// A second remote, added while mounted.
	lt(t, "--home", m.home, "remote", "add", "second", m.srv.URL(), "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	got, err := readInChild(t, filepath.Join(m.mp, "second", "os/x86_64/stable", "f.txt"))
	if err != nil || got != "f\n" {
		st, _ := os.ReadFile(filepath.Join(m.mp, ".lazytree", "status.json"))
		t.Fatalf("read through the new remote: %q %v\n%s", got, err, st)
	}
	lt(t, "--home", m.home, "remote", "remove", "second")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(m.mp, "second")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("removed remote still in the mount")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMountRefreshMovesRef: after a new commit is published, `mount
// --refresh` makes the ref show it; a file opened before keeps its bytes.
func TestMountRefreshMovesRef(t *testing.T) {
	m := startMount(t, map[string]string{"v.txt": "version 1\n"}, fetchtest.Options{}, mountOptions{})
	if got, err := readInChild(t, m.path("v.txt")); err != nil || got != "version 1\n" {
		t.Fatalf("before: %q %v", got, err)
	}
	old, err := os.Open(m.path("v.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	src := filepath.Join(t.TempDir(), "src2")
	writeTree(t, src, map[string]string{"v.txt": "version 2\n"})
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	time.Sleep(1100 * time.Millisecond) // a later commit timestamp than the first
	lt(t, "commit", "--repo", m.pub, "-b", "os/x86_64/stable", "--gpg-sign", secret, src)
	lt(t, "export", "--repo", m.pub, "--gpg-sign", secret)
	lt(t, "--home", m.home, "mount", "--refresh")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := readInChild(t, m.path("v.txt"))
		if err == nil && got == "version 2\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after refresh: %q %v", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	buf := make([]byte, 64)
	n, _ := old.ReadAt(buf, 0)
	if string(buf[:n]) != "version 1\n" {
		t.Fatalf("the file opened before the move reads %q", buf[:n])
	}
}

// TestMountVectorReposMatchOstree mounts both test-vector repositories
// through the real daemon (fetch-backed, GPG and bindings checked) and
// compares every ref's tree with the real ostree's checkout of it.
func TestMountVectorReposMatchOstree(t *testing.T) {
	requireFuse(t)
	testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	key := testutil.VectorPath(t, testutil.GPGPublicKeyFile)
	refs := map[string][]string{
		"repo":         {"exampleos/x86_64/stable", "exampleos/x86_64/old", "ostree-metadata"},
		"flatpak-repo": {"runtime/org.example.Platform/x86_64/1.0", "app/org.example.Hello/x86_64/stable"},
	}
	urls := map[string]string{}
	for name := range refs {
		srv := testutil.ServeDir(t, testutil.CopyVectorRepo(t, name))
		urls[name] = srv.URL
		args := []string{"--home", home, "remote", "add", name, srv.URL, "--gpg-import", key}
		if name == "repo" {
			args = append(args, "--collection-id", testutil.VectorCollectionID)
		}
		lt(t, args...)
	}
	m := &mounted{home: home, mp: filepath.Join(dir, "mnt")}
	m.runDaemon(t, mountOptions{})
	for name, list := range refs {
		for _, ref := range list {
			co := testutil.OstreeCheckout(t, urls[name], ref, key)
			if err := testutil.TreeDiff(co, filepath.Join(m.mp, name, ref), testutil.DiffOptions{MaskSpecialBits: true}); err != nil {
				t.Errorf("%s:%s: the mount differs from ostree checkout: %v", name, ref, err)
			}
		}
	}
}
