package ostree

import "github.com/lazytree/lazytree/ostree/gvariant"

// Per-ref summary metadata keys that lazytree adds (DESIGN.md, "Tree
// index"). Each value is an ay of 32 bytes: the SHA-256 of an object that
// export stored at TreeIndexPath or ProfilePath. The summary signature
// covers the key, so the object is authenticated like the commit; the real
// ostree and flatpak ignore both the keys and the files.
const (
	RefTreeIndex = "lazytree.tree-index"
	RefProfile   = "lazytree.profile"
)

// TreeIndexPath returns where a tree index whose compressed bytes hash to
// c lives, relative to the repository root.
func TreeIndexPath(c Checksum) string { return "lazytree/tree-index/" + c.String() }

// ProfilePath returns where a published access profile whose bytes hash
// to c lives, relative to the repository root.
func ProfilePath(c Checksum) string { return "lazytree/profile/" + c.String() }

// TreeIndex returns the checksum of the ref's tree index
// (lazytree.tree-index), and whether the summary names one. A value of
// the wrong type or length counts as absent.
func (r *SummaryRef) TreeIndex() (Checksum, bool) { return r.metaChecksum(RefTreeIndex) }

// Profile returns the checksum of the ref's published access profile
// (lazytree.profile), and whether the summary names one. A value of the
// wrong type or length counts as absent.
func (r *SummaryRef) Profile() (Checksum, bool) { return r.metaChecksum(RefProfile) }

func (r *SummaryRef) metaChecksum(key string) (Checksum, bool) {
	v, err := gvariant.LookupTyped(r.Metadata, key, "ay")
	if err != nil {
		return Checksum{}, false
	}
	c, err := ChecksumFromBytes(v.([]byte))
	if err != nil {
		return Checksum{}, false
	}
	return c, true
}
