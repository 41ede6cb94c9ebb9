package fusefs

import (
	"slices"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

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
	nodes := map[string]uint64{}
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
		nodes[tc.path] = out.NodeId
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
		// The file node is shared by every path of one remote to the same
		// content, never across remotes: its header and content come
		// through the remote of the path (and the ref of the first path).
		for _, call := range []string{"header", "open"} {
			if i := slices.IndexFunc(got[call], func(v Via) bool { return v.Remote != tc.want.Remote }); i >= 0 {
				t.Fatalf("%s: %s via %+v", tc.path, call, got[call][i])
			}
		}
		if len(got["open"]) == 0 {
			t.Fatalf("%s: no open call", tc.path)
		}
	}
	if nodes["r/a/sub/f"] != nodes["r/b/sub/f"] {
		t.Error("one content object under two refs of one remote: two nodes")
	}
	if nodes["r/a/sub/f"] == nodes["q/a/sub/f"] || nodes["r/a/sub/f"] == nodes[".commits/"+c.String()+"/sub/f"] {
		t.Error("one content object under two remotes shares a node")
	}
}

// TestStreamingDropsThePageCache: pages read from a StreamingFile were
// verified against chunk digests only, so neither a streaming open nor the
// first open after the last one closed keeps the inode's page cache; the
// open after that does (issue 15).
func TestStreamingDropsThePageCache(t *testing.T) {
	src := newMemSource(t)
	c := src.commit("r", "a", map[string]entry{"f": {Mode: 0o644, Data: "big"}})
	fe, _ := src.trees[src.commits[c].RootTree].LookupFile("f")
	raw := newRaw(t, src, Options{})
	node := raw.walk("r/a/f").NodeId
	open := func(stream bool) (fh uint64, keep bool) {
		t.Helper()
		src.mu.Lock()
		src.stream = map[ostree.Checksum]bool{fe.Checksum: stream}
		src.mu.Unlock()
		var oo fuse.OpenOut
		if st := raw.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: node}, Flags: syscall.O_RDONLY}, &oo); !st.Ok() {
			t.Fatalf("open: %v", st)
		}
		return oo.Fh, oo.OpenFlags&fuse.FOPEN_KEEP_CACHE != 0
	}
	release := func(fh uint64) {
		raw.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: fh})
	}
	fh, keep := open(false)
	release(fh)
	if !keep {
		t.Fatal("a whole file's open does not keep the page cache")
	}
	s1, keep := open(true)
	if keep {
		t.Error("a streaming open keeps the page cache")
	}
	w, keep := open(false)
	release(w)
	if keep {
		t.Error("a whole open while a streaming handle is open keeps the page cache")
	}
	release(s1)
	for i, want := range []bool{false, true, true} {
		fh, keep := open(false)
		release(fh)
		if keep != want {
			t.Errorf("whole open %d after the streaming handle closed: keep cache %v, want %v", i+1, keep, want)
		}
	}
}
