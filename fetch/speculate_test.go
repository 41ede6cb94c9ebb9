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

// specTree is the speculation tests' fixture: a commit of files (path →
// content; executable under files/bin/) published as ref app of remote r,
// a fresh cache and a Source over it.
type specTree struct {
	t *testing.T
	e *env
	s *fetch.MountSource
	c ostree.Checksum
	// root is the commit's root dirtree.
	root ostree.Checksum
}

// publishSpec commits and exports files and serves the repository on an
// unshaped link until the test ends.
func publishSpec(t *testing.T, files map[string]string) (url string, c ostree.Checksum) {
	t.Helper()
	srv, _, c := publishSpecAt(t, files)
	return srv.URL(), c
}

// publishSpecAt is publishSpec, returning the server and the repository.
func publishSpecAt(t *testing.T, files map[string]string) (srv *fetchtest.Server, repoDir string, c ostree.Checksum) {
	t.Helper()
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPublisher(t, "")
	for rel, data := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "files/bin/") {
			mode = 0o755
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(p.src, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.src, rel), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	c = p.commit("app", "x", day)
	p.export(day)
	srv, err := fetchtest.New(p.r.Dir, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, p.r.Dir, c
}

// openSpec opens a fresh cache on url's commit c; the Source closes when
// the test ends.
func openSpec(t *testing.T, url string, c ostree.Checksum) *specTree {
	t.Helper()
	e := newEnv(t, url, fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}}, fetch.Options{})
	s := fetch.NewSource(e.fetcher, fetch.SourceOptions{})
	t.Cleanup(func() { s.Close() })
	cm, err := s.Commit(ctxT(t), "r", "app", c)
	if err != nil {
		t.Fatal(err)
	}
	return &specTree{t: t, e: e, s: s, c: c, root: cm.RootTree}
}

// newSpecTree is publishSpec then openSpec.
func newSpecTree(t *testing.T, files map[string]string) *specTree {
	t.Helper()
	url, c := publishSpec(t, files)
	return openSpec(t, url, c)
}

// dir returns the dirtree at rel ("" is the root), through the Source.
func (st *specTree) dir(rel string) (ostree.Checksum, *ostree.DirTree) {
	st.t.Helper()
	tree := st.root
	dt, err := st.s.DirTree(ctxT(st.t), "r", tree)
	if err != nil {
		st.t.Fatal(err)
	}
	if rel == "" || rel == "." {
		return tree, dt
	}
	for _, name := range strings.Split(rel, "/") {
		d, ok := dt.LookupDir(name)
		if !ok {
			st.t.Fatalf("no directory %s in the commit", rel)
		}
		tree = d.Tree
		if dt, err = st.s.DirTree(ctxT(st.t), "r", tree); err != nil {
			st.t.Fatal(err)
		}
	}
	return tree, dt
}

// file returns the content checksum of the file at rel.
func (st *specTree) file(rel string) ostree.Checksum {
	st.t.Helper()
	_, dt := st.dir(filepath.Dir(strings.TrimPrefix(rel, "/")))
	f, ok := dt.LookupFile(filepath.Base(rel))
	if !ok {
		st.t.Fatalf("no file %s in the commit", rel)
	}
	return f.Checksum
}

// has reports whether content sum is in the cache.
func (st *specTree) has(sum ostree.Checksum) bool {
	ok, _ := st.e.store.Has(index.TypeFile, sum)
	return ok
}

// cached counts dt's files that are in the cache.
func (st *specTree) cached(dt *ostree.DirTree) int {
	n := 0
	for _, f := range dt.Files {
		if st.has(f.Checksum) {
			n++
		}
	}
	return n
}

// TestSpeculation: a hinted directory's small entries are fetched ahead
// and its large one is not (a reader still gets it on demand); an opened
// ELF file's DT_NEEDED libraries are fetched from the tree's library
// directory.
func TestSpeculation(t *testing.T) {
	elfBin, err := os.ReadFile("/bin/true") // an ELF file that needs libc.so.6
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20) // incompressible: over the guess cap archived too
	rand.Read(big)
	st := newSpecTree(t, map[string]string{
		"files/bin/true":                          string(elfBin),
		"files/lib/x86_64-linux-gnu/libc.so.6":    "stands in for libc",
		"files/lib/x86_64-linux-gnu/unrelated.so": "not needed",
		"data/big": string(big),
		"data/a":   "small a",
		"data/b":   "small b",
	})
	e, s, c, has := st.e, st.s, st.c, st.has

	dsum, dt := st.dir("data")
	s.HintDir("r", c, "data", dsum, dt, false)
	a, b, bigSum := st.file("data/a"), st.file("data/b"), st.file("data/big")
	waitFor(t, "the hinted siblings", func() bool {
		got := s.Status().(*fetch.Status).Speculation
		return got.Fetched+got.TooBig == 3
	})
	if !has(a) || !has(b) {
		t.Fatal("a hinted directory's small files were not fetched ahead")
	}
	if has(bigSum) {
		t.Fatal("a 3 MiB file was fetched on a guess")
	}
	if got := s.Status().(*fetch.Status); got.Speculation.TooBig != 1 || got.FetchErrors != 0 {
		t.Fatalf("speculation refused %d files, %d fetch errors recorded; want 1 and 0", got.Speculation.TooBig, got.FetchErrors)
	}
	if err := e.fetcher.FetchContent(ctxT(t), "r", bigSum); err != nil {
		t.Fatalf("on-demand fetch of the file too large to guess: %v", err)
	}

	trueSum := st.file("files/bin/true")
	if err := e.fetcher.FetchContent(ctxT(t), "r", trueSum); err != nil {
		t.Fatal(err)
	}
	libc, unrelated := st.file("files/lib/x86_64-linux-gnu/libc.so.6"), st.file("files/lib/x86_64-linux-gnu/unrelated.so")
	s.RecordAccess("r", c, "files/bin/true")
	waitFor(t, "the ELF file's library", func() bool { return has(libc) })
	if has(unrelated) {
		t.Fatal("a library the ELF file does not need was fetched")
	}
	if got := s.Status().(*fetch.Status).Speculation; got.ELFFiles != 1 || got.ELFLibs != 1 {
		t.Fatalf("ELF speculation: %+v", got)
	}
}

// TestSpeculationFollowsTheReader: guesses for a file opened through
// remote q are fetched from q, though the commit was verified for r
// first (a mirror, or the same repository under two names).
func TestSpeculationFollowsTheReader(t *testing.T) {
	elfBin, err := os.ReadFile("/bin/true") // an ELF file that needs libc.so.6
	if err != nil {
		t.Fatal(err)
	}
	srvR, dir, c := publishSpecAt(t, map[string]string{
		"files/bin/true":                       string(elfBin),
		"files/lib/x86_64-linux-gnu/libc.so.6": "stands in for libc",
	})
	srvQ, err := fetchtest.New(dir, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srvQ.Close()
	st := openSpec(t, srvR.URL(), c) // verified for r first
	st.e.addRemote(t, "q", srvQ.URL(), fetch.AddOptions{GPGKeys: [][]byte{vectorKey(t)}})
	if _, err := st.s.Commit(ctxT(t), "q", "app", c); err != nil {
		t.Fatal(err)
	}
	libc := st.file("files/lib/x86_64-linux-gnu/libc.so.6")
	if err := st.e.fetcher.FetchContent(ctxT(t), "q", st.file("files/bin/true")); err != nil {
		t.Fatal(err)
	}
	srvR.Reset()
	srvQ.Reset()
	st.s.RecordAccess("q", c, "files/bin/true")
	waitFor(t, "the ELF file's library", func() bool { return st.has(libc) })
	libcPath := "/" + ostree.ObjectPath(libc, ostree.ObjFile, true)
	fetchedFrom := func(srv *fetchtest.Server) bool {
		for _, r := range srv.Log() {
			if r.Path == libcPath {
				return true
			}
		}
		return false
	}
	if !fetchedFrom(srvQ) || fetchedFrom(srvR) {
		t.Fatalf("libc.so.6 fetched from q: %v, from r: %v; want q only", fetchedFrom(srvQ), fetchedFrom(srvR))
	}
}

// TestWalkAhead: listing a directory right after its preceding sibling
// is a tree walk, and the rest of the parent's subtree is fetched ahead;
// listings out of order (an interpreter importing packages) are not.
func TestWalkAhead(t *testing.T) {
	files := map[string]string{}
	for _, d := range []string{"a", "b", "c", "d", "d/deep"} {
		for _, f := range []string{"1", "2"} {
			files["top/"+d+"/"+f] = d + f
		}
	}
	url, c := publishSpec(t, files)
	for _, tc := range []struct {
		order []string
		walk  bool
	}{{[]string{"a", "b"}, true}, {[]string{"c", "a"}, false}} {
		st := openSpec(t, url, c)
		for _, name := range tc.order {
			sum, dt := st.dir("top/" + name)
			st.s.HintDir("r", c, "top/"+name, sum, dt, true)
		}
		_, deep := st.dir("top/d/deep")
		deepFile := deep.Files[0].Checksum
		has := func() bool { return st.has(deepFile) }
		if tc.walk {
			waitFor(t, "the walk to reach top/d/deep", has)
		} else {
			time.Sleep(300 * time.Millisecond)
			if has() {
				t.Fatalf("listing %v fetched top/d/deep ahead", tc.order)
			}
		}
		if got := st.s.Status().(*fetch.Status).Speculation.Walks; (got == 1) != tc.walk {
			t.Fatalf("listing %v: %d walks detected", tc.order, got)
		}
		st.s.Close()
	}
}

// TestPythonImports: opening a module's bytecode fetches, on a guess,
// the modules its source imports at module level, found the way the
// interpreter would find them (packages, submodules named in a
// from-import, relative imports, extension modules and their ELF
// libraries, each source's bytecode), and their imports in turn; not the
// imports inside functions, nor modules nothing imports.
func TestPythonImports(t *testing.T) {
	elfBin, err := os.ReadFile("/bin/true") // an ELF file that needs libc.so.6
	if err != nil {
		t.Fatal(err)
	}
	std := "files/lib/python3.11/"
	st := newSpecTree(t, map[string]string{
		std + "json/__init__.py":                                  "\"\"\"doc\nimport notthis\n\"\"\"\nfrom .decoder import JSONDecoder\nimport re\n",
		std + "json/__pycache__/__init__.cpython-311.pyc":         "bytecode of json",
		std + "json/decoder.py":                                   "try:\n    from _json import scanstring\nexcept ImportError:\n    scanstring = None\n\ndef f():\n    import lazyonly\n",
		std + "json/__pycache__/decoder.cpython-311.pyc":          "bytecode of json.decoder",
		std + "json/__pycache__/decoder.cpython-311.opt-1.pyc":    "optimised: never read",
		std + "re/__init__.py":                                    "from . import _parser\nimport functools\n",
		std + "re/_parser.py":                                     "# parser\n",
		std + "re/unimported.py":                                  "# nothing imports it\n",
		std + "functools.py":                                      "from collections import namedtuple\n",
		std + "collections/__init__.py":                           "# collections\n",
		std + "lazyonly.py":                                       "# imported in a function\n",
		std + "unrelated.py":                                      "# nothing imports it\n",
		std + "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so": string(elfBin),
		"files/lib/x86_64-linux-gnu/libc.so.6":                    "stands in for libc",
		"files/lib/python3/dist-packages/site.py":                 "# a site module\n",
		"files/bin/python3":                                       string(elfBin),
		std + "encodings/__init__.py":                             "from . import aliases\n",
		std + "encodings/aliases.py":                              "# aliases\n",
		std + "encodings/utf_8.py":                                "import codecs\n",
		std + "encodings/cp1252.py":                               "# not read at startup\n",
		std + "xml/__init__.py":                                   "from .dom import minidom\nfrom .. import beyond\n",
		std + "xml/dom/__init__.py":                               "# xml.dom\n",
		std + "xml/dom/minidom.py":                                "# xml.dom.minidom\n",
		std + "beyond.py":                                         "# a relative import past the top package does not reach it\n",
		std + "LICENSE.txt":                                       "a file beside the modules",
		"data/x.txt":                                              "opened",
		"data/y.txt":                                              "its neighbour",
	})
	e, s, c, sumOf := st.e, st.s, st.c, st.file
	has := func(rel string) bool { return st.has(sumOf(rel)) }

	opened := std + "json/__pycache__/__init__.cpython-311.pyc"
	if err := e.fetcher.FetchContent(ctxT(t), "r", sumOf(opened)); err != nil {
		t.Fatal(err)
	}
	s.RecordAccess("r", c, opened)
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
	s.RecordAccess("r", c, "files/bin/python3")
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
	s.RecordAccess("r", c, std+"LICENSE.txt")
	s.RecordAccess("r", c, "data/x.txt")
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
	files := map[string]string{}
	libs := []string{"libc.so.6", "libm.so.6", "libz.so.1", "libfoo.so"}
	for _, l := range libs {
		files["files/lib/x86_64-linux-gnu/"+l] = "content of " + l
	}
	mods := []string{"abc.py", "os.py", "stat.py"}
	for _, m := range mods {
		files["files/lib/python3.11/"+m] = "content of " + m
	}
	st := newSpecTree(t, files)
	s, c, cached := st.s, st.c, st.cached
	libSum, libTree := st.dir("files/lib/x86_64-linux-gnu")
	pySum, pyTree := st.dir("files/lib/python3.11")
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
