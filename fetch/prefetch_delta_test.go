package fetch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
	"github.com/lazytree/lazytree/ostree/repo"
)

// smallParts generates static deltas of parts of at most 256 KiB and no
// fallbacks, so that a small tree makes several parts.
func smallParts(ctx context.Context, objs *repo.Objects, from *ostree.Checksum, to ostree.Checksum,
	writePart func(ctx context.Context, i int, data []byte) error) ([]byte, error) {
	_, sb, err := delta.Generate(ctx, objs, from, to, writePart, delta.GenerateOptions{MaxPartSize: 256 << 10, FallbackSize: -1})
	return sb, err
}

// TestPrefetchDelta: mode delta streams the commit's static delta in the
// background: every part is fetched once, no content object is fetched
// loose, and the whole tree ends up cached and verified.
func TestPrefetchDelta(t *testing.T) {
	tr := publishTreeWith(t, 150, 3<<20, 11, func(o *repo.ExportOptions) { o.Deltas = smallParts }, fetchtest.Options{Latency: time.Millisecond})
	e := newEnv(t, tr.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchDelta})
	defer s.Close()
	tr.srv.Reset()
	if _, err := s.Commit(ctxT(t), "r", "app", tr.commit); err != nil {
		t.Fatal(err)
	}
	jobs := waitPrefetch(t, s)
	if len(jobs) != 1 || jobs[0].State != "done" || jobs[0].Errors != 0 {
		t.Fatalf("jobs: %+v", jobs)
	}
	j := jobs[0]
	if j.DeltaParts < 2 || j.DeltaPartsDone != j.DeltaParts || j.DeltaBytesDone != j.DeltaBytes || j.DeltaBytes == 0 {
		t.Fatalf("delta progress: %d/%d parts, %d/%d bytes; want several parts, all done", j.DeltaPartsDone, j.DeltaParts, j.DeltaBytesDone, j.DeltaBytes)
	}
	if int(j.Dirs) != tr.dirs {
		t.Fatalf("job counts %d directories, the commit has %d", j.Dirs, tr.dirs)
	}
	parts := map[string]int{}
	for _, r := range tr.srv.Log() {
		if strings.Contains(r.Path, "/deltas/") && !strings.HasSuffix(r.Path, "/superblock") {
			parts[r.Path]++
		}
	}
	if len(parts) != int(j.DeltaParts) {
		t.Fatalf("%d part files requested, the delta has %d parts", len(parts), j.DeltaParts)
	}
	for p, n := range parts {
		if n != 1 {
			t.Fatalf("part %s requested %d times", p, n)
		}
	}
	if got := fileRequests(tr.srv); len(got) != 0 {
		t.Fatalf("%d content objects fetched loose beside the delta: %v", len(got), got[:min(len(got), 5)])
	}
	for p, sum := range tr.files {
		if ok, _ := e.store.Has(index.TypeFile, sum); !ok {
			t.Fatalf("%s not cached after the delta", p)
		}
	}
	if rep, err := e.store.Fsck(ctxT(t)); err != nil || !rep.Clean() {
		t.Fatalf("fsck after the delta: %+v, %v", rep, err)
	}
}

// TestPrefetchDeltaUpdate: when a refresh moves a ref that the mount
// prefetched, mode delta brings the new commit in at once, through the
// delta from the cached commit: only that delta's parts are fetched.
func TestPrefetchDeltaUpdate(t *testing.T) {
	tr := publishTreeWith(t, 100, 2<<20, 12, func(o *repo.ExportOptions) { o.Deltas = smallParts }, fetchtest.Options{})
	e := newEnv(t, tr.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchDelta})
	defer s.Close()
	if _, err := s.Refs(ctxT(t), "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctxT(t), "r", "app", tr.commit); err != nil {
		t.Fatal(err)
	}
	waitPrefetch(t, s)
	// C2: the same tree with one file changed, and its deltas.
	day2 := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	c2 := tr.p.commit("app", "changed", day2)
	if _, err := tr.p.r.Export(context.Background(), repo.ExportOptions{Signer: tr.p.signer, Now: day2, Deltas: smallParts}); err != nil {
		t.Fatal(err)
	}
	tr.srv.Reset()
	s.Refresh(ctxT(t))
	var jobs []fetch.PrefetchStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if jobs = waitPrefetch(t, s); len(jobs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prefetch of the new commit after the refresh: %+v", jobs)
		}
	}
	if j := jobs[1]; j.Commit != c2.String() || j.State != "done" || j.DeltaParts == 0 || j.Errors != 0 {
		t.Fatalf("job of the new commit: %+v", j)
	}
	from := tr.commit
	want := ostree.DeltaPath(&from, c2)
	for _, r := range tr.srv.Log() {
		if strings.Contains(r.Path, "/deltas/") && !strings.Contains(r.Path, want) {
			t.Fatalf("fetched %s, want only the delta %s", r.Path, want)
		}
	}
	if got := fileRequests(tr.srv); len(got) != 0 {
		t.Fatalf("%d content objects fetched loose: %v", len(got), got)
	}
	cm, err := e.fetcher.Commit(ctxT(t), "r", "app", c2)
	if err != nil {
		t.Fatal(err)
	}
	complete, err := e.fetcher.Walk(ctxT(t), cm.RootTree, cm.RootMeta, fetch.WalkOptions{CachedOnly: true}, func(ctx context.Context, d fetch.Dir) error {
		for _, f := range d.DirTree.Files {
			if ok, _ := e.store.Has(index.TypeFile, f.Checksum); !ok {
				t.Errorf("%s/%s not cached", d.Path, f.Name)
			}
		}
		return nil
	})
	if err != nil || !complete {
		t.Fatalf("C2 not cached: %v %v", complete, err)
	}
}
