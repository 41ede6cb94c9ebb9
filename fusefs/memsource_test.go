package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

// memSource is an in-memory Source for the kernel-less tests. Objects are
// real ostree objects (checksums computed by package ostree), so the trees
// behave like real ones.
type memSource struct {
	t *testing.T

	mu      sync.Mutex
	refs    map[string]map[string]ostree.Checksum
	trees   map[ostree.Checksum]*ostree.DirTree
	metas   map[ostree.Checksum]*ostree.DirMeta
	commits map[ostree.Checksum]*ostree.Commit
	files   map[ostree.Checksum]memContent
	calls   map[string]int
	fail    map[ostree.Checksum]error // injected failures
	peek    bool                      // PeekFileHeader answers
	block   chan struct{}             // when set, FileHeader and Open wait on it (or ctx)
	opened  int
	closed  int
	vias    map[string][]Via         // call -> the Via of each call, in order
	stream  map[ostree.Checksum]bool // Open returns a StreamingFile
}

func (s *memSource) noteVia(call string, via Via) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vias == nil {
		s.vias = map[string][]Via{}
	}
	s.vias[call] = append(s.vias[call], via)
}

type memContent struct {
	h    *ostree.FileHeader
	data []byte
}

func newMemSource(t *testing.T) *memSource {
	return &memSource{
		t:       t,
		refs:    map[string]map[string]ostree.Checksum{},
		trees:   map[ostree.Checksum]*ostree.DirTree{},
		metas:   map[ostree.Checksum]*ostree.DirMeta{},
		commits: map[ostree.Checksum]*ostree.Commit{},
		files:   map[ostree.Checksum]memContent{},
		calls:   map[string]int{},
		fail:    map[ostree.Checksum]error{},
	}
}

// entry describes one tree entry for build: a file (Data), a symlink
// (Target) or a directory (Dir).
type entry struct {
	Mode     uint32
	UID, GID uint32
	Data     string
	Target   string
	Xattrs   []ostree.Xattr
	Dir      map[string]entry
}

func (s *memSource) addContent(e entry) ostree.Checksum {
	h := &ostree.FileHeader{Size: uint64(len(e.Data)), UID: e.UID, GID: e.GID, Mode: ostree.ModeReg | e.Mode, Xattrs: e.Xattrs}
	if e.Target != "" {
		h.Mode = ostree.ModeSymlink | 0o777
		h.Size = 0
		h.Target = e.Target
	}
	c, err := ostree.ContentChecksum(h, strings.NewReader(e.Data))
	if err != nil {
		s.t.Fatal(err)
	}
	s.files[c] = memContent{h: h, data: []byte(e.Data)}
	return c
}

// build stores a directory tree and returns its dirtree and dirmeta
// checksums.
func (s *memSource) build(mode uint32, uid, gid uint32, xattrs []ostree.Xattr, children map[string]entry) (tree, meta ostree.Checksum) {
	dt := &ostree.DirTree{}
	for name, e := range children {
		if e.Dir != nil {
			ct, cm := s.build(e.Mode, e.UID, e.GID, e.Xattrs, e.Dir)
			dt.Dirs = append(dt.Dirs, ostree.TreeDir{Name: name, Tree: ct, Meta: cm})
			continue
		}
		dt.Files = append(dt.Files, ostree.TreeFile{Name: name, Checksum: s.addContent(e)})
	}
	dt.Sort()
	tree = ostree.Sum(dt.Encode())
	s.trees[tree] = dt
	dm := &ostree.DirMeta{UID: uid, GID: gid, Mode: ostree.ModeDir | mode, Xattrs: xattrs}
	meta = ostree.Sum(dm.Encode())
	s.metas[meta] = dm
	return tree, meta
}

// commit stores a commit of the tree and points remote:ref at it.
func (s *memSource) commit(remote, ref string, root map[string]entry) ostree.Checksum {
	s.mu.Lock()
	defer s.mu.Unlock()
	tree, meta := s.build(0o755, 0, 0, nil, root)
	cm := &ostree.Commit{Subject: ref, RootTree: tree, RootMeta: meta, Timestamp: uint64(len(s.commits))}
	b, err := cm.Encode()
	if err != nil {
		s.t.Fatal(err)
	}
	c := ostree.Sum(b)
	s.commits[c] = cm
	if s.refs[remote] == nil {
		s.refs[remote] = map[string]ostree.Checksum{}
	}
	if ref != "" {
		s.refs[remote][ref] = c
	}
	return c
}

func (s *memSource) count(what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[what]++
	return nil
}

func (s *memSource) callCount(what string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[what]
}

func (s *memSource) Remotes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for r := range s.refs {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (s *memSource) Refs(ctx context.Context, remote string) (map[string]ostree.Checksum, error) {
	s.count("refs")
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refs[remote]
	if !ok {
		return nil, ErrNotFound
	}
	out := map[string]ostree.Checksum{}
	for k, v := range r {
		out[k] = v
	}
	return out, nil
}

func lookupMem[T any](s *memSource, what string, m map[ostree.Checksum]T, c ostree.Checksum) (T, error) {
	s.count(what)
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	if err := s.fail[c]; err != nil {
		return zero, err
	}
	v, ok := m[c]
	if !ok {
		return zero, fmt.Errorf("%s %s: %w", what, c, ErrNotFound)
	}
	return v, nil
}

func (s *memSource) Commit(ctx context.Context, via Via, c ostree.Checksum) (*ostree.Commit, error) {
	s.noteVia("commit", via)
	return lookupMem(s, "commit", s.commits, c)
}

func (s *memSource) DirTree(ctx context.Context, via Via, c ostree.Checksum) (*ostree.DirTree, error) {
	s.noteVia("dirtree", via)
	return lookupMem(s, "dirtree", s.trees, c)
}

func (s *memSource) DirMeta(ctx context.Context, via Via, c ostree.Checksum) (*ostree.DirMeta, error) {
	return lookupMem(s, "dirmeta", s.metas, c)
}

// setBlock makes FileHeader and Open wait for block to close (or their
// context to end); nil stops blocking.
func (s *memSource) setBlock(block chan struct{}) {
	s.mu.Lock()
	s.block = block
	s.mu.Unlock()
}

func (s *memSource) wait(ctx context.Context) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block == nil {
		return nil
	}
	select {
	case <-block:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *memSource) FileHeader(ctx context.Context, via Via, c ostree.Checksum) (*ostree.FileHeader, error) {
	s.noteVia("header", via)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	fc, err := lookupMem(s, "header", s.files, c)
	return fc.h, err
}

func (s *memSource) PeekFileHeader(_ Via, c ostree.Checksum) (*ostree.FileHeader, bool) {
	s.count("peek")
	s.mu.Lock()
	defer s.mu.Unlock()
	fc, ok := s.files[c]
	if !s.peek || !ok {
		return nil, false
	}
	return fc.h, true
}

func (s *memSource) Open(ctx context.Context, via Via, c ostree.Checksum) (File, error) {
	s.noteVia("open", via)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	fc, err := lookupMem(s, "open", s.files, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.opened++
	streaming := s.stream[c]
	s.mu.Unlock()
	f := &memFile{Reader: bytes.NewReader(fc.data), s: s}
	if streaming {
		return &memStreamFile{f}, nil
	}
	return f, nil
}

func (s *memSource) Status() any { return map[string]string{"kind": "mem"} }

func (s *memSource) RecordAccess(via Via, commit ostree.Checksum, path string) {
	s.count("access:" + path)
}

type memFile struct {
	*bytes.Reader
	s *memSource
}

func (f *memFile) Fd() uintptr { return ^uintptr(0) }

// memStreamFile stands for a file served before it is whole.
type memStreamFile struct{ *memFile }

func (f *memStreamFile) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return f.ReadAt(p, off)
}

func (f *memFile) Close() error {
	f.s.mu.Lock()
	f.s.closed++
	f.s.mu.Unlock()
	return nil
}
