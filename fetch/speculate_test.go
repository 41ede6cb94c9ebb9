package fetch_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSpeculation: a hinted directory's small entries are fetched ahead
// and its large one is not (a reader still gets it on demand); an opened
// ELF file's DT_NEEDED libraries are fetched from the tree's library
// directory.
func TestSpeculation(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	write := func(rel string, data []byte, mode os.FileMode) {
		os.MkdirAll(filepath.Dir(filepath.Join(p.src, rel)), 0o755)
		if err := os.WriteFile(filepath.Join(p.src, rel), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	elfBin, err := os.ReadFile("/bin/true") // an ELF file that needs libc.so.6
	if err != nil {
		t.Fatal(err)
	}
	write("files/bin/true", elfBin, 0o755)
	write("files/lib/x86_64-linux-gnu/libc.so.6", []byte("stands in for libc"), 0o644)
	write("files/lib/x86_64-linux-gnu/unrelated.so", []byte("not needed"), 0o644)
	big := make([]byte, 3<<20) // incompressible: over the guess cap archived too
	rand.Read(big)
	write("data/big", big, 0o644)
	write("data/a", []byte("small a"), 0o644)
	write("data/b", []byte("small b"), 0o644)
	c := p.commit("app", "x", day)
	p.export(day)
	srv, err := fetchtest.New(p.r.Dir, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{})
	defer s.Close()
	cm, err := s.Commit(ctxT(t), "r", "app", c)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(rel ...string) (ostree.Checksum, *ostree.DirTree) {
		tree := cm.RootTree
		for _, name := range rel {
			dt, err := s.DirTree(ctxT(t), "r", tree)
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := dt.LookupDir(name); ok {
				tree = d.Tree
				continue
			}
			f, ok := dt.LookupFile(name)
			if !ok {
				t.Fatalf("%s not in the commit", name)
			}
			return f.Checksum, nil
		}
		dt, err := s.DirTree(ctxT(t), "r", tree)
		if err != nil {
			t.Fatal(err)
		}
		return tree, dt
	}
	has := func(sum ostree.Checksum) bool { ok, _ := e.store.Has(index.TypeFile, sum); return ok }

	dsum, dt := lookup("data")
	s.HintDir("r", c, "data", dsum, dt, false)
	a, _ := lookup("data", "a")
	b, _ := lookup("data", "b")
	bigSum, _ := lookup("data", "big")
	waitFor(t, "the hinted siblings", func() bool {
		st := s.Status().(*fetch.Status).Speculation
		return st.Fetched+st.TooBig == 3
	})
	if !has(a) || !has(b) {
		t.Fatal("a hinted directory's small files were not fetched ahead")
	}
	if has(bigSum) {
		t.Fatal("a 3 MiB file was fetched on a guess")
	}
	if st := s.Status().(*fetch.Status); st.Speculation.TooBig != 1 || st.FetchErrors != 0 {
		t.Fatalf("speculation refused %d files, %d fetch errors recorded; want 1 and 0", st.Speculation.TooBig, st.FetchErrors)
	}
	if err := e.fetcher.FetchContent(ctxT(t), "r", bigSum); err != nil {
		t.Fatalf("on-demand fetch of the file too large to guess: %v", err)
	}

	trueSum, _ := lookup("files", "bin", "true")
	if err := e.fetcher.FetchContent(ctxT(t), "r", trueSum); err != nil {
		t.Fatal(err)
	}
	libc, _ := lookup("files", "lib", "x86_64-linux-gnu", "libc.so.6")
	unrelated, _ := lookup("files", "lib", "x86_64-linux-gnu", "unrelated.so")
	s.RecordAccess(c, "files/bin/true")
	waitFor(t, "the ELF file's library", func() bool { return has(libc) })
	if has(unrelated) {
		t.Fatal("a library the ELF file does not need was fetched")
	}
	if st := s.Status().(*fetch.Status).Speculation; st.ELFFiles != 1 || st.ELFLibs != 1 {
		t.Fatalf("ELF speculation: %+v", st)
	}
}

// TestWalkAhead: listing a directory right after its preceding sibling
// is a tree walk, and the rest of the parent's subtree is fetched ahead;
// listings out of order (an interpreter importing packages) are not.
func TestWalkAhead(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	for _, d := range []string{"a", "b", "c", "d", "d/deep"} {
		os.MkdirAll(filepath.Join(p.src, "top", d), 0o755)
		for _, f := range []string{"1", "2"} {
			os.WriteFile(filepath.Join(p.src, "top", d, f), []byte(d+f), 0o644)
		}
	}
	c := p.commit("app", "x", day)
	p.export(day)
	srv, err := fetchtest.New(p.r.Dir, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		order []string
		walk  bool
	}{{[]string{"a", "b"}, true}, {[]string{"c", "a"}, false}} {
		e := newEnv(t, srv.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
		s := fetch.NewSource(e.fetcher, fetch.SourceOptions{})
		cm, err := s.Commit(ctxT(t), "r", "app", c)
		if err != nil {
			t.Fatal(err)
		}
		dirOf := func(names ...string) (ostree.Checksum, *ostree.DirTree) {
			tree := cm.RootTree
			for _, n := range names {
				dt, err := s.DirTree(ctxT(t), "r", tree)
				if err != nil {
					t.Fatal(err)
				}
				d, _ := dt.LookupDir(n)
				tree = d.Tree
			}
			dt, err := s.DirTree(ctxT(t), "r", tree)
			if err != nil {
				t.Fatal(err)
			}
			return tree, dt
		}
		for _, name := range tc.order {
			sum, dt := dirOf("top", name)
			s.HintDir("r", c, "top/"+name, sum, dt, true)
		}
		_, deep := dirOf("top", "d", "deep")
		deepFile := deep.Files[0].Checksum
		has := func() bool { ok, _ := e.store.Has(index.TypeFile, deepFile); return ok }
		if tc.walk {
			waitFor(t, "the walk to reach top/d/deep", has)
		} else {
			time.Sleep(300 * time.Millisecond)
			if has() {
				t.Fatalf("listing %v fetched top/d/deep ahead", tc.order)
			}
		}
		if got := s.Status().(*fetch.Status).Speculation.Walks; (got == 1) != tc.walk {
			t.Fatalf("listing %v: %d walks detected", tc.order, got)
		}
		s.Close()
	}
}
