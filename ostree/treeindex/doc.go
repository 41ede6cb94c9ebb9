// Package treeindex is the format of lazytree's tree index and of a
// published access profile (DESIGN.md, "Tree index"). It is pure: Encode
// and Decode work on bytes, Build reads objects through the small Source
// interface, and nothing here touches the file system or the network
// (ostree/repo stores and publishes both objects; fetch reads them).
//
// # What a tree index holds
//
// For one commit: every dirtree and dirmeta reachable from it, as the
// exact object bytes; and for every content object its archived (.filez)
// size, its archive header (uid, gid, mode, rdev, symlink target, xattrs,
// uncompressed size) and, for content over a threshold (1 MiB by
// default), SHA-256 digests of fixed-size chunks of the uncompressed
// content and deflate access points into the .filez, as SOCI's zTOC does
// for gzip. A client that has the index knows the whole tree after one
// request, can stat any file without fetching it, and can fetch, inflate
// and verify one chunk of a large file without the bytes before it.
//
// # Where it lives and how it is authenticated
//
// The index is stored at lazytree/tree-index/<hex> in the repository
// (ostree.TreeIndexPath), where <hex> is the SHA-256 of the stored,
// compressed bytes. The summary's per-ref metadata carries that digest
// under lazytree.tree-index (ostree.RefTreeIndex), type ay, 32 bytes;
// ostree.SummaryRef.TreeIndex reads it. The summary is signed
// (summary.sig), so a client that verified the summary compares the
// digest of the fetched bytes before it calls Decode, and the index is
// then as trusted as the commit the same summary names. Decode also
// checks that every dirtree and dirmeta hashes to its key, so those are
// verified objects; headers, chunk digests and access points are trusted
// because the signed digest covers them (and the whole-object checksum
// still applies when a client fetches a whole object). The real ostree
// and flatpak ignore the key and the directory.
//
// # Byte layout (version 1)
//
// The stored object is exactly one zstd frame (RFC 8878) with the
// content size in its header, no dictionary, and nothing before or after
// it (no skippable or further frames). Decompressed, it is one GVariant
// in normal form (ostree-format.md section 1), of type
//
//	(tuaya(ayay)a(ayay)aay)
//
//	t        magic 0x4C54524545494458, ASCII "LTREEIDX", stored big-endian
//	u        version, 1 (GVariant byte order: little-endian)
//	ay       commit checksum, 32 bytes
//	a(ayay)  dirtrees: (checksum[32], object bytes), sorted by checksum
//	a(ayay)  dirmetas: the same
//	aay      content objects, sorted by checksum; each element is the
//	         normal-form serialisation of one entry
//	         (aytayuaya(ttyay)):
//	  ay        checksum, 32 bytes
//	  t         archived size: the length of the .filez (LE)
//	  ay        the .filez header verbatim: [u32 BE L][4 zero bytes]
//	            [L bytes (tuuuusa(ayay)), fields BE as in ostree], so
//	            its length is the offset of the raw deflate stream
//	  u         chunk size, 0 if the content is not chunked (LE)
//	  ay        chunk digests: SHA-256 of each chunk of the uncompressed
//	            content, 32 bytes each, in order; empty if not chunked
//	  a(ttyay)  access points, in order: (out, in, bits, window), where
//	            out is the uncompressed offset, in the offset in the
//	            .filez of the first whole compressed byte after the
//	            point, bits (0-7) how many high bits of byte in-1 belong
//	            to the stream after it, window the min(out, 32 KiB) or
//	            fewer uncompressed bytes right before out (LE integers)
//
// Content entries are nested serialisations (aay rather than an array of
// tuples) so that a decoder can find and count them without decoding
// them, as the tables of dirtrees can be. Integers are little-endian,
// the GVariant encoding order, except where ostree's own header bytes
// are embedded.
//
// # Rules Decode enforces
//
//   - at most MaxCompressedSize (128 MiB) in, MaxDecodedSize (256 MiB)
//     out, checked from the frame header before anything is allocated;
//   - the payload is in normal form, magic and version match, and each
//     table holds at most MaxObjects (4 Mi) entries, strictly increasing
//     by checksum;
//   - SHA-256 of each dirtree and dirmeta is its key;
//   - each header parses as ostree parses a .filez header (regular file
//     or symlink, rdev 0), is canonical (re-encodes to the same bytes),
//     has a symlink target of at most MaxSymlinkTarget bytes; the
//     archived size is at least the header size, and equals it for a
//     symlink;
//   - a chunk size is 0 (then no digests and no points) or in
//     [MinChunkSize, MaxChunkSize] for a non-empty regular file, with
//     exactly ceil(size / chunk size) digests;
//   - at most MaxPoints access points, with 0 < out < size, out strictly
//     increasing, the bit position 8*in-bits strictly increasing and
//     after the header, in at most the archived size, bits at most 7,
//     and windows of at most min(out, WindowSize) bytes.
//
// Every accepted index re-encodes to the same payload. Decoded byte
// slices share the payload; Decode allocates at most a small multiple of
// the payload size. Lookups (DirTree, DirMeta, File) are binary searches
// over the sorted tables.
//
// # Access profiles
//
// A published profile is stored at lazytree/profile/<hex>
// (ostree.ProfilePath, <hex> the SHA-256 of the bytes) and named in the
// per-ref summary metadata under lazytree.profile (ostree.RefProfile, ay,
// 32 bytes), for every ref whose commit is the profile's. It is one JSON
// object:
//
//	{"version":1,"commit":"<64 hex>","paths":["files/bin/python3",...]}
//
// with paths relative to the commit root, in open order, each once. At
// most MaxProfileSize (8 MiB) bytes, MaxProfilePaths (100 000) paths of
// at most MaxProfilePathLen (4096) bytes; each path is relative and
// every component is a valid file name (no "", ".", "..", "/" runs or
// NUL). Unknown keys and data after the object are rejected. Encode
// writes the canonical form (encoding/json, one line, a newline).
//
// # Goroutines
//
// Build starts BuildOptions.Concurrency workers that end before it
// returns. Encode and Decode start none (one process-wide zstd encoder
// and decoder are used through EncodeAll and DecodeAll).
package treeindex
