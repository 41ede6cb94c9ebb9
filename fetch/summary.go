package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

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

// fetchSummary fetches, verifies and accepts the remote's summary. One
// that a mirror served and that does not verify (forged, stale, a
// replay, or signed by another key) is not the last word: the pair is
// asked of the origin, whose answer is.
func (f *Fetcher) fetchSummary(ctx context.Context, rs *remoteState) (*ostree.Summary, error) {
	by := &servedBy{}
	s, err := f.fetchSummaryOnce(context.WithValue(ctx, servedByKey{}, by), rs)
	var ve *VerifyError
	if err == nil || !errors.As(err, &ve) || !rs.c.blame(by, err) {
		return s, err
	}
	f.stats.record(rs.r.Name, "summary (from a mirror)", err)
	return f.fetchSummaryOnce(fromOrigin(ctx), rs)
}

func (f *Fetcher) fetchSummaryOnce(ctx context.Context, rs *remoteState) (*ostree.Summary, error) {
	r := rs.r
	sig, sigErr := f.getBounded(ctx, rs, "summary.sig", maxSummarySig, nil)
	data, err := f.getBounded(ctx, rs, "summary", ostree.MaxSummarySize, nil)
	if errors.Is(err, ErrNotFound) {
		// Flatpak repos may publish only summary.idx and sub-summaries.
		s, _, idxSig, ierr := f.fetchIndexedSummary(ctx, rs)
		if ierr == nil {
			return f.acceptSummary(rs, s, idxSig, nil)
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
			rs.raw, rs.rawSig = nil, nil
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
	return f.acceptSummary(rs, s, sig, data)
}

// RawSummary returns the remote's summary and summary.sig as the remote
// sent them, verified like Summary (and refreshed on its TTL); nil for a
// file the remote does not publish, or when the summary came from
// summary.idx.
func (f *Fetcher) RawSummary(ctx context.Context, remote string) (data, sig []byte, err error) {
	if _, err := f.Summary(ctx, remote, false); err != nil {
		return nil, nil, err
	}
	rs, err := f.remote(remote)
	if err != nil {
		return nil, nil, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.raw, rs.rawSig, nil
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
// records it as the remote's current verified summary. raw is the
// summary's bytes as sent, when they are a plain summary whose signature
// is sig (nil for one made from summary.idx).
func (f *Fetcher) acceptSummary(rs *remoteState, s *ostree.Summary, sig, raw []byte) (*ostree.Summary, error) {
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
	rs.raw, rs.rawSig = raw, nil
	if raw != nil {
		rs.rawSig = sig
	}
	rs.mu.Unlock()
	return s, nil
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
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w", remote, ref, ErrNoRef)
	}
	b, err := rs.c.getAll(ctx, "refs/heads/"+ref, 256)
	if errors.Is(err, ErrNotFound) {
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w (%w)", remote, ref, ErrNoRef, err)
	}
	if err != nil {
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w", remote, ref, err)
	}
	c, err := ostree.ParseChecksum(strings.TrimSpace(string(b)))
	if err != nil {
		return ostree.Checksum{}, fmt.Errorf("remote %s: ref %s: %w", remote, ref, err)
	}
	return c, nil
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
