package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

// tamperer is an HTTP proxy on 127.0.0.1 in front of a repository server
// it can be pointed at again: it flips one byte in the middle of the
// bodies of the repository files named in flip, and answers those named
// in replace with other bytes without asking the server. Names are
// repository paths ("summary", "objects/ab/cdef....filez"); the server
// is asked at the same path.
type tamperer struct {
	url string
	tr  *http.Transport

	mu      sync.Mutex
	target  *url.URL
	flip    map[string]bool
	replace map[string][]byte
	spoiled map[string]int // responses spoiled, by name
}

func newTamperer(t *testing.T, target string) *tamperer {
	t.Helper()
	tp := &tamperer{tr: &http.Transport{}, spoiled: map[string]int{}}
	tp.retarget(t, target)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			tp.mu.Lock()
			u := tp.target
			tp.mu.Unlock()
			r.SetURL(u)
		},
		Transport:      tp.tr,
		ModifyResponse: tp.spoil,
		ErrorHandler:   func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		tp.mu.Lock()
		body, ok := tp.replace[name]
		if ok {
			tp.spoiled[name]++
		}
		tp.mu.Unlock()
		if !ok {
			rp.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	}))
	t.Cleanup(func() {
		srv.Close()
		tp.tr.CloseIdleConnections()
	})
	tp.url = srv.URL + "/"
	return tp
}

// retarget sends what follows to the server at u (its path is ignored).
func (tp *tamperer) retarget(t *testing.T, u string) {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	tp.mu.Lock()
	tp.target = &url.URL{Scheme: p.Scheme, Host: p.Host}
	tp.mu.Unlock()
}

// set replaces the tampering rules (nil: none) and zeroes the counts.
func (tp *tamperer) set(flip []string, replace map[string][]byte) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.flip = map[string]bool{}
	for _, n := range flip {
		tp.flip[n] = true
	}
	tp.replace = replace
	tp.spoiled = map[string]int{}
}

// count returns how many responses for name were spoiled since set.
func (tp *tamperer) count(name string) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.spoiled[name]
}

func (tp *tamperer) spoil(resp *http.Response) error {
	name := strings.TrimPrefix(resp.Request.URL.Path, "/")
	tp.mu.Lock()
	flip := tp.flip[name]
	tp.mu.Unlock()
	if !flip || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent) {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body) > 0 {
		body[len(body)/2] ^= 0xff
		tp.mu.Lock()
		tp.spoiled[name]++
		tp.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

// publishedTree lists what the ref's commit in the archive repository
// pub holds, by path relative to the commit's root: the content checksum
// of every file and symlink, and the dirtree checksum of every
// directory below the root.
func publishedTree(t *testing.T, pub, ref string) (files, dirs map[string]ostree.Checksum) {
	t.Helper()
	r, err := repo.Open(pub)
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := r.ResolveRef(ref)
	if err != nil || !ok {
		t.Fatalf("resolve %s in %s: %v, %v", ref, pub, ok, err)
	}
	cm, _, err := r.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	files, dirs = map[string]ostree.Checksum{}, map[string]ostree.Checksum{}
	var walk func(rel string, tree ostree.Checksum)
	walk = func(rel string, tree ostree.Checksum) {
		b, err := r.ReadObject(tree, ostree.ObjDirTree)
		if err != nil {
			t.Fatal(err)
		}
		dt, err := ostree.DecodeDirTree(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range dt.Files {
			files[filepath.Join(rel, f.Name)] = f.Checksum
		}
		for _, d := range dt.Dirs {
			dirs[filepath.Join(rel, d.Name)] = d.Tree
			walk(filepath.Join(rel, d.Name), d.Tree)
		}
	}
	walk(".", cm.RootTree)
	return files, dirs
}

// checkSpoiled reads the whole tree and compares it with co: the paths
// in want must be unreadable with EIO (a file whose object, a directory
// whose listing, was spoiled), everything else equal; different bytes,
// sizes or modes are never acceptable.
func checkSpoiled(tree, co string, want map[string]bool) error {
	err := testutil.TreeDiff(tree, co, testutil.DiffOptions{MaskSpecialBits: true, IgnoreRootMode: true, MaxDiffs: 1000})
	var de *testutil.DiffError
	if err != nil && !errors.As(err, &de) {
		return err
	}
	var problems []string
	got := map[string]bool{}
	if de != nil {
		for _, d := range de.Diffs {
			if d.Kind != testutil.DiffReadFail || (d.B != "" && d.B != "ok") || !strings.Contains(d.A, "input/output error") {
				problems = append(problems, "not an EIO: "+d.String())
				continue
			}
			got[d.Path] = true
			if !want[d.Path] {
				problems = append(problems, "unreadable but not spoiled: "+d.String())
			}
		}
	}
	for p := range want {
		if !got[p] {
			problems = append(problems, p+": spoiled but read as the original")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("%s:\n  %s", tree, strings.Join(problems, "\n  "))
	}
	return nil
}

// otherSummaries publishes a small other tree under the same ref and
// returns the summary and summary.sig of two exports: one signed with
// the publisher's key and dated an hour ago (older than the fixture's),
// and one signed by a key no client trusts, dated now.
func otherSummaries(t *testing.T, f *shareFixture) (oldSum, oldSig, forgedSum, forgedSig []byte) {
	t.Helper()
	dir, src := filepath.Join(f.base, "other"), filepath.Join(f.base, "other-src")
	writeTree(t, src, map[string]string{"files/hello": "not the published runtime\n"})
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", dir)
	lt(t, "commit", "--repo", dir, "-b", shareRef, "--gpg-sign", secret, src)
	e, err := openpgp.NewEntity("Other", "", "other@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	var key bytes.Buffer
	if err := e.SerializePrivate(&key, nil); err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(f.base, "other-key.gpg")
	if err := os.WriteFile(otherKey, key.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	export := func(keyFile string, now time.Time) ([]byte, []byte) {
		o := signOptions{GPGKeyFiles: []string{keyFile}}
		s, err := o.signer()
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Export(t.Context(), repo.ExportOptions{Signer: s, Now: now}); err != nil {
			t.Fatal(err)
		}
		sum, err := os.ReadFile(filepath.Join(dir, "summary"))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := os.ReadFile(filepath.Join(dir, "summary.sig"))
		if err != nil {
			t.Fatal(err)
		}
		return sum, sig
	}
	oldSum, oldSig = export(secret, time.Now().Add(-time.Hour))
	forgedSum, forgedSig = export(otherKey, time.Now())
	return oldSum, oldSig, forgedSum, forgedSig
}

// fsckClean runs `cache fsck --json` on the home of name: no corrupt or
// missing object, no index problem, and nothing left over (orphans,
// unfinished writes).
func fsckClean(t *testing.T, f *shareFixture, name string) {
	t.Helper()
	out, errOut, code := ltCode(t, "--home", filepath.Join(f.base, name), "cache", "fsck", "--json")
	var r fsckJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.FsckReport == nil {
		t.Errorf("%s: cache fsck: exit %d, %v: %s%s", name, code, err, out, errOut)
		return
	}
	if code != 0 || !r.Clean || r.OrphansRemoved > 0 || r.TempRemoved > 0 {
		t.Errorf("%s: cache fsck: exit %d: %s%s", name, code, out, errOut)
	}
	t.Logf("%s: fsck checked %d objects", name, r.Checked)
}

// TestServeTamper puts a tampering proxy between a `serve --cache` node
// and the origin, and another between clients and the node, and checks
// that every client detects what they spoil and nothing stores it:
//   - flipped bytes in .filez and .dirtree bodies, from the origin to the
//     node and from the node to clients: exactly the files and
//     directories spoiled are unreadable (EIO), everything else reads as
//     ostree's checkout;
//   - a summary replaced by random bytes, a summary.sig of another
//     summary, a summary signed by another key, and an older summary of
//     the publisher with its signature, on either side: a client either
//     does not resolve the ref, or (the node refused an upstream summary
//     and answered 502, so a client that verified the real one before
//     keeps it) reads the real tree; a client that never verified a
//     summary never resolves it;
//
// then, with the proxies passing everything through: `cache fsck` is
// clean for every node and client, and all of them read the real tree.
func TestServeTamper(t *testing.T) {
	f := newShareFixture(t, fetchtest.Options{})
	co := testutil.OstreeCheckout(t, f.origin.URL(), shareRef, f.key)
	oldSum, oldSig, forgedSum, forgedSig := otherSummaries(t, f)
	files, dirs := publishedTree(t, f.pub, shareRef)

	// Spoil files of files/share/d0 whose objects no other path shares,
	// large and small, and the listings of d1 (origin to node) and d2
	// (node to clients).
	uses := map[ostree.Checksum]int{}
	for _, c := range files {
		uses[c]++
	}
	var d0 []string
	for p, c := range files {
		if st, err := os.Lstat(filepath.Join(co, p)); err == nil && st.Mode().IsRegular() && st.Size() > 0 &&
			uses[c] == 1 && filepath.Dir(p) == "files/share/d0" {
			d0 = append(d0, p)
		}
	}
	size := func(p string) int64 { st, _ := os.Lstat(filepath.Join(co, p)); return st.Size() }
	slices.SortFunc(d0, func(a, b string) int { return int(size(b) - size(a)) })
	if len(d0) < 6 {
		t.Fatalf("files/share/d0 has %d files to spoil", len(d0))
	}
	spoilSet := func(paths []string, dir string) ([]string, map[string]bool) {
		names := []string{ostree.ObjectPath(dirs[dir], ostree.ObjDirTree, true)}
		want := map[string]bool{dir: true}
		for _, p := range paths {
			names = append(names, ostree.ObjectPath(files[p], ostree.ObjFile, true))
			want[p] = true
		}
		return names, want
	}
	upNames, upWant := spoilSet([]string{d0[0], d0[2], d0[len(d0)-1]}, "files/share/d1")
	downNames, downWant := spoilSet([]string{d0[1], d0[3], d0[len(d0)-2]}, "files/share/d2")

	up := newTamperer(t, f.origin.URL())
	nodeC, nodeURL := f.node(t, "node", up.url)
	down := newTamperer(t, nodeURL)
	children := map[string]*child{"node": nodeC}
	// restart stops the named child and starts it again (or for the
	// first time) and returns its URL (a node) or tree (a client).
	restart := func(name string, node bool) string {
		if c := children[name]; c != nil {
			c.stop(t)
		}
		_, err := os.Stat(filepath.Join(f.base, name))
		fresh := errors.Is(err, os.ErrNotExist)
		var s string
		switch {
		case node && fresh:
			children[name], s = f.node(t, name, up.url)
		case node:
			children[name], s = f.startNode(t, name)
		case fresh:
			children[name], s = f.client(t, name, down.url)
		default:
			children[name], s = f.mount(t, name)
		}
		return s
	}

	t.Run("objects from the origin", func(t *testing.T) {
		up.set(upNames, nil)
		defer up.set(nil, nil)
		if err := checkSpoiled(restart("client1", false), co, upWant); err != nil {
			t.Error(err)
		}
		for _, n := range upNames {
			if up.count(n) == 0 {
				t.Errorf("%s was never spoiled", n)
			}
		}
	})
	t.Run("objects from the node", func(t *testing.T) {
		down.set(downNames, nil)
		defer down.set(nil, nil)
		if err := checkSpoiled(restart("client2", false), co, downWant); err != nil {
			t.Error(err)
		}
		for _, n := range downNames {
			if down.count(n) == 0 {
				t.Errorf("%s was never spoiled", n)
			}
		}
	})

	random := make([]byte, len(oldSum))
	for i := range random {
		random[i] = byte(rand.N(256))
	}
	cases := []struct {
		name         string
		summary, sig []byte
		// older is a genuine older summary: only a reader that has
		// seen a newer one can refuse it.
		older bool
	}{
		{"random summary", random, nil, false},
		{"summary.sig of another summary", nil, oldSig, false},
		{"summary signed by another key", forgedSum, forgedSig, false},
		{"older summary of the publisher", oldSum, oldSig, true},
	}
	for _, side := range []string{"from the origin", "from the node"} {
		for _, c := range cases {
			t.Run(c.name+" "+side, func(t *testing.T) {
				tp := down
				if side == "from the origin" {
					// A node that never verified a summary before but
					// the older one, so only signatures can stop it.
					tp = up
					down.retarget(t, restart("nodeA", true))
				} else {
					down.retarget(t, nodeURL)
				}
				replace := map[string][]byte{}
				if c.summary != nil {
					replace["summary"] = c.summary
				}
				if c.sig != nil {
					replace["summary.sig"] = c.sig
				}
				tp.set(nil, replace)
				defer tp.set(nil, nil)
				readers := []string{"client1"}
				if !c.older {
					readers = append(readers, "newcomer")
				}
				for _, name := range readers {
					tree := restart(name, false)
					if _, err := os.Stat(tree); err != nil {
						t.Logf("%s: ref refused: %v", name, err)
						continue
					}
					if name == "newcomer" {
						t.Errorf("%s, which never verified a summary, resolved %s", name, shareRef)
					}
					if err := testutil.TreeDiff(tree, co, testutil.DiffOptions{MaskSpecialBits: true, IgnoreRootMode: true}); err != nil {
						t.Errorf("%s resolved %s to something else: %v", name, shareRef, err)
					} else {
						t.Logf("%s: kept the summary it verified before and read the real tree", name)
					}
				}
				spoiled := 0
				for n := range replace {
					spoiled += tp.count(n)
				}
				if spoiled == 0 {
					t.Errorf("nobody asked for the replaced summary")
				}
			})
		}
	}

	// Nothing spoiled stayed anywhere.
	for _, c := range children {
		c.stop(t)
	}
	homes := []string{"node", "nodeA", "client1", "client2", "newcomer"}
	for _, h := range homes {
		fsckClean(t, f, h)
	}
	down.retarget(t, restart("nodeA", true))
	if err := checkSpoiled(restart("newcomer", false), co, nil); err != nil {
		t.Errorf("newcomer through nodeA: %v", err)
	}
	down.retarget(t, restart("node", true))
	for _, name := range []string{"client1", "client2"} {
		if err := checkSpoiled(restart(name, false), co, nil); err != nil {
			t.Errorf("%s through node: %v", name, err)
		}
	}
}
