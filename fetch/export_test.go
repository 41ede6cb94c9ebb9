package fetch

// SetMaxMergedSummary lowers the cap on a summary.idx's sub-summaries for
// a test and returns the function that restores it.
func SetMaxMergedSummary(n int64) (restore func()) {
	old := maxMergedSummary
	maxMergedSummary = n
	return func() { maxMergedSummary = old }
}
