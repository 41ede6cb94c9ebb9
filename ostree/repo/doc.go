// Package repo reads and writes OSTree archive repositories on the local
// file system: init, object storage with atomic writes, refs, committing a
// directory tree (hashing and compressing files in parallel), detached
// metadata, and exporting the summary and its signatures (with static
// deltas, tree indexes and access profiles when asked).
//
// It sits between the pure format package ostree and the commands: the
// ostree package never does I/O beyond io.Reader and io.Writer, and cli
// holds no business logic, so the on-disk repository lives here. Objects
// are written to tmp/ and renamed into place; refs and the summary are
// written only after a syncfs of the repository, so a crash never leaves a
// ref pointing at a missing object.
//
// Commit starts worker goroutines for the duration of the call only.
package repo
