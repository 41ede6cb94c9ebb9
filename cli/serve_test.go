package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/internal/testutil"
)

// served is a `lazytree serve DIR` running in process.
type served struct {
	url       string // http://ADDR, no trailing slash
	accessLog string
	stop      func() // ends the command and waits for it; idempotent
}

// startServe runs `lazytree serve dir --listen 127.0.0.1:0` in process
// until stop or the end of the test.
func startServe(t *testing.T, dir string) *served {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", dir, "--listen", "127.0.0.1:0", "--access-log", logPath}, pw, &stderr)
		pw.Close()
	}()
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		io.Copy(io.Discard, pr)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != ExitOK {
					t.Errorf("lazytree serve %s: exit %d\n%s", dir, code, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Errorf("lazytree serve %s did not stop", dir)
			}
		})
	}
	t.Cleanup(stop)
	var line string
	select {
	case l, ok := <-first:
		if !ok {
			code := <-done
			t.Fatalf("lazytree serve %s: exit %d before serving\n%s", dir, code, stderr.String())
		}
		line = l
	case <-time.After(30 * time.Second):
		t.Fatalf("lazytree serve %s printed nothing in 30 s", dir)
	}
	rest, ok := strings.CutPrefix(line, "serving "+dir+" at http://127.0.0.1:")
	port, ok2 := strings.CutSuffix(rest, "/")
	if _, err := strconv.Atoi(port); !ok || !ok2 || err != nil {
		t.Fatalf("lazytree serve printed %q, want \"serving %s at http://127.0.0.1:PORT/\"", line, dir)
	}
	return &served{url: "http://127.0.0.1:" + port, accessLog: logPath, stop: stop}
}

// request is one line of the access log.
type request struct{ method, path, status string }

// requests stops s (so that every line is written) and returns its
// access log.
func (s *served) requests(t *testing.T) []request {
	t.Helper()
	s.stop()
	b, err := os.ReadFile(s.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []request
	for line := range strings.Lines(string(b)) {
		// TIME CLIENT METHOD "PATH" PROTO STATUS BYTES DURATION ...
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			t.Fatalf("access log line %q: too few fields", line)
		}
		q, err := strconv.QuotedPrefix(f[3])
		if err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		p, _ := strconv.Unquote(q)
		g := strings.Fields(f[3][len(q):])
		if len(g) < 2 {
			t.Fatalf("access log line %q: no status", line)
		}
		out = append(out, request{method: f[2], path: p, status: g[1]})
	}
	return out
}

// ostreeClient is a fresh bare-user repository with remote "o" at url,
// GPG verification of commits and summary on.
func ostreeClient(t *testing.T, url string) string {
	t.Helper()
	ostree := testutil.RequireTool(t, "ostree")
	testutil.RequireTool(t, "gpg")
	repo := filepath.Join(t.TempDir(), "client")
	testutil.Run(t, "", nil, ostree, "init", "--repo="+repo, "--mode=bare-user")
	testutil.Run(t, "", nil, ostree, "remote", "add", "--repo="+repo, "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
		"--gpg-import="+testutil.VectorPath(t, testutil.GPGPublicKeyFile), "o", url)
	return repo
}

// pulledTree is what a client holds of a ref: its commit, its listing
// with checksums and xattrs, and a checkout.
type pulledTree struct{ commit, ls, checkout string }

func inspectRef(t *testing.T, repo, ref string) pulledTree {
	t.Helper()
	ostree := testutil.RequireTool(t, "ostree")
	co := filepath.Join(t.TempDir(), "co")
	testutil.Run(t, "", nil, ostree, "checkout", "--repo="+repo, "-U", "o:"+ref, co)
	return pulledTree{
		commit:   strings.TrimSpace(testutil.Output(t, "", nil, ostree, "rev-parse", "--repo="+repo, "o:"+ref)),
		ls:       testutil.Output(t, "", nil, ostree, "ls", "--repo="+repo, "-R", "-C", "-X", "o:"+ref),
		checkout: co,
	}
}

// TestServeOstreePull pulls both refs of the vector repo with the real
// ostree through `lazytree serve`, with static deltas and without, and
// checks that fsck is clean and that the result is what a file:// pull
// of the same repo gives.
func TestServeOstreePull(t *testing.T) {
	ostree := testutil.RequireTool(t, "ostree")
	dir := testutil.CopyVectorRepo(t, "repo")
	// Oldest first: with deltas, C1 comes from the scratch delta and C2
	// from the C1 to C2 delta.
	refs := []string{"exampleos/x86_64/old", "exampleos/x86_64/stable"}

	ref := ostreeClient(t, "file://"+dir)
	for _, r := range refs {
		testutil.Run(t, "", nil, ostree, "pull", "--repo="+ref, "--disable-static-deltas", "o", r)
	}
	want := map[string]pulledTree{}
	for _, r := range refs {
		want[r] = inspectRef(t, ref, r)
	}

	for _, tc := range []struct {
		name   string
		extra  []string
		deltas bool
	}{
		{"deltas", nil, true},
		{"no-deltas", []string{"--disable-static-deltas"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServe(t, dir)
			client := ostreeClient(t, s.url)
			for _, r := range refs {
				testutil.Run(t, "", nil, ostree, append([]string{"pull", "--repo=" + client, "o", r}, tc.extra...)...)
			}
			testutil.Run(t, "", nil, ostree, "fsck", "--repo="+client)
			for _, r := range refs {
				got := inspectRef(t, client, r)
				if got.commit != want[r].commit {
					t.Errorf("%s: commit %s, want %s (file://)", r, got.commit, want[r].commit)
				}
				if got.ls != want[r].ls {
					t.Errorf("%s: ostree ls -R -C -X differs from file://:\n%s\nwant:\n%s", r, got.ls, want[r].ls)
				}
				if err := testutil.TreeDiff(got.checkout, want[r].checkout, testutil.DiffOptions{}); err != nil {
					t.Errorf("%s: checkout differs from file://: %v", r, err)
				}
			}

			var objects, deltas, revalidated int
			for _, q := range s.requests(t) {
				if q.method != "GET" {
					t.Errorf("ostree sent %s %s", q.method, q.path)
				}
				switch {
				case q.status == "304":
					// ostree keeps the summary and its signature
					// and revalidates them with their ETag.
					if q.path != "/summary" && q.path != "/summary.sig" {
						t.Errorf("GET %s: status 304", q.path)
					}
					revalidated++
				case q.status != "200" && q.status != "404":
					t.Errorf("GET %s: status %s", q.path, q.status)
				}
				switch {
				case strings.HasPrefix(q.path, "/objects/") && q.status == "200":
					objects++
				case strings.HasPrefix(q.path, "/deltas/"):
					if q.status != "200" {
						t.Errorf("GET %s: status %s, want 200", q.path, q.status)
					}
					deltas++
				}
			}
			if objects == 0 {
				t.Error("access log: no object served with 200")
			}
			if tc.deltas && deltas == 0 {
				t.Error("access log: no static delta requested in a pull with deltas")
			}
			if !tc.deltas && deltas != 0 {
				t.Errorf("access log: %d static delta requests with --disable-static-deltas", deltas)
			}
			t.Logf("%d objects and %d delta files served, %d revalidations answered 304", objects, deltas, revalidated)
		})
	}
}

// TestServeFlatpakInstall installs the vector app (and its runtime) with
// the real flatpak from `lazytree serve` of the flatpak repo, GPG
// verified.
func TestServeFlatpakInstall(t *testing.T) {
	u := testutil.NewFlatpakUser(t)
	dir := testutil.CopyVectorRepo(t, "flatpak-repo")
	s := startServe(t, dir)
	u.AddRemoteURL(t, "served", s.url+"/", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	u.Install(t, "served", "org.example.Hello")
	list := u.Flatpak(t, "list", "--columns=ref")
	for _, r := range []string{"org.example.Hello/x86_64/stable", "org.example.Platform/x86_64/1.0"} {
		if !strings.Contains(list, r) {
			t.Errorf("flatpak list:\n%s\nwant %s in it", list, r)
		}
	}
	var summaryIdx, objects int
	for _, q := range s.requests(t) {
		switch {
		case q.status != "200" && q.status != "404":
			t.Errorf("%s %s: status %s", q.method, q.path, q.status)
		case q.path == "/summary.idx" && q.status == "200":
			summaryIdx++
		case strings.HasPrefix(q.path, "/objects/") && q.status == "200":
			objects++
		}
	}
	if summaryIdx == 0 || objects == 0 {
		t.Errorf("access log: summary.idx served %d times and %d objects, want both", summaryIdx, objects)
	}
}

func TestServeCommandErrors(t *testing.T) {
	notRepo := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, ExitUsage, "give a repository directory"},
		{[]string{"serve", notRepo, "--upstream", "x"}, ExitUsage, "--upstream needs --cache"},
		{[]string{"serve", notRepo, "--listen", "127.0.0.1:0"}, ExitFailure, "no config"},
		{[]string{"serve", filepath.Join(notRepo, "none"), "--listen", "127.0.0.1:0"}, ExitFailure, "none"},
	} {
		_, stderr, code := runLT(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("lazytree %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}
