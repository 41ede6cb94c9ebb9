package fetch

import (
	"context"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lazytree/lazytree/ostree"
)

// Python speculation. An interpreter imports its modules one after
// another, each a stat, a read of the cached bytecode and (ostree sets
// every mtime to 0, so the bytecode is always stale) a read of the
// source: on a cold mount that is a round trip per file, on the reader's
// critical path. The import graph is written in the sources, so when a
// module's source or bytecode is opened, its source is read for the
// modules it imports, which are found the way the interpreter's path
// finder would find them in the tree (the directories of the lib/pythonX.Y
// that holds the file: the standard library, lib-dynload, site-packages,
// Debian's dist-packages), fetched on a guess with their bytecode, and
// read in turn: the graph is fetched at the link's pace, a round trip per
// level, not per module. Extension modules are followed as ELF files.
//
// Only imports at module level count, and those inside a top-level try,
// if or else (fallbacks, platform choices), not those in functions. What
// is fetched is bounded per opened file (pyMaxModules) and per object
// (SpeculativeMaxObject, as every guess), and goes through the same
// verified fetches as everything else.
const (
	// pyMaxSource is how much of a source is read for its imports.
	pyMaxSource = 1 << 20
	// pyMaxImports bounds the imports taken from one source.
	pyMaxImports = 512
	// pyMaxModules bounds the files guessed from one opened module.
	pyMaxModules = 4096
	// pyMaxDepth bounds the import chain followed.
	pyMaxDepth = 32
	// pyMaxNames bounds the names of one from-import looked up as
	// submodules.
	pyMaxNames = 64
	// pyMaxEntries bounds the directory entries one walk decodes (its
	// dirtrees, each counted once per decoding), pyMaxLookups the module
	// lookups it makes, pyMaxWalks the walks at once per mount (more
	// are dropped: a grep -r over site-packages is not an import).
	pyMaxEntries = 1 << 20
	pyMaxLookups = 1 << 14
	pyMaxWalks   = 4
	// pyMaxVersions bounds the lib/pythonX.Y directories searched.
	pyMaxVersions = 4
)

// pyStartup are the modules an interpreter reads from its standard
// library before the first line of a script: the codec machinery (the
// rest of its startup is frozen into the binary since 3.11, or found as
// the imports of these) and the site hook.
var pyStartup = [][]string{{"encodings"}, {"encodings", "utf_8"}, {"encodings", "latin_1"}, {"sitecustomize"}}

// pyInterpreter reports whether an ELF file named name is a Python
// interpreter (python3, python3.11).
func pyInterpreter(name string) bool {
	return pyVersionDir(name)
}

// pythonStartup fetches, on a guess, what the interpreter whose binary
// at p was just opened imports as it starts, from the tree's
// lib/pythonX.Y beside the binary's directory (when the tree has one).
func (s *MountSource) pythonStartup(ctx context.Context, commit ostree.Checksum, cm *ostree.Commit, remote, p string) {
	defer func() { recover() }() // a guess must never take the daemon down
	if !s.pyWalkSlot() {
		return
	}
	defer func() { <-s.spec.pyWalks }()
	w := &pyWalk{s: s, commit: commit, cm: cm, remote: remote, trees: map[string]*ostree.DirTree{}}
	w.q = newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
	lib := path.Join(path.Dir(path.Dir(p)), "lib")
	t := w.dir(ctx, lib)
	if t == nil {
		return
	}
	var std []string
	for _, d := range t.Dirs {
		if pyVersionDir(d.Name) && strings.Contains(d.Name, ".") {
			std = append(std, path.Join(lib, d.Name))
		}
	}
	if len(std) != 1 {
		return // which one the binary is cannot be told from its name
	}
	dirs := w.searchDirs(ctx, path.Join(std[0], "os.py"))
	for _, mod := range pyStartup {
		for _, f := range w.find(ctx, dirs, mod, nil) {
			w.claim(f, 0)
		}
	}
	w.q.run()
}

// pyImport is one import statement: `import module` (level 0, no
// names), or `from [.*level]module import names`.
type pyImport struct {
	level  int
	module string
	names  []string
}

// pyImports reads the module-level imports of a Python source. It is a
// line scanner, not a parser: it knows triple-quoted strings, comments,
// continuation lines and parenthesised name lists, which is what import
// statements use, and errs towards fewer imports.
func pyImports(src []byte) []pyImport {
	var out []pyImport
	text := string(src)
	// next returns the next line, without allocating a list of them.
	next := func() (string, bool) {
		if text == "" {
			return "", false
		}
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		return line, true
	}
	quote := "" // the triple quote that closes a string open since an earlier line
	guard := "" // the first word of the last statement at indentation 0
	for len(out) < pyMaxImports {
		line, ok := next()
		if !ok {
			break
		}
		if quote != "" {
			k := strings.Index(line, quote)
			if k < 0 {
				continue
			}
			line, quote = line[k+3:], ""
			if openTriple(line) != "" {
				quote = openTriple(line)
			}
			continue
		}
		code := strings.TrimLeft(line, " \t")
		indent := len(line) - len(code)
		if code == "" || code[0] == '#' {
			continue
		}
		quote = openTriple(code)
		if indent == 0 {
			guard = firstWord(code)
			if guard == "if" && strings.Contains(code, "__name__") {
				guard = "main" // a script's own block, not run on import
			}
		}
		isImport := strings.HasPrefix(code, "import ") || strings.HasPrefix(code, "from ")
		if !isImport || quote != "" || (indent > 0 && !pyGuard(guard)) {
			continue
		}
		stmt := stripComment(code)
		for n := 0; n < 64; n++ {
			cont := strings.HasSuffix(stmt, "\\")
			if !cont && strings.Count(stmt, "(") <= strings.Count(stmt, ")") {
				break
			}
			more, ok := next()
			if !ok {
				break
			}
			stmt = strings.TrimSuffix(stmt, "\\") + " " + stripComment(more)
		}
		if k := strings.IndexByte(stmt, ';'); k >= 0 {
			stmt = stmt[:k]
		}
		out = append(out, parseImport(stmt)...)
	}
	if len(out) > pyMaxImports {
		out = out[:pyMaxImports]
	}
	return out
}

// pyGuard reports whether imports indented under a top-level statement
// that starts with word run when the module is imported.
func pyGuard(word string) bool {
	switch word {
	case "try", "except", "else", "finally", "if", "elif":
		return true
	}
	return false
}

// openTriple returns the triple quote a line leaves open, if any.
func openTriple(s string) string {
	open := ""
	for {
		if open == "" {
			i, j := strings.Index(s, `"""`), strings.Index(s, `'''`)
			switch {
			case i < 0 && j < 0:
				return ""
			case j < 0 || (i >= 0 && i < j):
				open, s = `"""`, s[i+3:]
			default:
				open, s = `'''`, s[j+3:]
			}
			continue
		}
		k := strings.Index(s, open)
		if k < 0 {
			return open
		}
		open, s = "", s[k+3:]
	}
}

func firstWord(s string) string {
	if k := strings.IndexAny(s, " \t:(#"); k >= 0 {
		return s[:k]
	}
	return s
}

func stripComment(s string) string {
	if k := strings.IndexByte(s, '#'); k >= 0 {
		s = s[:k]
	}
	return strings.TrimSpace(s)
}

// parseImport reads one joined import statement.
func parseImport(stmt string) []pyImport {
	stmt = strings.Join(strings.Fields(stmt), " ")
	if rest, ok := strings.CutPrefix(stmt, "import "); ok {
		var out []pyImport
		for _, part := range strings.Split(rest, ",") {
			if f := strings.Fields(part); len(f) > 0 && pyDotted(f[0]) {
				out = append(out, pyImport{module: f[0]})
			}
		}
		return out
	}
	rest, ok := strings.CutPrefix(stmt, "from ")
	if !ok {
		return nil
	}
	mod, names, ok := strings.Cut(rest, " import ")
	if !ok {
		// "from .import x" and "from . import(x)" are legal too.
		if mod, names, ok = strings.Cut(rest, "import"); !ok {
			return nil
		}
	}
	mod = strings.TrimSpace(mod)
	im := pyImport{module: strings.TrimLeft(mod, ".")}
	im.level = len(mod) - len(im.module)
	if (im.module != "" && !pyDotted(im.module)) || (im.level == 0 && im.module == "") {
		return nil
	}
	names = strings.NewReplacer("(", " ", ")", " ").Replace(names)
	for _, part := range strings.Split(names, ",") {
		if len(im.names) == pyMaxNames {
			break
		}
		if f := strings.Fields(part); len(f) > 0 && pyIdent(f[0]) {
			im.names = append(im.names, f[0])
		}
	}
	return []pyImport{im}
}

func pyIdent(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func pyDotted(s string) bool {
	for _, p := range strings.Split(s, ".") {
		if !pyIdent(p) {
			return false
		}
	}
	return true
}

// pySource returns the source a Python file opened at p stands for: p
// itself for a .py, the .py next to its __pycache__ for bytecode, "" for
// anything else.
func pySource(p string) string {
	switch {
	case strings.HasSuffix(p, ".py"):
		return p
	case strings.HasSuffix(p, ".pyc"):
		dir, name := path.Split(p)
		if path.Base(dir) != "__pycache__" {
			return ""
		}
		mod, _, ok := strings.Cut(name, ".")
		if !ok || !pyIdent(mod) {
			return ""
		}
		return path.Join(path.Dir(path.Clean(dir)), mod+".py")
	}
	return ""
}

// pyModuleDir reports whether the directory at dir, with dirtree t, holds
// Python modules: a package, a directory on the interpreter's path
// (lib/pythonX.Y, lib-dynload, site-packages, dist-packages), or a
// __pycache__.
func pyModuleDir(dir string, t *ostree.DirTree) bool {
	switch base := path.Base(dir); {
	case base == "__pycache__" || base == "lib-dynload" || pyVersionDir(base):
		return true
	case base == "site-packages" || base == "dist-packages":
		return pyVersionDir(path.Base(path.Dir(dir)))
	}
	_, ok := t.LookupFile("__init__.py")
	return ok
}

// pyVersionDir reports whether name is a lib/pythonX[.Y] directory.
func pyVersionDir(name string) bool {
	rest, ok := strings.CutPrefix(name, "python")
	if !ok || rest == "" {
		return false
	}
	major, minor, dotted := strings.Cut(rest, ".")
	digits := func(s string) bool {
		return s != "" && strings.Trim(s, "0123456789") == ""
	}
	return digits(major) && (!dotted || digits(minor))
}

// pyWalk is one import-graph walk, from one opened module.
type pyWalk struct {
	s      *MountSource
	commit ostree.Checksum
	cm     *ostree.Commit
	remote string
	q      *workQueue
	n      atomic.Int64 // files claimed
	// entries and lookups count the walk's decoded directory entries
	// and module lookups, against pyMaxEntries and pyMaxLookups.
	entries, lookups atomic.Int64
	mu               sync.Mutex
	trees            map[string]*ostree.DirTree // commit path -> dirtree, nil: none
}

// spent reports whether the walk used up its budget.
func (w *pyWalk) spent() bool {
	return w.entries.Load() > pyMaxEntries || w.lookups.Load() > pyMaxLookups
}

// followPython walks the import graph from the Python file opened at p.
func (s *MountSource) followPython(ctx context.Context, commit ostree.Checksum, cm *ostree.Commit, remote, p string) {
	if !s.pyWalkSlot() {
		return
	}
	defer func() { <-s.spec.pyWalks }()
	src := pySource(p)
	w := &pyWalk{s: s, commit: commit, cm: cm, remote: remote, trees: map[string]*ostree.DirTree{}}
	w.q = newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
	if src == p {
		// examineOpen claimed it; its bytecode is read next, if any.
		w.q.add(false, func(ctx context.Context) {
			defer func() { recover() }()
			w.module(ctx, src, 0)
		})
		w.claimBytecode(src, 0)
	} else {
		w.claim(src, 0)
	}
	w.q.run()
}

// pyWalkSlot takes one of the mount's pyMaxWalks walk slots, if one is
// free.
func (s *MountSource) pyWalkSlot() bool {
	s.spec.mu.Lock()
	if s.spec.pyWalks == nil {
		s.spec.pyWalks = make(chan struct{}, pyMaxWalks)
	}
	ch := s.spec.pyWalks
	s.spec.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// dir returns the dirtree at commit path p ("" or "." for the root), nil
// when there is none.
func (w *pyWalk) dir(ctx context.Context, p string) *ostree.DirTree {
	if p == "." {
		p = ""
	}
	w.mu.Lock()
	t, ok := w.trees[p]
	w.mu.Unlock()
	if ok {
		return t
	}
	sum := w.cm.RootTree
	if p != "" {
		parent := w.dir(ctx, path.Dir(p))
		if parent == nil {
			return nil
		}
		d, ok := parent.LookupDir(path.Base(p))
		if !ok {
			return nil
		}
		sum = d.Tree
	}
	if w.spent() {
		return nil
	}
	t, err := w.s.f.DirTree(ctx, w.remote, sum)
	if err != nil {
		t = nil
	} else {
		w.entries.Add(int64(len(t.Files) + len(t.Dirs)))
	}
	w.mu.Lock()
	w.trees[p] = t // bounded by pyMaxEntries
	w.mu.Unlock()
	return t
}

// file returns the checksum of the file at commit path p.
func (w *pyWalk) file(ctx context.Context, p string) (ostree.Checksum, bool) {
	t := w.dir(ctx, path.Dir(p))
	if t == nil {
		return ostree.Checksum{}, false
	}
	f, ok := t.LookupFile(path.Base(p))
	return f.Checksum, ok
}

// searchDirs are the directories the interpreter that owns the file at p
// searches for modules, in its order: for a file under a lib/pythonX.Y
// (or Debian's lib/python3), every such sibling's standard library,
// lib-dynload, site-packages and dist-packages; otherwise the directory
// above the file's top-level package (a script's or an app's own tree).
func (w *pyWalk) searchDirs(ctx context.Context, p string) []string {
	comps := strings.Split(p, "/")
	for i := 0; i < len(comps)-1; i++ {
		if !pyVersionDir(comps[i]) {
			continue
		}
		lib := strings.Join(comps[:i], "/")
		t := w.dir(ctx, lib)
		if t == nil {
			break
		}
		var dirs, site []string
		versions := 0
		for _, d := range t.Dirs {
			if !pyVersionDir(d.Name) {
				continue
			}
			if versions++; versions > pyMaxVersions {
				break
			}
			base := path.Join(lib, d.Name)
			if strings.Contains(d.Name, ".") {
				dirs = append(dirs, base, path.Join(base, "lib-dynload"))
			}
			site = append(site, path.Join(base, "site-packages"), path.Join(base, "dist-packages"))
		}
		return append(dirs, site...)
	}
	d := path.Dir(p)
	for d != "." && d != "" {
		t := w.dir(ctx, d)
		if t == nil {
			break
		}
		if _, ok := t.LookupFile("__init__.py"); !ok {
			break
		}
		d = path.Dir(d)
	}
	return []string{d}
}

// packageOf is the package that the module at p is in, as the names
// under the search directory that holds it.
func packageOf(p string, dirs []string) []string {
	best := ""
	for _, d := range dirs {
		if (d == "." || strings.HasPrefix(p, d+"/")) && len(d) > len(best) {
			best = d
		}
	}
	rel := p
	if best != "." && best != "" {
		rel = strings.TrimPrefix(p, best+"/")
	}
	comps := strings.Split(rel, "/")
	return comps[:len(comps)-1]
}

// module reads the source at p (already claimed) and claims the files
// of every module it imports.
func (w *pyWalk) module(ctx context.Context, p string, depth int) {
	sum, ok := w.file(ctx, p)
	if !ok || !w.s.guessContent(ctx, w.remote, sum) {
		return
	}
	w.s.spec.pyModules.Add(1)
	src, err := w.read(ctx, sum)
	if err != nil {
		return
	}
	dirs := w.searchDirs(ctx, p)
	pkg := packageOf(p, dirs)
	for _, im := range pyImports(src) {
		var mod []string
		if im.level > 0 {
			if im.level > len(pkg) {
				continue // beyond the top-level package: an ImportError
			}
			mod = append(mod, pkg[:len(pkg)-(im.level-1)]...)
		}
		if im.module != "" {
			mod = append(mod, strings.Split(im.module, ".")...)
		}
		for _, f := range w.find(ctx, dirs, mod, im.names) {
			w.claim(f, depth+1)
		}
	}
}

func (w *pyWalk) read(ctx context.Context, sum ostree.Checksum) ([]byte, error) {
	h, err := w.s.f.Store().Open(ctx, sum)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return io.ReadAll(io.NewSectionReader(h, 0, min(h.Size(), pyMaxSource)))
}

// find returns the files the interpreter would read to import mod
// (each package's __init__.py on the way, the module's source or
// extension, and their bytecode) and, for a package, the submodules among
// names.
func (w *pyWalk) find(ctx context.Context, dirs, mod, names []string) []string {
	if len(mod) == 0 {
		return nil
	}
	for _, d := range dirs {
		var out []string
		cur, pkg, ok := d, true, true
		for _, name := range mod {
			if !pkg {
				ok = false
				break
			}
			var files []string
			if cur, pkg, files, ok = w.lookup(ctx, cur, name); !ok {
				break
			}
			out = append(out, files...)
		}
		if !ok {
			if len(out) > 0 {
				return out // found the package, not the submodule
			}
			continue
		}
		if pkg {
			for _, n := range names {
				if _, _, files, ok := w.lookup(ctx, cur, n); ok {
					out = append(out, files...)
				}
			}
		}
		return out
	}
	return nil
}

// lookup finds module name in directory d: a package (d/name with an
// __init__.py), an extension module, a source, or a namespace package,
// in the path finder's order. It returns the module's path (the
// package's directory), whether it is a package, and its files.
func (w *pyWalk) lookup(ctx context.Context, d, name string) (string, bool, []string, bool) {
	if w.lookups.Add(1) > pyMaxLookups {
		return "", false, nil, false
	}
	t := w.dir(ctx, d)
	if t == nil {
		return "", false, nil, false
	}
	sub := path.Join(d, name)
	_, isDir := t.LookupDir(name)
	if isDir {
		if st := w.dir(ctx, sub); st != nil {
			if _, ok := st.LookupFile("__init__.py"); ok {
				return sub, true, w.withBytecode(ctx, path.Join(sub, "__init__.py")), true
			}
		}
	}
	for _, f := range withPrefix(t, name+".") {
		if rest := strings.TrimPrefix(f.Name, name+"."); rest == "so" || strings.HasSuffix(rest, ".so") {
			return sub, false, []string{path.Join(d, f.Name)}, true
		}
	}
	if _, ok := t.LookupFile(name + ".py"); ok {
		return sub, false, w.withBytecode(ctx, path.Join(d, name+".py")), true
	}
	if isDir {
		return sub, true, nil, true
	}
	return "", false, nil, false
}

// withBytecode is the source at p and its cached bytecode, if the tree
// has any (__pycache__/NAME.TAG.pyc, not an optimised one).
func (w *pyWalk) withBytecode(ctx context.Context, p string) []string {
	out := []string{p}
	if c := w.bytecode(ctx, p); c != "" {
		out = append(out, c)
	}
	return out
}

func (w *pyWalk) bytecode(ctx context.Context, p string) string {
	dir, name := path.Split(p)
	cache := path.Join(dir, "__pycache__")
	t := w.dir(ctx, cache)
	if t == nil {
		return ""
	}
	for _, f := range withPrefix(t, strings.TrimSuffix(name, ".py")+".") {
		if strings.HasSuffix(f.Name, ".pyc") && !strings.Contains(f.Name, ".opt-") {
			return path.Join(cache, f.Name)
		}
	}
	return ""
}

// withPrefix returns the files of t (sorted by name, as every verified
// dirtree is) whose names start with prefix, at most 16.
func withPrefix(t *ostree.DirTree, prefix string) []ostree.TreeFile {
	i := sort.Search(len(t.Files), func(i int) bool { return t.Files[i].Name >= prefix })
	j := i
	for j < len(t.Files) && j-i < 16 && strings.HasPrefix(t.Files[j].Name, prefix) {
		j++
	}
	return t.Files[i:j]
}

func (w *pyWalk) claimBytecode(src string, depth int) {
	if c := w.bytecode(w.q.ctx, src); c != "" {
		w.claim(c, depth)
	}
}

// claim queues the file at p, once per mount: a source is fetched and
// read for its imports, an extension module is followed as an ELF file,
// bytecode is fetched.
func (w *pyWalk) claim(p string, depth int) {
	// The budget first: a file left out must stay unexamined, for its
	// own open to examine.
	if depth > pyMaxDepth || w.s.ctx.Err() != nil || w.spent() || w.n.Load() >= pyMaxModules ||
		!w.s.spec.once(&w.s.spec.opened, string(w.commit[:])+p) {
		return
	}
	w.n.Add(1)
	w.q.add(false, func(ctx context.Context) {
		defer func() { recover() }() // a guess must never take the daemon down
		switch {
		case strings.HasSuffix(p, ".py"):
			w.module(ctx, p, depth)
		case strings.HasSuffix(p, ".so"):
			if sum, ok := w.file(ctx, p); ok && w.s.guessContent(ctx, w.remote, sum) {
				w.s.followELF(ctx, w.commit, w.cm, w.remote, p, 0, true)
			}
		default:
			if sum, ok := w.file(ctx, p); ok {
				w.s.guessContent(ctx, w.remote, sum)
			}
		}
	})
}
