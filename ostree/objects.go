package ostree

import (
	"bytes"
	"fmt"
	"math/bits"
	"sort"

	"github.com/lazytree/lazytree/ostree/gvariant"
)

// GVariant types of the metadata objects.
var (
	TypeCommit     = gvariant.MustType("(a{sv}aya(say)sstayay)")
	TypeDirTree    = gvariant.MustType("(a(say)a(sayay))")
	TypeDirMeta    = gvariant.MustType("(uuua(ayay))")
	TypeVarDict    = gvariant.MustType("a{sv}")
	TypeFileHeader = gvariant.MustType("(uuuusa(ayay))")
	TypeFilezHdr   = gvariant.MustType("(tuuuusa(ayay))")
	TypeSummary    = gvariant.MustType("(a(s(taya{sv}))a{sv})")
	typeXattrs     = gvariant.MustType("a(ayay)")
)

// MaxMetadataSize is the cap on any metadata object, summary or superblock
// read from a remote (ostree uses the same 128 MiB).
const MaxMetadataSize = 128 << 20

// Mode bits.
const (
	ModeTypeMask = 0o170000
	ModeDir      = 0o040000
	ModeReg      = 0o100000
	ModeSymlink  = 0o120000
	ModePerm     = 0o7777
)

func be32(v uint32) uint32 { return bits.ReverseBytes32(v) }
func be64(v uint64) uint64 { return bits.ReverseBytes64(v) }

func corrupt(obj string, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", obj, ErrCorrupt, fmt.Sprintf(format, args...))
}

// Xattr is one extended attribute. Name has no trailing NUL here; the
// serialised form adds it.
type Xattr struct {
	Name  string
	Value []byte
}

func encodeXattrs(xs []Xattr) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = []any{append([]byte(x.Name), 0), x.Value}
	}
	return out
}

// SortXattrs sorts by name, as every ostree writer must (ostree-format.md 2.6).
func SortXattrs(xs []Xattr) {
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
}

func decodeXattrs(obj string, v any, strict bool) ([]Xattr, error) {
	items := v.([]any)
	xs := make([]Xattr, len(items))
	for i, it := range items {
		pair := it.([]any)
		name := pair[0].([]byte)
		if len(name) < 2 || name[len(name)-1] != 0 || bytes.IndexByte(name[:len(name)-1], 0) >= 0 {
			return nil, corrupt(obj, "malformed xattr name %q", name)
		}
		xs[i] = Xattr{Name: string(name[:len(name)-1]), Value: pair[1].([]byte)}
		if strict && i > 0 && xs[i-1].Name >= xs[i].Name {
			return nil, corrupt(obj, "xattrs unsorted or duplicated at %q", xs[i].Name)
		}
	}
	return xs, nil
}

// DirMeta is a directory's metadata object.
type DirMeta struct {
	UID, GID, Mode uint32
	Xattrs         []Xattr
}

// Encode serialises the dirmeta (xattrs must be sorted).
func (m *DirMeta) Encode() []byte {
	return gvariant.MustEncode(TypeDirMeta, []any{be32(m.UID), be32(m.GID), be32(m.Mode), encodeXattrs(m.Xattrs)})
}

// DecodeDirMeta parses and validates a dirmeta object.
func DecodeDirMeta(data []byte) (*DirMeta, error) {
	v, err := gvariant.Decode(TypeDirMeta, data)
	if err != nil {
		return nil, corrupt("dirmeta", "%v", err)
	}
	f := v.([]any)
	m := &DirMeta{UID: be32(f[0].(uint32)), GID: be32(f[1].(uint32)), Mode: be32(f[2].(uint32))}
	if m.Mode&ModeTypeMask != ModeDir || m.Mode&^(ModeTypeMask|ModePerm) != 0 {
		return nil, corrupt("dirmeta", "invalid directory mode %o", m.Mode)
	}
	if m.Xattrs, err = decodeXattrs("dirmeta", f[3], true); err != nil {
		return nil, err
	}
	return m, nil
}

// TreeFile is a dirtree entry for a regular file or symlink.
type TreeFile struct {
	Name     string
	Checksum Checksum
}

// TreeDir is a dirtree entry for a subdirectory.
type TreeDir struct {
	Name string
	Tree Checksum
	Meta Checksum
}

// DirTree is a directory's listing object.
type DirTree struct {
	Files []TreeFile
	Dirs  []TreeDir
}

// Sort orders both lists by byte-wise name, as ostree requires.
func (t *DirTree) Sort() {
	sort.Slice(t.Files, func(i, j int) bool { return t.Files[i].Name < t.Files[j].Name })
	sort.Slice(t.Dirs, func(i, j int) bool { return t.Dirs[i].Name < t.Dirs[j].Name })
}

// Encode serialises the dirtree (lists must be sorted).
func (t *DirTree) Encode() []byte {
	files := make([]any, len(t.Files))
	for i, f := range t.Files {
		files[i] = []any{f.Name, f.Checksum[:]}
	}
	dirs := make([]any, len(t.Dirs))
	for i, d := range t.Dirs {
		dirs[i] = []any{d.Name, d.Tree[:], d.Meta[:]}
	}
	return gvariant.MustEncode(TypeDirTree, []any{files, dirs})
}

// DecodeDirTree parses a dirtree and validates every name: sorted, unique
// across both lists, and safe to use as a path component.
func DecodeDirTree(data []byte) (*DirTree, error) {
	v, err := gvariant.Decode(TypeDirTree, data)
	if err != nil {
		return nil, corrupt("dirtree", "%v", err)
	}
	f := v.([]any)
	files, dirs := f[0].([]any), f[1].([]any)
	t := &DirTree{Files: make([]TreeFile, len(files)), Dirs: make([]TreeDir, len(dirs))}
	for i, e := range files {
		p := e.([]any)
		name := p[0].(string)
		if err := ValidateFileName(name); err != nil {
			return nil, corrupt("dirtree", "%v", err)
		}
		c, err := ChecksumFromBytes(p[1].([]byte))
		if err != nil {
			return nil, corrupt("dirtree", "file %q: %v", name, err)
		}
		if i > 0 && t.Files[i-1].Name >= name {
			return nil, corrupt("dirtree", "files unsorted or duplicated at %q", name)
		}
		t.Files[i] = TreeFile{name, c}
	}
	for i, e := range dirs {
		p := e.([]any)
		name := p[0].(string)
		if err := ValidateFileName(name); err != nil {
			return nil, corrupt("dirtree", "%v", err)
		}
		tc, err1 := ChecksumFromBytes(p[1].([]byte))
		mc, err2 := ChecksumFromBytes(p[2].([]byte))
		if err1 != nil || err2 != nil {
			return nil, corrupt("dirtree", "directory %q: bad checksum length", name)
		}
		if i > 0 && t.Dirs[i-1].Name >= name {
			return nil, corrupt("dirtree", "directories unsorted or duplicated at %q", name)
		}
		t.Dirs[i] = TreeDir{name, tc, mc}
	}
	// A name may appear in only one of the two lists.
	for i, j := 0, 0; i < len(t.Files) && j < len(t.Dirs); {
		switch {
		case t.Files[i].Name == t.Dirs[j].Name:
			return nil, corrupt("dirtree", "%q is both a file and a directory", t.Files[i].Name)
		case t.Files[i].Name < t.Dirs[j].Name:
			i++
		default:
			j++
		}
	}
	return t, nil
}

// LookupFile finds a file entry by binary search.
func (t *DirTree) LookupFile(name string) (TreeFile, bool) {
	i := sort.Search(len(t.Files), func(i int) bool { return t.Files[i].Name >= name })
	if i < len(t.Files) && t.Files[i].Name == name {
		return t.Files[i], true
	}
	return TreeFile{}, false
}

// LookupDir finds a subdirectory entry by binary search.
func (t *DirTree) LookupDir(name string) (TreeDir, bool) {
	i := sort.Search(len(t.Dirs), func(i int) bool { return t.Dirs[i].Name >= name })
	if i < len(t.Dirs) && t.Dirs[i].Name == name {
		return t.Dirs[i], true
	}
	return TreeDir{}, false
}

// EmptyDirTree is the serialised empty dirtree (one zero byte).
var EmptyDirTree = []byte{0}

// Commit is a commit object.
type Commit struct {
	// Metadata is the a{sv} in insertion order (a gvariant.VarDict or a
	// decoded []any).
	Metadata  []any
	Parent    *Checksum
	Subject   string
	Body      string
	Timestamp uint64
	RootTree  Checksum
	RootMeta  Checksum
}

// Encode serialises the commit.
func (c *Commit) Encode() ([]byte, error) {
	var parent []byte
	if c.Parent != nil {
		parent = c.Parent[:]
	}
	meta := c.Metadata
	if meta == nil {
		meta = []any{}
	}
	return gvariant.Encode(TypeCommit, []any{meta, parent, []any{}, c.Subject, c.Body, be64(c.Timestamp), c.RootTree[:], c.RootMeta[:]})
}

// DecodeCommit parses and validates a commit object.
func DecodeCommit(data []byte) (*Commit, error) {
	if len(data) > MaxMetadataSize {
		return nil, corrupt("commit", "larger than %d bytes", MaxMetadataSize)
	}
	v, err := gvariant.Decode(TypeCommit, data)
	if err != nil {
		return nil, corrupt("commit", "%v", err)
	}
	f := v.([]any)
	c := &Commit{Metadata: f[0].([]any), Subject: f[3].(string), Body: f[4].(string), Timestamp: be64(f[5].(uint64))}
	for _, e := range c.Metadata {
		if e.(gvariant.DictEntry).Key.(string) == "" {
			return nil, corrupt("commit", "empty metadata key")
		}
	}
	if p := f[1].([]byte); len(p) != 0 {
		pc, err := ChecksumFromBytes(p)
		if err != nil {
			return nil, corrupt("commit", "parent: %v", err)
		}
		c.Parent = &pc
	}
	if c.RootTree, err = ChecksumFromBytes(f[6].([]byte)); err != nil {
		return nil, corrupt("commit", "root tree: %v", err)
	}
	if c.RootMeta, err = ChecksumFromBytes(f[7].([]byte)); err != nil {
		return nil, corrupt("commit", "root dirmeta: %v", err)
	}
	return c, nil
}

// MetaString returns a string metadata value.
func (c *Commit) MetaString(key string) (string, bool) {
	v, err := gvariant.LookupTyped(c.Metadata, key, "s")
	if err != nil {
		return "", false
	}
	return v.(string), true
}

// MetaStrings returns an as metadata value such as ostree.ref-binding.
func (c *Commit) MetaStrings(key string) ([]string, bool) {
	v, err := gvariant.LookupTyped(c.Metadata, key, "as")
	if err != nil {
		return nil, false
	}
	items := v.([]any)
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.(string)
	}
	return out, true
}

// ContentChecksum is sha256(root dirtree ‖ root dirmeta), the tree's
// identity independent of commit metadata.
func (c *Commit) ContentChecksum() Checksum {
	return Sum(append(c.RootTree.Bytes(), c.RootMeta[:]...))
}

// Commit metadata keys (ostree-format.md 6).
const (
	MetaRefBinding        = "ostree.ref-binding"
	MetaCollectionBinding = "ostree.collection-binding"
	MetaSizes             = "ostree.sizes"
	MetaVersion           = "version"
	MetaEndOfLife         = "ostree.endoflife"
)

// DecodeVarDict parses an a{sv} such as detached metadata or summary.sig,
// rejecting empty keys.
func DecodeVarDict(what string, data []byte) ([]any, error) {
	if len(data) > MaxMetadataSize {
		return nil, corrupt(what, "larger than %d bytes", MaxMetadataSize)
	}
	v, err := gvariant.Decode(TypeVarDict, data)
	if err != nil {
		return nil, corrupt(what, "%v", err)
	}
	return v.([]any), nil
}

// Signatures returns the aay value of key (ostree.gpgsigs,
// ostree.sign.ed25519) from detached metadata or summary.sig.
func Signatures(dict []any, key string) [][]byte {
	v, err := gvariant.LookupTyped(dict, key, "aay")
	if err != nil {
		return nil
	}
	items := v.([]any)
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = it.([]byte)
	}
	return out
}

// SetSignatures returns dict with key set to sigs, replacing an earlier
// value in place or appending.
func SetSignatures(dict []any, key string, sigs [][]byte) []any {
	vals := make([]any, len(sigs))
	for i, s := range sigs {
		vals[i] = s
	}
	entry := gvariant.DictEntry{Key: key, Value: gvariant.NewVariant("aay", vals)}
	out := append([]any(nil), dict...)
	for i, e := range out {
		if de, ok := e.(gvariant.DictEntry); ok && de.Key == key {
			out[i] = entry
			return out
		}
	}
	return append(out, entry)
}
