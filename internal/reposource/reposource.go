package reposource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

// Read is one object read from a repository.
type Read struct {
	Type     ostree.ObjectType
	Checksum ostree.Checksum
}

// Access is one RecordAccess call.
type Access struct {
	Commit ostree.Checksum
	Path   string
}

// Source serves local archive repositories. Create it with New.
type Source struct {
	cacheDir string
	names    []string // sorted
	repos    map[string]*repo.Repo

	sf singleflight.Group

	mu       sync.Mutex
	headers  map[ostree.Checksum]*ostree.FileHeader // verified content headers
	trees    map[ostree.Checksum]*ostree.DirTree
	metas    map[ostree.Checksum]*ostree.DirMeta
	commits  map[ostree.Checksum]*ostree.Commit
	reads    []Read
	loads    map[ostree.Checksum]int
	accesses []Access

	calls struct {
		refs, commit, dirtree, dirmeta, header, open atomic.Int64
	}
	openFiles atomic.Int64
}

var (
	_ fusefs.Source       = (*Source)(nil)
	_ fusefs.HeaderPeeker = (*Source)(nil)
	_ fusefs.File         = (*file)(nil)
)

// New returns a Source for the given remotes (name to archive repository
// directory). Inflated content goes to cacheDir, which is created if
// needed and should be private to this Source.
func New(cacheDir string, remotes map[string]string) (*Source, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("reposource: %w", err)
	}
	s := &Source{
		cacheDir: cacheDir,
		repos:    map[string]*repo.Repo{},
		headers:  map[ostree.Checksum]*ostree.FileHeader{},
		trees:    map[ostree.Checksum]*ostree.DirTree{},
		metas:    map[ostree.Checksum]*ostree.DirMeta{},
		commits:  map[ostree.Checksum]*ostree.Commit{},
		loads:    map[ostree.Checksum]int{},
	}
	for name, dir := range remotes {
		if err := ostree.ValidateRemoteName(name); err != nil {
			return nil, fmt.Errorf("reposource: %w", err)
		}
		r, err := repo.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("reposource: remote %s: %w", name, err)
		}
		s.repos[name] = r
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Remotes returns the remote names, sorted.
func (s *Source) Remotes() []string { return append([]string(nil), s.names...) }

// Refs reads refs/heads of the remote's repository.
func (s *Source) Refs(ctx context.Context, remote string) (map[string]ostree.Checksum, error) {
	s.calls.refs.Add(1)
	r, ok := s.repos[remote]
	if !ok {
		return nil, fmt.Errorf("remote %s: %w", remote, fusefs.ErrNotFound)
	}
	refs, err := r.Refs()
	if err != nil {
		return nil, fmt.Errorf("refs of %s: %w", remote, err)
	}
	return refs, nil
}

// readObject reads a verified metadata object from the first repository
// that has it.
func (s *Source) readObject(c ostree.Checksum, t ostree.ObjectType) ([]byte, error) {
	for _, name := range s.names {
		r := s.repos[name]
		if !r.HasObject(c, t) {
			continue
		}
		s.logRead(c, t)
		b, err := r.ReadObject(c, t)
		if err != nil {
			return nil, err
		}
		if got := ostree.Sum(b); got != c {
			return nil, &ostree.ChecksumError{Object: ostree.ObjectName(c, t), Got: got, Want: c}
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, t), fusefs.ErrNotFound)
}

func (s *Source) logRead(c ostree.Checksum, t ostree.ObjectType) {
	s.mu.Lock()
	s.reads = append(s.reads, Read{Type: t, Checksum: c})
	s.mu.Unlock()
}

// metadata returns a cached decoded object or reads, verifies, decodes
// and caches it.
func metadata[T any](s *Source, cache map[ostree.Checksum]*T, c ostree.Checksum, t ostree.ObjectType, decode func([]byte) (*T, error)) (*T, error) {
	s.mu.Lock()
	v := cache[c]
	s.mu.Unlock()
	if v != nil {
		return v, nil
	}
	b, err := s.readObject(c, t)
	if err != nil {
		return nil, err
	}
	v, err = decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, t), err)
	}
	s.mu.Lock()
	cache[c] = v
	s.mu.Unlock()
	return v, nil
}

// Commit returns a commit (its checksum verified; signatures are not
// checked).
func (s *Source) Commit(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.Commit, error) {
	s.calls.commit.Add(1)
	return metadata(s, s.commits, c, ostree.ObjCommit, ostree.DecodeCommit)
}

// DirTree returns a verified dirtree.
func (s *Source) DirTree(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.DirTree, error) {
	s.calls.dirtree.Add(1)
	return metadata(s, s.trees, c, ostree.ObjDirTree, ostree.DecodeDirTree)
}

// DirMeta returns a verified dirmeta.
func (s *Source) DirMeta(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.DirMeta, error) {
	s.calls.dirmeta.Add(1)
	return metadata(s, s.metas, c, ostree.ObjDirMeta, ostree.DecodeDirMeta)
}

// FileHeader returns a content object's header, inflating and verifying
// the whole object first (its header is only trusted once the checksum
// over header and content matches).
func (s *Source) FileHeader(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.FileHeader, error) {
	s.calls.header.Add(1)
	return s.content(ctx, c)
}

// PeekFileHeader returns a header that is already verified.
func (s *Source) PeekFileHeader(_ fusefs.Via, c ostree.Checksum) (*ostree.FileHeader, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.headers[c]
	return h, ok
}

// Open returns the verified content of a regular file.
func (s *Source) Open(ctx context.Context, via fusefs.Via, c ostree.Checksum) (fusefs.File, error) {
	s.calls.open.Add(1)
	h, err := s.content(ctx, c)
	if err != nil {
		return nil, err
	}
	if h.IsSymlink() {
		return nil, fmt.Errorf("open %s: a symlink has no content", ostree.ObjectName(c, ostree.ObjFile))
	}
	f, err := os.Open(s.cachePath(c))
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed the cache file: inflate again.
		s.mu.Lock()
		delete(s.headers, c)
		s.mu.Unlock()
		if _, err = s.content(ctx, c); err == nil {
			f, err = os.Open(s.cachePath(c))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ostree.ObjectName(c, ostree.ObjFile), err)
	}
	s.openFiles.Add(1)
	return &file{File: f, size: int64(h.Size), s: s}, nil
}

func (s *Source) cachePath(c ostree.Checksum) string {
	return filepath.Join(s.cacheDir, c.String()+".file")
}

// content makes sure a content object is inflated and verified, and
// returns its header. The work is shared by concurrent callers and is
// not cancelled when one of them leaves.
func (s *Source) content(ctx context.Context, c ostree.Checksum) (*ostree.FileHeader, error) {
	if h, ok := s.PeekFileHeader(fusefs.Via{}, c); ok {
		return h, nil
	}
	ch := s.sf.DoChan(c.String(), func() (any, error) {
		if h, ok := s.PeekFileHeader(fusefs.Via{}, c); ok { // finished while we queued
			return h, nil
		}
		return s.inflate(c)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*ostree.FileHeader), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjFile), ctx.Err())
	}
}

// inflate reads a .filez, writes its content to a temporary file, checks
// the checksum, and only then renames the file into the cache and
// records the header.
func (s *Source) inflate(c ostree.Checksum) (*ostree.FileHeader, error) {
	obj := ostree.ObjectName(c, ostree.ObjFile)
	var src string
	for _, name := range s.names {
		r := s.repos[name]
		if r.HasObject(c, ostree.ObjFile) {
			src = filepath.Join(r.Dir, ostree.ObjectPath(c, ostree.ObjFile, true))
			break
		}
	}
	if src == "" {
		return nil, fmt.Errorf("%s: %w", obj, fusefs.ErrNotFound)
	}
	s.logRead(c, ostree.ObjFile)
	s.mu.Lock()
	s.loads[c]++
	s.mu.Unlock()

	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	defer in.Close()
	cr, err := ostree.NewContentReader(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	tmp, err := os.CreateTemp(s.cacheDir, ".inflate-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = io.Copy(tmp, cr)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = cr.Verify(c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	if !cr.Header.IsSymlink() {
		if err := os.Rename(tmp.Name(), s.cachePath(c)); err != nil {
			return nil, fmt.Errorf("%s: %w", obj, err)
		}
	}
	s.mu.Lock()
	s.headers[c] = cr.Header
	s.mu.Unlock()
	return cr.Header, nil
}

// Status returns counters for status.json.
func (s *Source) Status() any {
	s.mu.Lock()
	reads, inflated, accesses := len(s.reads), len(s.loads), len(s.accesses)
	s.mu.Unlock()
	return map[string]int64{
		"repo_reads":       int64(reads),
		"objects_inflated": int64(inflated),
		"accesses":         int64(accesses),
		"calls_refs":       s.calls.refs.Load(),
		"calls_commit":     s.calls.commit.Load(),
		"calls_dirtree":    s.calls.dirtree.Load(),
		"calls_dirmeta":    s.calls.dirmeta.Load(),
		"calls_header":     s.calls.header.Load(),
		"calls_open":       s.calls.open.Load(),
		"open_files":       s.openFiles.Load(),
	}
}

// RecordAccess keeps the access for Accesses, ignoring repeats.
func (s *Source) RecordAccess(via fusefs.Via, commit ostree.Checksum, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accesses {
		if a.Commit == commit && a.Path == path {
			return
		}
	}
	s.accesses = append(s.accesses, Access{Commit: commit, Path: path})
}

// Reads returns every object read from a repository so far, in order.
func (s *Source) Reads() []Read {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Read(nil), s.reads...)
}

// Loads returns how many times each content object was inflated.
func (s *Source) Loads() map[ostree.Checksum]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.loads)
}

// Accesses returns the recorded accesses in first-access order.
func (s *Source) Accesses() []Access {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Access(nil), s.accesses...)
}

// OpenFiles returns how many Files are open.
func (s *Source) OpenFiles() int64 { return s.openFiles.Load() }

// Forget drops everything cached (decoded metadata, verified headers and
// inflated content) and the read log, as if the Source were new.
func (s *Source) Forget() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.headers {
		if err := os.Remove(s.cachePath(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	clear(s.headers)
	clear(s.trees)
	clear(s.metas)
	clear(s.commits)
	clear(s.loads)
	s.reads = nil
	return nil
}

// file is an open inflated content object.
type file struct {
	*os.File
	size   int64
	s      *Source
	closed atomic.Bool
}

func (f *file) Size() int64 { return f.size }

func (f *file) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	f.s.openFiles.Add(-1)
	return f.File.Close()
}
