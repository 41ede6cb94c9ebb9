package fetch

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

// Dir is one directory of a commit's tree as Walk reaches it.
type Dir struct {
	// Path is the directory's path below the commit's root, with "/"
	// separators; "" for the root.
	Path string
	// Tree and Meta are its dirtree and dirmeta checksums.
	Tree, Meta ostree.Checksum
	// DirTree is the verified dirtree.
	DirTree *ostree.DirTree
}

// WalkOptions configure Walk. The zero value fetches what is missing from
// each object's origin, visits every path, eight at a time.
type WalkOptions struct {
	// Remote is where dirtrees are fetched from ("": the remote whose tree
	// named them).
	Remote string
	// CachedOnly never fetches: a dirtree that is not in the cache is left
	// out with everything below it, and Walk reports the walk incomplete.
	CachedOnly bool
	// Unique visits each dirtree once, however many paths reach it (what
	// counting and fetching want; a checkout wants every path).
	Unique bool
	// Concurrency bounds the visits in flight (default 8).
	Concurrency int
	// Limit, when set, is held (one unit) around each directory's fetch
	// and visit: a bound shared with other walks and work (the mount's
	// background prefetch bound).
	Limit *semaphore.Weighted
}

// ErrStopWalk, returned by a visit, ends the walk early; Walk then
// returns it too, so the caller knows the walk did not finish.
var ErrStopWalk = errors.New("walk stopped")

// Walk visits the directories of the tree rooted at tree and meta breadth
// first: every directory after its parent, the directories of one level
// concurrently (up to Concurrency visits at a time). Every dirtree is
// verified before it is visited (DirTree). The first error from a visit or
// a fetch cancels the walk and is returned. complete is false when a
// CachedOnly walk left something out.
//
// This is the one tree walker of the package: pull, prefetch, checkout,
// pin reachability, the per-ref share of status.json and the clean-up
// after a delta all go through it.
func (f *Fetcher) Walk(ctx context.Context, tree, meta ostree.Checksum, opts WalkOptions, visit func(ctx context.Context, d Dir) error) (complete bool, err error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	var mu sync.Mutex
	complete = true
	seen := map[ostree.Checksum]bool{tree: true}
	level := []Dir{{Tree: tree, Meta: meta}}
	for len(level) > 0 {
		var next []Dir
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Concurrency)
		for _, d := range level {
			g.Go(func() error {
				if opts.Limit != nil {
					if err := opts.Limit.Acquire(gctx, 1); err != nil {
						return err
					}
					defer opts.Limit.Release(1)
				}
				t, ok, err := f.walkTree(gctx, opts, d.Tree)
				if err != nil {
					return err
				}
				if !ok {
					mu.Lock()
					complete = false
					mu.Unlock()
					return nil
				}
				d.DirTree = t
				if err := visit(gctx, d); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, sub := range t.Dirs {
					if opts.Unique {
						if seen[sub.Tree] {
							continue
						}
						seen[sub.Tree] = true
					}
					next = append(next, Dir{Path: joinPath(d.Path, sub.Name), Tree: sub.Tree, Meta: sub.Meta})
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return false, err
		}
		level = next
	}
	return complete, nil
}

// walkTree returns a verified dirtree for Walk; ok is false when a
// CachedOnly walk does not have it.
func (f *Fetcher) walkTree(ctx context.Context, opts WalkOptions, c ostree.Checksum) (*ostree.DirTree, bool, error) {
	if opts.CachedOnly {
		b, err := f.store.ReadMeta(ctx, index.TypeDirTree, c)
		if err != nil {
			return nil, false, nil
		}
		t, err := ostree.DecodeDirTree(b)
		if err != nil {
			return nil, false, nil
		}
		return t, true, nil
	}
	t, err := f.DirTree(ctx, opts.Remote, c)
	if err != nil {
		return nil, false, err
	}
	return t, true, nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
