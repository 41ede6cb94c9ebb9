package fetch_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

// TestSummaryFreezeAndReplay reproduces hole 6 of issue 8: expiry was
// never enforced, a different summary with the same time was accepted,
// and any error fell back to the stored summary for ever.
func TestSummaryFreezeAndReplay(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	gpg := fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}

	t.Run("expired summary", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day)
		expires := time.Now().Add(-time.Hour).Truncate(time.Second)
		if _, err := p.r.Export(context.Background(), repo.ExportOptions{Signer: p.signer, Now: day, Expires: expires}); err != nil {
			t.Fatal(err)
		}
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, gpg, fetch.Options{})
		_, err := e.fetcher.Summary(ctxT(t), "r", true)
		wantVerifyError(t, err, "summary expired")
		if want := expires.UTC().Format(time.RFC3339); !strings.Contains(err.Error(), want) {
			t.Fatalf("%v: does not name the expiry %s", err, want)
		}
		// Not yet expired: accepted.
		if _, err := p.r.Export(context.Background(), repo.ExportOptions{Signer: p.signer, Now: day.Add(time.Hour), Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("different summary, same time", func(t *testing.T) {
		p := newPublisher(t, "")
		p.commit("ref", "v1", day)
		p.export(day)
		srv := testutil.ServeDir(t, p.r.Dir)
		e := newEnv(t, srv.URL, gpg, fetch.Options{})
		if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
			t.Fatal(err)
		}
		p.commit("ref", "v2", day.Add(time.Minute))
		p.export(day) // signed, but with the time of the one seen
		_, err := e.fetcher.Summary(ctxT(t), "r", true)
		wantVerifyError(t, err, "summary replay")
	})

	t.Run("fallback only on network failure, bounded in age", func(t *testing.T) {
		p := newPublisher(t, "")
		c := p.commit("ref", "v1", day)
		p.export(day)
		var mode atomic.Int32 // 0 serve, 1 HTTP 500, 2 HTTP 404
		files := http.FileServer(http.Dir(p.r.Dir))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch mode.Load() {
			case 1:
				http.Error(w, "broken", http.StatusInternalServerError)
			case 2:
				http.NotFound(w, r)
			default:
				files.ServeHTTP(w, r)
			}
		}))
		t.Cleanup(srv.Close)
		var now atomic.Int64
		now.Store(time.Now().Unix())
		clock := func() time.Time { return time.Unix(now.Load(), 0) }
		opts := fetch.Options{Now: clock, MaxOfflineAge: 48 * time.Hour, HTTP: fetch.HTTPOptions{Retries: -1}}
		e := newEnv(t, srv.URL, gpg, opts)
		if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
			t.Fatal(err)
		}
		// A server that answers with an error is online: no fallback.
		mode.Store(1)
		if _, err := e.fetcher.Summary(ctxT(t), "r", true); err == nil {
			t.Fatal("HTTP 500 fell back to the stored summary")
		}
		if e.fetcher.RemoteStatus("r").Offline {
			t.Fatal("a remote that answers is shown offline")
		}
		// Unreachable: the stored summary stands in, shown as offline.
		srv.Close()
		if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
			t.Fatalf("unreachable remote, fresh stored summary: %v", err)
		}
		if got, err := e.fetcher.ResolveRef(ctxT(t), "r", "ref"); err != nil || got != c {
			t.Fatalf("offline resolve: %s, %v", got, err)
		}
		st := e.fetcher.RemoteStatus("r")
		if !st.Offline || st.Cause == "" {
			t.Fatalf("status %+v, want offline with a cause", st)
		}
		// Three days later, still unreachable: refused.
		now.Add(72 * 3600)
		_, err := e.fetcher.Summary(ctxT(t), "r", true)
		if err == nil || !strings.Contains(err.Error(), "older than the 48h0m0s allowed offline") {
			t.Fatalf("stale stored summary: err = %v", err)
		}
	})
}

// TestFutureSummaryRefused: a summary dated ahead of the clock is refused;
// accepted, it would make every genuine summary after it a "replay" (found
// in review of issue 8).
func TestFutureSummaryRefused(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	p.commit("ref", "v1", day)
	p.export(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := testutil.ServeDir(t, p.r.Dir)
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	_, err := e.fetcher.Summary(ctxT(t), "r", true)
	wantVerifyError(t, err, "future timestamp")
	p.export(day)
	if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
		t.Fatalf("the genuine summary after a refused future one: %v", err)
	}
}

// TestIndexedSummariesCapped: the sub-summaries a summary.idx names are
// capped together, as one summary is (an unsigned index may name any
// number of them; found in review of issue 8).
func TestIndexedSummariesCapped(t *testing.T) {
	dir := testutil.CopyVectorRepo(t, "flatpak-repo")
	os.Remove(filepath.Join(dir, "summary"))
	os.Remove(filepath.Join(dir, "summary.sig"))
	srv := testutil.ServeDir(t, dir)
	smallest := int64(-1)
	matches, _ := filepath.Glob(filepath.Join(dir, "summaries", "*.gz"))
	for _, m := range matches {
		zr, err := gzip.NewReader(bytes.NewReader(mustRead(t, m)))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, zr)
		if smallest < 0 || n < smallest {
			smallest = n
		}
	}
	if smallest <= 0 {
		t.Fatal("the vector repo has no sub-summaries")
	}
	defer fetch.SetMaxMergedSummary(smallest - 1)()
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	_, err := e.fetcher.Refs(ctxT(t), "r")
	if err == nil || !strings.Contains(err.Error(), "allowed") && !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("sub-summaries against a cap of %d bytes: err = %v", smallest-1, err)
	}
}

// TestMaxOfflineAgeFromConfig: a remote's max-offline-age config key
// bounds how long its stored summary stands in; a bad value is refused.
func TestMaxOfflineAgeFromConfig(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	p.commit("ref", "v1", day)
	p.export(day)
	srv := httptest.NewServer(http.FileServer(http.Dir(p.r.Dir)))
	defer srv.Close()
	var now atomic.Int64
	now.Store(time.Now().Unix())
	opts := fetch.Options{Now: func() time.Time { return time.Unix(now.Load(), 0) }, HTTP: fetch.HTTPOptions{Retries: -1}}
	gpg := fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}
	e := newEnv(t, srv.URL, gpg, opts)
	e.addRemote(t, "r", srv.URL, gpg, "max-offline-age=1h")
	if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	now.Add(30 * 60)
	if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
		t.Fatalf("30 minutes offline, 1h allowed: %v", err)
	}
	now.Add(60 * 60)
	if _, err := e.fetcher.Summary(ctxT(t), "r", true); err == nil || !strings.Contains(err.Error(), "older than the 1h0m0s allowed offline") {
		t.Fatalf("90 minutes offline, 1h allowed: err = %v", err)
	}
	e.addRemote(t, "r", srv.URL, gpg, "max-offline-age=soon")
	if _, err := e.fetcher.Remote("r"); err == nil || !strings.Contains(err.Error(), "max-offline-age") {
		t.Fatalf("max-offline-age=soon: err = %v", err)
	}
}

// TestNotFoundSentinels: each "does not exist" has its own sentinel.
func TestNotFoundSentinels(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	p.commit("ref", "v1", day)
	p.export(day)
	srv := testutil.ServeDir(t, p.r.Dir)
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	if _, err := e.fetcher.ResolveRef(ctxT(t), "r", "nope"); !errors.Is(err, fetch.ErrNoRef) {
		t.Errorf("unknown ref: %v, want ErrNoRef", err)
	}
	if _, err := e.fetcher.ResolveRef(ctxT(t), "nope", "ref"); !errors.Is(err, fetch.ErrNoRemote) {
		t.Errorf("unknown remote: %v, want ErrNoRemote", err)
	}
	var c ostree.Checksum
	c[0] = 1
	if _, err := e.fetcher.Commit(ctxT(t), "", "", c); !errors.Is(err, fetch.ErrNoCommit) {
		t.Errorf("unknown commit by checksum: %v, want ErrNoCommit", err)
	}
	if _, err := e.fetcher.Commit(ctxT(t), "r", "ref", c); !errors.Is(err, fetch.ErrNoCommit) {
		t.Errorf("unknown commit of a remote: %v, want ErrNoCommit", err)
	}
}

// TestErrorsNameRemoteOnce: an error names its remote and object once
// per layer, not once per wrap (a verification failure already names
// both).
func TestErrorsNameRemoteOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("not what the checksum says"))
	}))
	defer srv.Close()
	e := newEnv(t, srv.URL, fetch.AddOptions{NoGPGVerify: true}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	var c ostree.Checksum
	c[0] = 9
	_, derr := e.fetcher.DirTree(ctxT(t), "r", c)
	ferr := e.fetcher.FetchContent(ctxT(t), "r", c)
	for what, err := range map[string]error{"dirtree": derr, "content": ferr} {
		if err == nil || !errors.Is(err, ostree.ErrCorrupt) {
			t.Fatalf("%s: err = %v, want a corrupt error", what, err)
		}
		if n := strings.Count(err.Error(), "remote r:"); n != 1 {
			t.Errorf("%s: %q names the remote %d times", what, err, n)
		}
	}
}
