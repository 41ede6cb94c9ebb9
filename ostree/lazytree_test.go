package ostree

import (
	"testing"

	"github.com/lazytree/lazytree/ostree/gvariant"
)

func TestSummaryRefLazytreeKeys(t *testing.T) {
	want := Sum([]byte("index"))
	meta := gvariant.VarDict{}
	meta.Set(RefTreeIndex, "ay", want.Bytes())
	meta.Set(RefProfile, "ay", want.Bytes()[:31])
	s := &Summary{Refs: []SummaryRef{{Name: "a/b", Checksum: Sum(nil), Metadata: meta}}}
	data, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeSummary(data)
	if err != nil {
		t.Fatal(err)
	}
	r := &back.Refs[0]
	if got, ok := r.TreeIndex(); !ok || got != want {
		t.Fatalf("TreeIndex() = %s, %v; want %s", got, ok, want)
	}
	if _, ok := r.Profile(); ok {
		t.Fatal("a 31-byte profile checksum was accepted")
	}
	r.Metadata = gvariant.VarDict{}
	r.Metadata = append(r.Metadata, gvariant.DictEntry{Key: RefTreeIndex, Value: gvariant.NewVariant("s", "x")})
	if _, ok := r.TreeIndex(); ok {
		t.Fatal("a string tree-index value was accepted")
	}
	if p := TreeIndexPath(want); p != "lazytree/tree-index/"+want.String() {
		t.Fatalf("TreeIndexPath = %s", p)
	}
	if p := ProfilePath(want); p != "lazytree/profile/"+want.String() {
		t.Fatalf("ProfilePath = %s", p)
	}
}
