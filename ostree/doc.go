// Package ostree implements the OSTree object formats: checksums and object
// names, commits, dirtrees, dirmeta, content headers and archive .filez
// objects, detached metadata, ostree.sizes, summaries, GLib keyfiles (repo
// config, Flatpak metadata) and name validation.
//
// It is pure: it reads and writes io.Reader and io.Writer and never touches
// the file system or the network (package ostree/repo does that). Every
// decoder is bounded and rejects what ostree rejects: non-normal GVariants,
// unsorted or duplicate tree entries, hostile names, checksums of the wrong
// length. The fields OSTree stores big-endian are converted here, so callers
// only see host values.
//
// The package starts no goroutines.
package ostree
