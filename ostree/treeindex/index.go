package treeindex

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/lazytree/lazytree/ostree"
)

// Version is the format version Encode writes and Decode accepts.
const Version = 1

// Magic is the first member of the decompressed payload, stored
// big-endian: ASCII "LTREEIDX".
const Magic uint64 = 0x4C54524545494458

// Bounds that Decode enforces before or while it allocates.
const (
	// MaxCompressedSize caps the stored object (ostree's own cap on a
	// metadata object).
	MaxCompressedSize = ostree.MaxMetadataSize
	// MaxDecodedSize caps the decompressed payload. Decoded structures
	// point into the payload and add at most about three times its size.
	// Windows dominate a real index (32 KiB per MiB of large content with
	// the default span), so this covers about 8 GiB of large files.
	MaxDecodedSize = 256 << 20
	// MaxObjects caps each of the three tables (dirtrees, dirmetas,
	// content objects).
	MaxObjects = 1 << 22
	// MaxPoints caps the access points of one content object.
	MaxPoints = 1 << 20
	// MaxSymlinkTarget caps a symlink target (Linux PATH_MAX).
	MaxSymlinkTarget = 4096
	// MinChunkSize and MaxChunkSize bound a content object's chunk size.
	MinChunkSize = 64 << 10
	MaxChunkSize = 64 << 20
	// WindowSize is the deflate history an access point carries at most.
	WindowSize = 32 << 10
)

// ErrCorrupt is matched by every error Decode returns for malformed
// input, and by the builder's checksum failures (which also match
// ostree.ErrCorrupt).
var ErrCorrupt = errors.New("treeindex: corrupt tree index")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Index is the tree index of one commit. Every table is sorted by
// checksum (byte-wise) with no duplicates, which is what the lookup
// methods' binary search relies on; Decode checks it, Build produces it.
// Byte slices of a decoded index share the decoded payload.
type Index struct {
	Commit ostree.Checksum
	// Trees and Metas hold every dirtree and dirmeta reachable from the
	// commit, as the exact object bytes; SHA-256(Data) == Checksum.
	Trees []Object
	Metas []Object
	// Files holds every content object (regular file or symlink).
	Files []File
}

// Object is a metadata object and its checksum.
type Object struct {
	Checksum ostree.Checksum
	Data     []byte
}

// File describes one content object.
type File struct {
	Checksum ostree.Checksum
	// ArchivedSize is the length of the .filez object.
	ArchivedSize uint64
	// Header is the parsed archive header; HeaderSize is the length of
	// its serialised form in the .filez ([u32 BE len][4 zero][variant]),
	// which is where the raw deflate stream starts.
	Header     ostree.FileHeader
	HeaderSize uint32
	// ChunkSize is 0 for content that is not chunked (at most the
	// builder's threshold, or a symlink). Otherwise the uncompressed
	// content is split into ChunkSize pieces (the last one shorter) and
	// Digests holds their SHA-256 digests, 32 bytes each, in order.
	ChunkSize uint32
	Digests   []byte
	// Points are deflate access points into the .filez, in increasing
	// order of both offsets. Only chunked content has them.
	Points []AccessPoint
}

// AccessPoint is a place where inflating can start without the bytes
// before it, as zlib's zran.c records them. It has the same fields as
// zran.Point, so one converts to the other.
type AccessPoint struct {
	// Out is the offset in the uncompressed content.
	Out int64
	// In is the offset in the .filez object (header included) of the
	// first whole compressed byte after the point.
	In int64
	// Bits (0-7) is how many high bits of the byte at In-1 belong to the
	// stream after the point; with 0 the point starts at In exactly.
	Bits uint8
	// Window is the uncompressed content right before Out: the last
	// min(Out, WindowSize) bytes or fewer, the inflater's dictionary.
	Window []byte
}

// Chunks returns the number of chunks (0 if not chunked).
func (f *File) Chunks() int { return len(f.Digests) / 32 }

// Chunk returns the uncompressed offset and length of chunk i and its
// SHA-256 digest. i must be in [0, Chunks()).
func (f *File) Chunk(i int) (off, n int64, digest [32]byte) {
	off = int64(i) * int64(f.ChunkSize)
	n = min(int64(f.ChunkSize), int64(f.Header.Size)-off)
	copy(digest[:], f.Digests[32*i:])
	return off, n, digest
}

// PointBefore returns the last access point at or before uncompressed
// offset off; with none, the start of the deflate stream (Out 0, In
// HeaderSize, no window).
func (f *File) PointBefore(off int64) AccessPoint {
	i, _ := slices.BinarySearchFunc(f.Points, off, func(p AccessPoint, off int64) int {
		if p.Out <= off {
			return -1
		}
		return 1
	})
	if i == 0 {
		return AccessPoint{In: int64(f.HeaderSize)}
	}
	return f.Points[i-1]
}

// StreamHeader returns the prefix of the content stream that the object
// checksum covers (what index.FileHeader.Raw stores).
func (f *File) StreamHeader() []byte { return f.Header.StreamHeader() }

// DirTree returns a dirtree's bytes.
func (x *Index) DirTree(c ostree.Checksum) ([]byte, bool) { return lookupObject(x.Trees, c) }

// DirMeta returns a dirmeta's bytes.
func (x *Index) DirMeta(c ostree.Checksum) ([]byte, bool) { return lookupObject(x.Metas, c) }

// File returns a content object's entry.
func (x *Index) File(c ostree.Checksum) (*File, bool) {
	i, ok := slices.BinarySearchFunc(x.Files, c, func(f File, c ostree.Checksum) int { return bytes.Compare(f.Checksum[:], c[:]) })
	if !ok {
		return nil, false
	}
	return &x.Files[i], true
}

func lookupObject(objs []Object, c ostree.Checksum) ([]byte, bool) {
	i, ok := slices.BinarySearchFunc(objs, c, func(o Object, c ostree.Checksum) int { return bytes.Compare(o.Checksum[:], c[:]) })
	if !ok {
		return nil, false
	}
	return objs[i].Data, true
}

// CheckComplete walks the tree from root (the commit's root dirtree and
// dirmeta) and reports the first object the index lacks, or a dirtree
// that does not parse. A client that found the index through a verified
// summary calls it once, so that a missing entry is an error up front
// instead of a fallback fetch later.
func (x *Index) CheckComplete(rootTree, rootMeta ostree.Checksum) error {
	seen := map[ostree.Checksum]bool{}
	var walk func(tree, meta ostree.Checksum, depth int) error
	walk = func(tree, meta ostree.Checksum, depth int) error {
		if depth > maxDepth {
			return corrupt("tree deeper than %d", maxDepth)
		}
		if _, ok := x.DirMeta(meta); !ok {
			return corrupt("dirmeta %s missing", meta)
		}
		if seen[tree] {
			return nil
		}
		seen[tree] = true
		b, ok := x.DirTree(tree)
		if !ok {
			return corrupt("dirtree %s missing", tree)
		}
		dt, err := ostree.DecodeDirTree(b)
		if err != nil {
			return corrupt("dirtree %s: %v", tree, err)
		}
		for _, f := range dt.Files {
			if _, ok := x.File(f.Checksum); !ok {
				return corrupt("content %s (%s) missing", f.Checksum, f.Name)
			}
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Tree, d.Meta, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(rootTree, rootMeta, 0)
}

// maxDepth bounds directory nesting in CheckComplete and Build (a path
// of 4096 bytes has at most 2048 components).
const maxDepth = 2048
