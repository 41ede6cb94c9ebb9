// Package delta reads, applies and writes OSTree static deltas
// (ostree-format.md section 4): the superblock, its part headers and
// fallbacks, part files (uncompressed or xz), and the opcode stream that
// turns a part into objects, bsdiff included.
//
// It owns the format and nothing else. It never touches the network, and
// the file system only through OpenPartStream: superblocks and inline
// parts come in as bytes, a part file comes in as bytes (OpenPart) or as a
// reader (OpenPartStream, which decompresses it into an unlinked file in
// the directory it is given and maps it, so that its size never reaches
// the heap), existing objects come from a Source, produced objects go to
// a Sink, and Generate reads a repository through the Objects interface
// and hands parts to a PartWriter. Deciding which delta to use, fetching parts and fallbacks,
// checking the superblock digest against a signed summary or index, and
// checking the embedded commit's signature are the caller's job.
//
// What it guarantees:
//   - Every object Apply produces is verified before the sink may keep it:
//     metadata by sha256 (and structure) before PutMetadata, content by
//     its content checksum before ContentWriter.Commit. A mismatch is an
//     *ostree.ChecksumError naming the object.
//   - Hostile input never panics and never allocates without bound:
//     superblocks are capped at MaxSuperblockSize, parts at MaxPartSize
//     (decompressed: also about twice the header's usize), xz streams are
//     walked before decoding so that an oversized dictionary or output is
//     refused first, every varint, offset and index is range-checked, and
//     Apply writes no more than the part header's usize. Malformed input
//     gives errors matching ostree.ErrCorrupt; valid input this package
//     does not implement (part version ≠ 0, compression other than none
//     and xz, signed superblocks) gives ErrUnsupported. USize comes
//     from the superblock, whose digest delta indexes do not sign, so a
//     caller that trusts such a superblock should also cap it.
//   - Parts produce only dirtree, dirmeta and content objects, the types
//     ostree's generator puts in them, and fallbacks are content objects:
//     ParseSuperblock refuses anything else, and Apply refuses to produce
//     a commit even when asked to. The to-commit comes only from the
//     superblock, where the caller checks its signature.
//   - A part's body is checked (digest, size) before any object comes out
//     of it; OpenPartStream decodes to disk while it hashes, and decodes
//     nothing until the whole part has been verified. The heap it uses is
//     bounded by the xz dictionary and a few buffers; the mode and xattr
//     tables stay serialised and are decoded an entry at a time.
//   - Large objects stream: 'o'/'w'/'B' content is written to the sink in
//     64 KiB pieces (bspatch included), and the read source is random
//     access (Blob), never loaded whole by this package.
//
// Goroutines: Apply and the parsers start none. Generate compresses parts
// on up to GenerateOptions.Workers goroutines, all ended when it returns.
package delta
