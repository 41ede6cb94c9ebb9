package fusefs

import (
	"fmt"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

type scanRecorder struct{ scans int }

func (r *scanRecorder) HintDir(Via, ostree.Checksum, string, ostree.Checksum, *ostree.DirTree, bool) {
}
func (r *scanRecorder) HintScan(Via, ostree.Checksum, string, ostree.Checksum, *ostree.DirTree) {
	r.scans++
}

// TestNoteScan: cold lookups that walk a directory's files in listing
// order (ls -l stats what it listed, skipping those already known) are
// a scan, told to the Source once; lookups in another order (an
// interpreter importing modules, even a few that happen to be neighbours)
// are not.
func TestNoteScan(t *testing.T) {
	tree := &ostree.DirTree{}
	for i := range 40 {
		tree.Files = append(tree.Files, ostree.TreeFile{Name: fmt.Sprintf("f%02d", i)})
	}
	for _, tc := range []struct {
		name    string
		lookups []int
		scans   int
	}{
		{"ls -l from the start", []int{0, 1, 2, 3, 4, 5, 6}, 1},
		{"ls -l skipping known entries", []int{0, 2, 5, 6, 9, 12}, 1},
		{"two neighbours then elsewhere", []int{0, 1, 20, 3, 30, 31, 10, 11}, 0},
		{"imports", []int{17, 3, 25, 8, 9, 33, 14}, 0},
		{"backwards", []int{30, 29, 28, 27, 26, 25, 24}, 0},
		{"a scan that starts late", []int{7, 20, 21, 22, 23, 24, 25}, 1},
	} {
		rec := &scanRecorder{}
		n := &dirNode{f: &fsys{hint: rec}}
		for _, i := range tc.lookups {
			n.noteScan(tree, tree.Files[i].Name)
		}
		if rec.scans != tc.scans {
			t.Errorf("%s: %d scans told, want %d", tc.name, rec.scans, tc.scans)
		}
	}
}
