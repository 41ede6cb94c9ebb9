// Package zran finds access points in a raw deflate stream (RFC 1951, as
// in OSTree .filez objects) and inflates from them, as zlib's zran.c and
// SOCI's zTOC do: Scan inflates a whole stream once and hands out a Point
// every so often; NewReader starts inflating at a Point, so a reader of
// the middle of a large file inflates at most one span more than it asks
// for. Go's compress/flate can do neither, so the package has its own
// inflater, table-driven with a 64-bit bit buffer, about twice as fast
// as compress/flate on text; it accepts the streams compress/flate
// accepts and no others (FuzzZran checks both ways).
//
// # Points
//
// A Point can only be at the start of a deflate block: there, the
// decoder state is the input position and the 32 KiB of output a
// distance may reach back into (the Window), nothing else. Blocks begin
// at any bit, so the input position is a byte offset In and a bit count:
// deflate fills each byte from its least significant bit, and a block
// that starts Bits bits before the end of byte In-1 starts at bit 8-Bits
// of that byte, its first bits being the top Bits bits of it. Point.Prev
// holds that byte (its low 8-Bits bits zero), so NewReader needs the
// input only from In on. A point costs up to MaxWindow bytes; callers
// that store many may compress the windows.
//
// # Bounds
//
// Memory is fixed per call: about 200 KiB of buffers and tables, plus
// one window per point handed out. Scan stops with ErrTooLarge past
// Options.Limit; a deflate stream can inflate about 1032 times its size.
// Every malformed stream (reserved block types, bad stored lengths,
// over-subscribed or incomplete codes, too many codes, repeats past the
// end, codes that do not exist, distances past the start of the data or
// the window) is a *CorruptError matching ErrCorrupt, and a truncated
// one io.ErrUnexpectedEOF; none panics. Every block consumes input, so
// the work is bounded by the input and the limit.
//
// The package is pure: it reads an io.Reader and writes an io.Writer,
// touches no file system, and starts no goroutines.
package zran
