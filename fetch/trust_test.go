package fetch_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

// addRemote configures one more remote on e and reloads the fetcher's
// configuration. settings are raw config keys applied after Add (e.g.
// gpg-verify-summary=false, which Add never writes).
func (e *env) addRemote(t *testing.T, name, url string, add fetch.AddOptions, settings ...string) {
	t.Helper()
	add.URL = url
	add.Replace = true
	if err := e.cfg.Add(name, add); err != nil {
		t.Fatal(err)
	}
	for _, kv := range settings {
		k, v, _ := strings.Cut(kv, "=")
		e.cfg.KeyFile().Set(`remote "`+name+`"`, k, v)
	}
	if err := e.cfg.Save(); err != nil {
		t.Fatal(err)
	}
	e.fetcher.SetConfig(e.cfg)
}

// plantCommit puts an unsigned commit object straight into the cache, as
// any route that stores bytes after a SHA-256 check only would (a delta
// part, a pull from an unverified remote, a restart).
func plantCommit(t *testing.T, e *env, p *publisher, c ostree.Checksum) {
	t.Helper()
	data := mustRead(t, p.path(ostree.ObjectPath(c, ostree.ObjCommit, true)))
	if err := e.store.PutMeta(context.Background(), index.TypeCommit, c, data, "elsewhere"); err != nil {
		t.Fatal(err)
	}
}

// TestCachedCommitVerifiedForEachRemote reproduces hole 1 of issue 8: a
// commit in the cache was returned for any remote and ref without its
// signature or bindings being checked for them.
func TestCachedCommitVerifiedForEachRemote(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	gpg := fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}

	t.Run("cached from an unverified remote, asked for by a signed one", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("ref", "EVIL", day, func(o *repo.CommitOptions) { o.Signer = nil })
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, fetch.AddOptions{NoGPGVerify: true}, fetch.Options{})
		e.addRemote(t, "signed", srv.URL, gpg)
		if _, err := e.fetcher.Commit(ctxT(t), "r", "ref", c); err != nil {
			t.Fatalf("the unverified remote refused its own commit: %v", err)
		}
		_, err := e.fetcher.Commit(ctxT(t), "signed", "ref", c)
		wantVerifyError(t, err, "gpg signature")
	})

	t.Run("planted unsigned commit, pulled with gpg-verify-summary=false", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("ref", "EVIL", day, func(o *repo.CommitOptions) { o.Signer = nil })
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, gpg, fetch.Options{})
		e.addRemote(t, "r", srv.URL, gpg, "gpg-verify-summary=false")
		plantCommit(t, e, p, c)
		_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
		wantVerifyError(t, err, "gpg signature")
		// By checksum alone (.commits/<sum>): no configured remote
		// verifies it, so it is not shown.
		_, err = e.fetcher.Commit(ctxT(t), "", "", c)
		wantVerifyError(t, err, "gpg signature")
	})

	t.Run("bound to another ref, accepted once cached", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("other", "v1", day)
		if err := p.r.SetRef("ref", c); err != nil {
			t.Fatal(err)
		}
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, gpg, fetch.Options{})
		if _, err := e.fetcher.Commit(ctxT(t), "r", "other", c); err != nil {
			t.Fatal(err)
		}
		_, err := e.fetcher.Commit(ctxT(t), "r", "ref", c)
		wantVerifyError(t, err, "ref binding")
	})

	t.Run("signed commit cached first, then verified from the cache", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("ref", "v1", day)
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, gpg, fetch.Options{})
		if _, err := e.fetcher.Commit(ctxT(t), "r", "ref", c); err != nil {
			t.Fatal(err)
		}
		// A fresh fetcher (a restart) checks the cached commit against
		// the stored detached metadata, without the network.
		srv.Log.Reset()
		f2 := fetch.New(e.store, e.cfg, fetch.Options{})
		if _, err := f2.Commit(ctxT(t), "r", "ref", c); err != nil {
			t.Fatalf("cached signed commit after a restart: %v", err)
		}
		if got := srv.Log.Paths(); len(got) != 0 {
			t.Fatalf("a cached, signed commit was fetched again: %v", got)
		}
	})

	t.Run("detached metadata of an unverified remote replaced by the signed one's", func(t *testing.T) {
		signed := newPublisher(t, "")
		c := signed.commit("ref", "v1", day)
		signed.export(day)
		// A mirror that serves the same commit without its signatures.
		strip := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".commitmeta") {
				http.NotFound(w, r)
				return
			}
			http.FileServer(http.Dir(signed.r.Dir)).ServeHTTP(w, r)
		})
		bare := httptest.NewServer(strip)
		t.Cleanup(bare.Close)
		srv := testutil.ServeDir(t, signed.r.Dir)
		e := newEnv(t, bare.URL, fetch.AddOptions{NoGPGVerify: true}, fetch.Options{})
		e.addRemote(t, "signed", srv.URL, gpg)
		if _, err := e.fetcher.Commit(ctxT(t), "r", "ref", c); err != nil {
			t.Fatal(err)
		}
		if _, err := e.fetcher.Commit(ctxT(t), "signed", "ref", c); err != nil {
			t.Fatalf("the signed remote's own signature was not fetched: %v", err)
		}
	})
}

// TestMountSourceChecksEachPath reproduces hole 2 of issue 8: the mount
// kept one (remote, ref) per commit, the last one that listed it.
func TestMountSourceChecksEachPath(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	gpg := fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}

	t.Run("two refs at one commit bound to one of them", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("a", "v1", day)
		if err := p.r.SetRef("b", c); err != nil {
			t.Fatal(err)
		}
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		for run := range 20 {
			e := newEnv(t, srv.URL, gpg, fetch.Options{})
			s := fetch.NewSource(e.fetcher, fetch.SourceOptions{})
			if _, err := s.Refs(ctxT(t), "r"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Commit(ctxT(t), "r", "a", c); err != nil {
				t.Fatalf("run %d: ref a, which the commit is bound to: %v", run, err)
			}
			_, err := s.Commit(ctxT(t), "r", "b", c)
			wantVerifyError(t, err, "ref binding")
			s.Close()
		}
	})

	t.Run("an unverified remote lists a signed remote's checksum", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("ref", "EVIL", day, func(o *repo.CommitOptions) { o.Signer = nil })
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, gpg, fetch.Options{})
		e.addRemote(t, "r", srv.URL, gpg, "gpg-verify-summary=false")
		e.addRemote(t, "zopen", srv.URL, fetch.AddOptions{NoGPGVerify: true})
		s := fetch.NewSource(e.fetcher, fetch.SourceOptions{})
		defer s.Close()
		for _, r := range []string{"r", "zopen"} {
			if _, err := s.Refs(ctxT(t), r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Commit(ctxT(t), "zopen", "ref", c); err != nil {
			t.Fatalf("the unverified remote's own ref: %v", err)
		}
		_, err := s.Commit(ctxT(t), "r", "ref", c)
		wantVerifyError(t, err, "gpg signature")
	})
}

// TestOriginAfterRestart reproduces hole 5 of issue 8: after a restart the
// objects below a cached commit were asked of the alphabetically first
// remote, which does not have them.
func TestOriginAfterRestart(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	c := p.commit("ref", "v1", day)
	p.export(day)
	srv := testutil.ServeDir(t, p.r.Dir)
	var mu sync.Mutex
	var wrong []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		wrong = append(wrong, r.URL.Path)
		mu.Unlock()
		http.NotFound(w, r)
	}))
	t.Cleanup(other.Close)
	// Through .commits/<sum> (via "") and through the ref path, each on
	// its own cache: the tree must come from r.
	for _, via := range []string{"", "r"} {
		e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		e.addRemote(t, "a-empty", other.URL, fetch.AddOptions{NoGPGVerify: true})
		cm, err := e.fetcher.Commit(ctxT(t), "r", "ref", c)
		if err != nil {
			t.Fatal(err)
		}
		// A restart: a new fetcher over the same cache.
		f := fetch.New(e.store, e.cfg, fetch.Options{})
		s := fetch.NewSource(f, fetch.SourceOptions{})
		ref := "ref"
		if via == "" {
			ref = ""
		}
		if _, err := s.Commit(ctxT(t), via, ref, c); err != nil {
			t.Fatalf("via %q: %v", via, err)
		}
		tree, err := s.DirTree(ctxT(t), via, cm.RootTree)
		if err != nil {
			t.Fatalf("via %q: root dirtree: %v", via, err)
		}
		for _, d := range tree.Dirs {
			if _, err := s.DirTree(ctxT(t), via, d.Tree); err != nil {
				t.Fatalf("via %q: %s: %v", via, d.Name, err)
			}
		}
		s.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(wrong) != 0 {
		t.Fatalf("object names sent to the remote that does not have them: %v", wrong)
	}
}

// TestSetConfigKeepsUnchangedRemotes: reloading the config keeps the
// state of remotes whose settings and keys did not change (their summary
// is not fetched again within its TTL) and drops the others'.
func TestSetConfigKeepsUnchangedRemotes(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	p.commit("ref", "v1", day)
	p.export(day)
	srv := testutil.ServeDir(t, p.r.Dir)
	gpg := fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}
	e := newEnv(t, srv.URL, gpg, fetch.Options{})
	e.addRemote(t, "other", srv.URL, gpg)
	for _, r := range []string{"r", "other"} {
		if _, err := e.fetcher.Summary(ctxT(t), r, false); err != nil {
			t.Fatal(err)
		}
	}
	srv.Log.Reset()
	// Change "other" only, then reload.
	e.addRemote(t, "other", srv.URL, gpg, "max-offline-age=2d")
	for _, r := range []string{"r", "other"} {
		if _, err := e.fetcher.Summary(ctxT(t), r, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Log.Count("/summary"); got != 1 {
		t.Fatalf("summary fetched %d times after the reload, want 1 (only the changed remote): %v", got, srv.Log.Paths())
	}
}
