package fetch

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
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

// SourceOptions configure a MountSource.
type SourceOptions struct {
	// Prefetch is what to fetch in the background once a commit is first
	// used (default none).
	Prefetch string
	// RefreshInterval is how often refs are refreshed from the summaries
	// (default: the fetcher's SummaryTTL).
	RefreshInterval time.Duration
	// BackgroundWorkers bounds prefetch concurrency, so that on-demand
	// reads keep most of the connections (default 4).
	BackgroundWorkers int
}

// MountSource serves a lazy mount from a Fetcher: it answers refs from the
// verified summaries, checks every commit against the ref it was found
// under (bindings, downgrades), fetches objects on demand, prefetches in
// the background, and records access profiles. It has the methods the
// fusefs.Source interface asks for; cli checks that at compile time.
type MountSource struct {
	f    *Fetcher
	opts SourceOptions
	ctx  context.Context // background work; cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu         sync.Mutex
	refs       map[string]map[string]ostree.Checksum // remote -> ref -> commit
	prefetched map[ostree.Checksum]bool
	profiles   map[ostree.Checksum]*profile
	refErrors  map[string]string
	// bg bounds background fetches across every prefetch of the mount.
	bg *semaphore.Weighted
}

type profile struct {
	seen  map[string]bool
	paths []string
	dirty bool
}

// NewSource returns a MountSource; call Close when the mount is gone.
func NewSource(f *Fetcher, opts SourceOptions) *MountSource {
	if opts.Prefetch == "" {
		opts.Prefetch = PrefetchNone
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = f.SummaryTTL()
	}
	if opts.BackgroundWorkers <= 0 {
		opts.BackgroundWorkers = 4
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &MountSource{f: f, opts: opts, ctx: ctx, stop: stop,
		refs:       map[string]map[string]ostree.Checksum{},
		prefetched: map[ostree.Checksum]bool{}, profiles: map[ostree.Checksum]*profile{}, refErrors: map[string]string{},
		bg: semaphore.NewWeighted(int64(opts.BackgroundWorkers))}
	s.wg.Add(1)
	go s.loop()
	return s
}

// Close stops background work and saves access profiles.
func (s *MountSource) Close() error {
	s.stop()
	s.wg.Wait()
	return s.flushProfiles()
}

func (s *MountSource) loop() {
	defer s.wg.Done()
	refresh := time.NewTicker(s.opts.RefreshInterval)
	defer refresh.Stop()
	flush := time.NewTicker(5 * time.Second)
	defer flush.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-refresh.C:
			s.Refresh(s.ctx)
		case <-flush.C:
			s.flushProfiles()
		}
	}
}

// Refresh fetches every remote's summary again (lazytree mount --refresh
// and the TTL); a moved ref shows its new commit to new lookups.
func (s *MountSource) Refresh(ctx context.Context) {
	for _, r := range s.f.Remotes() {
		if _, err := s.f.Summary(ctx, r, true); err == nil {
			s.loadRefs(ctx, r)
		}
	}
}

// Remotes lists the configured remotes.
func (s *MountSource) Remotes() []string { return s.f.Remotes() }

// Refs returns the verified refs of a remote, from its summary (or, for a
// remote without one, the refs verified before).
func (s *MountSource) Refs(ctx context.Context, remote string) (map[string]ostree.Checksum, error) {
	s.mu.Lock()
	if m, ok := s.refs[remote]; ok {
		s.mu.Unlock()
		return m, nil
	}
	s.mu.Unlock()
	return s.loadRefs(ctx, remote)
}

func (s *MountSource) loadRefs(ctx context.Context, remote string) (map[string]ostree.Checksum, error) {
	refs, err := s.f.Refs(ctx, remote)
	if err != nil {
		s.mu.Lock()
		s.refErrors[remote] = err.Error()
		s.mu.Unlock()
		return nil, err
	}
	m := map[string]ostree.Checksum{}
	for _, r := range refs {
		m[r.Name] = r.Commit
	}
	if len(refs) == 0 {
		// No summary: the refs verified before.
		if known, err := s.f.VerifiedRefs(remote); err == nil {
			for name, r := range known {
				m[name] = r
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refErrors, remote)
	s.refs[remote] = m
	return m, nil
}

// Commit returns a commit verified for the path it was reached through:
// for MOUNT/<remote>/<ref>, that remote's signatures, the commit's
// bindings to that ref and no downgrade of it; for .commits/<sum>
// (remote empty), verified for some configured remote. Whether the
// commit was cached, or listed by another remote or ref, changes nothing.
func (s *MountSource) Commit(ctx context.Context, remote, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	cm, verifiedFor, err := s.f.CommitFor(ctx, remote, ref, c)
	if err != nil {
		return nil, err
	}
	s.startPrefetch(c, cm, verifiedFor)
	return cm, nil
}

// DirTree returns a verified dirtree, fetched from remote (or, with
// remote empty, from the remote whose tree named it).
func (s *MountSource) DirTree(ctx context.Context, remote string, c ostree.Checksum) (*ostree.DirTree, error) {
	return s.f.DirTree(ctx, remote, c)
}

// DirMeta returns a verified dirmeta.
func (s *MountSource) DirMeta(ctx context.Context, remote string, c ostree.Checksum) (*ostree.DirMeta, error) {
	return s.f.DirMeta(ctx, remote, c)
}

// FileHeader returns a verified content header.
func (s *MountSource) FileHeader(ctx context.Context, remote string, c ostree.Checksum) (*ostree.FileHeader, error) {
	return s.f.FileHeader(ctx, remote, c)
}

// PeekFileHeader returns a header only if the index has it.
func (s *MountSource) PeekFileHeader(c ostree.Checksum) (*ostree.FileHeader, bool) {
	return s.f.PeekHeader(c)
}

// Open returns the verified, cached content of a file.
func (s *MountSource) Open(ctx context.Context, remote string, c ostree.Checksum) (*objcache.Handle, error) {
	return s.f.Content(ctx, remote, c)
}

// RecordAccess notes an opened path for the commit's access profile.
func (s *MountSource) RecordAccess(commit ostree.Checksum, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.profiles[commit]
	if pr == nil {
		pr = &profile{seen: map[string]bool{}}
		if old, err := s.f.Profile(commit); err == nil {
			for _, o := range old {
				pr.seen[o] = true
			}
			pr.paths = old
		}
		s.profiles[commit] = pr
	}
	if pr.seen[p] {
		return
	}
	pr.seen[p] = true
	pr.paths = append(pr.paths, p)
	pr.dirty = true
}

func (s *MountSource) flushProfiles() error {
	s.mu.Lock()
	var todo []struct {
		c     ostree.Checksum
		paths []string
	}
	for c, pr := range s.profiles {
		if pr.dirty {
			todo = append(todo, struct {
				c     ostree.Checksum
				paths []string
			}{c, append([]string(nil), pr.paths...)})
			pr.dirty = false
		}
	}
	s.mu.Unlock()
	var first error
	for _, t := range todo {
		if err := s.f.SetProfile(t.c, t.paths); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Status is what status.json shows of the mount's source.
type Status struct {
	Remotes        []RemoteStatus      `json:"remotes"`
	ObjectsFetched int64               `json:"objects_fetched"`
	BytesFetched   int64               `json:"bytes_fetched"`
	CacheHits      int64               `json:"cache_hits"`
	InFlight       int64               `json:"in_flight"`
	FetchErrors    int64               `json:"fetch_errors"`
	RecentErrors   []ErrorRecord       `json:"recent_errors"`
	HTTP           HTTPStats           `json:"http"`
	CacheBytes     int64               `json:"cache_bytes"`
	CacheObjects   int64               `json:"cache_objects"`
	Prefetch       string              `json:"prefetch"`
	RefErrors      map[string]string   `json:"ref_errors"`
	Refs           map[string]RefShare `json:"refs"`
}

// Status returns the counters for status.json.
func (s *MountSource) Status() any {
	st := s.f.Stats()
	used, objects := s.f.Store().Usage()
	s.mu.Lock()
	refErrs := map[string]string{}
	for k, v := range s.refErrors {
		refErrs[k] = v
	}
	s.mu.Unlock()
	var remotes []RemoteStatus
	for _, r := range s.f.Remotes() {
		remotes = append(remotes, s.f.RemoteStatus(r))
	}
	return &Status{
		Remotes:        remotes,
		ObjectsFetched: st.ObjectsFetched.Load(),
		BytesFetched:   st.BytesFetched.Load(),
		CacheHits:      st.CacheHits.Load(),
		InFlight:       st.InFlight.Load(),
		FetchErrors:    st.Errors.Load(),
		RecentErrors:   st.RecentErrors(),
		HTTP:           s.f.HTTPStats(),
		CacheBytes:     used,
		CacheObjects:   objects,
		Prefetch:       s.opts.Prefetch,
		RefErrors:      refErrs,
		Refs:           s.refShares(),
	}
}

// RefShare is how much of a ref's content is in the cache, for
// status.json. Only trees already in the cache are walked (no network), so
// Known and Bytes are lower bounds until TreeComplete.
type RefShare struct {
	Commit       string  `json:"commit"`
	Known        int     `json:"files_known"`
	Cached       int     `json:"files_cached"`
	Bytes        uint64  `json:"bytes_known"`
	CachedBytes  uint64  `json:"bytes_cached"`
	Share        float64 `json:"fetched_share"`
	TreeComplete bool    `json:"tree_complete"`
}

// maxShareWalk bounds the objects counted per status request.
const maxShareWalk = 200000

func (s *MountSource) refShares() map[string]RefShare {
	s.mu.Lock()
	type rc struct {
		name string
		c    ostree.Checksum
	}
	var refs []rc
	for remote, m := range s.refs {
		for ref, c := range m {
			if s.prefetched[c] || s.used(c) {
				refs = append(refs, rc{remote + ":" + ref, c})
			}
		}
	}
	s.mu.Unlock()
	out := map[string]RefShare{}
	for _, r := range refs {
		out[r.name] = s.share(r.c)
	}
	return out
}

// used reports whether the mount has looked at commit c (its commit
// object is cached). Called with s.mu held.
func (s *MountSource) used(c ostree.Checksum) bool {
	ok, _ := s.f.Store().Has(index.TypeCommit, c.String())
	return ok
}

func (s *MountSource) share(c ostree.Checksum) RefShare {
	rs := RefShare{Commit: c.String(), TreeComplete: true}
	data, err := s.f.Store().ReadMeta(s.ctx, index.TypeCommit, c.String())
	if err != nil {
		return rs
	}
	cm, err := ostree.DecodeCommit(data)
	if err != nil {
		return rs
	}
	var mu sync.Mutex
	seen := map[ostree.Checksum]bool{}
	complete, err := s.f.Walk(s.ctx, cm.RootTree, cm.RootMeta, WalkOptions{CachedOnly: true, Unique: true}, func(ctx context.Context, d Dir) error {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range d.DirTree.Files {
			if seen[f.Checksum] {
				continue
			}
			if len(seen) >= maxShareWalk {
				return ErrStopWalk
			}
			seen[f.Checksum] = true
			rs.Known++
			h, ok := s.f.PeekHeader(f.Checksum)
			if !ok {
				continue
			}
			rs.Bytes += h.Size
			if present, _ := s.f.Store().Has(index.TypeFile, f.Checksum.String()); present {
				rs.Cached++
				rs.CachedBytes += h.Size
			}
		}
		return nil
	})
	rs.TreeComplete = complete && err == nil
	if rs.Known > 0 {
		rs.Share = float64(rs.Cached) / float64(rs.Known)
	}
	return rs
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
	if _, err := s.f.DirMeta(s.ctx, remote, cm.RootMeta); err != nil {
		return err
	}
	_, err := s.f.Walk(s.ctx, cm.RootTree, cm.RootMeta, WalkOptions{Remote: remote, Unique: true, Concurrency: s.opts.BackgroundWorkers}, func(ctx context.Context, d Dir) error {
		if err := s.bg.Acquire(ctx, 1); err != nil {
			return err
		}
		defer s.bg.Release(1)
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
	return ostree.Checksum{}, fmt.Errorf("%s: %w", p, ErrNotFound)
}

// RefNames returns the known refs of a remote, sorted (for listings).
func (s *MountSource) RefNames(remote string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for r := range s.refs[remote] {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}
