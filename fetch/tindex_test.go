package fetch_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/ostree"
)

// indexedRepo publishes a generated tree, GPG-signed, exported with a
// tree index.
func indexedRepo(t *testing.T, sopts fetchtest.Options) *treeRepo {
	t.Helper()
	return publishTree(t, 150, 2<<20, 11, true, sopts)
}

// headerOf parses a content object's header from the published repo.
func headerOf(t *testing.T, p *publisher, c ostree.Checksum) *ostree.FileHeader {
	t.Helper()
	cr, err := ostree.NewContentReader(strings.NewReader(string(mustRead(t, p.path(ostree.ObjectPath(c, ostree.ObjFile, true))))))
	if err != nil {
		t.Fatal(err)
	}
	return cr.Header
}

// TestTreeIndexAnswersLookups: with the index named by the signed
// summary, every dirtree, dirmeta and header of the commit is had after
// one request, and the headers are those of the objects.
func TestTreeIndexAnswersLookups(t *testing.T) {
	tr := indexedRepo(t, fetchtest.Options{})
	e := newEnv(t, tr.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchMetadata})
	defer s.Close()
	if _, err := s.Refs(ctxT(t), "r"); err != nil {
		t.Fatal(err)
	}
	tr.srv.Reset()
	cm, err := s.Commit(ctxT(t), "r", "app", tr.commit)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status().(*fetch.Status)
	if got := st.TreeIndexes[tr.commit.String()]; got != "loaded" {
		t.Fatalf("tree index state %q", got)
	}
	waitPrefetch(t, s)
	var n atomic.Int64
	complete, err := e.fetcher.Walk(ctxT(t), cm.RootTree, cm.RootMeta, fetch.WalkOptions{Remote: "r"}, func(ctx context.Context, d fetch.Dir) error {
		for _, f := range d.DirTree.Files {
			h, err := s.FileHeader(ctx, "r", f.Checksum)
			if err != nil {
				return err
			}
			want := headerOf(t, tr.p, f.Checksum)
			if h.Size != want.Size || h.Mode != want.Mode || h.UID != want.UID || h.Target != want.Target || len(h.Xattrs) != len(want.Xattrs) {
				t.Errorf("%s: index header %+v, object's %+v", f.Name, h, want)
			}
			n.Add(1)
		}
		return nil
	})
	if err != nil || !complete {
		t.Fatalf("walk: %v %v", complete, err)
	}
	if int(n.Load()) != len(tr.files) {
		t.Fatalf("walked %d files, the commit has %d", n.Load(), len(tr.files))
	}
	var paths []string
	for _, r := range tr.srv.Log() {
		paths = append(paths, r.Path)
	}
	// The commit, its commitmeta, the index.
	for _, p := range paths {
		if !strings.HasSuffix(p, ".commit") && !strings.HasSuffix(p, ".commitmeta") && !strings.Contains(p, "/lazytree/tree-index/") {
			t.Fatalf("request for %s although the tree index has it (all: %q)", p, paths)
		}
	}
	// Another remote's readers do not get this remote's index headers.
	for _, sum := range tr.files {
		if _, ok := e.fetcher.PeekHeaderVia("other", sum); ok {
			t.Fatal("a header from remote r's index answered for another remote")
		}
		break
	}
}

// TestTamperedTreeIndexFallsBack: an index whose bytes are not the ones
// the signed summary names is refused (and reported); lookups then fetch
// the objects, verified, as without an index.
func TestTamperedTreeIndexFallsBack(t *testing.T) {
	tr := indexedRepo(t, fetchtest.Options{})
	tr.srv.Update(func(o *fetchtest.Options) {
		o.Corrupt = fetchtest.Rule{P: 1, Paths: "/lazytree/tree-index/*"}
	})
	e := newEnv(t, tr.srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{Prefetch: fetch.PrefetchMetadata})
	defer s.Close()
	if _, err := s.Refs(ctxT(t), "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctxT(t), "r", "app", tr.commit); err != nil {
		t.Fatal(err)
	}
	st := s.Status().(*fetch.Status)
	if got := st.TreeIndexes[tr.commit.String()]; !strings.HasPrefix(got, "failed:") || !strings.Contains(got, "checksum") {
		t.Fatalf("tampered index state %q", got)
	}
	for name, sum := range tr.files {
		h, err := s.FileHeader(ctxT(t), "r", sum)
		if err != nil {
			t.Fatal(err)
		}
		if want := headerOf(t, tr.p, sum); h.Size != want.Size || h.Mode != want.Mode {
			t.Fatalf("%s: header %+v, want %+v", name, h, want)
		}
		break
	}
	if len(fileRequests(tr.srv)) == 0 {
		t.Fatal("no object fetched: the header came from somewhere unverified")
	}
}
