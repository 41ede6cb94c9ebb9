package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Report is the outcome of one Run: every cell of the matrix with its
// samples and their summaries. It is what --json writes, and the table, the
// SVG charts and the HTML report are drawn from it alone, so that they
// cannot disagree.
type Report struct {
	Version  int       `json:"version"`
	Started  time.Time `json:"started"`
	Host     Host      `json:"host"`
	Repo     string    `json:"repo"`
	Ref      string    `json:"ref"`
	Commit   string    `json:"commit"`
	RefFiles int       `json:"ref_files"` // regular files and symlinks in the ref's tree
	RefBytes int64     `json:"ref_bytes"` // archived bytes of every object the ref reaches
	Runs     int       `json:"runs"`      // runs per cell
	Cells    []Cell    `json:"cells"`
	// Notes are sentences a reader must see: a peer that could not run and
	// why, cells whose spread is over NoiseLimit, what ran beside.
	Notes []string `json:"notes,omitempty"`
}

// ReportVersion is Report.Version as this package writes it.
const ReportVersion = 1

// Host describes the machine a report was measured on.
type Host struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Network is one emulated link.
type Network struct {
	// RTT is added to every request and to every new connection.
	RTT time.Duration `json:"rtt_ns"`
	// Bandwidth is in bits per second, shared by every connection; 0 is
	// no limit.
	Bandwidth int64 `json:"bandwidth_bps"`
}

// String is "50ms/100Mbit", or "0s/unlimited".
func (n Network) String() string {
	return fmt.Sprintf("%s/%s", n.RTT, FormatRate(n.Bandwidth))
}

// Cell is one (network, strategy, workload) of the matrix. Strategy is a
// --prefetch mode of the lazy mount ("none", "metadata", ...) or a peer as
// "peer:ostree" or "peer:flatpak".
type Cell struct {
	Network  Network  `json:"network"`
	Strategy string   `json:"strategy"`
	Workload string   `json:"workload"`
	Samples  []Sample `json:"samples"`
	// Summary has one Stat per metric name (MetricDone, ...), over the
	// samples.
	Summary map[string]Stat `json:"summary"`
	// Noisy is set when the spread of MetricDone is over NoiseLimit.
	Noisy bool `json:"noisy"`
	// Error is why the cell has no (or fewer) samples.
	Error string `json:"error,omitempty"`
}

// Sample is one run of a cell. Times are seconds from the start of the run
// (the daemon's start for the lazy mount, `ostree init` for the peer).
type Sample struct {
	// Mount is when the tree could be used: the mount answered, or the
	// peer's pull and checkout finished.
	Mount float64 `json:"mount_s"`
	// FirstByte is when the workload got its first byte: the first line a
	// program printed, or the first read that returned data.
	FirstByte float64 `json:"first_byte_s"`
	// Done is when the workload finished.
	Done float64 `json:"done_s"`
	// Bytes is body bytes the server sent; Requests the requests it got;
	// CriticalPath the longest chain of requests each of which started
	// after the one before had ended (fetchtest.CriticalPath).
	Bytes        int64 `json:"bytes"`
	Requests     int   `json:"requests"`
	CriticalPath int   `json:"critical_path"`
	// CacheHitRatio is the share of object lookups answered by the cache
	// (the daemon's status.json; 0 for peers).
	CacheHitRatio float64 `json:"cache_hit_ratio"`
	// PeakRSS is the daemon's peak resident set (for peers, the pulling
	// process's), in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// Metric names, the keys of Cell.Summary.
const (
	MetricMount     = "mount_s"
	MetricFirstByte = "first_byte_s"
	MetricDone      = "done_s"
	MetricBytes     = "bytes"
	MetricRequests  = "requests"
	MetricCritPath  = "critical_path"
	MetricHitRatio  = "cache_hit_ratio"
	MetricPeakRSS   = "peak_rss_bytes"
)

// Metrics lists the metric names in the order tables show them.
var Metrics = []string{MetricMount, MetricFirstByte, MetricDone, MetricBytes, MetricRequests, MetricCritPath, MetricHitRatio, MetricPeakRSS}

// Value returns metric of s.
func (s Sample) Value(metric string) float64 {
	switch metric {
	case MetricMount:
		return s.Mount
	case MetricFirstByte:
		return s.FirstByte
	case MetricDone:
		return s.Done
	case MetricBytes:
		return float64(s.Bytes)
	case MetricRequests:
		return float64(s.Requests)
	case MetricCritPath:
		return float64(s.CriticalPath)
	case MetricHitRatio:
		return s.CacheHitRatio
	case MetricPeakRSS:
		return float64(s.PeakRSS)
	}
	panic("bench: unknown metric " + metric)
}

// Stat summarizes one metric over a cell's samples.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Spread is (Max-Min)/Median: the noise, shown beside every median.
	Spread float64 `json:"spread"`
}

// NoiseLimit is the spread above which a cell is marked noisy.
const NoiseLimit = 0.15

// Summarize fills c.Summary and c.Noisy from c.Samples.
func (c *Cell) Summarize() {
	c.Summary = map[string]Stat{}
	if len(c.Samples) == 0 {
		return
	}
	for _, m := range Metrics {
		v := make([]float64, len(c.Samples))
		for i, s := range c.Samples {
			v[i] = s.Value(m)
		}
		c.Summary[m] = summarize(v)
	}
	c.Noisy = c.Summary[MetricDone].Spread > NoiseLimit
}

func summarize(v []float64) Stat {
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	st := Stat{Median: med, Min: v[0], Max: v[n-1]}
	if med != 0 {
		st.Spread = (st.Max - st.Min) / math.Abs(med)
	}
	return st
}

// IsPeer reports whether strategy names a peer ("peer:ostree").
func IsPeer(strategy string) bool { return len(strategy) > 5 && strategy[:5] == "peer:" }

// Speedup returns how many times sooner the cell finished its workload
// than base did (base's median MetricDone over c's), or 0 when either has
// no samples.
func (c *Cell) Speedup(base *Cell) float64 {
	a, b := c.Summary[MetricDone].Median, base.Summary[MetricDone].Median
	if a <= 0 || b <= 0 {
		return 0
	}
	return b / a
}

// FormatRate renders bits per second as "100Mbit", "1Gbit", "unlimited".
func FormatRate(bps int64) string {
	switch {
	case bps <= 0:
		return "unlimited"
	case bps%1_000_000_000 == 0:
		return fmt.Sprintf("%dGbit", bps/1_000_000_000)
	case bps%1_000_000 == 0:
		return fmt.Sprintf("%dMbit", bps/1_000_000)
	case bps%1000 == 0:
		return fmt.Sprintf("%dkbit", bps/1000)
	}
	return fmt.Sprintf("%dbit", bps)
}

// Workloads returns the workloads of r's cells in the order they first
// appear.
func (r *Report) Workloads() []string {
	var out []string
	for _, c := range r.Cells {
		if !slices.Contains(out, c.Workload) {
			out = append(out, c.Workload)
		}
	}
	return out
}

// Networks returns the networks of r's cells in the order they first
// appear.
func (r *Report) Networks() []Network {
	var out []Network
	for _, c := range r.Cells {
		if !slices.Contains(out, c.Network) {
			out = append(out, c.Network)
		}
	}
	return out
}

// Strategies returns the strategies of r's cells in the order they first
// appear, the lazy ones before the peers, so that every table and chart
// shows the mount's strategies first and the baselines last.
func (r *Report) Strategies() []string {
	var lazy, peers []string
	for _, c := range r.Cells {
		if slices.Contains(lazy, c.Strategy) || slices.Contains(peers, c.Strategy) {
			continue
		}
		if IsPeer(c.Strategy) {
			peers = append(peers, c.Strategy)
		} else {
			lazy = append(lazy, c.Strategy)
		}
	}
	return append(lazy, peers...)
}

// Cell returns the first cell of r for workload, network and strategy, or
// nil.
func (r *Report) Cell(workload string, n Network, strategy string) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Workload == workload && c.Network == n && c.Strategy == strategy {
			return c
		}
	}
	return nil
}
