package fusefs

import "testing"

// NewMemSource returns the in-memory Source of the kernel-less tests,
// holding one commit at remote:ref made of a file at sub/dir/nested.txt
// with content and a symlink link-to-readme -> README (for the
// conformance suite, which runs in package fusefs_test).
func NewMemSource(t *testing.T, remote, ref string, content []byte) Source {
	s := newMemSource(t)
	s.commit(remote, ref, map[string]entry{
		"sub":            {Mode: 0o750, Dir: map[string]entry{"dir": {Mode: 0o755, Dir: map[string]entry{"nested.txt": {Mode: 0o600, UID: 1000, GID: 1000, Data: string(content)}}}}},
		"link-to-readme": {Target: "README"},
		"README":         {Mode: 0o644, Data: "Hello, OSTree! (v2)\n"},
	})
	return s
}
