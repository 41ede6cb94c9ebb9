package fetch

import (
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

// Speculation, in every prefetch mode (DESIGN.md, "Fetch strategies"):
//   - a directory that is listed, or that a file is first looked up in,
//     has its other entries fetched at once, concurrently, instead of one
//     lookup after another (a content header comes only with its whole
//     object, so for files that is the object); not a library or Python
//     module directory (libraryDir, pyModuleDir), where the loader and
//     the interpreter want only what DT_NEEDED and the imports name,
//     unless its files are looked up in listing order (HintScan: ls -l);
//   - a Python module that is opened or looked up has the modules it
//     imports fetched, and theirs (pyimport.go);
//   - an ELF file that is opened has the libraries its DT_NEEDED entries
//     name fetched in parallel, found the way the loader would find them
//     in the tree (its DT_RUNPATH or DT_RPATH, then the usual library
//     directories), and theirs in turn.
//
// Guesses run at Speculative priority (see Priority), are capped in size
// (SpeculativeMaxObject: a guess never pulls a large file nobody asked
// for; a reader who asks for it fetches it on demand) and in number per
// directory, and go through the same verified fetches as everything else.
const (
	// SpeculativeMaxObject caps the archived size of an object fetched
	// on a guess.
	SpeculativeMaxObject = 2 << 20
	// speculativeMaxEntries caps the entries of one directory fetched on
	// a guess.
	speculativeMaxEntries = 512
	// speculationMemory bounds the directories and files remembered as
	// already guessed for (then forgotten all at once).
	speculationMemory = 1 << 16
	// elfMaxNeeded bounds the DT_NEEDED entries followed per file, and
	// elfMaxRunpath the run path directories searched.
	elfMaxNeeded  = 256
	elfMaxRunpath = 16
	// elfMaxFile is the largest file examined as ELF.
	elfMaxFile = 512 << 20
)

// errTooBigToGuess is a speculative fetch refused for its size.
var errTooBigToGuess = errors.New("too large to fetch on a guess")

type specCapKey struct{}

// speculativeCap is the size cap a speculative caller set on ctx.
func speculativeCap(ctx context.Context) (int64, bool) {
	v, ok := ctx.Value(specCapKey{}).(int64)
	return v, ok
}

type speculation struct {
	mu       sync.Mutex
	dirs     map[string]bool // remote + "/" + dirtree checksum: headers guessed
	openDirs map[string]bool // remote + "/" + dirtree checksum: contents guessed
	opened   map[string]bool // raw commit checksum + path examined as ELF
	// lastListed is the last child listed per commit/parent path; walked
	// the parents already fetched ahead for.
	lastListed map[string]string
	walked     map[string]bool
	// pyWalks holds a slot per Python import walk running (pyimport.go).
	pyWalks chan struct{}

	dirHints, files, fetched, tooBig, elfFiles, elfLibs, walks, pyModules atomic.Int64
}

// SpeculationStatus is the speculation's part of status.json.
type SpeculationStatus struct {
	DirHints int64 `json:"dir_hints"`
	// Files counts the guesses started, Fetched those that fetched an
	// object, TooBig those refused for their size.
	Files   int64 `json:"files"`
	Fetched int64 `json:"fetched"`
	TooBig  int64 `json:"too_big"`
	// ELFFiles counts opened ELF files examined, ELFLibs the libraries
	// they led to.
	ELFFiles int64 `json:"elf_files"`
	ELFLibs  int64 `json:"elf_libs"`
	// Walks counts the tree walks detected and fetched ahead for.
	Walks int64 `json:"walks"`
	// PyModules counts the Python sources read for their imports.
	PyModules int64 `json:"py_modules"`
}

func (sp *speculation) status() SpeculationStatus {
	return SpeculationStatus{DirHints: sp.dirHints.Load(), Files: sp.files.Load(), Fetched: sp.fetched.Load(),
		TooBig: sp.tooBig.Load(), ELFFiles: sp.elfFiles.Load(), ELFLibs: sp.elfLibs.Load(), Walks: sp.walks.Load(),
		PyModules: sp.pyModules.Load()}
}

// once reports whether key is new in m (and remembers it).
func (sp *speculation) once(m *map[string]bool, key string) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if *m == nil || len(*m) >= speculationMemory {
		*m = map[string]bool{}
	}
	if (*m)[key] {
		return false
	}
	(*m)[key] = true
	return true
}

func (s *MountSource) specContext() context.Context {
	return context.WithValue(WithPriority(s.ctx, Speculative), specCapKey{}, int64(SpeculativeMaxObject))
}

// HintDir tells the source that a reader listed the directory whose
// verified dirtree t has checksum c, reached through remote (empty: the
// remote whose tree named it), or looked a file up in it: the entries
// not cached yet are fetched speculatively, in the background. It does
// not block.
//
// commit and dir (the directory's path in it, "" for the root) say where
// it is; listed says it was listed (not looked up in). A listing of the
// directory right after its preceding sibling's is a tree walk (ls -lR,
// find, tar, du): then the rest of the parent's subtree is fetched ahead
// too, in walk order (walkAhead).
func (s *MountSource) HintDir(remote string, commit ostree.Checksum, dir string, c ostree.Checksum, t *ostree.DirTree, listed bool) {
	if listed && dir != "" {
		s.noteListing(remote, commit, dir)
	}
	if pyModuleDir(dir, t) || (!listed && libraryDir(dir, t)) {
		// An interpreter lists a module directory and looks up a few
		// of its entries: the modules it imports, which their
		// importers' sources name (pyimport.go); a loader looks up the
		// libraries a program needs, which its DT_NEEDED entries name.
		// ls -l is told apart by its lookups in listing order
		// (HintScan).
		return
	}
	s.hintEntries(remote, c, t)
}

// libraryDir reports whether the directory at dir, with dirtree t, is
// mostly shared libraries (lib/x86_64-linux-gnu, lib-dynload).
func libraryDir(dir string, t *ostree.DirTree) bool {
	if path.Base(dir) == "lib-dynload" {
		return true
	}
	n := 0
	for _, f := range t.Files {
		if strings.HasSuffix(f.Name, ".so") || strings.Contains(f.Name, ".so.") {
			n++
		}
	}
	return len(t.Files) > 0 && 2*n >= len(t.Files)
}

// HintLookup tells the source that a reader looked up the file at p in
// commit: for a Python module, its imports are fetched ahead, as when it
// is opened (the interpreter stats a module's source before it reads its
// bytecode).
func (s *MountSource) HintLookup(remote string, commit ostree.Checksum, p string) {
	if pySource(p) != "" {
		s.examineOpen(remote, commit, p)
	}
}

// HintScan tells the source that a reader is looking up the directory's
// files in listing order: the rest are fetched speculatively, as for a
// listing.
func (s *MountSource) HintScan(remote string, commit ostree.Checksum, dir string, c ostree.Checksum, t *ostree.DirTree) {
	s.hintEntries(remote, c, t)
}

func (s *MountSource) hintEntries(remote string, c ostree.Checksum, t *ostree.DirTree) {
	if s.ctx.Err() != nil || !s.spec.once(&s.spec.dirs, remote+"/"+c.String()) {
		return
	}
	// The scan reads the index per entry: off the caller's (OPENDIR's)
	// path.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var todo []ostree.Checksum
		for _, e := range t.Files {
			if len(todo) == speculativeMaxEntries {
				break
			}
			if _, ok := s.f.PeekHeaderVia(remote, e.Checksum); !ok {
				todo = append(todo, e.Checksum)
			}
		}
		var metas []ostree.Checksum
		for _, d := range t.Dirs {
			if ok, _ := s.f.Store().Has(index.TypeDirMeta, d.Meta); !ok {
				metas = append(metas, d.Meta)
			}
		}
		if len(todo) == 0 && len(metas) == 0 {
			return
		}
		s.spec.dirHints.Add(1)
		ctx := s.specContext()
		q := newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
		for _, m := range metas {
			q.add(true, func(ctx context.Context) { s.f.DirMeta(ctx, remote, m) })
		}
		for _, sum := range todo {
			q.add(false, func(ctx context.Context) { s.guessContent(ctx, remote, sum) })
		}
		q.run()
	}()
}

func (s *MountSource) guessContent(ctx context.Context, remote string, sum ostree.Checksum) bool {
	s.spec.files.Add(1)
	err := s.f.FetchContent(ctx, remote, sum)
	switch {
	case err == nil:
		s.spec.fetched.Add(1)
		return true
	case errors.Is(err, errTooBigToGuess):
		s.spec.tooBig.Add(1)
	}
	return false
}

// examineOpen looks at a file just opened under commit: for an ELF
// file, the libraries it needs are fetched speculatively, and theirs;
// for a Python module, the modules it imports, and theirs.
func (s *MountSource) examineOpen(remote string, commit ostree.Checksum, p string) {
	if remote == "" {
		s.mu.Lock()
		remote = s.commitRemote[commit]
		s.mu.Unlock()
	}
	// Called on every open: the key is the raw checksum, not its hex.
	if remote == "" || s.ctx.Err() != nil || !s.spec.once(&s.spec.opened, remote+"\x00"+string(commit[:])+p) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { recover() }() // a guess must never take the daemon down
		ctx := s.specContext()
		cm, err := s.storedCommit(ctx, commit)
		if err != nil {
			return
		}
		if pySource(p) != "" {
			// A module's neighbours are other modules: its imports
			// say which (pyimport.go).
			s.followPython(ctx, commit, cm, remote, p)
			return
		}
		if pyInterpreter(path.Base(p)) {
			// Beside its libraries, not after them.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.pythonStartup(ctx, commit, cm, remote, p)
			}()
		}
		if s.followELF(ctx, commit, cm, remote, p, 0, true) {
			return // its neighbours are libraries: DT_NEEDED says which
		}
		s.guessSiblings(ctx, cm, remote, p)
	}()
}

// openGuessBudget bounds the archived bytes fetched on a guess when a
// file is opened, per directory; a file of unknown size counts as
// openGuessUnknown.
const (
	openGuessBudget  = 4 << 20
	openGuessUnknown = 32 << 10
	openGuessMaxFile = 512 << 10
)

// guessSiblings fetches, on a guess, the content of the small files next
// to the file at p that was just opened (smallest first, within
// openGuessBudget): a program that reads one file of a directory tends to
// read its neighbours (modules, locale data, icons).
func (s *MountSource) guessSiblings(ctx context.Context, cm *ostree.Commit, remote, p string) {
	dir := path.Dir(p)
	tree, t, err := s.resolveDir(ctx, cm, remote, dir)
	if err != nil || pyModuleDir(dir, t) || libraryDir(dir, t) || !s.spec.once(&s.spec.openDirs, remote+"/"+tree.String()) {
		return // modules and libraries: imports and DT_NEEDED say which
	}
	type cand struct {
		sum  ostree.Checksum
		size int64
	}
	var cands []cand
	for _, e := range t.Files {
		if ok, _ := s.f.Store().Has(index.TypeFile, e.Checksum); ok {
			continue
		}
		size := int64(openGuessUnknown)
		if k, ok := s.f.knownSize(remote, e.Checksum); ok {
			size = int64(k.archived)
		}
		if size <= openGuessMaxFile {
			cands = append(cands, cand{e.Checksum, size})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(a.size, b.size) })
	q := newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
	var spent int64
	for _, c := range cands {
		if spent+c.size > openGuessBudget {
			break
		}
		spent += c.size
		q.add(false, func(ctx context.Context) { s.guessContent(ctx, remote, c.sum) })
	}
	s.spec.dirHints.Add(1)
	q.run()
}

// resolveDir finds the dirtree of a directory inside a commit.
func (s *MountSource) resolveDir(ctx context.Context, cm *ostree.Commit, remote, p string) (ostree.Checksum, *ostree.DirTree, error) {
	tree := cm.RootTree
	if p != "." && p != "" {
		for _, name := range strings.Split(path.Clean(p), "/") {
			t, err := s.f.DirTree(ctx, remote, tree)
			if err != nil {
				return tree, nil, err
			}
			d, ok := t.LookupDir(name)
			if !ok {
				return tree, nil, fmt.Errorf("%s: no such directory in the commit", p)
			}
			tree = d.Tree
		}
	}
	t, err := s.f.DirTree(ctx, remote, tree)
	return tree, t, err
}

// followELF fetches the libraries the ELF file at p needs (when it is
// one, and cached), and recurses into them.
//
// seen says the caller already marked p as examined.
//
// It reports whether p is an ELF file with dynamic entries.
func (s *MountSource) followELF(ctx context.Context, commit ostree.Checksum, cm *ostree.Commit, remote, p string, depth int, seen bool) bool {
	if depth > 8 || (!seen && !s.spec.once(&s.spec.opened, string(commit[:])+p)) {
		return false
	}
	sum, err := s.resolve(ctx, cm, remote, p)
	if err != nil {
		return false
	}
	needed, runpath, ok := s.elfNeeds(ctx, sum)
	if !ok {
		return false
	}
	s.spec.elfFiles.Add(1)
	dirs := libraryDirs(p, runpath)
	var wg sync.WaitGroup
	for _, lib := range needed {
		if strings.Contains(lib, "/") {
			continue // a path, not a name to search for
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, d := range dirs {
				lp := path.Join(d, lib)
				sum, err := s.resolve(ctx, cm, remote, lp)
				if err != nil {
					continue
				}
				s.spec.elfLibs.Add(1)
				if s.guessContent(ctx, remote, sum) {
					s.followELF(ctx, commit, cm, remote, lp, depth+1, false)
				}
				return
			}
		}()
	}
	wg.Wait()
	return true
}

// elfNeeds reads the DT_NEEDED and DT_RUNPATH (or DT_RPATH) entries of a
// cached content object, if it is an ELF file.
func (s *MountSource) elfNeeds(ctx context.Context, sum ostree.Checksum) (needed, runpath []string, ok bool) {
	h, err := s.f.Store().Open(ctx, sum)
	if err != nil {
		return nil, nil, false
	}
	defer h.Close()
	var magic [4]byte
	if _, err := h.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, nil, false
	}
	if h.Size() > elfMaxFile {
		return nil, nil, false
	}
	ef, err := elf.NewFile(h)
	if err != nil {
		return nil, nil, false
	}
	defer ef.Close()
	// A compressed section inflates to whatever size the file declares:
	// never read one from a file we only guess about.
	for _, sec := range ef.Sections {
		if sec.Flags&elf.SHF_COMPRESSED != 0 {
			return nil, nil, false
		}
	}
	needed, err = ef.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil, nil, false
	}
	if len(needed) > elfMaxNeeded {
		needed = needed[:elfMaxNeeded]
	}
	if rp, err := ef.DynString(elf.DT_RUNPATH); err == nil && len(rp) > 0 {
		runpath = rp
	} else if rp, err := ef.DynString(elf.DT_RPATH); err == nil {
		runpath = rp
	}
	return needed, runpath, true
}

// libraryDirs are the commit paths searched for a library that the ELF
// file at p needs: its run path ($ORIGIN is p's directory; absolute
// entries are taken relative to the tree's /usr, which is files/ in a
// Flatpak runtime and the root otherwise), then the usual directories.
func libraryDirs(p string, runpath []string) []string {
	usr := ""
	if p == "files" || strings.HasPrefix(p, "files/") {
		usr = "files"
	}
	var dirs []string
	add := func(d string) {
		d = path.Clean(d)
		if d == "." || strings.HasPrefix(d, "../") || d == ".." {
			return
		}
		for _, o := range dirs {
			if o == d {
				return
			}
		}
		dirs = append(dirs, d)
	}
	for _, entry := range runpath {
		for i, d := range strings.Split(entry, ":") {
			if i >= elfMaxRunpath || len(dirs) >= elfMaxRunpath {
				break
			}
			switch {
			case strings.Contains(d, "$ORIGIN") || strings.Contains(d, "${ORIGIN}"):
				d = strings.NewReplacer("${ORIGIN}", path.Dir(p), "$ORIGIN", path.Dir(p)).Replace(d)
				add(d)
			case strings.HasPrefix(d, "/"):
				add(path.Join(usr, strings.TrimPrefix(strings.TrimPrefix(d, "/usr"), "/")))
			}
		}
	}
	for _, d := range []string{"lib/x86_64-linux-gnu", "lib64", "lib", "lib/aarch64-linux-gnu"} {
		add(path.Join(usr, d))
		if usr == "" {
			add(path.Join("usr", d))
		}
	}
	return dirs
}

// Walk detection bounds.
const (
	walkMemory   = 1 << 14 // parents remembered
	walkMaxDirs  = 1 << 14 // directories fetched ahead per walk
	walkMaxFiles = 1 << 17 // files guessed per walk
)

// noteListing records that dir was listed and, when its parent's
// previous child was the last one listed, fetches ahead.
func (s *MountSource) noteListing(remote string, commit ostree.Checksum, dir string) {
	parent, name := path.Split(dir)
	parent = strings.TrimSuffix(parent, "/")
	key := commit.String() + "/" + parent
	s.spec.mu.Lock()
	if s.spec.lastListed == nil || len(s.spec.lastListed) >= walkMemory {
		s.spec.lastListed = map[string]string{}
	}
	prev, walked := s.spec.lastListed[key], s.spec.walked[key]
	s.spec.lastListed[key] = name
	s.spec.mu.Unlock()
	if prev == "" || walked || s.ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx := s.specContext()
		cm, err := s.storedCommit(ctx, commit)
		if err != nil {
			return
		}
		_, pt, err := s.resolveDir(ctx, cm, remote, parent)
		if err != nil {
			return
		}
		k := slices.IndexFunc(pt.Dirs, func(d ostree.TreeDir) bool { return d.Name == name })
		if k <= 0 || pt.Dirs[k-1].Name != prev {
			return
		}
		s.spec.mu.Lock()
		if s.spec.walked == nil || len(s.spec.walked) >= walkMemory {
			s.spec.walked = map[string]bool{}
		}
		if s.spec.walked[key] {
			s.spec.mu.Unlock()
			return
		}
		s.spec.walked[key] = true
		s.spec.mu.Unlock()
		s.spec.walks.Add(1)
		var trees []ostree.Checksum
		for _, d := range pt.Dirs[k:] {
			trees = append(trees, d.Tree)
		}
		s.walkAhead(ctx, remote, trees)
	}()
}

// walkAhead fetches, on a guess, the directories under trees in walk
// order (depth first, as ls -lR and find go) and the entries of each
// whose headers are not known, with SpeculativeConcurrency fetches at
// once.
func (s *MountSource) walkAhead(ctx context.Context, remote string, trees []ostree.Checksum) {
	// First every dirtree, concurrently (one round trip per level, not
	// per directory), then the files in walk order.
	var n atomic.Int64
	dq := newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
	var fetchTree func(c ostree.Checksum)
	fetchTree = func(c ostree.Checksum) {
		if n.Add(1) > walkMaxDirs {
			return
		}
		dq.add(true, func(ctx context.Context) {
			if t, err := s.f.DirTree(ctx, remote, c); err == nil {
				for _, d := range t.Dirs {
					fetchTree(d.Tree)
				}
			}
		})
	}
	for _, c := range trees {
		fetchTree(c)
	}
	dq.run()
	q := newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
	q.add(true, func(ctx context.Context) {
		dirs, files := 0, 0
		var walk func(c ostree.Checksum) bool
		walk = func(c ostree.Checksum) bool {
			if dirs >= walkMaxDirs || files >= walkMaxFiles || ctx.Err() != nil {
				return false
			}
			dirs++
			t, err := s.f.DirTree(ctx, remote, c)
			if err != nil {
				return true
			}
			if s.spec.once(&s.spec.dirs, remote+"/"+c.String()) {
				for _, e := range t.Files {
					if _, ok := s.f.PeekHeaderVia(remote, e.Checksum); !ok && files < walkMaxFiles {
						files++
						q.add(false, func(ctx context.Context) { s.guessContent(ctx, remote, e.Checksum) })
					}
				}
			}
			for _, d := range t.Dirs {
				if !walk(d.Tree) {
					return false
				}
			}
			return true
		}
		for _, c := range trees {
			if !walk(c) {
				break
			}
		}
	})
	q.run()
}

// storedCommit reads a commit this mount verified (it is in the cache).
func (s *MountSource) storedCommit(ctx context.Context, c ostree.Checksum) (*ostree.Commit, error) {
	data, err := s.f.Store().ReadMeta(ctx, index.TypeCommit, c)
	if err != nil {
		return nil, err
	}
	return ostree.DecodeCommit(data)
}
