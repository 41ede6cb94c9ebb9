package fetch

import (
	"context"
	"sync"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

// Status is what status.json shows of the mount's source.
type Status struct {
	Remotes        []RemoteStatus      `json:"remotes"`
	ObjectsFetched int64               `json:"objects_fetched"`
	BytesFetched   int64               `json:"bytes_fetched"`
	CacheHits      int64               `json:"cache_hits"`
	IndexHits      int64               `json:"tree_index_hits"`
	DeltaWaits     int64               `json:"delta_part_waits"`
	TreeIndexes    map[string]string   `json:"tree_indexes"`
	InFlight       int64               `json:"in_flight"`
	FetchErrors    int64               `json:"fetch_errors"`
	RecentErrors   []ErrorRecord       `json:"recent_errors"`
	HTTP           HTTPStats           `json:"http"`
	CacheBytes     int64               `json:"cache_bytes"`
	CacheObjects   int64               `json:"cache_objects"`
	Prefetch       string              `json:"prefetch"`
	RefErrors      map[string]string   `json:"ref_errors"`
	Refs           map[string]RefShare `json:"refs"`
	Prefetches     []PrefetchStatus    `json:"prefetches"`
	Scheduler      SchedulerStatus     `json:"scheduler"`
	Speculation    SpeculationStatus   `json:"speculation"`
	// PartialFiles are the large files being served before they are
	// whole (partial.go); PartialBytes what partial files hold in the
	// cache, open or not.
	PartialFiles []PartialStatus `json:"partial_files"`
	PartialBytes int64           `json:"partial_bytes"`
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
	tindexes := map[string]string{}
	for c, state := range s.indexState {
		tindexes[c.String()] = state
	}
	jobs := make([]PrefetchStatus, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j.status())
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
		IndexHits:      st.IndexHits.Load(),
		DeltaWaits:     st.DeltaWaits.Load(),
		TreeIndexes:    tindexes,
		InFlight:       st.InFlight.Load(),
		FetchErrors:    st.Errors.Load(),
		RecentErrors:   st.RecentErrors(),
		HTTP:           s.f.HTTPStats(),
		CacheBytes:     used,
		CacheObjects:   objects,
		Prefetch:       s.opts.Prefetch,
		RefErrors:      refErrs,
		Refs:           s.refShares(),
		Prefetches:     jobs,
		Scheduler:      s.f.sched.status(),
		Speculation:    s.spec.status(),
		PartialFiles:   s.f.partialStatus(),
		PartialBytes:   s.f.Store().PartialBytes(),
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
	ok, _ := s.f.Store().Has(index.TypeCommit, c)
	return ok
}

func (s *MountSource) share(c ostree.Checksum) RefShare {
	rs := RefShare{Commit: c.String(), TreeComplete: true}
	data, err := s.f.Store().ReadMeta(s.ctx, index.TypeCommit, c)
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
		// Directories count against the bound too: a tree of many
		// directories and few files is walked on every status request.
		seen[d.Tree] = true
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
			if present, _ := s.f.Store().Has(index.TypeFile, f.Checksum); present {
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
