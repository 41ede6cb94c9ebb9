package ostree

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/lazytree/lazytree/ostree/gvariant"
)

// MaxSummarySize caps a summary (and summary.sig) read from a remote.
const MaxSummarySize = 64 << 20

// Summary keys (ostree-format.md 3.3).
const (
	SummaryLastModified = "ostree.summary.last-modified"
	SummaryExpires      = "ostree.summary.expires"
	SummaryMode         = "ostree.summary.mode"
	SummaryTombstones   = "ostree.summary.tombstone-commits"
	SummaryIndexed      = "ostree.summary.indexed-deltas"
	SummaryCollectionID = "ostree.summary.collection-id"
	SummaryStaticDeltas = "ostree.static-deltas"
	RefTimestamp        = "ostree.commit.timestamp"
	RefVersion          = "ostree.commit.version"
)

// SummaryRef is one ref entry of a summary.
type SummaryRef struct {
	Name       string
	CommitSize uint64 // host order (LE) in the file, a known quirk
	Checksum   Checksum
	Metadata   []any
}

// Timestamp returns the per-ref ostree.commit.timestamp (or Flatpak's
// ot.ts), and whether it was present.
func (r *SummaryRef) Timestamp() (uint64, bool) {
	for _, k := range []string{RefTimestamp, "ot.ts"} {
		if v, err := gvariant.LookupTyped(r.Metadata, k, "t"); err == nil {
			return be64(v.(uint64)), true
		}
	}
	return 0, false
}

// Summary is a repository summary.
type Summary struct {
	Refs     []SummaryRef
	Metadata []any
}

// Encode serialises the summary with refs sorted by name.
func (s *Summary) Encode() ([]byte, error) {
	refs := append([]SummaryRef(nil), s.Refs...)
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	items := make([]any, len(refs))
	for i, r := range refs {
		meta := r.Metadata
		if meta == nil {
			meta = []any{}
		}
		items[i] = []any{r.Name, []any{r.CommitSize, r.Checksum.Bytes(), meta}}
	}
	meta := s.Metadata
	if meta == nil {
		meta = []any{}
	}
	return gvariant.Encode(TypeSummary, []any{items, meta})
}

// DecodeSummary parses and validates a summary: normal form, refs sorted
// and unique, valid ref names and checksums.
func DecodeSummary(data []byte) (*Summary, error) {
	if len(data) > MaxSummarySize {
		return nil, corrupt("summary", "larger than %d bytes", MaxSummarySize)
	}
	v, err := gvariant.Decode(TypeSummary, data)
	if err != nil {
		return nil, corrupt("summary", "%v", err)
	}
	f := v.([]any)
	items := f[0].([]any)
	s := &Summary{Refs: make([]SummaryRef, len(items)), Metadata: f[1].([]any)}
	for i, it := range items {
		p := it.([]any)
		name := p[0].(string)
		if err := ValidateRef(name); err != nil {
			return nil, corrupt("summary", "%v", err)
		}
		if i > 0 && s.Refs[i-1].Name >= name {
			return nil, corrupt("summary", "refs unsorted or duplicated at %q", name)
		}
		inner := p[1].([]any)
		c, err := ChecksumFromBytes(inner[1].([]byte))
		if err != nil {
			return nil, corrupt("summary", "ref %q: %v", name, err)
		}
		s.Refs[i] = SummaryRef{Name: name, CommitSize: inner[0].(uint64), Checksum: c, Metadata: inner[2].([]any)}
	}
	return s, nil
}

// Ref finds a ref by binary search.
func (s *Summary) Ref(name string) (*SummaryRef, bool) {
	i := sort.Search(len(s.Refs), func(i int) bool { return s.Refs[i].Name >= name })
	if i < len(s.Refs) && s.Refs[i].Name == name {
		return &s.Refs[i], true
	}
	return nil, false
}

// LastModified returns ostree.summary.last-modified, if present.
func (s *Summary) LastModified() (uint64, bool) {
	v, err := gvariant.LookupTyped(s.Metadata, SummaryLastModified, "t")
	if err != nil {
		return 0, false
	}
	return be64(v.(uint64)), true
}

// Expires returns ostree.summary.expires, if present.
func (s *Summary) Expires() (uint64, bool) {
	v, err := gvariant.LookupTyped(s.Metadata, SummaryExpires, "t")
	if err != nil {
		return 0, false
	}
	return be64(v.(uint64)), true
}

// StaticDeltas returns the ostree.static-deltas map: delta name (hex "TO"
// or "FROM-TO") to superblock checksum.
func StaticDeltas(meta []any) (map[string]Checksum, error) {
	v, err := gvariant.LookupTyped(meta, SummaryStaticDeltas, "a{sv}")
	if err != nil {
		return map[string]Checksum{}, nil
	}
	out := map[string]Checksum{}
	for _, e := range v.([]any) {
		de := e.(gvariant.DictEntry)
		vv := de.Value.(gvariant.Variant)
		b, ok := vv.Value.([]byte)
		if !ok || vv.Type.String() != "ay" {
			return nil, corrupt("static-deltas", "entry %q is not ay", de.Key)
		}
		c, err := ChecksumFromBytes(b)
		if err != nil {
			return nil, corrupt("static-deltas", "entry %q: %v", de.Key, err)
		}
		out[de.Key.(string)] = c
	}
	return out, nil
}

// BE64Variant wraps a uint64 that OSTree stores big-endian (timestamps).
func BE64Variant(v uint64) gvariant.Variant { return gvariant.NewVariant("t", be64(v)) }

// SizeEntry is one ostree.sizes record.
type SizeEntry struct {
	Checksum Checksum
	Archived uint64
	Unpacked uint64
	Type     ObjectType
}

// EncodeSizes builds the ostree.sizes aay value (entries must be sorted by
// checksum).
func EncodeSizes(entries []SizeEntry) []any {
	out := make([]any, len(entries))
	for i, e := range entries {
		b := append(e.Checksum.Bytes(), make([]byte, 0, 21)...)
		b = binary.AppendUvarint(b, e.Archived)
		b = binary.AppendUvarint(b, e.Unpacked)
		b = append(b, byte(e.Type))
		out[i] = b
	}
	return out
}

// DecodeSizes parses ostree.sizes from commit metadata.
func DecodeSizes(meta []any) ([]SizeEntry, error) {
	v, err := gvariant.LookupTyped(meta, MetaSizes, "aay")
	if err != nil {
		return nil, err
	}
	items := v.([]any)
	out := make([]SizeEntry, 0, len(items))
	for _, it := range items {
		b := it.([]byte)
		if len(b) < 34 {
			return nil, corrupt("ostree.sizes", "entry of %d bytes", len(b))
		}
		var e SizeEntry
		copy(e.Checksum[:], b[:32])
		rest := b[32:]
		var n int
		if e.Archived, n = binary.Uvarint(rest); n <= 0 {
			return nil, corrupt("ostree.sizes", "bad varint")
		}
		rest = rest[n:]
		if e.Unpacked, n = binary.Uvarint(rest); n <= 0 {
			return nil, corrupt("ostree.sizes", "bad varint")
		}
		rest = rest[n:]
		e.Type = ObjFile
		switch len(rest) {
		case 0:
		case 1:
			e.Type = ObjectType(rest[0])
		default:
			return nil, corrupt("ostree.sizes", "%d trailing bytes", len(rest))
		}
		out = append(out, e)
	}
	return out, nil
}

// DeltaName returns the hex delta name used in summaries and indexes.
func DeltaName(from *Checksum, to Checksum) string {
	if from == nil {
		return to.String()
	}
	return from.String() + "-" + to.String()
}

// DeltaPath returns the directory of a static delta relative to the repo.
func DeltaPath(from *Checksum, to Checksum) string {
	t := to.ModifiedBase64()
	if from == nil {
		return "deltas/" + t[:2] + "/" + t[2:]
	}
	f := from.ModifiedBase64()
	return "deltas/" + f[:2] + "/" + f[2:] + "-" + t
}

// DeltaIndexPath returns the path of the delta index for commit to.
func DeltaIndexPath(to Checksum) string {
	t := to.ModifiedBase64()
	return "delta-indexes/" + t[:2] + "/" + t[2:] + ".index"
}

// String renders a summary ref for messages.
func (r *SummaryRef) String() string { return fmt.Sprintf("%s %s", r.Name, r.Checksum) }
