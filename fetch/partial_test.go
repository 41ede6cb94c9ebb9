package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	fserve "github.com/lazytree/lazytree/fetch/serve"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// bigRepo publishes one large file of text-like content (and a small
// one), GPG-signed and exported with a tree index.
type bigRepo struct {
	p       *publisher
	commit  ostree.Checksum
	sum     ostree.Checksum // the large file's object
	content []byte
	srv     *fetchtest.Server
	x       *treeindex.File
}

func publishBig(t *testing.T, size int, sopts fetchtest.Options, xopts ...func(*treeindex.BuildOptions)) *bigRepo {
	t.Helper()
	return publishBigLevel(t, size, 0, sopts, xopts...)
}

// publishBigLevel is publishBig with the .filez deflated at level (0:
// lazytree's default, which a cache node's re-creation reproduces).
func publishBigLevel(t *testing.T, size, level int, sopts fetchtest.Options, xopts ...func(*treeindex.BuildOptions)) *bigRepo {
	t.Helper()
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	if err := testutil.WriteHostBlob(filepath.Join(p.src, "big"), int64(size)); err != nil {
		t.Fatal(err)
	}
	content := mustRead(t, filepath.Join(p.src, "big"))
	c := p.commit("app", "x", day, func(o *repo.CommitOptions) { o.Level = level })
	bo := treeindex.BuildOptions{Scan: treeindex.ZranScan}
	for _, o := range xopts {
		o(&bo)
	}
	if _, err := p.r.Export(context.Background(), repo.ExportOptions{Signer: p.signer, Now: day, TreeIndex: true, TreeIndexOptions: bo}); err != nil {
		t.Fatal(err)
	}
	srv, err := fetchtest.New(p.r.Dir, sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	br := &bigRepo{p: p, commit: c, content: content, srv: srv}
	tr := &treeRepo{p: p, commit: c, files: map[string]ostree.Checksum{}}
	walkRepoTree(t, p, c, tr)
	for path, sum := range tr.files {
		if filepath.Base(path) == "big" {
			br.sum = sum
		}
	}
	if br.sum == (ostree.Checksum{}) {
		t.Fatalf("no big file in %v", tr.files)
	}
	return br
}

// open mounts nothing: it loads the index through a MountSource (as the
// mount's first lookup does) and opens the large file.
func (br *bigRepo) open(t *testing.T, opts fetch.Options) (*env, *fetch.MountSource, fetch.File) {
	t.Helper()
	e, s := br.source(t, nil, opts)
	br.srv.Reset()
	f, err := s.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return e, s, f
}

func (br *bigRepo) entry(t *testing.T) *treeindex.File {
	t.Helper()
	if br.x != nil {
		return br.x
	}
	s, err := ostree.DecodeSummary(mustRead(t, br.p.path("summary")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Refs {
		if sum, ok := r.TreeIndex(); ok {
			x, err := treeindex.Decode(mustRead(t, br.p.path(ostree.TreeIndexPath(sum))))
			if err != nil {
				t.Fatal(err)
			}
			fl, ok := x.File(br.sum)
			if !ok || fl.Chunks() < 2 || len(fl.Points) == 0 {
				t.Fatalf("index entry of the large file: %v, %d chunks, %d points", ok, fl.Chunks(), len(fl.Points))
			}
			br.x = fl
			return fl
		}
	}
	t.Fatal("the summary names no tree index")
	return nil
}

func (br *bigRepo) filezBytes() (n int64, reqs int) {
	for _, r := range br.srv.Log() {
		if strings.HasSuffix(r.Path, ".filez") {
			n += r.Bytes
			reqs++
		}
	}
	return n, reqs
}

func readCtx(t *testing.T, f fetch.File, b []byte, off int64) (int, error) {
	t.Helper()
	sf, ok := f.(interface {
		ReadAtContext(context.Context, []byte, int64) (int, error)
	})
	if !ok {
		t.Fatalf("%T is not served before it is whole", f)
	}
	return sf.ReadAtContext(ctxT(t), b, off)
}

// TestPartialRangedRead: a 4 KiB read far into a large file fetches
// only the compressed bytes from the access point before it to the one
// after (at most two chunks' worth) and returns the right bytes.
func TestPartialRangedRead(t *testing.T) {
	br := publishBig(t, 24<<20, fetchtest.Options{})
	fl := br.entry(t)
	_, _, f := br.open(t, fetch.Options{})
	if _, ok := f.(*fetch.PartialFile); !ok {
		t.Fatalf("Open gave %T, want a PartialFile", f)
	}
	off := int64(20<<20 + 12345)
	buf := make([]byte, 4096)
	n, err := readCtx(t, f, buf, off)
	if err != nil || n != len(buf) {
		t.Fatalf("read: %d, %v", n, err)
	}
	if !bytes.Equal(buf, br.content[off:off+4096]) {
		t.Fatal("wrong bytes at 20 MiB")
	}
	got, reqs := br.filezBytes()
	perChunk := int64(fl.ArchivedSize) / int64(fl.Chunks())
	t.Logf("4 KiB at %d: %d requests, %d compressed bytes (object %d, %d per chunk)", off, reqs, got, fl.ArchivedSize, perChunk)
	if reqs != 1 || got > 2*perChunk+perChunk/4 {
		t.Fatalf("4 KiB at 20 MiB cost %d requests and %d bytes; two chunks' worth is about %d", reqs, got, 2*perChunk)
	}
	// The last byte.
	last := int64(len(br.content)) - 1
	if n, err := readCtx(t, f, buf[:1], last); n != 1 || (err != nil && err != io.EOF) || buf[0] != br.content[last] {
		t.Fatalf("last byte: %d %v", n, err)
	}
	// Past the end.
	if n, err := readCtx(t, f, buf, int64(len(br.content))); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d %v, want 0 EOF", n, err)
	}
}

// TestPartialSequential: reading a large file front to back fetches
// about the object once, in growing spans, and the object then becomes
// a normal cache object (verified whole) that opens without a request.
func TestPartialSequential(t *testing.T) {
	br := publishBig(t, 40<<20, fetchtest.Options{})
	fl := br.entry(t)
	e, s, f := br.open(t, fetch.Options{})
	var all bytes.Buffer
	buf := make([]byte, 128<<10)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := readCtx(t, f, buf, off)
		all.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(all.Bytes(), br.content) {
		t.Fatalf("sequential read: %d bytes, differ from the file's %d", all.Len(), len(br.content))
	}
	got, reqs := br.filezBytes()
	t.Logf("whole file: %d requests, %d compressed bytes, object %d (%.3f×)", reqs, got, fl.ArchivedSize, float64(got)/float64(fl.ArchivedSize))
	if float64(got) > 1.1*float64(fl.ArchivedSize) || reqs > 12 {
		t.Fatalf("whole file cost %d requests and %d bytes for a %d-byte object", reqs, got, fl.ArchivedSize)
	}
	// Completion is asynchronous: wait (bounded) for the whole object.
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := e.fetcher.Store().Open(ctxT(t), br.sum)
		if err == nil {
			h.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the object never became whole: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.Close()
	br.srv.Reset()
	g, err := s.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, ok := g.(*fetch.PartialFile); ok {
		t.Fatal("a whole object was opened as a partial file")
	}
	if n := br.srv.Stats().Requests; n != 0 {
		t.Fatalf("opening the whole object cost %d requests", n)
	}
	if n := e.fetcher.Store().PartialBytes(); n != 0 {
		t.Fatalf("%d partial bytes left after completion", n)
	}
}

// TestPartialTamperedChunk: a chunk whose bytes do not match its digest
// is never served: reads covering it fail with a verification error
// (recorded for status.json), other chunks read fine, and once the
// server is mended a later read fetches and serves it.
func TestPartialTamperedChunk(t *testing.T) {
	var mu sync.Mutex
	var bad []byte
	br := publishBig(t, 16<<20, fetchtest.Options{Override: func(path string) ([]byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		if bad != nil && strings.HasSuffix(path, ".filez") {
			return bad, true
		}
		return nil, false
	}})
	fl := br.entry(t)
	orig := mustRead(t, br.p.path(ostree.ObjectPath(br.sum, ostree.ObjFile, true)))
	// Flip a bit in the compressed bytes between the access points
	// around chunk 10's middle: chunk 10 (or its neighbour) inflates to
	// something else, or not at all.
	pt := fl.PointBefore(10<<20 + 512<<10)
	tampered := append([]byte(nil), orig...)
	tampered[pt.In+2000] ^= 0x10
	mu.Lock()
	bad = tampered
	mu.Unlock()
	e, _, f := br.open(t, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	buf := make([]byte, 64<<10)
	off := int64(10<<20 + 512<<10)
	_, err := readCtx(t, f, buf, off)
	var ve *fetch.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("read of the tampered chunk: %v, want a VerifyError", err)
	}
	found := false
	for _, r := range e.fetcher.Stats().RecentErrors() {
		if strings.Contains(r.Object, br.sum.String()) {
			found = true
		}
	}
	if !found {
		t.Fatalf("the failure is not among the recent errors: %+v", e.fetcher.Stats().RecentErrors())
	}
	// Far from the damage, the file reads.
	if n, err := readCtx(t, f, buf, 2<<20); err != nil || !bytes.Equal(buf[:n], br.content[2<<20:2<<20+n]) {
		t.Fatalf("read of a good chunk: %d %v", n, err)
	}
	// Mended: the same read now fetches it again and serves it.
	mu.Lock()
	bad = nil
	mu.Unlock()
	n, err := readCtx(t, f, buf, off)
	if err != nil || !bytes.Equal(buf[:n], br.content[off:off+int64(n)]) {
		t.Fatalf("read after the server was mended: %d %v", n, err)
	}
}

// TestPartialResumesAfterRestart: chunks stored by one process are
// rehashed and used by the next, not fetched again; a chunk damaged on
// disk meanwhile is fetched again.
func TestPartialResumesAfterRestart(t *testing.T) {
	br := publishBig(t, 16<<20, fetchtest.Options{})
	home := t.TempDir()
	opts := fetch.Options{}
	e := newEnvAt(t, home, br.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, opts)
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchMetadata})
	if _, err := s.Commit(ctxT(t), "r", "app", br.commit); err != nil {
		t.Fatal(err)
	}
	waitPrefetch(t, s)
	f, err := s.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, off := range []int64{1 << 20, 3 << 20} {
		if _, err := readCtx(t, f, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	s.Close()
	e.close(t)
	// Damage chunk 3 on disk.
	part := filepath.Join(home, "partial", br.sum.String()+".part")
	pf, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no partial file after the first process: %v", err)
	}
	pf.WriteAt([]byte("XXXX"), 3<<20+100)
	pf.Close()

	e = newEnvAt(t, home, br.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, opts)
	s = fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchMetadata})
	defer s.Close()
	if _, err := s.Commit(ctxT(t), "r", "app", br.commit); err != nil {
		t.Fatal(err)
	}
	waitPrefetch(t, s)
	br.srv.Reset()
	f, err = s.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := readCtx(t, f, buf, 1<<20); err != nil || !bytes.Equal(buf, br.content[1<<20:1<<20+4096]) {
		t.Fatalf("chunk 1 after restart: %v", err)
	}
	if _, reqs := br.filezBytes(); reqs != 0 {
		t.Fatalf("chunk 1 was fetched again (%d requests) although the partial file had it", reqs)
	}
	if _, err := readCtx(t, f, buf, 3<<20+100); err != nil || !bytes.Equal(buf, br.content[3<<20+100:3<<20+100+4096]) {
		t.Fatalf("damaged chunk 3 after restart: %v", err)
	}
	if _, reqs := br.filezBytes(); reqs != 1 {
		t.Fatalf("the damaged chunk cost %d requests, want 1", reqs)
	}
}

// TestPartialAcrossRemotes: chunks are trusted on one remote's word. A
// reader who came through another remote whose index chunks the same
// object differently gets the object verified whole while the first
// remote's partial file is open, and its own partial file after.
func TestPartialAcrossRemotes(t *testing.T) {
	brA := publishBig(t, 16<<20, fetchtest.Options{})
	brB := publishBig(t, 16<<20, fetchtest.Options{}, func(o *treeindex.BuildOptions) { o.ChunkSize = 2 << 20 })
	if brA.sum != brB.sum {
		t.Fatalf("the two repositories hold different objects: %s, %s", brA.sum, brB.sum)
	}
	if a, b := brA.entry(t), brB.entry(t); a.ChunkSize == b.ChunkSize {
		t.Fatalf("both indexes chunk by %d", a.ChunkSize)
	}
	e, s, fA := brA.open(t, fetch.Options{})
	e.addRemote(t, "q", brB.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}})
	if _, err := s.Commit(ctxT(t), "q", "app", brB.commit); err != nil {
		t.Fatal(err)
	}
	if got := s.Status().(*fetch.Status).TreeIndexes[brB.commit.String()]; got != "loaded" {
		t.Fatalf("q's tree index: %q", got)
	}
	buf := make([]byte, 4096)
	if n, err := readCtx(t, fA, buf, 5<<20); err != nil || !bytes.Equal(buf[:n], brA.content[5<<20:5<<20+n]) {
		t.Fatalf("r's partial read: %d %v", n, err)
	}
	fB, err := s.Open(ctxT(t), "q", brB.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer fB.Close()
	if _, ok := fB.(*fetch.PartialFile); ok {
		t.Fatal("q's reader shares chunks checked against r's index")
	}
	all := make([]byte, len(brB.content)+1)
	if n, err := fB.ReadAt(all, 0); n != len(brB.content) || !bytes.Equal(all[:n], brB.content) || (err != nil && err != io.EOF) {
		t.Fatalf("q's whole read: %d bytes, %v", n, err)
	}
}

// TestPartialCloseStopsSpans: the last Close stops the spans in flight
// and returns only once they have stopped, so none writes into the
// partial file after it (or into the next opener's); a new open then
// reads the file afresh.
func TestPartialCloseStopsSpans(t *testing.T) {
	br := publishBig(t, 16<<20, fetchtest.Options{})
	e, s, f := br.open(t, fetch.Options{})
	if err := br.srv.SetOptions(fetchtest.Options{Stall: fetchtest.Rule{P: 1, Paths: "objects/**"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	buf := make([]byte, 4096)
	if _, err := f.(*fetch.PartialFile).ReadAtContext(ctx, buf, 3<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read from a stalled server: %v, want the deadline", err)
	}
	if n := e.fetcher.Stats().InFlight.Load(); n != 1 {
		t.Fatalf("%d fetches in flight while the span stalls, want 1", n)
	}
	f.Close()
	if n := e.fetcher.Stats().InFlight.Load(); n != 0 {
		t.Fatalf("Close returned with %d span fetches still running", n)
	}
	if err := br.srv.SetOptions(fetchtest.Options{}); err != nil {
		t.Fatal(err)
	}
	g, err := s.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if n, err := readCtx(t, g, buf, 3<<20); err != nil || !bytes.Equal(buf[:n], br.content[3<<20:3<<20+n]) {
		t.Fatalf("read after reopening: %d %v", n, err)
	}
}

// TestPartialThroughCacheNode: a thin client whose mirror is a cache
// node (serve --cache) reads a large file before it is whole.
//   - "recreated": the publisher deflated at another level (as ostree's
//     zlib differs from lazytree's encoder), so the node's re-created
//     .filez is other bytes and the origin's access points do not fit
//     it: the client's first ranged span fails its check, and the client
//     reads the node's stream from its start instead, verifying every
//     chunk by its digest, without counting the node as failing or
//     asking the origin for content.
//   - "identical": lazytree's own encoding, which the node re-creates byte
//     for byte: ranged spans through the node verify and are used, so
//     the client fetches a fraction of the object.
//
// Either way the node fetched the object from the origin once.
func TestPartialThroughCacheNode(t *testing.T) {
	t.Run("recreated", func(t *testing.T) { testPartialThroughCacheNode(t, 1) })
	t.Run("identical", func(t *testing.T) { testPartialThroughCacheNode(t, 0) })
}

func testPartialThroughCacheNode(t *testing.T, level int) {
	br := publishBigLevel(t, 12<<20, level, fetchtest.Options{})
	keys := [][]byte{vectorKey(t)}
	node := newEnv(t, br.srv.URL(), fetch.AddOptions{GPGKeys: keys}, fetch.Options{})
	b, err := node.fetcher.CacheBackend("r")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fserve.Handler(b, fserve.Options{}))
	t.Cleanup(hs.Close)
	// A clean proxy in front of the node counts what the client takes.
	clean, err := fetchtest.NewProxy(hs.URL, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clean.Close)

	e, s := br.source(t, []string{clean.URL()}, fetch.Options{})
	br.srv.Reset()
	_, origin0 := urlStatusOf(t, e)
	f, err := s.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(*fetch.PartialFile); !ok {
		t.Fatalf("Open gave %T, want a PartialFile", f)
	}
	buf := make([]byte, 64<<10)
	for _, off := range []int64{9<<20 + 12345, 1 << 20, 12<<20 - int64(len(buf))} {
		n, err := readCtx(t, f, buf, off)
		if err != nil || !bytes.Equal(buf[:n], br.content[off:off+int64(n)]) {
			t.Fatalf("read at %d through the node: %d bytes, %v", off, n, err)
		}
	}
	mirror, origin := urlStatusOf(t, e)
	if mirror.Failures != 0 || !mirror.InUse {
		t.Errorf("the node was counted as failing: %+v", mirror)
	}
	if origin.Requests != origin0.Requests {
		t.Errorf("the client asked the origin %d times for the file: %+v", origin.Requests-origin0.Requests, origin)
	}
	if n, reqs := br.filezBytes(); reqs != 1 {
		t.Errorf("the origin served the large object %d times (%d bytes), want once, to the node", reqs, n)
	}
	var viaNode int64
	for _, r := range clean.Log() {
		if strings.HasSuffix(r.Path, br.sum.String()[2:]+".filez") {
			viaNode += r.Bytes
		}
	}
	fl := br.entry(t)
	if level == 0 && viaNode*2 > int64(fl.ArchivedSize) {
		t.Errorf("three small reads took %d bytes of the %d-byte object from a node that re-creates it byte for byte: ranges were not used", viaNode, fl.ArchivedSize)
	}
	if viaNode == 0 {
		t.Error("the client took nothing of the object from the node")
	}
	// The node encoded the large object once for all of the client's
	// requests, not once per span (and the small file once).
	if st := b.Stats(); st.Recreated > 2 {
		t.Errorf("the node re-created .filez %d times for one large and one small object", st.Recreated)
	}
	if level == 0 {
		return
	}
	for _, r := range e.fetcher.Stats().RecentErrors() {
		t.Errorf("recorded failure: %+v", r)
	}

	// A proxy between a second client and the node flips a byte of
	// every large object it passes: the chunk it lands in fails its
	// digest, and the client takes the object from the origin instead;
	// nothing it serves is the flipped byte.
	px, err := fetchtest.NewProxy(hs.URL, fetchtest.Options{Corrupt: fetchtest.Rule{P: 1, Paths: "/objects/**.filez"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	e2, s2 := br.source(t, []string{px.URL()}, fetch.Options{})
	f2, err := s2.Open(ctxT(t), "r", br.sum)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	got := make([]byte, len(br.content))
	for off := 0; off < len(got); off += len(buf) {
		n, err := readCtx(t, f2, got[off:min(off+len(buf), len(got))], int64(off))
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("read at %d through the tampering proxy: %v", off, err)
		}
		if n == 0 {
			t.Fatalf("read at %d: nothing", off)
		}
	}
	if !bytes.Equal(got, br.content) {
		t.Fatal("the file read through the tampering proxy differs from the published one")
	}
	if px.Count("/objects/**.filez") == 0 {
		t.Fatal("the proxy passed no large object: the test tested nothing")
	}
	if m, _ := urlStatusOf(t, e2); m.Failures == 0 {
		t.Errorf("the tampered node's stream was not counted against it: %+v", m)
	}
}

// source is a client of br's origin (with mirrors before it), its tree
// index loaded and its metadata prefetched.
func (br *bigRepo) source(t *testing.T, mirrors []string, opts fetch.Options) (*env, *fetch.MountSource) {
	t.Helper()
	e := newEnv(t, br.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}, Mirrors: mirrors}, opts)
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchMetadata})
	t.Cleanup(func() { s.Close() })
	if _, err := s.Commit(ctxT(t), "r", "app", br.commit); err != nil {
		t.Fatal(err)
	}
	if got := s.Status().(*fetch.Status).TreeIndexes[br.commit.String()]; got != "loaded" {
		t.Fatalf("tree index state %q", got)
	}
	waitPrefetch(t, s)
	return e, s
}

// urlStatusOf returns the status of e's remote's mirror and origin.
func urlStatusOf(t *testing.T, e *env) (mirror, origin fetch.URLStatus) {
	t.Helper()
	st := e.fetcher.RemoteStatus("r")
	if len(st.URLs) != 2 {
		t.Fatalf("status lists %d URLs, want the mirror and the origin: %+v", len(st.URLs), st.URLs)
	}
	return st.URLs[0], st.URLs[1]
}
