package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
)

// shareRef is the runtime the sharing tests publish.
const shareRef = "runtime/org.lazytree.Share/x86_64/1"

// shareFixture is a runtime of host programs (the demo's) published by
// lazytree with a GPG signature, served by an origin on 127.0.0.1, and the
// built binary to start nodes and clients with, each its own process with
// its own cache, as on separate machines.
type shareFixture struct {
	base, bin, pub, key string
	origin              *fetchtest.Server
}

func newShareFixture(t testing.TB, o fetchtest.Options) *shareFixture {
	t.Helper()
	requireFuse(t)
	f := &shareFixture{base: t.TempDir(), bin: testutil.BuildLazytree(t), key: testutil.VectorPath(t, testutil.GPGPublicKeyFile)}
	rt := filepath.Join(f.base, "runtime")
	if _, err := buildDemoRuntime(rt); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GenTree(filepath.Join(rt, "files", "share"), 300, 8<<20, 1); err != nil {
		t.Fatal(err)
	}
	f.pub = filepath.Join(f.base, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", f.pub)
	lt(t, "commit", "--repo", f.pub, "-b", shareRef, "--gpg-sign", secret, rt)
	lt(t, "export", "--repo", f.pub, "--gpg-sign", secret)
	srv, err := fetchtest.New(f.pub, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	f.origin = srv
	return f
}

// child is a lazytree process a test started; stop ends it by PID.
type child struct {
	cmd  *exec.Cmd
	out  *strings.Builder
	mu   sync.Mutex
	done chan struct{}
}

// start runs the binary with args and returns once it printed a line
// that contains want (returned), or fails the test.
func (f *shareFixture) start(t testing.TB, want string, args ...string) (*child, string) {
	t.Helper()
	cmd := exec.Command(f.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: &strings.Builder{}, done: make(chan struct{})}
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.out.Write(p)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.stop(t) })
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				<-c.done
				t.Fatalf("lazytree %s exited before %q: %s", strings.Join(args, " "), want, c.stderr())
			}
			if strings.Contains(l, want) {
				go io.Copy(io.Discard, stdout)
				return c, l
			}
		case <-timeout:
			t.Fatalf("lazytree %s: no %q within 60 s: %s", strings.Join(args, " "), want, c.stderr())
		}
	}
}

func (c *child) stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// stop sends SIGTERM, then SIGKILL after 10 s.
func (c *child) stop(t testing.TB) {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		t.Errorf("lazytree pid %d ignored SIGTERM for 10 s", c.cmd.Process.Pid)
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// node starts `serve --cache` with its own cache, upstream url, and
// returns its URL.
func (f *shareFixture) node(t testing.TB, name, upstream string) (*child, string) {
	t.Helper()
	lt(t, "--home", filepath.Join(f.base, name), "remote", "add", "origin", upstream, "--gpg-import", f.key)
	return f.startNode(t, name)
}

// startNode starts `serve --cache` on the home of node name, made by
// node: again after stop, it keeps its cache and what it verified.
func (f *shareFixture) startNode(t testing.TB, name string) (*child, string) {
	t.Helper()
	c, line := f.start(t, "serving the cache of origin at http://", "--home", filepath.Join(f.base, name), "serve", "--cache", "--listen", "127.0.0.1:0", "--access-log", "")
	return c, line[strings.Index(line, "http://"):]
}

// client mounts remote "node" at url with its own cache and returns the
// ref's directory on its mount.
func (f *shareFixture) client(t testing.TB, name, url string, mirrors ...string) (*child, string) {
	t.Helper()
	args := []string{"--home", filepath.Join(f.base, name), "remote", "add", "node", url, "--gpg-import", f.key}
	for _, m := range mirrors {
		args = append(args, "--mirror", m)
	}
	lt(t, args...)
	return f.mount(t, name)
}

// mount mounts the home of client name, made by client: again after
// stop, it keeps its cache and what it verified.
func (f *shareFixture) mount(t testing.TB, name string) (*child, string) {
	t.Helper()
	home, mp := filepath.Join(f.base, name), filepath.Join(f.base, name+"-mnt")
	c, _ := f.start(t, "mounted", "--home", home, "mount", "--foreground", "--prefetch", "none", mp)
	t.Cleanup(func() {
		if fusefs.Mounted(mp) {
			fusefs.Unmount(mp)
		}
	})
	return c, filepath.Join(mp, "node", shareRef)
}

// bashArgv starts the runtime's bash through its own loader.
func bashArgv(files string) []string {
	return []string{filepath.Join(files, "lib64", "ld-linux-x86-64.so.2"), "--library-path", filepath.Join(files, "lib"),
		filepath.Join(files, "bin", "bash"), "-c", "echo started"}
}

// objectCounts counts the origin's whole transfers per object path
// (under pub): a request for the whole file that sent all of it. Guesses
// refused for their size end after the headers and are not transfers.
func objectCounts(pub string, log []fetchtest.Request) map[string]int {
	n := map[string]int{}
	for _, r := range log {
		if !strings.HasPrefix(r.Path, "/objects/") {
			continue
		}
		st, err := os.Stat(filepath.Join(pub, r.Path))
		if err == nil && r.Range == "" && r.Bytes == st.Size() {
			n[r.Path]++
		}
	}
	return n
}

// TestServeCacheClients starts eight clients, each its own process and
// cache, through one `serve --cache` node at the same moment: each starts
// bash from the ref, then reads the whole tree. The origin must send every
// object once, and every client's tree must equal ostree's checkout of
// the origin.
func TestServeCacheClients(t *testing.T) {
	f := newShareFixture(t, fetchtest.Options{Latency: 5 * time.Millisecond})
	co := testutil.OstreeCheckout(t, f.origin.URL(), shareRef, f.key)
	f.origin.Reset()
	_, url := f.node(t, "node", f.origin.URL())
	const clients = 8
	trees := make([]string, clients)
	for i := range trees {
		_, trees[i] = f.client(t, fmt.Sprintf("client%d", i), url)
	}
	var wg sync.WaitGroup
	errs := make([]error, clients)
	gate := make(chan struct{})
	for i, tree := range trees {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, _, line, err := timeFirstOutput(ctx, bashArgv(filepath.Join(tree, "files"))); err != nil || line != "started" {
				errs[i] = fmt.Errorf("client %d: bash: %q, %v", i, line, err)
				return
			}
			errs[i] = testutil.TreeDiff(tree, co, testutil.DiffOptions{MaskSpecialBits: true, IgnoreRootMode: true})
		}()
	}
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	counts := objectCounts(f.pub, f.origin.Log())
	pubObjects := 0
	filepath.WalkDir(filepath.Join(f.pub, "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			pubObjects++
		}
		return nil
	})
	for p, n := range counts {
		if n != 1 {
			t.Errorf("origin served %s %d times, want once", p, n)
		}
	}
	if len(counts) == 0 || len(counts) > pubObjects {
		t.Errorf("origin served %d distinct objects of the %d published", len(counts), pubObjects)
	}
	t.Logf("origin: %d requests for %d distinct objects (%d published), %d bytes", len(f.origin.Log()), len(counts), pubObjects, f.origin.Stats().Bytes)
}

// TestServeCacheMirror is a thin client whose remote is the origin with
// a cache node as its mirror: the node is used first, and when it stops
// the client carries on from the origin, with both URLs in status.json.
func TestServeCacheMirror(t *testing.T) {
	f := newShareFixture(t, fetchtest.Options{Latency: 2 * time.Millisecond})
	co := testutil.OstreeCheckout(t, f.origin.URL(), shareRef, f.key)
	node, url := f.node(t, "node", f.origin.URL())
	_, tree := f.client(t, "client", f.origin.URL(), url)
	status := filepath.Join(f.base, "client-mnt", ".lazytree", "status.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, line, err := timeFirstOutput(ctx, bashArgv(filepath.Join(tree, "files"))); err != nil || line != "started" {
		t.Fatalf("bash through the mirror: %q, %v", line, err)
	}
	mirror, origin := urlStatus(t, status)
	if !mirror.InUse || mirror.Requests == 0 || mirror.Failures != 0 || origin.InUse || origin.Requests != 0 {
		t.Errorf("with the node up: mirror %+v, origin %+v; want every request on the mirror", mirror, origin)
	}
	node.stop(t)
	if err := testutil.TreeDiff(tree, co, testutil.DiffOptions{MaskSpecialBits: true, IgnoreRootMode: true}); err != nil {
		t.Fatalf("tree after the mirror stopped: %v", err)
	}
	mirror, origin = urlStatus(t, status)
	if mirror.InUse || mirror.Failures == 0 || mirror.LastError == "" || !origin.InUse || origin.Requests == 0 {
		t.Errorf("with the node down: mirror %+v, origin %+v; want a failure on the mirror and the origin in use", mirror, origin)
	}
}

// urlStatus reads the one remote's mirror and origin entries from a
// mount's status.json.
func urlStatus(t *testing.T, path string) (mirror, origin fetch.URLStatus) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Source struct {
			Remotes []fetch.RemoteStatus `json:"remotes"`
		} `json:"source"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("status.json: %v\n%s", err, raw)
	}
	if len(st.Source.Remotes) != 1 || len(st.Source.Remotes[0].URLs) != 2 {
		t.Fatalf("status.json: want one remote with two URLs:\n%s", raw)
	}
	u := st.Source.Remotes[0].URLs
	if u[0].Role != fetch.RoleMirror || u[1].Role != fetch.RoleOrigin {
		t.Fatalf("status.json: roles %q, %q; want mirror then origin", u[0].Role, u[1].Role)
	}
	return u[0], u[1]
}

// TestServeCacheReferenceClients puts a `serve --cache` node in front of
// the repositories the real ostree and flatpak wrote, and has the real
// clients pull through it: ostree pull (the node offers no static
// deltas, so ostree falls back to objects) with GPG checks, fsck and the
// same trees as a pull from the origin; flatpak install of the app and
// its runtime. The node's .filez are its own re-encoding of the content.
func TestServeCacheReferenceClients(t *testing.T) {
	f := &shareFixture{base: t.TempDir(), bin: testutil.BuildLazytree(t), key: testutil.VectorPath(t, testutil.GPGPublicKeyFile)}
	serveVector := func(name string) *fetchtest.Server {
		srv, err := fetchtest.New(testutil.VectorPath(t, name), fetchtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return srv
	}
	t.Run("ostree", func(t *testing.T) {
		origin := serveVector("repo")
		_, url := f.node(t, "node-ostree", origin.URL())
		for _, ref := range []string{"exampleos/x86_64/stable", "exampleos/x86_64/old"} {
			want := testutil.OstreeCheckout(t, origin.URL(), ref, f.key)
			origin.Reset()
			got := testutil.OstreeCheckout(t, url, ref, f.key)
			if err := testutil.TreeDiff(got, want, testutil.DiffOptions{IgnoreRootMode: true}); err != nil {
				t.Errorf("%s through the node: %v", ref, err)
			}
			if n := len(objectCounts(testutil.VectorPath(t, "repo"), origin.Log())); n == 0 {
				t.Errorf("%s: the node fetched no object from the origin", ref)
			}
		}
		repo := filepath.Join(t.TempDir(), "client")
		ostree := testutil.RequireTool(t, "ostree")
		testutil.Run(t, "", nil, ostree, "init", "--repo="+repo, "--mode=bare-user")
		testutil.Run(t, "", nil, ostree, "remote", "add", "--repo="+repo, "--set=gpg-verify-summary=true", "--gpg-import="+f.key, "n", url)
		testutil.Run(t, "", nil, ostree, "pull", "--repo="+repo, "n", "exampleos/x86_64/stable")
		testutil.Run(t, "", nil, ostree, "fsck", "--repo="+repo)
	})
	t.Run("flatpak", func(t *testing.T) {
		u := testutil.NewFlatpakUser(t)
		origin := serveVector("flatpak-repo")
		_, url := f.node(t, "node-flatpak", origin.URL())
		u.AddRemoteURL(t, "node", url, f.key)
		u.Install(t, "node", "org.example.Hello")
		list := u.Flatpak(t, "list", "--columns=ref")
		for _, r := range []string{"org.example.Hello/x86_64/stable", "org.example.Platform/x86_64/1.0"} {
			if !strings.Contains(list, r) {
				t.Errorf("flatpak list:\n%s\nwant %s in it", list, r)
			}
		}
	})
}
