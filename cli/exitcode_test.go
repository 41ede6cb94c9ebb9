package cli

import "testing"

// TestExitCodes: usage errors exit 2 by their type, and cobra's own verbs
// (help, completion, the shell's __complete) still work.
func TestExitCodes(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, ExitOK},
		{[]string{"--help"}, ExitOK},
		{[]string{"help"}, ExitOK},
		{[]string{"help", "pull"}, ExitOK},
		{[]string{"completion", "bash"}, ExitOK},
		{[]string{"__complete", "remote", ""}, ExitOK},
		{[]string{"--home", home, "remote", "list"}, ExitOK},
		{[]string{"nosuchverb"}, ExitUsage},
		{[]string{"pull"}, ExitUsage},
		{[]string{"pull", "a:b", "c:d"}, ExitUsage},
		{[]string{"pull", "--bogus", "a:b"}, ExitUsage},
		{[]string{"--home", home, "pull", "nocolon"}, ExitUsage},
		{[]string{"--home", home, "ls-remote", "nosuchremote"}, ExitFailure},
	} {
		if _, errOut, code := ltCode(t, tc.args...); code != tc.want {
			t.Errorf("lazytree %q: exit %d, want %d (%s)", tc.args, code, tc.want, errOut)
		}
	}
}
