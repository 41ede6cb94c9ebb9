package fetch

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats are cumulative counters for status reports.
type Stats struct {
	ObjectsFetched atomic.Int64
	BytesFetched   atomic.Int64 // compressed bytes received for objects
	CacheHits      atomic.Int64
	// IndexHits counts objects and headers answered from tree indexes.
	IndexHits atomic.Int64
	// DeltaWaits counts on-demand reads answered by waiting for a delta
	// part nearly here rather than fetching the object.
	DeltaWaits atomic.Int64
	InFlight   atomic.Int64
	Errors     atomic.Int64
	errMu      sync.Mutex
	lastErrors []ErrorRecord
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

// Stats returns the fetcher's counters.
func (f *Fetcher) Stats() *Stats { return &f.stats }

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
	// URLs are the remote's mirrors, then its origin, with their
	// counters since the remote was first used (none before).
	URLs []URLStatus `json:"urls,omitempty"`
}

// Roles of a remote's URLs in URLStatus.
const (
	RoleMirror = "mirror"
	RoleOrigin = "origin"
)

// URLStatus is one URL of a remote in status.json. URL and LastError
// carry no credentials (RedactURL).
type URLStatus struct {
	URL  string `json:"url"`
	Role string `json:"role"`
	// InUse marks the URL fetches start at. (The summary and refs of a
	// remote that verifies nothing always come from its origin.)
	InUse    bool  `json:"in_use"`
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
	// Failures counts failed requests, 404s excepted: NotFound counts
	// those (a mirror that lacks a file is not failing).
	Failures    int64     `json:"failures"`
	NotFound    int64     `json:"not_found"`
	LastError   string    `json:"last_error,omitempty"`
	LastFailure time.Time `json:"last_failure,omitzero"`
}

// urlStatus reports the counters of every URL of c.
func (c *client) urlStatus() []URLStatus {
	c.mu.Lock()
	cur := c.currentLocked()
	c.mu.Unlock()
	out := make([]URLStatus, len(c.urls))
	for i, ep := range c.urls {
		role := RoleMirror
		if ep.origin {
			role = RoleOrigin
		}
		ep.mu.Lock()
		out[i] = URLStatus{URL: ep.redacted, Role: role, InUse: i == cur, Requests: ep.requests.get(), Bytes: ep.bytes.get(),
			Failures: ep.failures, NotFound: ep.notFound, LastError: ep.lastError, LastFailure: ep.lastFailure}
		ep.mu.Unlock()
	}
	return out
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
		st.URLs = rs.c.urlStatus()
	}
	return st
}

// HTTPStats are the HTTP counters summed over every remote.
type HTTPStats struct {
	Requests  int64 `json:"requests"`
	Bytes     int64 `json:"bytes"`
	Retries   int64 `json:"retries"`
	Failovers int64 `json:"failovers"`
	// Resumes counts broken transfers continued with a Range request.
	Resumes int64 `json:"resumes"`
}

// HTTPStats sums the HTTP counters of every remote.
func (f *Fetcher) HTTPStats() HTTPStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out HTTPStats
	for _, rs := range f.remotes {
		out.Requests += rs.c.requests.get()
		out.Bytes += rs.c.bytes.get()
		out.Retries += rs.c.retries.get()
		out.Resumes += rs.c.resumes.get()
		out.Failovers += rs.c.failovers.get()
	}
	return out
}

// RecordError notes a failure of work done for the fetcher's users (a
// background prefetch, say) in the recent errors.
func (f *Fetcher) RecordError(remote, object string, err error) { f.stats.record(remote, object, err) }
