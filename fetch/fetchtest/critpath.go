package fetchtest

import (
	"slices"
	"time"
)

// End is when the request was answered: Start plus Duration, or the zero
// Time while it is still being answered.
func (r Request) End() time.Time {
	if !r.Done {
		return time.Time{}
	}
	return r.Start.Add(r.Duration)
}

// CriticalPath returns the length of the longest chain of requests in log
// in which each one started strictly after the one before it finished:
// the number of round trips a client could not have overlapped, however
// many connections it used. A request that is not Done has no end, so it
// can only close a chain. Over a link with latency L, a run's wall-clock
// time is at least CriticalPath(log)*L, which is what a prefetch or an
// index must bring down (DESIGN.md, "Fetch strategies").
//
// It takes O(n log n) for n requests and does not modify log.
func CriticalPath(log []Request) int {
	n := len(log)
	if n == 0 {
		return 0
	}
	byStart := make([]int, n)
	var byEnd []int
	for i := range log {
		byStart[i] = i
		if log[i].Done {
			byEnd = append(byEnd, i)
		}
	}
	slices.SortFunc(byStart, func(a, b int) int { return log[a].Start.Compare(log[b].Start) })
	slices.SortFunc(byEnd, func(a, b int) int { return log[a].End().Compare(log[b].End()) })
	// Sweep requests by start; a request's chain extends the longest
	// chain among those that ended before it started. Those have all been
	// visited already, since a request never ends before it starts.
	chain := make([]int, n)
	best, longest, e := 0, 0, 0
	for _, i := range byStart {
		for e < len(byEnd) && log[byEnd[e]].End().Before(log[i].Start) {
			best = max(best, chain[byEnd[e]])
			e++
		}
		chain[i] = best + 1
		longest = max(longest, chain[i])
	}
	return longest
}
