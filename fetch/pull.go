package fetch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

// Progress counts a pull's work; read it from another goroutine.
type Progress struct {
	Commit       ostree.Checksum
	ObjectsKnown atomic.Int64 // objects found so far in the tree
	ObjectsDone  atomic.Int64 // objects present (fetched or already cached)
	Fetched      atomic.Int64 // objects fetched by this pull
	BytesFetched atomic.Int64
	MetaDone     atomic.Bool // every dirtree and dirmeta is known
	// A static delta, when the pull uses one: its parts and their
	// (compressed) bytes to fetch, and those done.
	DeltaParts, DeltaPartsDone atomic.Int64
	// DeltaLoose counts the delta's fallback objects (fetched loose
	// beside the parts); DeltaBytes counts parts and fallbacks.
	DeltaLoose, DeltaLooseDone atomic.Int64
	DeltaBytes, DeltaBytesDone atomic.Int64
}

// PullResult summarises a finished pull.
type PullResult struct {
	Commit ostree.Checksum
	// Objects counts the commit's tree (dirtrees, dirmetas, content);
	// after Pin, every object pinned, the commit included.
	Objects int64
	Fetched int64
	Bytes   int64
}

// Pull fetches every object of remote:ref into the cache. Objects already
// cached are not fetched again, so an interrupted pull resumes where it
// stopped. p may be nil.
func (f *Fetcher) Pull(ctx context.Context, remote, ref string, p *Progress) (*PullResult, error) {
	if p == nil {
		p = &Progress{}
	}
	// A pull always looks at the remote's current summary.
	if _, err := f.Summary(ctx, remote, true); err != nil {
		return nil, err
	}
	c, err := f.ResolveRef(ctx, remote, ref)
	if err != nil {
		return nil, err
	}
	p.Commit = c
	// The ref's previous commit, before this pull records the new one: a
	// delta from it is the cheapest way forward.
	var prev *ostree.Checksum
	if last, err := f.db.Ref(remote, ref); err == nil && last.Commit != c {
		pc := last.Commit
		prev = &pc
	}
	cm, err := f.Commit(ctx, remote, ref, c)
	if err != nil {
		return nil, err
	}
	before := f.stats.ObjectsFetched.Load()
	beforeBytes := f.stats.BytesFetched.Load()
	if _, err := f.pullDelta(ctx, remote, prev, c, cm, p, false); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// Nothing unverified was stored; loose objects still work.
		f.stats.record(remote, "delta to "+c.String(), err)
		f.opts.Logger.Warn("static delta failed, fetching loose objects", "remote", remote, "ref", ref, "cause", err)
	}
	if err := f.walk(ctx, remote, cm, p, true); err != nil {
		return nil, err
	}
	return &PullResult{Commit: c, Objects: p.ObjectsDone.Load(),
		Fetched: f.stats.ObjectsFetched.Load() - before, Bytes: f.stats.BytesFetched.Load() - beforeBytes}, nil
}

// walk visits every object reachable from commit: dirtrees breadth first
// with bounded concurrency, content objects through a pool of workers
// that starts at once, so content and metadata overlap. With fetch off it
// only lists what is cached (for pins).
func (f *Fetcher) walk(ctx context.Context, remote string, cm *ostree.Commit, p *Progress, fetch bool) error {
	workers := f.opts.HTTP.withDefaults().Concurrency
	startBytes := f.stats.BytesFetched.Load()
	g, ctx := errgroup.WithContext(ctx)
	files := make(chan ostree.Checksum, 4*workers)
	var seenMu sync.Mutex
	seen := map[ostree.Checksum]bool{}
	first := func(c ostree.Checksum) bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		if seen[c] {
			return false
		}
		seen[c] = true
		p.ObjectsKnown.Add(1)
		return true
	}
	for i := 0; i < workers; i++ {
		g.Go(func() error {
			for c := range files {
				if fetch {
					// Most of a tree is cached when a delta brought it in:
					// an index lookup says so without opening the file.
					if ok, _ := f.store.Has(index.TypeFile, c); ok {
						p.ObjectsDone.Add(1)
						continue
					}
					if err := f.FetchContent(ctx, remote, c); err != nil {
						return err
					}
					p.BytesFetched.Store(f.stats.BytesFetched.Load() - startBytes)
				}
				p.ObjectsDone.Add(1)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(files)
		first(cm.RootTree)
		// Each dirmeta once, fetched by the directory that names it (two
		// paths to one dirtree may carry different dirmetas).
		fetchMeta := func(ctx context.Context, m ostree.Checksum) error {
			if !first(m) {
				return nil
			}
			if _, err := f.DirMeta(ctx, remote, m); err != nil {
				return err
			}
			p.ObjectsDone.Add(1)
			return nil
		}
		if err := fetchMeta(ctx, cm.RootMeta); err != nil {
			return err
		}
		_, err := f.Walk(ctx, cm.RootTree, cm.RootMeta, WalkOptions{Remote: remote, Unique: true, Concurrency: workers}, func(ctx context.Context, d Dir) error {
			p.ObjectsDone.Add(1)
			for _, e := range d.DirTree.Files {
				if first(e.Checksum) {
					select {
					case files <- e.Checksum:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
			for _, sub := range d.DirTree.Dirs {
				first(sub.Tree)
				if err := fetchMeta(ctx, sub.Meta); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		p.MetaDone.Store(true)
		return nil
	})
	return g.Wait()
}

// Reachable lists every object of a commit (which must be complete in the
// cache), for pinning.
func (f *Fetcher) Reachable(ctx context.Context, commit ostree.Checksum) ([]index.ObjectID, error) {
	cm, err := f.Commit(ctx, "", "", commit)
	if err != nil {
		return nil, err
	}
	ids := []index.ObjectID{{Sum: commit, Type: index.TypeCommit}}
	var mu sync.Mutex
	seen := map[index.ObjectID]bool{}
	add := func(c ostree.Checksum, t index.ObjType) {
		id := index.ObjectID{Sum: c, Type: t}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	add(cm.RootMeta, index.TypeDirMeta)
	_, err = f.Walk(ctx, cm.RootTree, cm.RootMeta, WalkOptions{Unique: true}, func(ctx context.Context, d Dir) error {
		mu.Lock()
		defer mu.Unlock()
		add(d.Tree, index.TypeDirTree)
		for _, e := range d.DirTree.Files {
			add(e.Checksum, index.TypeFile)
		}
		for _, sub := range d.DirTree.Dirs {
			add(sub.Meta, index.TypeDirMeta) // also of a dirtree reached twice
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reachable objects of %s: %w", commit, err)
	}
	return ids, nil
}

// Pin pulls remote:ref completely and pins every object of its commit, so
// eviction never removes them; pinning again moves the pin to the ref's
// current commit.
func (f *Fetcher) Pin(ctx context.Context, remote, ref string, p *Progress) (*PullResult, error) {
	res, err := f.Pull(ctx, remote, ref, p)
	if err != nil {
		return nil, err
	}
	ids, err := f.Reachable(ctx, res.Commit)
	if err != nil {
		return nil, err
	}
	if err := f.store.PinRef(ctx, remote, ref, res.Commit, ids); err != nil {
		return nil, err
	}
	// What is pinned, the commit object included (as `pins` counts).
	res.Objects = int64(len(ids))
	return res, nil
}

// Unpin releases a ref pin.
func (f *Fetcher) Unpin(ctx context.Context, remote, ref string) error {
	return f.store.UnpinRef(ctx, remote, ref)
}
