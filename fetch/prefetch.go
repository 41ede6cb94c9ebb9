package fetch

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

// Prefetch modes (DESIGN.md, "Fetch strategies").
const (
	PrefetchNone     = "none"
	PrefetchMetadata = "metadata"
	PrefetchProfile  = "profile"
	PrefetchFull     = "full"
)

// ValidPrefetch reports whether mode is a known prefetch mode.
func ValidPrefetch(mode string) bool {
	switch mode {
	case PrefetchNone, PrefetchMetadata, PrefetchProfile, PrefetchFull:
		return true
	}
	return false
}

// startPrefetch begins background fetching of a commit once, per mode.
func (s *MountSource) startPrefetch(c ostree.Checksum, cm *ostree.Commit, remote string) {
	if s.opts.Prefetch == PrefetchNone {
		return
	}
	s.mu.Lock()
	if s.prefetched[c] {
		s.mu.Unlock()
		return
	}
	s.prefetched[c] = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var err error
		switch s.opts.Prefetch {
		case PrefetchMetadata:
			err = s.prefetchTree(cm, remote, false)
		case PrefetchFull:
			err = s.prefetchTree(cm, remote, true)
		case PrefetchProfile:
			err = s.prefetchProfile(c, cm, remote)
		}
		if err != nil && s.ctx.Err() == nil {
			s.f.RecordError(remote, "prefetch "+c.String(), err)
		}
	}()
}

// prefetchTree walks the commit breadth first with the background
// workers: every dirmeta, and with content every file.
func (s *MountSource) prefetchTree(cm *ostree.Commit, remote string, content bool) error {
	if err := s.bg.Acquire(s.ctx, 1); err != nil {
		return err
	}
	_, err := s.f.DirMeta(s.ctx, remote, cm.RootMeta)
	s.bg.Release(1)
	if err != nil {
		return err
	}
	opts := WalkOptions{Remote: remote, Unique: true, Concurrency: s.opts.BackgroundWorkers, Limit: s.bg}
	_, err = s.f.Walk(s.ctx, cm.RootTree, cm.RootMeta, opts, func(ctx context.Context, d Dir) error {
		for _, sub := range d.DirTree.Dirs {
			if _, err := s.f.DirMeta(ctx, remote, sub.Meta); err != nil {
				return err
			}
		}
		if content {
			for _, e := range d.DirTree.Files {
				if err := s.f.FetchContent(ctx, remote, e.Checksum); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// prefetchProfile replays the files earlier runs of this commit opened, in
// their order.
func (s *MountSource) prefetchProfile(c ostree.Checksum, cm *ostree.Commit, remote string) error {
	paths, err := s.f.Profile(c)
	if err != nil {
		if errors.Is(err, index.ErrNotFound) {
			return nil
		}
		return err
	}
	g, ctx := errgroup.WithContext(s.ctx)
	g.SetLimit(s.opts.BackgroundWorkers)
	for _, p := range paths {
		sum, err := s.resolve(cm, remote, p)
		if err != nil {
			continue // the profile may name files of another layout
		}
		g.Go(func() error {
			if err := s.bg.Acquire(ctx, 1); err != nil {
				return err
			}
			defer s.bg.Release(1)
			s.f.FetchContent(ctx, remote, sum) // best effort: a failure is recorded by the fetch
			return nil
		})
	}
	return g.Wait()
}

// resolve finds the content checksum of a path inside a commit.
func (s *MountSource) resolve(cm *ostree.Commit, remote, p string) (ostree.Checksum, error) {
	tree := cm.RootTree
	parts := strings.Split(path.Clean(p), "/")
	for i, name := range parts {
		t, err := s.f.DirTree(s.ctx, remote, tree)
		if err != nil {
			return ostree.Checksum{}, err
		}
		if i == len(parts)-1 {
			if f, ok := t.LookupFile(name); ok {
				return f.Checksum, nil
			}
			break
		}
		d, ok := t.LookupDir(name)
		if !ok {
			break
		}
		tree = d.Tree
	}
	return ostree.Checksum{}, fmt.Errorf("%s: no such file in the commit", p)
}
