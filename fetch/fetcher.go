package fetch

import (
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
)

// Options configure a Fetcher. The zero value is a good default.
type Options struct {
	HTTP HTTPOptions
	// MaxFutureSkew is how far ahead of the local clock a commit may be
	// dated (default 24 hours).
	MaxFutureSkew time.Duration
	// SummaryTTL is how long a fetched summary is used before it is
	// fetched again (default 5 minutes).
	SummaryTTL time.Duration
	// FetchTimeout bounds a shared fetch that outlives its first caller
	// (default 10 minutes).
	FetchTimeout time.Duration
	// MaxOfflineAge bounds how long after it was last verified online the
	// stored summary of a remote is used while the remote cannot be
	// reached (default 7 days; a remote's max-offline-age config key
	// overrides it). Past it, the remote's refs fail until it
	// answers again: a network attacker who cuts a remote off cannot
	// freeze its clients on old refs for ever.
	MaxOfflineAge time.Duration
	// BackgroundConcurrency bounds the background (prefetch) requests in
	// flight across all remotes (default 16); SpeculativeConcurrency the
	// speculative ones (default 48). See Priority.
	BackgroundConcurrency, SpeculativeConcurrency int
	// BackgroundBandwidth caps the bytes per second background bodies
	// read (0: no cap; background still yields the link to urgent work).
	BackgroundBandwidth int64
	// NoDeltas makes Pull fetch loose objects only, never static deltas.
	NoDeltas bool
	// NoPartial makes OpenContent fetch every object whole before its
	// first byte, even where a tree index chunks it (partial.go).
	NoPartial bool
	Logger    *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxFutureSkew <= 0 {
		o.MaxFutureSkew = 24 * time.Hour
	}
	if o.SummaryTTL <= 0 {
		o.SummaryTTL = 5 * time.Minute
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 10 * time.Minute
	}
	if o.MaxOfflineAge <= 0 {
		o.MaxOfflineAge = 7 * 24 * time.Hour
	}
	if o.BackgroundConcurrency <= 0 {
		o.BackgroundConcurrency = 16
	}
	if o.SpeculativeConcurrency <= 0 {
		o.SpeculativeConcurrency = 48
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Fetcher resolves refs and fetches objects from remotes into the object
// cache, verifying everything before it is stored. It is safe for
// concurrent use; one fetch per object runs at a time, shared by every
// caller that wants it.
type Fetcher struct {
	store *objcache.Store
	db    *index.DB
	opts  Options

	mu      sync.Mutex
	cfg     *Config
	remotes map[string]*remoteState

	sf     singleflight.Group
	sched  *scheduler
	origin sync.Map // ostree.Checksum -> remote name, learnt from the trees that name objects
	sizes  sync.Map // ostree.Checksum -> sizeInfo, from the ostree.sizes of verified commits
	tindex sync.Map // remote name -> *remoteIndexes: the tree indexes loaded (tindex.go)
	parts  sync.Map // ostree.Checksum -> *partFlight: content in delta parts on their way in

	partMu     sync.Mutex
	partials   map[ostree.Checksum]*partialObj // chunked objects open (partial.go)
	partialBad sync.Map                        // badIndex -> true: that remote's chunks matched, the object did not
	spans      *semaphore.Weighted             // span requests of partial files (maxSpans)

	stats Stats
}

type remoteState struct {
	r *Remote
	c *client
	// signed holds the commits whose signatures passed this remote's
	// keys (ostree.Checksum -> true); a new config makes a new state.
	signed sync.Map
	// large is this remote's one large-body token (see bounded.go).
	large *semaphore.Weighted
	mu    sync.Mutex
	// summary is the last verified summary, nil when the remote has none.
	summary   *ostree.Summary
	summaryAt time.Time
	// raw and rawSig are the bytes of summary and summary.sig as the
	// remote sent them, once verified (nil when the summary came from
	// summary.idx or from the index while offline): what a cache node
	// passes through.
	raw, rawSig []byte
	offline     bool
	// offlineCause is why the remote could not be reached, when offline.
	offlineCause string
}

// New returns a Fetcher over an open store and the remotes in cfg.
func New(store *objcache.Store, cfg *Config, opts Options) *Fetcher {
	opts = opts.withDefaults()
	return &Fetcher{store: store, db: store.Index(), cfg: cfg, opts: opts, remotes: map[string]*remoteState{},
		sched: newScheduler(opts.BackgroundConcurrency, opts.SpeculativeConcurrency, opts.BackgroundBandwidth),
		spans: semaphore.NewWeighted(maxSpans)}
}

// Store returns the object cache.
func (f *Fetcher) Store() *objcache.Store { return f.store }

// SetConfig replaces the remote configuration (remote add/remove while a
// daemon runs). Remotes whose settings did not change keep their state.
// The others (and removed ones) are dropped: their next use starts from
// the new settings, with no remembered signature checks.
func (f *Fetcher) SetConfig(cfg *Config) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	kept := map[string]*remoteState{}
	for name, rs := range f.remotes {
		if r, err := cfg.Remote(name); err == nil && r.sameAs(rs.r) {
			kept[name] = rs
		}
	}
	f.remotes = kept
}

// Remotes lists the configured remote names.
func (f *Fetcher) Remotes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg.Names()
}

func (f *Fetcher) remote(name string) (*remoteState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rs := f.remotes[name]; rs != nil {
		return rs, nil
	}
	r, err := f.cfg.Remote(name)
	if err != nil {
		return nil, err
	}
	rs := &remoteState{r: r, c: newClient(r.Mirrors, r.URL, r.Verifies(), f.opts.HTTP), large: semaphore.NewWeighted(1)}
	rs.c.sched = f.sched
	f.remotes[name] = rs
	return rs, nil
}

// Remote returns a configured remote.
func (f *Fetcher) Remote(name string) (*Remote, error) {
	rs, err := f.remote(name)
	if err != nil {
		return nil, err
	}
	return rs.r, nil
}

// SummaryTTL is how long a fetched summary is used before it is fetched
// again.
func (f *Fetcher) SummaryTTL() time.Duration { return f.opts.SummaryTTL }

// VerifiedRefs returns the refs of remote verified before (ref to the
// last commit verified for it), without network I/O: what a remote
// without a summary lists.
func (f *Fetcher) VerifiedRefs(remote string) (map[string]ostree.Checksum, error) {
	refs, err := f.db.Refs(remote)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ostree.Checksum, len(refs))
	for name, r := range refs {
		out[name] = r.Commit
	}
	return out, nil
}

// Profile returns the paths recorded as opened under commit, in order.
func (f *Fetcher) Profile(commit ostree.Checksum) ([]string, error) {
	return f.db.Profile(commit)
}

// SetProfile records the paths opened under commit.
func (f *Fetcher) SetProfile(commit ostree.Checksum, paths []string) error {
	return f.db.SetProfile(commit, paths)
}
