package fusefs

import (
	"slices"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

// TestViaFollowsThePath: every Source call for a node inside a commit
// carries the (remote, ref) of the root the reader came through, and
// .commits/<sum> carries the zero Via, so the Source verifies the commit
// for that path and fetches from that remote (issue 8, holes 2 and 5).
func TestViaFollowsThePath(t *testing.T) {
	src := newMemSource(t)
	tree := map[string]entry{"sub": {Mode: 0o755, Dir: map[string]entry{"f": {Mode: 0o644, Data: "f"}}}}
	c := src.commit("r", "a", tree)
	src.mu.Lock()
	src.refs["r"]["b"] = c
	src.refs["q"] = map[string]ostree.Checksum{"a": c}
	src.mu.Unlock()
	raw := newRaw(t, src, Options{})
	for _, tc := range []struct {
		path string
		want Via
	}{
		{"r/a/sub/f", Via{"r", "a"}},
		{"r/b/sub/f", Via{"r", "b"}},
		{"q/a/sub/f", Via{"q", "a"}},
		{".commits/" + c.String() + "/sub/f", Via{}},
	} {
		src.mu.Lock()
		src.vias = nil
		src.mu.Unlock()
		out := raw.walk(tc.path)
		if _, st := raw.read(out.NodeId); !st.Ok() {
			t.Fatalf("%s: read: %v", tc.path, st)
		}
		src.mu.Lock()
		got := src.vias
		src.mu.Unlock()
		for _, call := range []string{"commit", "dirtree"} {
			if len(got[call]) == 0 {
				t.Fatalf("%s: no %s call", tc.path, call)
			}
			for _, v := range got[call] {
				if v != tc.want {
					t.Fatalf("%s: %s called with %+v, want %+v", tc.path, call, v, tc.want)
				}
			}
		}
		// The file node is shared by every path to the same content; its
		// header and content come through the Via of the first path.
		if i := slices.IndexFunc(got["header"], func(v Via) bool { return v != (Via{"r", "a"}) }); i >= 0 && tc.path == "r/a/sub/f" {
			t.Fatalf("%s: header via %+v", tc.path, got["header"][i])
		}
	}
}
