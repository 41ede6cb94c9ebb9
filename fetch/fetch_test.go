package fetch_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
	"github.com/lazytree/lazytree/ostree/sign"
)

type env struct {
	home    string
	cfg     *fetch.Config
	store   *objcache.Store
	fetcher *fetch.Fetcher
}

// newEnv opens a fresh cache with one remote named "r" at url.
func newEnv(t *testing.T, url string, add fetch.AddOptions, opts fetch.Options) *env {
	t.Helper()
	return newEnvAt(t, t.TempDir(), url, add, opts)
}

// newEnvAt is newEnv in home, which may hold a cache already (the remote
// is added again).
func newEnvAt(t *testing.T, home, url string, add fetch.AddOptions, opts fetch.Options) *env {
	t.Helper()
	os.Remove(filepath.Join(home, "config"))
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	add.URL = url
	if err := cfg.Add("r", add); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	store, err := objcache.Open(context.Background(), home, objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if opts.HTTP.Backoff == 0 {
		opts.HTTP.Backoff = 5 * time.Millisecond
	}
	return &env{home: home, cfg: cfg, store: store, fetcher: fetch.New(store, cfg, opts)}
}

// close closes the cache (a process ending).
func (e *env) close(t *testing.T) {
	t.Helper()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
}

func vectorKey(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ostreeCheckout pulls ref with the real ostree and checks it out.
func ostreeCheckout(t *testing.T, url, ref string, extra ...string) string {
	t.Helper()
	return testutil.OstreeCheckout(t, url, ref, testutil.VectorPath(t, testutil.GPGPublicKeyFile), extra...)
}

// TestPullMatchesOstree pulls every ref of both vector repositories with
// lazytree and with the real ostree, and compares the checked-out trees.
func TestPullMatchesOstree(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		repo, collection string
		refs             []string
	}{
		{"repo", testutil.VectorCollectionID, []string{"exampleos/x86_64/stable", "exampleos/x86_64/old", "ostree-metadata"}},
		{"flatpak-repo", "", []string{"runtime/org.example.Platform/x86_64/1.0", "app/org.example.Hello/x86_64/stable"}},
	} {
		srv := testutil.ServeDir(t, testutil.CopyVectorRepo(t, tc.repo))
		for _, ref := range tc.refs {
			t.Run(tc.repo+"/"+ref, func(t *testing.T) {
				var theirs []string
				for _, mode := range [][]string{{"--disable-static-deltas"}, nil} {
					theirs = append(theirs, ostreeCheckout(t, srv.URL, ref, mode...))
				}
				for _, noDeltas := range []bool{true, false} {
					e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}, CollectionID: tc.collection}, fetch.Options{NoDeltas: noDeltas})
					srv.Log.Reset()
					res, err := e.fetcher.Pull(ctxT(t), "r", ref, nil)
					if err != nil {
						t.Fatalf("pull (no deltas: %v): %v", noDeltas, err)
					}
					usedDelta := false
					for _, p := range srv.Log.Paths() {
						usedDelta = usedDelta || strings.HasSuffix(p, "/superblock")
					}
					// The vector repo has scratch deltas to C1 and C2 only.
					wantDelta := !noDeltas && strings.HasPrefix(ref, "exampleos/")
					if usedDelta != wantDelta {
						t.Fatalf("no deltas: %v, but a superblock was fetched: %v", noDeltas, usedDelta)
					}
					ours := filepath.Join(t.TempDir(), "co")
					if err := e.fetcher.Checkout(ctxT(t), "r", res.Commit, ours); err != nil {
						t.Fatalf("checkout: %v", err)
					}
					for i, th := range theirs {
						if err := testutil.TreeDiff(th, ours, testutil.DiffOptions{}); err != nil {
							t.Fatalf("ostree pull (deltas %v) and lazytree pull (deltas %v) differ: %v", i == 1, !noDeltas, err)
						}
					}
				}
			})
		}
	}
}

// publisher is a repository we write and sign ourselves, to build attacks.
type publisher struct {
	t      *testing.T
	r      *repo.Repo
	src    string
	signer *repo.Signer
}

func newPublisher(t *testing.T, collection string) *publisher {
	t.Helper()
	dir := t.TempDir()
	r, err := repo.Init(filepath.Join(dir, "repo"), collection)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(testutil.VectorPath(t, testutil.GPGSecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	gs, err := sign.LoadGPGSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	return &publisher{t: t, r: r, src: src, signer: &repo.Signer{GPG: gs}}
}

func (p *publisher) commit(ref, content string, ts time.Time, opts ...func(*repo.CommitOptions)) ostree.Checksum {
	p.t.Helper()
	os.WriteFile(filepath.Join(p.src, "file"), []byte(content), 0o644)
	os.WriteFile(filepath.Join(p.src, "sub", "nested"), []byte("nested "+content), 0o644)
	o := repo.CommitOptions{Branch: ref, Timestamp: ts, Signer: p.signer, Subject: content}
	for _, f := range opts {
		f(&o)
	}
	res, err := p.r.CommitDir(context.Background(), p.src, o)
	if err != nil {
		p.t.Fatal(err)
	}
	return res.Checksum
}

func (p *publisher) export(ts time.Time) {
	p.t.Helper()
	if _, err := p.r.Export(context.Background(), repo.ExportOptions{Signer: p.signer, Now: ts}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *publisher) path(rel string) string { return filepath.Join(p.r.Dir, rel) }

func wantVerifyError(t *testing.T, err error, check string) {
	t.Helper()
	var ve *fetch.VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, fetch.ErrVerify) {
		t.Fatalf("err = %v, want a %q verification error", err, check)
	}
	if ve.Check != check {
		t.Fatalf("err = %v: check %q, want %q", err, ve.Check, check)
	}
	if !strings.Contains(err.Error(), check) {
		t.Fatalf("message %q does not name the check %q", err, check)
	}
}

func TestRefusals(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("replayed summary", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day)
		p.export(day)
		old, _ := os.ReadFile(p.path("summary"))
		oldSig, _ := os.ReadFile(p.path("summary.sig"))
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
			t.Fatal(err)
		}
		p.commit("ref", "v2", day.Add(time.Hour))
		p.export(day.Add(time.Hour))
		if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p.path("summary"), old, 0o644)
		os.WriteFile(p.path("summary.sig"), oldSig, 0o644)
		_, err := e.fetcher.Summary(ctxT(t), "r", true)
		wantVerifyError(t, err, "summary replay")
	})
	t.Run("replayed older commit", func(t *testing.T) {
		p := newPublisher(t, "")
		c1 := p.commit("ref", "v1", day)
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		p.commit("ref", "v2", day.Add(time.Hour))
		p.export(day.Add(time.Hour))
		if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
			t.Fatal(err)
		}
		// A freshly signed summary that points the ref back at v1.
		if err := p.r.SetRef("ref", c1); err != nil {
			t.Fatal(err)
		}
		p.export(day.Add(2 * time.Hour))
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "downgrade")
	})
	t.Run("unsigned commit", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day, func(o *repo.CommitOptions) { o.Signer = nil })
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "gpg signature")
	})
	t.Run("unsigned summary", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day)
		if _, err := p.r.Export(context.Background(), repo.ExportOptions{Now: day}); err != nil {
			t.Fatal(err)
		}
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "summary signature")
	})
	t.Run("wrong key", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day)
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		other, err := sign.LoadGPGSigner(generateKey(t))
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{other.PublicKey()}}, fetch.Options{})
		_, err = e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "gpg signature")
	})
	t.Run("missing ref binding", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day, func(o *repo.CommitOptions) { o.NoBindings = true })
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "ref binding")
	})
	t.Run("commit bound to another ref", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("other", "v1", day)
		if err := p.r.SetRef("ref", c); err != nil {
			t.Fatal(err)
		}
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "ref binding")
	})
	t.Run("missing collection binding", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day)
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}, CollectionID: "org.example.Other"}, fetch.Options{})
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "collection binding")
	})
	t.Run("signature copied from another commit", func(t *testing.T) {
		p := newPublisher(t, "")
		c1 := p.commit("ref", "v1", day)
		c2 := p.commit("ref", "v2", day.Add(time.Hour), func(o *repo.CommitOptions) { o.Signer = nil })
		p.export(day.Add(time.Hour))
		meta, err := os.ReadFile(p.path(ostree.ObjectPath(c1, ostree.ObjCommitMeta, true)))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p.path(ostree.ObjectPath(c2, ostree.ObjCommitMeta, true)), meta, 0o644)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		_, err = e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "gpg signature")
	})
	t.Run("commit from the future", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", time.Now().Add(72*time.Hour))
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "future timestamp")
	})
}

// TestTamperedObjects flips a byte in one object of each type: the pull
// fails naming the object, stores nothing from it, and succeeds on the
// same fetcher once the server is fixed.
func TestTamperedObjects(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	c := p.commit("ref", strings.Repeat("content ", 1000), day)
	p.export(day)
	cm, _, err := p.r.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := ostree.DecodeDirTree(mustRead(t, p.path(ostree.ObjectPath(cm.RootTree, ostree.ObjDirTree, true))))
	if err != nil {
		t.Fatal(err)
	}
	targets := []struct {
		name string
		c    ostree.Checksum
		typ  ostree.ObjectType
	}{
		{"commit", c, ostree.ObjCommit},
		{"commitmeta", c, ostree.ObjCommitMeta},
		{"dirtree", cm.RootTree, ostree.ObjDirTree},
		{"dirmeta", cm.RootMeta, ostree.ObjDirMeta},
		{"content", dt.Files[0].Checksum, ostree.ObjFile},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			path := p.path(ostree.ObjectPath(tg.c, tg.typ, true))
			good := mustRead(t, path)
			bad := append([]byte(nil), good...)
			bad[len(bad)/2] ^= 0x5a
			os.WriteFile(path, bad, 0o644)
			srv := testutil.ServeDir(t, p.r.Dir)
			e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
			_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
			if err == nil {
				t.Fatal("pull of a tampered object succeeded")
			}
			if !strings.Contains(err.Error(), tg.c.String()) {
				t.Fatalf("error does not name the object %s: %v", tg.c, err)
			}
			if tg.typ == ostree.ObjFile {
				if h, err := e.store.Open(ctxT(t), tg.c); err == nil {
					h.Close()
					t.Fatal("tampered content object was stored")
				}
			} else if _, err := e.store.ReadMeta(ctxT(t), tg.typ, tg.c); err == nil {
				t.Fatal("tampered object was stored")
			}
			os.WriteFile(path, good, 0o644)
			if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
				t.Fatalf("pull after fixing the server: %v", err)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRemoteConfig(t *testing.T) {
	home := t.TempDir()
	cfg, _ := fetch.LoadConfig(home)
	if err := cfg.Add("nokey", fetch.AddOptions{URL: "http://127.0.0.1:1/"}); err == nil {
		t.Fatal("a remote without a key and without --no-gpg-verify was accepted")
	}
	for _, u := range []string{"file:///etc", "ftp://x/", "http://"} {
		if err := cfg.Add("bad", fetch.AddOptions{URL: u, NoGPGVerify: true}); err == nil {
			t.Fatalf("URL %q accepted", u)
		}
	}
	for _, n := range []string{"../x", "a/b", "", "-x"} {
		if err := cfg.Add(n, fetch.AddOptions{URL: "http://127.0.0.1/", NoGPGVerify: true}); err == nil {
			t.Fatalf("remote name %q accepted", n)
		}
	}
	if err := cfg.Add("ok", fetch.AddOptions{URL: "http://127.0.0.1/", Mirrors: []string{"http://127.0.0.2/"}, GPGKeys: [][]byte{vectorKey(t)}}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	cfg2, _ := fetch.LoadConfig(home)
	r, err := cfg2.Remote("ok")
	if err != nil {
		t.Fatal(err)
	}
	if !r.GPGVerify || !r.GPGVerifySummary || len(r.Mirrors) != 1 {
		t.Fatalf("remote read back as %+v", r)
	}
	if err := cfg2.Remove("ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg2.Remote("ok"); !errors.Is(err, fetch.ErrNoRemote) {
		t.Fatalf("removed remote: %v", err)
	}
}

// TestIndexedSummaryOnly lists and pulls a Flatpak repo that publishes only
// summary.idx and sub-summaries, and refuses a tampered sub-summary.
func TestIndexedSummaryOnly(t *testing.T) {
	dir := testutil.CopyVectorRepo(t, "flatpak-repo")
	os.Remove(filepath.Join(dir, "summary"))
	os.Remove(filepath.Join(dir, "summary.sig"))
	srv := testutil.ServeDir(t, dir)
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	refs, err := e.fetcher.Refs(ctxT(t), "r")
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0].Name != "app/org.example.Hello/x86_64/stable" || refs[0].InstalledSize != 2048 || refs[0].DownloadSize != 553 {
		t.Fatalf("refs from summary.idx: %+v", refs)
	}
	if refs[0].Timestamp != 1704067200 {
		t.Fatalf("timestamp %d", refs[0].Timestamp)
	}
	if _, err := e.fetcher.Pull(ctxT(t), "r", "app/org.example.Hello/x86_64/stable", nil); err != nil {
		t.Fatal(err)
	}
	// A flipped byte in a sub-summary fails its digest.
	matches, _ := filepath.Glob(filepath.Join(dir, "summaries", "*.gz"))
	for _, m := range matches {
		b := mustRead(t, m)
		os.WriteFile(m, append(b[:len(b)-8:len(b)-8], make([]byte, 8)...), 0o644)
	}
	e2 := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	if _, err := e2.fetcher.Refs(ctxT(t), "r"); err == nil {
		t.Fatal("a damaged sub-summary was accepted")
	}
}

// TestPullUsesFromDelta: with C1 cached as the ref's last commit, pulling
// C2 applies the C1->C2 delta (rollsum and bspatch ops against C1's files)
// and the result matches ostree's checkout of C2.
func TestPullUsesFromDelta(t *testing.T) {
	testutil.RequireRoot(t)
	srv := testutil.ServeDir(t, testutil.CopyVectorRepo(t, "repo"))
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}, CollectionID: testutil.VectorCollectionID}, fetch.Options{})
	const ref = "exampleos/x86_64/stable"
	c1, _ := ostree.ParseChecksum(testutil.C1Checksum)
	if _, err := e.fetcher.Commit(ctxT(t), "r", ref, c1); err != nil {
		t.Fatal(err)
	}
	if err := e.fetcher.Checkout(ctxT(t), "r", c1, filepath.Join(t.TempDir(), "c1")); err != nil {
		t.Fatal(err)
	}
	srv.Log.Reset()
	res, err := e.fetcher.Pull(ctxT(t), "r", ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fromDelta bool
	var loose int
	for _, p := range srv.Log.Paths() {
		fromDelta = fromDelta || (strings.Contains(p, "-") && strings.HasSuffix(p, "/superblock"))
		if strings.HasSuffix(p, ".filez") {
			loose++
		}
	}
	if !fromDelta {
		t.Fatalf("the C1->C2 delta was not used: %v", srv.Log.Paths())
	}
	ours := filepath.Join(t.TempDir(), "co")
	if err := e.fetcher.Checkout(ctxT(t), "r", res.Commit, ours); err != nil {
		t.Fatal(err)
	}
	if err := testutil.TreeDiff(ostreeCheckout(t, srv.URL, ref), ours, testutil.DiffOptions{}); err != nil {
		t.Fatalf("C2 through the delta differs from ostree's: %v", err)
	}
	t.Logf("requests after the delta: %d, loose content objects: %d", len(srv.Log.Paths()), loose)
}

// TestTamperedDeltaFallsBack: a damaged delta part is refused, nothing
// from it is stored, and the pull completes from loose objects.
func TestTamperedDeltaFallsBack(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.CopyVectorRepo(t, "repo")
	part := filepath.Join(dir, "deltas/wn/3DwI6sKf_8aitP3+XNo91Q7zhmt8FOXrmi6ZmDXEw/0")
	b := mustRead(t, part)
	b[len(b)/2] ^= 0xff
	os.WriteFile(part, b, 0o644)
	srv := testutil.ServeDir(t, dir)
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}, CollectionID: testutil.VectorCollectionID}, fetch.Options{})
	res, err := e.fetcher.Pull(ctxT(t), "r", "exampleos/x86_64/old", nil)
	if err != nil {
		t.Fatalf("pull with a damaged delta: %v", err)
	}
	if srv.Log.Count("/deltas/wn/3DwI6sKf_8aitP3+XNo91Q7zhmt8FOXrmi6ZmDXEw/0") != 1 {
		t.Fatalf("the damaged part was not tried: %v", srv.Log.Paths())
	}
	found := false
	for _, r := range e.fetcher.Stats().RecentErrors() {
		found = found || strings.Contains(r.Cause, "checksum")
	}
	if !found {
		t.Fatalf("the refused delta is not in the recent errors: %+v", e.fetcher.Stats().RecentErrors())
	}
	ours := filepath.Join(t.TempDir(), "co")
	if err := e.fetcher.Checkout(ctxT(t), "r", res.Commit, ours); err != nil {
		t.Fatal(err)
	}
	if err := testutil.TreeDiff(ostreeCheckout(t, srv.URL, "exampleos/x86_64/old", "--disable-static-deltas"), ours, testutil.DiffOptions{}); err != nil {
		t.Fatal(err)
	}
}
