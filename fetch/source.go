package fetch

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/lazytree/lazytree/ostree"
)

// SourceOptions configure a MountSource.
type SourceOptions struct {
	// Prefetch is what to fetch in the background once a commit is first
	// used (default none).
	Prefetch string
	// RefreshInterval is how often refs are refreshed from the summaries
	// (default: the fetcher's SummaryTTL).
	RefreshInterval time.Duration
	// BackgroundWorkers bounds this mount's prefetch fetches in flight
	// (default 16); the Fetcher's scheduler bounds and orders them with
	// everything else (see Priority).
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
	// prevCommit maps a commit a refresh moved a ref to onto the ref's
	// commit before, the source of a delta for it (mode delta).
	prevCommit map[ostree.Checksum]ostree.Checksum
	// commitRemote is the remote each commit used was verified for: where
	// speculation for its files fetches from.
	commitRemote map[ostree.Checksum]string
	jobs         []*prefetchJob
	// indexState says, per commit used, whether its tree index is loaded
	// ("loaded"), absent ("none: why") or refused ("failed: why").
	indexState map[ostree.Checksum]string
	indexTried map[string]indexTry // remote/commit
	spec       speculation
	profiles   map[ostree.Checksum]*profile
	refErrors  map[string]string
	// bg bounds background fetches across every prefetch of the mount.
	bg *semaphore.Weighted
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
		opts.BackgroundWorkers = 16
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &MountSource{f: f, opts: opts, ctx: ctx, stop: stop,
		refs:       map[string]map[string]ostree.Checksum{},
		prefetched: map[ostree.Checksum]bool{}, commitRemote: map[ostree.Checksum]string{}, prevCommit: map[ostree.Checksum]ostree.Checksum{},
		indexState: map[ostree.Checksum]string{}, indexTried: map[string]indexTry{}, profiles: map[ostree.Checksum]*profile{}, refErrors: map[string]string{},
		bg: semaphore.NewWeighted(int64(opts.BackgroundWorkers))}
	// Fetches started by background work count in s.wg (detached).
	s.ctx = context.WithValue(s.ctx, flightGroupKey{}, &s.wg)
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
// and the TTL); a moved ref shows its new commit to new lookups. A ref
// whose old commit this mount prefetched has its new commit verified and
// prefetched in the background right away (in mode delta, through the
// delta from the old commit when the remote has one), so that an update
// comes in before anyone looks.
func (s *MountSource) Refresh(ctx context.Context) {
	for _, r := range s.f.Remotes() {
		s.mu.Lock()
		old := s.refs[r]
		s.mu.Unlock()
		if _, err := s.f.Summary(ctx, r, true); err != nil {
			continue
		}
		refs, err := s.loadRefs(ctx, r)
		if err != nil {
			continue
		}
		for ref, c := range refs {
			prev, ok := old[ref]
			if !ok || prev == c {
				continue
			}
			s.mu.Lock()
			follow := s.prefetched[prev] && !s.prefetched[c] && s.ctx.Err() == nil
			if follow {
				s.prevCommit[c] = prev // a delta from it carries only the changes
				s.wg.Add(1)
			}
			s.mu.Unlock()
			if !follow {
				continue
			}
			go func() {
				defer s.wg.Done()
				ctx, cancel := context.WithTimeout(WithPriority(s.ctx, Background), 5*time.Minute)
				defer cancel()
				if _, err := s.Commit(ctx, r, ref, c); err != nil && s.ctx.Err() == nil {
					s.f.RecordError(r, "refresh "+ref, err)
				}
			}()
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

// CachedRefs returns the refs of a remote the mount has loaded, without
// asking the network (false when it has not loaded them).
func (s *MountSource) CachedRefs(remote string) (map[string]ostree.Checksum, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.refs[remote]
	return m, ok
}

func (s *MountSource) loadRefs(ctx context.Context, remote string) (map[string]ostree.Checksum, error) {
	refs, err := s.f.Refs(ctx, remote)
	if err != nil {
		// Said in status only while readers have no refs of it: a
		// failed refresh keeps the refs verified before, and a reader's
		// interrupt or deadline says nothing of the remote.
		s.mu.Lock()
		if _, held := s.refs[remote]; !held && ctx.Err() == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			s.refErrors[remote] = err.Error()
		}
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
	s.loadIndex(ctx, c, cm, verifiedFor)
	s.startPrefetch(c, cm, verifiedFor)
	return cm, nil
}

// loadIndex loads the commit's tree index for remote before the first
// lookup in it (one request that saves one per directory and file),
// unless the mount prefetches nothing. Without one, nothing changes; a
// failed load is tried again after indexRetry.
func (s *MountSource) loadIndex(ctx context.Context, c ostree.Checksum, cm *ostree.Commit, remote string) {
	if remote == "" || s.modeFor(remote) == PrefetchNone {
		return
	}
	key := remote + "/" + c.String()
	s.mu.Lock()
	st, tried := s.indexTried[key]
	s.mu.Unlock()
	if tried && (st.ok || time.Since(st.at) < indexRetry) {
		return
	}
	state, ok := "loaded", true
	if _, err := s.f.TreeIndex(ctx, remote, c, cm); errors.Is(err, errNoTreeIndex) {
		state = "none: " + err.Error()
	} else if err != nil {
		state, ok = "failed: "+err.Error(), false
		if ctx.Err() == nil {
			s.f.RecordError(remote, "tree index of "+c.String(), err)
		}
	}
	s.mu.Lock()
	s.indexTried[key] = indexTry{ok: ok, at: time.Now()}
	s.indexState[c] = state
	s.mu.Unlock()
}

// indexRetry is how long a failed tree-index load stands.
const indexRetry = time.Minute

type indexTry struct {
	ok bool // loaded, or none to load
	at time.Time
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

// PeekFileHeader returns a header only if the cache or the tree index of
// remote (the reader's path) has it.
func (s *MountSource) PeekFileHeader(remote string, c ostree.Checksum) (*ostree.FileHeader, bool) {
	return s.f.PeekHeaderVia(remote, c)
}

// Open returns the verified content of a file: the cached object, or a
// PartialFile when remote's tree index chunks it (partial.go).
func (s *MountSource) Open(ctx context.Context, remote string, c ostree.Checksum) (File, error) {
	return s.f.OpenContent(ctx, remote, c)
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
