package fetch

import "testing"

// TestMirrorable: a mirror of a remote that verifies nothing may serve
// only files checked against a checksum from elsewhere.
func TestMirrorable(t *testing.T) {
	for path, want := range map[string]bool{
		"objects/ab/cdef.filez":             true,
		"/objects/ab/cdef.commit":           true,
		"deltas/ab/cdef/superblock":         true,
		"delta-indexes/ab/cdef.index":       true,
		"lazytree/tree-index/abcd":          true,
		"lazytree/profile/abcd":             true,
		"summary":                           false,
		"summary.sig":                       false,
		"summary.idx":                       false,
		"summary.idx.sig":                   false,
		"summaries/abcd.gz":                 false,
		"summaries/abcd.idx.sig":            false,
		"refs/heads/app/org.example/x86_64": false,
		"config":                            false,
		"objectsx/ab":                       false,
	} {
		if got := mirrorable(path); got != want {
			t.Errorf("mirrorable(%q) = %v, want %v", path, got, want)
		}
	}
}
