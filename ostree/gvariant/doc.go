// Package gvariant encodes and decodes GLib GVariant values in normal form,
// the serialisation OSTree checksums and Flatpak publishes.
//
// It knows nothing about OSTree. Values are plain Go values (see value.go);
// the encoding byte order is little-endian, as GLib writes on every machine
// OSTree runs on. Decoding is strict: only normal-form input is accepted, so
// that Encode(Decode(b)) == b for every accepted b, which is what makes
// checksums over re-encoded data trustworthy. Decoders bound their work:
// nesting is limited to MaxDepth, every offset is checked against its
// container, and allocations are proportional to the input size. Callers cap
// the input size (the summary and metadata caps live in package ostree).
//
// The package starts no goroutines.
package gvariant
