package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
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
	// NoDeltas makes Pull fetch loose objects only, never static deltas.
	NoDeltas bool
	Logger   *slog.Logger
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
	origin sync.Map // ostree.Checksum -> remote name, learnt from the trees that name objects
	sizes  sync.Map // ostree.Checksum -> sizeInfo, from the ostree.sizes of verified commits

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
	offline   bool
	// offlineCause is why the remote could not be reached, when offline.
	offlineCause string
}

// Stats are cumulative counters for status reports.
type Stats struct {
	ObjectsFetched atomic.Int64
	BytesFetched   atomic.Int64 // compressed bytes received for objects
	CacheHits      atomic.Int64
	InFlight       atomic.Int64
	Errors         atomic.Int64
	errMu          sync.Mutex
	lastErrors     []ErrorRecord
}

// ErrorRecord is one recent fetch failure.
type ErrorRecord struct {
	Time   time.Time `json:"time"`
	Remote string    `json:"remote"`
	Object string    `json:"object"`
	Cause  string    `json:"cause"`
}

func (s *Stats) record(remote, object string, err error) {
	s.Errors.Add(1)
	s.errMu.Lock()
	defer s.errMu.Unlock()
	s.lastErrors = append(s.lastErrors, ErrorRecord{time.Now().UTC(), remote, object, err.Error()})
	if len(s.lastErrors) > 32 {
		s.lastErrors = s.lastErrors[len(s.lastErrors)-32:]
	}
}

// RecentErrors returns the last failures, oldest first.
func (s *Stats) RecentErrors() []ErrorRecord {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return append([]ErrorRecord(nil), s.lastErrors...)
}

// New returns a Fetcher over an open store and the remotes in cfg.
func New(store *objcache.Store, cfg *Config, opts Options) *Fetcher {
	return &Fetcher{store: store, db: store.Index(), cfg: cfg, opts: opts.withDefaults(), remotes: map[string]*remoteState{}}
}

// Stats returns the fetcher's counters.
func (f *Fetcher) Stats() *Stats { return &f.stats }

// Store returns the object cache.
func (f *Fetcher) Store() *objcache.Store { return f.store }

// SetConfig replaces the remote configuration (remote add/remove while a
// daemon runs). Remotes whose settings did not change keep their state.
func (f *Fetcher) SetConfig(cfg *Config) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	f.remotes = map[string]*remoteState{}
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
	rs := &remoteState{r: r, c: newClient(r.URLs(), f.opts.HTTP), large: semaphore.NewWeighted(1)}
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

// Summary returns the remote's verified summary, fetching it when the
// cached one is older than the TTL or refresh is set. It returns nil and no
// error for a remote that publishes no summary and does not require a
// signed one. With the network gone it falls back to the last verified
// summary stored in the index.
func (f *Fetcher) Summary(ctx context.Context, remote string, refresh bool) (*ostree.Summary, error) {
	rs, err := f.remote(remote)
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	if !refresh && !rs.summaryAt.IsZero() && f.opts.Now().Sub(rs.summaryAt) < f.opts.SummaryTTL {
		s := rs.summary
		rs.mu.Unlock()
		return s, nil
	}
	rs.mu.Unlock()
	v, err := f.detached(ctx, "summary/"+remote, func(ctx context.Context) (any, error) {
		return f.fetchSummary(ctx, rs)
	})
	if err != nil {
		return nil, err
	}
	return v.(*ostree.Summary), nil
}

func (f *Fetcher) fetchSummary(ctx context.Context, rs *remoteState) (*ostree.Summary, error) {
	r := rs.r
	sig, sigErr := f.getBounded(ctx, rs, "summary.sig", maxSummarySig, nil)
	data, err := f.getBounded(ctx, rs, "summary", ostree.MaxSummarySize, nil)
	if errors.Is(err, ErrNotFound) {
		// Flatpak repos may publish only summary.idx and sub-summaries.
		s, _, idxSig, ierr := f.fetchIndexedSummary(ctx, rs)
		if ierr == nil {
			return f.acceptSummary(rs, s, idxSig)
		}
		if !errors.Is(ierr, ErrNotFound) {
			return nil, ierr
		}
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			if r.GPGVerifySummary || r.SignVerify {
				return nil, &VerifyError{r.Name, "summary", "summary signature", errors.New("the remote has no summary, but a signed one is required")}
			}
			rs.mu.Lock()
			rs.summary, rs.summaryAt, rs.offline = nil, f.opts.Now(), false
			rs.mu.Unlock()
			return nil, nil
		}
		if !networkFailure(err) {
			return nil, fmt.Errorf("remote %s: summary: %w", r.Name, err)
		}
		return f.offlineSummary(rs, err)
	}
	if sigErr != nil && !errors.Is(sigErr, ErrNotFound) {
		return nil, fmt.Errorf("remote %s: summary.sig: %w", r.Name, sigErr)
	}
	if r.GPGVerifySummary || r.SignVerify {
		if sigErr != nil {
			return nil, &VerifyError{r.Name, "summary", "summary signature", errors.New("summary.sig is missing")}
		}
		dict, err := ostree.DecodeVarDict("summary.sig", sig)
		if err != nil {
			return nil, &VerifyError{r.Name, "summary.sig", "summary signature", err}
		}
		if err := r.verifySignatures("summary", data, dict, r.GPGVerifySummary, r.SignVerify); err != nil {
			return nil, err
		}
	}
	s, err := ostree.DecodeSummary(data)
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", r.Name, err)
	}
	return f.acceptSummary(rs, s, sig)
}

// networkFailure reports whether err means the remote could not be
// reached (no HTTP answer, a reset or stall, or a gateway saying the
// origin is down), the only case where the stored summary may stand in.
// A server that answers, with anything else, is online: its answer is
// an error, never a reason to go back to old refs.
func networkFailure(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status == 502 || he.Status == 503 || he.Status == 504
	}
	if errors.Is(err, ErrVerify) || errors.Is(err, context.Canceled) {
		return false
	}
	return transient(err)
}

// offlineSummary falls back to the last summary verified for the remote,
// if it was verified online within MaxOfflineAge and has not expired,
// and marks the remote offline.
func (f *Fetcher) offlineSummary(rs *remoteState, cause error) (*ostree.Summary, error) {
	r := rs.r
	old, err := f.db.Summary(r.Name)
	if err != nil {
		return nil, fmt.Errorf("remote %s: summary: %w", r.Name, cause)
	}
	s, err := ostree.DecodeSummary(old.Data)
	if err != nil {
		return nil, fmt.Errorf("remote %s: summary: %w", r.Name, cause)
	}
	now := f.opts.Now()
	maxAge := f.opts.MaxOfflineAge
	if r.MaxOfflineAge > 0 {
		maxAge = r.MaxOfflineAge
	}
	if age := now.Sub(old.Verified); age > maxAge {
		return nil, fmt.Errorf("remote %s: summary: %w (the last verified summary is from %s, older than the %s allowed offline)",
			r.Name, cause, old.Verified.UTC().Format(time.RFC3339), maxAge)
	}
	if err := checkExpiry(r.Name, s, now); err != nil {
		return nil, err
	}
	f.opts.Logger.Warn("remote unreachable, using its last verified summary", "remote", r.Name, "verified", old.Verified, "cause", cause)
	rs.mu.Lock()
	rs.summary, rs.summaryAt, rs.offline, rs.offlineCause = s, now, true, cause.Error()
	rs.mu.Unlock()
	return s, nil
}

// checkExpiry refuses a summary past its ostree.summary.expires.
func checkExpiry(remote string, s *ostree.Summary, now time.Time) error {
	exp, ok := s.Expires()
	if !ok || uint64(now.Unix()) <= exp {
		return nil
	}
	return &VerifyError{remote, "summary", "summary expired", fmt.Errorf("summary expired at %s",
		time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))}
}

// acceptSummary refuses an expired summary and one that is not newer than
// the last one seen (older, or a different one with the same time), then
// records it as the remote's current verified summary.
func (f *Fetcher) acceptSummary(rs *remoteState, s *ostree.Summary, sig []byte) (*ostree.Summary, error) {
	r := rs.r
	if err := checkExpiry(r.Name, s, f.opts.Now()); err != nil {
		return nil, err
	}
	// A summary dated ahead of the clock would make every genuine one
	// after it look like a replay, for good.
	if t, ok := s.LastModified(); ok && t > uint64(f.opts.Now().Add(f.opts.MaxFutureSkew).Unix()) {
		return nil, &VerifyError{r.Name, "summary", "future timestamp", fmt.Errorf("summary is dated %s, more than %s ahead of now",
			time.Unix(int64(t), 0).UTC().Format(time.RFC3339), f.opts.MaxFutureSkew)}
	}
	stored, err := s.Encode()
	if err != nil {
		return nil, err
	}
	// Replay: never go back to an older summary than one already seen,
	// nor to another one of the same time (a publisher's summaries are
	// ordered by their last-modified times).
	if old, oerr := f.db.Summary(r.Name); oerr == nil && !bytes.Equal(old.Data, stored) {
		if os, derr := ostree.DecodeSummary(old.Data); derr == nil {
			oldT, ok1 := os.LastModified()
			newT, ok2 := s.LastModified()
			if ok1 && (!ok2 || newT <= oldT) {
				rel := "older than"
				if ok2 && newT == oldT {
					rel = "a different summary with the same time as"
				}
				return nil, &VerifyError{r.Name, "summary", "summary replay", fmt.Errorf("summary last modified %s is %s %s of the one seen before",
					time.Unix(int64(newT), 0).UTC().Format(time.RFC3339), rel, time.Unix(int64(oldT), 0).UTC().Format(time.RFC3339))}
			}
		}
	}
	if err := f.db.SetSummary(r.Name, index.Summary{Data: stored, Sig: sig, Verified: f.opts.Now()}); err != nil {
		return nil, err
	}
	rs.mu.Lock()
	rs.summary, rs.summaryAt, rs.offline, rs.offlineCause = s, f.opts.Now(), false, ""
	rs.mu.Unlock()
	return s, nil
}

// RemoteStatus is what status.json and ls-remote say of a remote.
type RemoteStatus struct {
	Name string `json:"name"`
	// Offline is set while the remote cannot be reached and its last
	// verified summary stands in; Cause says why.
	Offline bool   `json:"offline"`
	Cause   string `json:"offline_cause,omitempty"`
	// SummaryVerified is when the summary in use was last verified
	// online (zero before the first).
	SummaryVerified time.Time `json:"summary_verified,omitzero"`
}

// RemoteStatus reports the state of one remote without network I/O.
func (f *Fetcher) RemoteStatus(name string) RemoteStatus {
	st := RemoteStatus{Name: name}
	if sum, err := f.db.Summary(name); err == nil {
		st.SummaryVerified = sum.Verified
	}
	f.mu.Lock()
	rs := f.remotes[name]
	f.mu.Unlock()
	if rs != nil {
		rs.mu.Lock()
		st.Offline, st.Cause = rs.offline, rs.offlineCause
		rs.mu.Unlock()
	}
	return st
}

// RefInfo is one ref as a remote publishes it.
type RefInfo struct {
	Name       string          `json:"ref"`
	Commit     ostree.Checksum `json:"-"`
	CommitHex  string          `json:"commit"`
	Timestamp  uint64          `json:"timestamp,omitempty"`
	CommitSize uint64          `json:"commit_size,omitempty"`
	// InstalledSize and DownloadSize come from Flatpak's xa.cache.
	InstalledSize uint64 `json:"installed_size,omitempty"`
	DownloadSize  uint64 `json:"download_size,omitempty"`
}

// Refs lists the refs of a remote from its verified summary; a remote
// without a summary lists nothing (refs/heads cannot be listed over HTTP).
func (f *Fetcher) Refs(ctx context.Context, remote string) ([]RefInfo, error) {
	s, err := f.Summary(ctx, remote, false)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, nil
	}
	cache := flatpakCache(s.Metadata)
	out := make([]RefInfo, 0, len(s.Refs))
	for _, r := range s.Refs {
		ri := RefInfo{Name: r.Name, Commit: r.Checksum, CommitHex: r.Checksum.String(), CommitSize: r.CommitSize}
		ri.Timestamp, _ = r.Timestamp()
		if c, ok := cache[r.Name]; ok {
			ri.InstalledSize, ri.DownloadSize = c[0], c[1]
		}
		out = append(out, ri)
	}
	return out, nil
}

// ResolveRef returns the commit a ref points at: from the verified
// summary, or from refs/heads/<ref> for a remote without one (trusted only
// through the commit's signature and binding).
func (f *Fetcher) ResolveRef(ctx context.Context, remote, ref string) (ostree.Checksum, error) {
	if err := ostree.ValidateRef(ref); err != nil {
		return ostree.Checksum{}, err
	}
	rs, err := f.remote(remote)
	if err != nil {
		return ostree.Checksum{}, err
	}
	s, err := f.Summary(ctx, remote, false)
	if err != nil {
		return ostree.Checksum{}, err
	}
	if s != nil {
		if r, ok := s.Ref(ref); ok {
			return r.Checksum, nil
		}
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w", remote, ref, ErrNotFound)
	}
	b, err := rs.c.getAll(ctx, "refs/heads/"+ref, 256)
	if err != nil {
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w", remote, ref, err)
	}
	c, err := ostree.ParseChecksum(strings.TrimSpace(string(b)))
	if err != nil {
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w", remote, ref, err)
	}
	return c, nil
}

// Commit returns commit c verified for remote and ref exactly as a fresh
// fetch from that remote is: its checksum, the signatures the remote
// requires (from the detached metadata stored with it), its ref and
// collection bindings for ref (if not empty), and no downgrade from the
// last commit verified for that ref. Where the bytes come from does not
// matter: a commit in the cache (stored by a pull of another remote, by a
// delta, or before a restart) is checked again for this remote and ref.
// With remote empty (a commit asked for by checksum alone) it must verify
// for at least one configured remote.
func (f *Fetcher) Commit(ctx context.Context, remote, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	cm, _, err := f.commit(ctx, remote, ref, c)
	return cm, err
}

// commit is Commit that also says which remote verified the commit (the
// one asked for, or the first that accepts it when remote is empty).
func (f *Fetcher) commit(ctx context.Context, remote, ref string, c ostree.Checksum) (*ostree.Commit, string, error) {
	if remote == "" {
		return f.commitAnyRemote(ctx, c)
	}
	rs, err := f.remote(remote)
	if err != nil {
		return nil, "", err
	}
	cm, err := f.cachedCommit(ctx, rs, ref, c)
	if err == nil {
		f.stats.CacheHits.Add(1)
		return cm, remote, nil
	}
	var ve *VerifyError
	if errors.As(err, &ve) && !ve.signature() {
		// Bindings, dates: the same bytes fetched again would fail the
		// same way.
		return nil, "", err
	}
	// Not cached, or cached without the signatures this remote requires
	// (its detached metadata came from elsewhere): fetch it from remote.
	key := "commit/" + remote + "/" + ref + "/" + c.String()
	v, err := f.detached(ctx, key, func(ctx context.Context) (any, error) {
		return f.fetchCommit(ctx, rs, ref, c)
	})
	if err != nil {
		f.stats.record(remote, ostree.ObjectName(c, ostree.ObjCommit), err)
		return nil, "", err
	}
	return v.(*ostree.Commit), remote, nil
}

// commitAnyRemote returns c verified for the first configured remote that
// accepts it: from the cache where one does, else fetched from each remote
// in turn.
func (f *Fetcher) commitAnyRemote(ctx context.Context, c ostree.Checksum) (*ostree.Commit, string, error) {
	names := f.remoteOrder(c)
	var last error = fmt.Errorf("commit %s: %w", c, objcache.ErrNotPresent)
	for _, name := range names {
		rs, err := f.remote(name)
		if err != nil {
			continue
		}
		if cm, err := f.cachedCommit(ctx, rs, "", c); err == nil {
			f.stats.CacheHits.Add(1)
			return cm, name, nil
		} else if !errors.Is(err, objcache.ErrNotPresent) {
			last = err
		}
	}
	for _, name := range names {
		cm, _, err := f.commit(ctx, name, "", c)
		if err == nil {
			return cm, name, nil
		}
		if ctx.Err() != nil {
			return nil, "", err
		}
		last = err
	}
	return nil, "", last
}

// remoteOrder lists the remotes to try for commit c: first those with a
// ref verified at c, then the one it was fetched from, then the rest, so
// that after a restart the objects below it are asked of a remote that
// has them (and their names are not sent to another server).
func (f *Fetcher) remoteOrder(c ostree.Checksum) []string {
	names := f.Remotes()
	rank := map[string]int{}
	for _, n := range names {
		rank[n] = 2
		if refs, err := f.db.Refs(n); err == nil {
			for _, r := range refs {
				if ostree.Checksum(r.Commit) == c {
					rank[n] = 0
					break
				}
			}
		}
	}
	if o, err := f.db.Object(index.ObjectID{Sum: index.Sum(c), Type: index.TypeCommit}); err == nil {
		if r, ok := rank[o.Origin]; ok && r > 1 {
			rank[o.Origin] = 1
		}
	}
	sort.SliceStable(names, func(i, j int) bool { return rank[names[i]] < rank[names[j]] })
	return names
}

// cachedCommit verifies a cached commit for rs and ref. It returns an
// error matching objcache.ErrNotPresent when the commit is not cached.
func (f *Fetcher) cachedCommit(ctx context.Context, rs *remoteState, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	data, err := f.store.ReadMeta(ctx, index.TypeCommit, c.String())
	if err != nil {
		return nil, err
	}
	var dict []any
	if meta, err := f.store.ReadMeta(ctx, index.TypeCommitMeta, c.String()); err == nil {
		if dict, err = ostree.DecodeVarDict("commitmeta", meta); err != nil {
			dict = nil // verified like a missing one: a required signature fails
		}
	}
	return f.verifyCommit(rs, ref, c, data, dict)
}

// verifyCommit runs every check a commit must pass for remote rs and ref,
// whatever its bytes came from, and records it as the ref's last verified
// commit. data must be the commit object, dict its detached metadata.
func (f *Fetcher) verifyCommit(rs *remoteState, ref string, c ostree.Checksum, data []byte, dict []any) (*ostree.Commit, error) {
	r := rs.r
	name := ostree.ObjectName(c, ostree.ObjCommit)
	if got := ostree.Sum(data); got != c {
		return nil, &VerifyError{r.Name, name, "checksum", &ostree.ChecksumError{Object: name, Got: got, Want: c}}
	}
	// Signatures before anything else is parsed. A signature check that
	// passed once for this remote's keys holds for these bytes for good.
	_, known := rs.signed.Load(c)
	if !known {
		if err := r.verifySignatures(name, data, dict, r.GPGVerify, r.SignVerify); err != nil {
			return nil, err
		}
	}
	cm, err := ostree.DecodeCommit(data)
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", r.Name, err)
	}
	if !known {
		// Once per remote state and commit: what the signed commit says
		// of its objects' sizes does not change either.
		f.learnSizes(r, cm)
		rs.signed.Store(c, true)
	}
	if err := r.checkBindings(name, ref, cm); err != nil {
		return nil, err
	}
	now := f.opts.Now()
	if ref == "" {
		if err := checkTime(r.Name, name, cm, c, ostree.Checksum{}, 0, false, now, f.opts.MaxFutureSkew); err != nil {
			return nil, err
		}
	} else {
		last, err := f.db.Ref(r.Name, ref)
		has := err == nil
		if err := checkTime(r.Name, name, cm, c, ostree.Checksum(last.Commit), last.Timestamp, has, now, f.opts.MaxFutureSkew); err != nil {
			return nil, err
		}
		if !has || ostree.Checksum(last.Commit) != c {
			if err := f.db.SetRef(r.Name, ref, index.Ref{Commit: index.Sum(c), Verified: now, Timestamp: cm.Timestamp}); err != nil {
				return nil, err
			}
		}
	}
	f.origin.LoadOrStore(cm.RootTree, r.Name)
	f.origin.LoadOrStore(cm.RootMeta, r.Name)
	return cm, nil
}

func (f *Fetcher) fetchCommit(ctx context.Context, rs *remoteState, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	remote := rs.r.Name
	name := ostree.ObjectName(c, ostree.ObjCommit)
	metaBytes, err := f.getMeta(ctx, rs, ostree.ObjectPath(c, ostree.ObjCommitMeta, true), ostree.ObjCommitMeta)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("remote %s: %s: %w", remote, ostree.ObjectName(c, ostree.ObjCommitMeta), err)
	}
	var dict []any
	if err == nil {
		if dict, err = ostree.DecodeVarDict("commitmeta", metaBytes); err != nil {
			return nil, fmt.Errorf("remote %s: %s: %w", remote, ostree.ObjectName(c, ostree.ObjCommitMeta), err)
		}
	}
	data, err := f.getMeta(ctx, rs, ostree.ObjectPath(c, ostree.ObjCommit, true), ostree.ObjCommit)
	if err != nil {
		return nil, fmt.Errorf("remote %s: %s: %w", remote, name, err)
	}
	cm, err := f.verifyCommit(rs, ref, c, data, dict)
	if err != nil {
		return nil, err
	}
	if metaBytes != nil {
		if err := f.putCommitMeta(ctx, rs, c, metaBytes); err != nil {
			return nil, err
		}
	}
	if err := f.store.PutMeta(ctx, index.TypeCommit, c.String(), data, remote); err != nil {
		return nil, err
	}
	f.stats.ObjectsFetched.Add(1)
	f.stats.BytesFetched.Add(int64(len(data) + len(metaBytes)))
	return cm, nil
}

// putCommitMeta stores the detached metadata that verified a commit,
// replacing what another remote left there: the next check of the cached
// commit for this remote then finds the signatures it needs.
func (f *Fetcher) putCommitMeta(ctx context.Context, rs *remoteState, c ostree.Checksum, data []byte) error {
	if !rs.r.GPGVerify && !rs.r.SignVerify {
		// A remote that checks no signature never replaces what one that
		// does verified.
		return f.store.PutMeta(ctx, index.TypeCommitMeta, c.String(), data, rs.r.Name)
	}
	return f.store.ReplaceMeta(ctx, index.TypeCommitMeta, c.String(), data, rs.r.Name)
}

// originOf returns the remote to fetch an object from: the one whose tree
// named it, else the first remote (objects are content-addressed, so any
// remote that has it serves the same verified bytes).
func (f *Fetcher) originOf(c ostree.Checksum, hint string) (string, error) {
	if hint != "" {
		return hint, nil
	}
	if v, ok := f.origin.Load(c); ok {
		return v.(string), nil
	}
	names := f.Remotes()
	if len(names) == 0 {
		return "", fmt.Errorf("object %s: no remote configured", c)
	}
	return names[0], nil
}

// DirTree returns a verified dirtree, from the cache or the remote.
func (f *Fetcher) DirTree(ctx context.Context, remote string, c ostree.Checksum) (*ostree.DirTree, error) {
	data, err := f.meta(ctx, remote, ostree.ObjDirTree, c)
	if err != nil {
		return nil, err
	}
	t, err := ostree.DecodeDirTree(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjDirTree), err)
	}
	if origin, ok := f.origin.Load(c); ok {
		for _, e := range t.Files {
			f.origin.LoadOrStore(e.Checksum, origin)
		}
		for _, d := range t.Dirs {
			f.origin.LoadOrStore(d.Tree, origin)
			f.origin.LoadOrStore(d.Meta, origin)
		}
	}
	return t, nil
}

// DirMeta returns a verified dirmeta.
func (f *Fetcher) DirMeta(ctx context.Context, remote string, c ostree.Checksum) (*ostree.DirMeta, error) {
	data, err := f.meta(ctx, remote, ostree.ObjDirMeta, c)
	if err != nil {
		return nil, err
	}
	m, err := ostree.DecodeDirMeta(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjDirMeta), err)
	}
	return m, nil
}

func (f *Fetcher) meta(ctx context.Context, remote string, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	if data, err := f.store.ReadMeta(ctx, index.ObjType(t), c.String()); err == nil {
		f.stats.CacheHits.Add(1)
		return data, nil
	}
	remote, err := f.originOf(c, remote)
	if err != nil {
		return nil, err
	}
	name := ostree.ObjectName(c, t)
	// Keyed by remote too: a reader of one remote never waits on a fetch
	// that another (possibly hostile) remote is stalling.
	v, err := f.detached(ctx, remote+"/"+name, func(ctx context.Context) (any, error) {
		f.stats.InFlight.Add(1)
		defer f.stats.InFlight.Add(-1)
		if data, err := f.store.ReadMeta(ctx, index.ObjType(t), c.String()); err == nil {
			return data, nil
		}
		rs, err := f.remote(remote)
		if err != nil {
			return nil, err
		}
		// Hashed while it streams, within its type's cap and the shared
		// memory budget.
		data, err := f.getBounded(ctx, rs, ostree.ObjectPath(c, t, true), metaCap(t), &c)
		if err != nil {
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) {
				err = &VerifyError{remote, name, "checksum", err}
			}
			err = fmt.Errorf("remote %s: %s: %w", remote, name, err)
			f.stats.record(remote, name, err)
			return nil, err
		}
		if err := f.store.PutMeta(ctx, index.ObjType(t), c.String(), data, remote); err != nil {
			return nil, err
		}
		f.stats.ObjectsFetched.Add(1)
		f.stats.BytesFetched.Add(int64(len(data)))
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// Content returns an open handle on a verified content object, fetching
// it first when it is not cached. The handle must be closed.
func (f *Fetcher) Content(ctx context.Context, remote string, c ostree.Checksum) (*objcache.Handle, error) {
	if h, err := f.store.Open(ctx, c.String()); err == nil {
		f.stats.CacheHits.Add(1)
		return h, nil
	} else if !errors.Is(err, objcache.ErrNotPresent) && !errors.Is(err, objcache.ErrCorrupt) {
		return nil, err
	}
	if err := f.FetchContent(ctx, remote, c); err != nil {
		return nil, err
	}
	return f.store.Open(ctx, c.String())
}

// FetchContent makes sure a content object is in the cache.
func (f *Fetcher) FetchContent(ctx context.Context, remote string, c ostree.Checksum) error {
	remote, err := f.originOf(c, remote)
	if err != nil {
		return err
	}
	name := ostree.ObjectName(c, ostree.ObjFile)
	_, err = f.detached(ctx, remote+"/"+name, func(ctx context.Context) (any, error) {
		f.stats.InFlight.Add(1)
		defer f.stats.InFlight.Add(-1)
		if h, err := f.store.Open(ctx, c.String()); err == nil {
			h.Close()
			return nil, nil
		}
		rs, err := f.remote(remote)
		if err != nil {
			return nil, err
		}
		// Bounded by what a signed commit says of it, or by the cap.
		maxArchived, maxSize := int64(MaxContentSize), uint64(MaxContentSize)
		known, haveSize := f.knownSize(remote, c)
		if haveSize {
			maxArchived = int64(min(known.archived, MaxContentSize))
			maxSize = known.unpacked
		}
		var received int64
		err = rs.c.fetch(ctx, ostree.ObjectPath(c, ostree.ObjFile, true), maxArchived, 0, func(r io.Reader) error {
			cr := &countingReader{r: r}
			content, err := ostree.NewContentReader(cr)
			if err != nil {
				return &VerifyError{remote, name, "checksum", err}
			}
			h := content.Header
			// (ostree.sizes gives a symlink the length of its target.)
			if (haveSize && !h.IsSymlink() && h.Size != maxSize) || h.Size > maxSize {
				return &VerifyError{remote, name, "size", fmt.Errorf("header declares %d bytes, %s", h.Size, sizeBound(haveSize, maxSize))}
			}
			hdr := index.FileHeader{UID: h.UID, GID: h.GID, Mode: h.Mode, Size: h.Size, Symlink: h.Target, Raw: h.StreamHeader()}
			err = f.store.PutContent(ctx, c.String(), hdr, content, remote)
			received = cr.n
			if errors.Is(err, objcache.ErrCorrupt) || errors.Is(err, ostree.ErrCorrupt) {
				return &VerifyError{remote, name, "checksum", err}
			}
			return err
		})
		if err != nil {
			err = fmt.Errorf("remote %s: %s: %w", remote, name, err)
			f.stats.record(remote, name, err)
			return nil, err
		}
		f.stats.ObjectsFetched.Add(1)
		f.stats.BytesFetched.Add(received)
		return nil, nil
	})
	return err
}

func sizeBound(signed bool, n uint64) string {
	if signed {
		return fmt.Sprintf("the signed commit's ostree.sizes says %d", n)
	}
	return fmt.Sprintf("more than the %d allowed", n)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FileHeader returns the verified header of a content object. It comes
// from the index when the object was fetched before; otherwise the whole
// object is fetched and verified first (a header from an unverified
// prefix is never trusted).
func (f *Fetcher) FileHeader(ctx context.Context, remote string, c ostree.Checksum) (*ostree.FileHeader, error) {
	if fh, ok := f.cachedHeader(c); ok {
		return fh, nil
	}
	if err := f.FetchContent(ctx, remote, c); err != nil {
		return nil, err
	}
	if fh, ok := f.cachedHeader(c); ok {
		return fh, nil
	}
	return nil, fmt.Errorf("%s: header missing from the index after the fetch", ostree.ObjectName(c, ostree.ObjFile))
}

// cachedHeader returns a header from the index, without network I/O.
func (f *Fetcher) cachedHeader(c ostree.Checksum) (*ostree.FileHeader, bool) {
	h, err := f.db.Header(index.Sum(c))
	if err != nil {
		return nil, false
	}
	fh, err := ostree.ParseStreamHeader(h.Raw)
	if err != nil {
		return nil, false
	}
	fh.Size = h.Size
	return fh, true
}

// flatpakCache reads Flatpak's xa.cache: ref -> (installed, download).
func flatpakCache(meta []any) map[string][2]uint64 {
	out := map[string][2]uint64{}
	v, err := gvariant.LookupTyped(meta, "xa.cache", "v")
	if err != nil {
		return out
	}
	inner, ok := v.(gvariant.Variant)
	if !ok || inner.Type.String() != "a{s(tts)}" {
		return out
	}
	for _, e := range inner.Value.([]any) {
		de := e.(gvariant.DictEntry)
		t := de.Value.([]any)
		out[de.Key.(string)] = [2]uint64{be64(t[0].(uint64)), be64(t[1].(uint64))}
	}
	return out
}

// SortedRefNames returns the names of refs, sorted.
func SortedRefNames(refs []RefInfo) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.Name
	}
	sort.Strings(out)
	return out
}

// HTTPStats sums the HTTP counters of every remote.
func (f *Fetcher) HTTPStats() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int64{}
	for _, rs := range f.remotes {
		out["requests"] += rs.c.requests.get()
		out["bytes"] += rs.c.bytes.get()
		out["retries"] += rs.c.retries.get()
		out["failovers"] += rs.c.failovers.get()
	}
	return out
}

// Refetch fetches one object again (after fsck dropped it), trying each
// remote until one serves it verified. Commits are refetched without a ref
// (their signatures are still checked); detached metadata comes with its
// commit.
func (f *Fetcher) Refetch(ctx context.Context, c ostree.Checksum, t ostree.ObjectType) error {
	var last error = fmt.Errorf("%s: no remote configured", ostree.ObjectName(c, t))
	for _, r := range f.Remotes() {
		var err error
		switch t {
		case ostree.ObjFile:
			err = f.FetchContent(ctx, r, c)
		case ostree.ObjDirTree, ostree.ObjDirMeta:
			_, err = f.meta(ctx, r, t, c)
		case ostree.ObjCommit, ostree.ObjCommitMeta:
			var rs *remoteState
			if rs, err = f.remote(r); err == nil {
				_, err = f.fetchCommit(ctx, rs, "", c)
			}
		default:
			return fmt.Errorf("%s: cannot refetch this type", ostree.ObjectName(c, t))
		}
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}
