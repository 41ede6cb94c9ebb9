package testutil

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildVectorTreeReproducesCommits is the proof that BuildVectorTree is
// the test-vector tree: the real ostree commits it to C1, and the C2 tree on
// top of it to C2, with the checksums generate.sh got.
func TestBuildVectorTreeReproducesCommits(t *testing.T) {
	ostree := RequireTool(t, "ostree")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	Run(t, "", nil, ostree, OstreeInitArgs(repo)...)
	for _, c := range []struct {
		commit VectorCommit
		build  func(testing.TB, string)
	}{
		{VectorC1(), BuildVectorTree},
		{VectorC2(), BuildVectorTree2},
	} {
		tree := filepath.Join(dir, "tree-"+c.commit.Checksum[:8])
		c.build(t, tree)
		got := strings.TrimSpace(Output(t, "", nil, ostree, c.commit.OstreeArgs(repo, tree)...))
		if got != c.commit.Checksum {
			t.Errorf("ostree commit of the rebuilt tree = %s, want %s", got, c.commit.Checksum)
		}
	}
}

func TestC1CommitArgs(t *testing.T) {
	got := commandLine("ostree", C1CommitArgs("R", "T"))
	want := `ostree commit --repo=R -b exampleos/x86_64/stable --bind-ref=exampleos/x86_64/old ` +
		`--timestamp=@1704067200 -s 'Initial commit' -m 'Body line 1` + "\n" + `Body line 2' ` +
		`--add-metadata-string=version=1.0 '--add-metadata=custom.u64=uint64 42' --generate-sizes T`
	if got != want {
		t.Errorf("C1CommitArgs:\n got %s\nwant %s", got, want)
	}
}

// TestBuildVectorTreeMatchesCheckout compares the rebuilt trees with what
// ostree checks out of the committed test-vector repo, file by file, so a
// mismatch names the file rather than only a checksum.
func TestBuildVectorTreeMatchesCheckout(t *testing.T) {
	ostree := RequireTool(t, "ostree")
	repo := CopyVectorRepo(t, "repo")
	for _, c := range []struct {
		commit string
		build  func(testing.TB, string)
	}{
		{C1Checksum, BuildVectorTree},
		{C2Checksum, BuildVectorTree2},
	} {
		dir := t.TempDir()
		built, checkout := filepath.Join(dir, "built"), filepath.Join(dir, "checkout")
		c.build(t, built)
		Run(t, "", nil, ostree, "checkout", "--repo="+repo, c.commit, checkout)
		if err := TreeDiff(built, checkout, DiffOptions{}); err != nil {
			t.Errorf("commit %s: %v", c.commit[:8], err)
		}
	}
}

func TestVectorBinaries(t *testing.T) {
	for _, v := range []int{1, 2} {
		if n := len(VectorBigBin(v)); n != 1<<20 {
			t.Errorf("big.bin v%d: %d bytes", v, n)
		}
		if n := len(VectorRollsumBin(v)); n != 256<<10 {
			t.Errorf("rollsum.bin v%d: %d bytes", v, n)
		}
	}
	if got := string(VectorBigBin(1)[:74]); got != "00000000 5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9\n" {
		t.Errorf("big.bin starts %q", got)
	}
	if got := string(VectorBigBin(2)[1000:1016]); got != "CHANGED-IN-V2!!\n" {
		t.Errorf("big.bin v2 at 1000: %q", got)
	}
}
