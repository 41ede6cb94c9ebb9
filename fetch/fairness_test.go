package fetch_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
)

// bigDirTree writes a valid dirtree of more than 1 MiB (so that reading
// it needs a large-body token) into a fresh repo directory and returns
// the directory and the dirtree's checksum.
func bigDirTree(t *testing.T) (string, ostree.Checksum) {
	t.Helper()
	var dt ostree.DirTree
	for i := range 24000 {
		var c ostree.Checksum
		rand.Read(c[:])
		dt.Files = append(dt.Files, ostree.TreeFile{Name: fmt.Sprintf("file-%06d", i), Checksum: c})
	}
	dt.Sort()
	data := dt.Encode()
	if len(data) < 1<<20 {
		t.Fatalf("dirtree of %d bytes is not large", len(data))
	}
	sum := ostree.Sum(data)
	dir := t.TempDir()
	p := filepath.Join(dir, ostree.ObjectPath(sum, ostree.ObjDirTree, true))
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

// trickler answers every dirtree with 1.2 MiB at once, then one byte
// every 100 ms until release is closed: fast enough for any throughput
// floor a test sets, slow enough to hold a large-body token.
func trickler(t *testing.T, started chan<- struct{}) (srv *httptest.Server, stop func()) {
	release := make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".dirtree") {
			http.NotFound(w, r)
			return
		}
		io.Copy(w, io.LimitReader(endless{}, 1200<<10))
		w.(http.Flusher).Flush()
		started <- struct{}{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-release:
				return
			case <-r.Context().Done():
				return
			case <-tick.C:
				w.Write([]byte{0})
				w.(http.Flusher).Flush()
			}
		}
	}))
	var once sync.Once
	stop = func() { once.Do(func() { close(release) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(stop) // runs first: handlers end, then the server closes
	return srv, stop
}

// TestHostileRemotesCannotStarveLargeMetadata: two hostile remotes each
// trickle a large dirtree body; a third remote's large dirtree still
// comes through, after waiting longer than its stall timeout without
// being failed as stalled (found in review of issue 8: the tokens were
// shared without limit, and waiting for one counted as a network stall).
func TestHostileRemotesCannotStarveLargeMetadata(t *testing.T) {
	dir, sum := bigDirTree(t)
	good := testutil.ServeDir(t, dir)
	started := make(chan struct{}, 8)
	bad1, release1 := trickler(t, started)
	bad2, release2 := trickler(t, started)
	opts := fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1, StallTimeout: time.Second, MinThroughput: 1}}
	e := newEnv(t, good.URL, fetch.AddOptions{NoGPGVerify: true}, opts)
	e.addRemote(t, "bad1", bad1.URL, fetch.AddOptions{NoGPGVerify: true})
	e.addRemote(t, "bad2", bad2.URL, fetch.AddOptions{NoGPGVerify: true})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Two large bodies from each hostile remote: without a per-remote
	// limit one remote alone takes both shared tokens.
	for _, r := range []string{"bad1", "bad1", "bad2", "bad2"} {
		wg.Go(func() {
			var c ostree.Checksum
			rand.Read(c[:])
			e.fetcher.DirTree(ctx, r, c)
		})
	}
	for range 4 {
		<-started
	}
	time.Sleep(300 * time.Millisecond) // they reach the token
	// Free the shared tokens only after longer than the stall timeout.
	go func() {
		time.Sleep(2500 * time.Millisecond)
		release1()
		release2()
	}()
	start := time.Now()
	if _, err := e.fetcher.DirTree(ctx, "r", sum); err != nil {
		t.Fatalf("the good remote's large dirtree: %v", err)
	}
	t.Logf("good remote's large dirtree after %s", time.Since(start).Round(time.Millisecond))
	cancel()
}

// TestSharedFetchIsPerRemote: a reader of one remote does not join a
// fetch of the same object that another remote is stalling (found in
// review of issue 8).
func TestSharedFetchIsPerRemote(t *testing.T) {
	dir, sum := bigDirTree(t)
	good := testutil.ServeDir(t, dir)
	asked := make(chan struct{}, 1)
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(stall.Close)
	e := newEnv(t, good.URL, fetch.AddOptions{NoGPGVerify: true}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1, StallTimeout: time.Second}})
	e.addRemote(t, "stall", stall.URL, fetch.AddOptions{NoGPGVerify: true})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	go e.fetcher.DirTree(ctx, "stall", sum)
	<-asked
	short, cancelShort := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancelShort()
	if _, err := e.fetcher.DirTree(short, "r", sum); err != nil {
		t.Fatalf("the good remote's dirtree while another remote stalls it: %v", err)
	}
}

// TestDeltaPartScratchCountsAgainstQuota: a part whose body may grow past
// the quota is refused before it is requested (its scratch file would
// have filled tmp/ regardless of the quota; found in review of issue 8),
// and the pull completes from loose objects.
func TestDeltaPartScratchCountsAgainstQuota(t *testing.T) {
	c, _, p := injectDelta(t, func(sb *delta.Superblock) {
		rand.Read(sb.Parts[0].Checksum[:])
		sb.Parts[0].Size, sb.Parts[0].USize = 256<<20, 256<<20
	})
	part := ostree.DeltaPath(nil, c) + "/0"
	srv := serveLogged(t, p.r.Dir, nil)
	home := t.TempDir()
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Add("r", fetch.AddOptions{URL: srv.URL, GPGKeys: [][]byte{vectorKey(t)}}); err != nil {
		t.Fatal(err)
	}
	store, err := objcache.Open(context.Background(), home, objcache.Options{NoSync: true, MaxBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := fetch.New(store, cfg, fetch.Options{})
	if _, err := f.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatalf("pull past a part too large for the quota: %v", err)
	}
	if srv.asked(part) {
		t.Fatal("the part was requested although its scratch space could not be reserved")
	}
	found := false
	for _, r := range f.Stats().RecentErrors() {
		found = found || strings.Contains(r.Cause, "quota")
	}
	if !found {
		t.Fatalf("the refused part is not in the recent errors: %+v", f.Stats().RecentErrors())
	}
	if used, _ := store.Usage(); used > 32<<20 {
		t.Fatalf("cache uses %d bytes after the pull", used)
	}
}

// TestPrefetchBoundIsMountWide: the mount's background bound holds across
// every prefetch at once, dirtree fetches included (found in review: the
// walker fetched dirtrees outside it, so two commits prefetched together
// ran twice the background fetches).
func TestPrefetchBoundIsMountWide(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	commits := map[string]ostree.Checksum{}
	for _, ref := range []string{"a", "b"} {
		for i := range 12 {
			d := filepath.Join(p.src, fmt.Sprintf("d%02d", i))
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, "f"), []byte(ref+fmt.Sprint(i)), 0o644)
		}
		commits[ref] = p.commit(ref, ref, day)
	}
	p.export(day)
	var mu sync.Mutex
	inflight, peakInflight, dirtrees := 0, 0, 0
	files := http.FileServer(http.Dir(p.r.Dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".dirtree") {
			mu.Lock()
			inflight++
			dirtrees++
			peakInflight = max(peakInflight, inflight)
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
			defer func() { mu.Lock(); inflight--; mu.Unlock() }()
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchMetadata, BackgroundWorkers: 2})
	defer s.Close()
	for ref, c := range commits {
		if _, err := s.Commit(ctxT(t), "r", ref, c); err != nil {
			t.Fatal(err)
		}
	}
	// 2 commits x (root + 12 directories + sub), all distinct.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := dirtrees
		mu.Unlock()
		if n >= 2*14 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if dirtrees < 2*14 {
		t.Fatalf("prefetch fetched %d dirtrees, want %d", dirtrees, 2*14)
	}
	if peakInflight > 2 {
		t.Fatalf("%d background dirtree fetches at once, the bound is 2", peakInflight)
	}
}
