package fetch_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
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

// TestPythonImports: opening a module's bytecode fetches, on a guess,
// the modules its source imports at module level, found the way the
// interpreter would find them (packages, submodules named in a
// from-import, relative imports, extension modules and their ELF
// libraries, each source's bytecode), and their imports in turn; not the
// imports inside functions, nor modules nothing imports.
func TestPythonImports(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	write := func(rel string, data string) {
		os.MkdirAll(filepath.Dir(filepath.Join(p.src, rel)), 0o755)
		if err := os.WriteFile(filepath.Join(p.src, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	elfBin, err := os.ReadFile("/bin/true") // an ELF file that needs libc.so.6
	if err != nil {
		t.Fatal(err)
	}
	std := "files/lib/python3.11/"
	write(std+"json/__init__.py", "\"\"\"doc\nimport notthis\n\"\"\"\nfrom .decoder import JSONDecoder\nimport re\n")
	write(std+"json/__pycache__/__init__.cpython-311.pyc", "bytecode of json")
	write(std+"json/decoder.py", "try:\n    from _json import scanstring\nexcept ImportError:\n    scanstring = None\n\ndef f():\n    import lazyonly\n")
	write(std+"json/__pycache__/decoder.cpython-311.pyc", "bytecode of json.decoder")
	write(std+"json/__pycache__/decoder.cpython-311.opt-1.pyc", "optimised: never read")
	write(std+"re/__init__.py", "from . import _parser\nimport functools\n")
	write(std+"re/_parser.py", "# parser\n")
	write(std+"re/unimported.py", "# nothing imports it\n")
	write(std+"functools.py", "from collections import namedtuple\n")
	write(std+"collections/__init__.py", "# collections\n")
	write(std+"lazyonly.py", "# imported in a function\n")
	write(std+"unrelated.py", "# nothing imports it\n")
	write(std+"lib-dynload/_json.cpython-311-x86_64-linux-gnu.so", string(elfBin))
	write("files/lib/x86_64-linux-gnu/libc.so.6", "stands in for libc")
	write("files/lib/python3/dist-packages/site.py", "# a site module\n")
	write("files/bin/python3", string(elfBin))
	write(std+"encodings/__init__.py", "from . import aliases\n")
	write(std+"encodings/aliases.py", "# aliases\n")
	write(std+"encodings/utf_8.py", "import codecs\n")
	write(std+"encodings/cp1252.py", "# not read at startup\n")
	write(std+"xml/__init__.py", "from .dom import minidom\nfrom .. import beyond\n")
	write(std+"xml/dom/__init__.py", "# xml.dom\n")
	write(std+"xml/dom/minidom.py", "# xml.dom.minidom\n")
	write(std+"beyond.py", "# a relative import past the top package does not reach it\n")
	write(std+"LICENSE.txt", "a file beside the modules")
	write("data/x.txt", "opened")
	write("data/y.txt", "its neighbour")
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
	sumOf := func(rel string) ostree.Checksum {
		tree := cm.RootTree
		names := strings.Split(rel, "/")
		for i, name := range names {
			dt, err := s.DirTree(ctxT(t), "r", tree)
			if err != nil {
				t.Fatal(err)
			}
			if i < len(names)-1 {
				d, ok := dt.LookupDir(name)
				if !ok {
					t.Fatalf("%s not in the commit", rel)
				}
				tree = d.Tree
				continue
			}
			f, ok := dt.LookupFile(name)
			if !ok {
				t.Fatalf("%s not in the commit", rel)
			}
			return f.Checksum
		}
		return ostree.Checksum{}
	}
	has := func(rel string) bool { ok, _ := e.store.Has(index.TypeFile, sumOf(rel)); return ok }

	opened := std + "json/__pycache__/__init__.cpython-311.pyc"
	if err := e.fetcher.FetchContent(ctxT(t), "r", sumOf(opened)); err != nil {
		t.Fatal(err)
	}
	s.RecordAccess(c, opened)
	want := []string{
		std + "json/__init__.py", std + "json/decoder.py", std + "json/__pycache__/decoder.cpython-311.pyc",
		std + "re/__init__.py", std + "re/_parser.py", std + "functools.py", std + "collections/__init__.py",
		std + "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so", "files/lib/x86_64-linux-gnu/libc.so.6",
	}
	waitFor(t, "the imported modules", func() bool {
		for _, w := range want {
			if !has(w) {
				return false
			}
		}
		return true
	})
	// Let any stray guess finish before looking for what must not be.
	waitFor(t, "speculation to settle", func() bool {
		st := s.Status().(*fetch.Status).Speculation
		return st.PyModules >= 6 && st.ELFLibs >= 1
	})
	time.Sleep(100 * time.Millisecond)
	for _, no := range []string{std + "lazyonly.py", std + "unrelated.py", std + "re/unimported.py",
		std + "json/__pycache__/decoder.cpython-311.opt-1.pyc", "files/lib/python3/dist-packages/site.py"} {
		if has(no) {
			t.Errorf("%s was fetched on a guess", no)
		}
	}
	if st := s.Status().(*fetch.Status); st.FetchErrors != 0 {
		t.Errorf("%d fetch errors", st.FetchErrors)
	}

	// The interpreter's binary: what it reads as it starts comes ahead.
	if err := e.fetcher.FetchContent(ctxT(t), "r", sumOf("files/bin/python3")); err != nil {
		t.Fatal(err)
	}
	s.RecordAccess(c, "files/bin/python3")
	waitFor(t, "the interpreter's startup modules", func() bool {
		return has(std+"encodings/__init__.py") && has(std+"encodings/aliases.py") && has(std+"encodings/utf_8.py")
	})

	// A first lookup of a module (the interpreter stats its source
	// before it reads anything) starts its imports too.
	s.HintLookup("r", c, std+"xml/__init__.py")
	waitFor(t, "the looked-up module's imports", func() bool {
		return has(std+"xml/dom/__init__.py") && has(std+"xml/dom/minidom.py")
	})

	// Opening a file beside the modules guesses no module; opening one
	// in a plain directory guesses its neighbours (the control: once it
	// is done, so is the other examination, started first).
	if err := e.fetcher.FetchContent(ctxT(t), "r", sumOf(std+"LICENSE.txt")); err != nil {
		t.Fatal(err)
	}
	if err := e.fetcher.FetchContent(ctxT(t), "r", sumOf("data/x.txt")); err != nil {
		t.Fatal(err)
	}
	s.RecordAccess(c, std+"LICENSE.txt")
	s.RecordAccess(c, "data/x.txt")
	waitFor(t, "the neighbour in a plain directory", func() bool { return has("data/y.txt") })
	time.Sleep(100 * time.Millisecond)
	for _, no := range []string{std + "encodings/cp1252.py", std + "beyond.py", std + "unrelated.py"} {
		if has(no) {
			t.Errorf("%s was fetched on a guess", no)
		}
	}
}

// TestHintDeferred: a cold lookup in a library directory, or a listing
// of a Python module directory, fetches none of its other entries (the
// loader and the interpreter look up only what DT_NEEDED and the
// imports name, which are fetched by their own guesses); a scan of
// either in listing order (ls -l) fetches them all.
func TestHintDeferred(t *testing.T) {
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	write := func(rel string) {
		os.MkdirAll(filepath.Dir(filepath.Join(p.src, rel)), 0o755)
		if err := os.WriteFile(filepath.Join(p.src, rel), []byte("content of "+rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	libs := []string{"libc.so.6", "libm.so.6", "libz.so.1", "libfoo.so"}
	for _, l := range libs {
		write("files/lib/x86_64-linux-gnu/" + l)
	}
	mods := []string{"abc.py", "os.py", "stat.py"}
	for _, m := range mods {
		write("files/lib/python3.11/" + m)
	}
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
	dirOf := func(names ...string) (ostree.Checksum, *ostree.DirTree) {
		tree := cm.RootTree
		for _, name := range names {
			dt, err := s.DirTree(ctxT(t), "r", tree)
			if err != nil {
				t.Fatal(err)
			}
			d, ok := dt.LookupDir(name)
			if !ok {
				t.Fatalf("no %s", name)
			}
			tree = d.Tree
		}
		dt, err := s.DirTree(ctxT(t), "r", tree)
		if err != nil {
			t.Fatal(err)
		}
		return tree, dt
	}
	cached := func(dt *ostree.DirTree) int {
		n := 0
		for _, f := range dt.Files {
			if ok, _ := e.store.Has(index.TypeFile, f.Checksum); ok {
				n++
			}
		}
		return n
	}
	libSum, libTree := dirOf("files", "lib", "x86_64-linux-gnu")
	pySum, pyTree := dirOf("files", "lib", "python3.11")
	s.HintDir("r", c, "files/lib/x86_64-linux-gnu", libSum, libTree, false)
	s.HintDir("r", c, "files/lib/python3.11", pySum, pyTree, true)
	s.HintDir("r", c, "files/lib/python3.11", pySum, pyTree, false)
	time.Sleep(200 * time.Millisecond)
	if n, m := cached(libTree), cached(pyTree); n != 0 || m != 0 {
		t.Fatalf("hints fetched %d libraries and %d modules; want none", n, m)
	}
	s.HintScan("r", c, "files/lib/x86_64-linux-gnu", libSum, libTree)
	s.HintScan("r", c, "files/lib/python3.11", pySum, pyTree)
	waitFor(t, "the scanned directories", func() bool { return cached(libTree) == len(libs) && cached(pyTree) == len(mods) })
}
