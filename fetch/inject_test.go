package fetch_test

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
	"github.com/lazytree/lazytree/ostree/gvariant"
	"github.com/lazytree/lazytree/ostree/repo"
)

// injectDelta publishes C (signed, summary without deltas) and, next to
// it, what a network attacker can add: a from-scratch "delta to C" made
// from the parts of an unrelated commit D, listed in an unsigned delta
// index. edit may change the superblock before it is written. It returns
// C, D and the repo directory.
func injectDelta(t *testing.T, edit func(sb *delta.Superblock)) (c, d ostree.Checksum, p *publisher) {
	t.Helper()
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p = newPublisher(t, "")
	d = p.commit("other", "planted content that C does not name", day)
	c = p.commit("ref", "v1", day.Add(time.Hour))
	p.export(day.Add(time.Hour))
	gen := func(ctx context.Context, objs *repo.Objects, from *ostree.Checksum, to ostree.Checksum,
		writePart func(ctx context.Context, i int, data []byte) error) ([]byte, error) {
		_, sb, err := delta.Generate(ctx, objs, from, to, writePart, delta.GenerateOptions{})
		return sb, err
	}
	if _, err := p.r.GenerateDelta(context.Background(), gen, nil, d); err != nil {
		t.Fatal(err)
	}
	sb, err := delta.ParseSuperblock(mustRead(t, p.path(ostree.DeltaPath(nil, d)+"/superblock")))
	if err != nil {
		t.Fatal(err)
	}
	_, cdata, err := p.r.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	sb.To, sb.CommitData, sb.Commit, sb.CommitMeta = c, cdata, nil, nil
	if edit != nil {
		edit(sb)
	}
	out, err := sb.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dir := p.path(ostree.DeltaPath(nil, c))
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "superblock"), out, 0o644)
	for i := range sb.Parts {
		part := mustRead(t, p.path(ostree.DeltaPath(nil, d)+"/"+strconv.Itoa(i)))
		os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), part, 0o644)
	}
	idx := gvariant.VarDict{}
	idx.Set(ostree.SummaryStaticDeltas, "a{sv}", []any{gvariant.DictEntry{Key: c.String(), Value: gvariant.NewVariant("ay", ostree.Sum(out).Bytes())}})
	b, err := gvariant.Encode(ostree.TypeVarDict, []any(idx))
	if err != nil {
		t.Fatal(err)
	}
	ip := p.path(ostree.DeltaIndexPath(c))
	os.MkdirAll(filepath.Dir(ip), 0o755)
	os.WriteFile(ip, b, 0o644)
	return c, d, p
}

// TestInjectedDeltaAddsNothingUnreached: the objects of an injected delta
// that the verified commit does not reach are dropped, and the pull still
// gives the commit's own tree.
func TestInjectedDeltaAddsNothingUnreached(t *testing.T) {
	c, d, p := injectDelta(t, nil)
	srv := serveLogged(t, p.r.Dir, nil)
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	if _, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatal(err)
	}
	if !srv.asked(ostree.DeltaPath(nil, c) + "/0") {
		t.Fatal("the injected delta was not tried; the test proves nothing")
	}
	dm, _, err := p.r.ReadCommit(d)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.store.Has(index.TypeDirTree, dm.RootTree); ok {
		t.Fatal("the planted commit's root dirtree stayed in the cache")
	}
	dt, err := ostree.DecodeDirTree(mustRead(t, p.path(ostree.ObjectPath(dm.RootTree, ostree.ObjDirTree, true))))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dt.Files {
		if ok, _ := e.store.Has(index.TypeFile, f.Checksum); ok {
			t.Fatalf("planted file %s stayed in the cache", f.Name)
		}
	}
	out := filepath.Join(t.TempDir(), "co")
	if err := e.fetcher.Checkout(ctxT(t), "r", c, out); err != nil {
		t.Fatal(err)
	}
	if got := string(mustRead(t, filepath.Join(out, "file"))); got != "v1" {
		t.Fatalf("checkout of C: file = %q", got)
	}
}

// TestHostileDeltaPartBoundsHeap reproduces part of hole 3 of issue 8: a
// 512 MiB delta part (injectable through the delta index) took the heap to
// 1.27 GiB. It is streamed through the decoder, refused by its digest,
// and the pull completes from loose objects.
func TestHostileDeltaPartBoundsHeap(t *testing.T) {
	const huge = 512 << 20
	c, _, p := injectDelta(t, func(sb *delta.Superblock) {
		rand.Read(sb.Parts[0].Checksum[:])
		sb.Parts[0].Size, sb.Parts[0].USize = huge, huge
	})
	part := "/" + ostree.DeltaPath(nil, c) + "/0"
	var sent atomic.Int64
	srv := serveLogged(t, p.r.Dir, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != part {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(huge))
		w.Write([]byte{delta.CompressionNone})
		n, _ := io.Copy(w, io.LimitReader(endless{}, huge-1))
		sent.Add(n + 1)
		return true
	})
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	runtime.GC()
	base := heapInUse()
	stop := peak(heapInUse)
	_, err := e.fetcher.Pull(ctxT(t), "r", "ref", nil)
	grew := stop() - base
	if err != nil {
		t.Fatalf("pull past a hostile delta part: %v", err)
	}
	if !srv.asked(part[1:]) {
		t.Fatal("the hostile part was not requested; the test proves nothing")
	}
	found := false
	for _, r := range e.fetcher.Stats().RecentErrors() {
		found = found || strings.Contains(r.Cause, "checksum")
	}
	if !found {
		t.Fatalf("the refused part is not in the recent errors: %+v", e.fetcher.Stats().RecentErrors())
	}
	t.Logf("512 MiB hostile part: heap grew by %d MiB at most while %d MiB were sent", grew>>20, sent.Load()>>20)
	if limit := int64(96 << 20); grew > limit {
		t.Fatalf("heap grew by %d MiB, more than %d MiB", grew>>20, limit>>20)
	}
	if left := dirBytes(filepath.Join(e.home, "tmp")); left != 0 {
		t.Fatalf("tmp/ holds %d bytes after the pull", left)
	}
}

// loggedServer serves a directory, records the paths asked for, and lets
// a test take over some requests.
type loggedServer struct {
	*httptest.Server
	paths chan string
	seen  map[string]bool
}

func serveLogged(t *testing.T, dir string, override func(http.ResponseWriter, *http.Request) bool) *loggedServer {
	files := http.FileServer(http.Dir(dir))
	s := &loggedServer{paths: make(chan string, 1<<16), seen: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.paths <- strings.TrimPrefix(r.URL.Path, "/"):
		default:
		}
		if override != nil && override(w, r) {
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *loggedServer) asked(p string) bool {
	for {
		select {
		case q := <-s.paths:
			s.seen[q] = true
		default:
			return s.seen[p]
		}
	}
}
