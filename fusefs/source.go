package fusefs

import (
	"context"
	"errors"
	"io"

	"github.com/lazytree/lazytree/ostree"
)

// ErrNotFound is what a Source returns (wrapped or not) for a remote, ref
// or commit that does not exist. The mount shows it as ENOENT. An object
// that a verified dirtree names but that cannot be had is not "not found"
// to the user (the name is listed): fusefs reports that as EIO, whatever
// the Source returned.
var ErrNotFound = errors.New("not found")

// Source is everything the mount needs from the object store. The
// fetch-backed source in package fetch implements it for the daemon;
// internal/reposource implements it over a local archive repository for
// tests.
//
// Verification: every object a Source returns has been checked against its
// checksum (and a commit against its signature when the remote asks for
// one). fusefs never sees, and therefore never serves, an unverified byte.
//
// Errors: a missing remote, ref or commit is ErrNotFound; an object that
// failed verification wraps ostree.ErrCorrupt; a call that ran out of time
// returns an error that wraps ctx.Err() (context.DeadlineExceeded, or
// context.Canceled after a kernel INTERRUPT). Any other error is treated as
// an I/O error. fusefs maps all of them to errnos in one place (toErrno).
//
// Context: every call that may block gets a context that carries the
// per-request deadline (Options.RequestTimeout) and is cancelled when the
// kernel interrupts the request. A Source should stop waiting when it is
// done; fusefs also stops waiting for it, so a Source that ignores the
// context leaks a goroutine but never hangs a request. A Source that shares
// one fetch between callers must not cancel it because one caller left.
//
// Concurrency: every method is called from many goroutines at once.
//
// internal/sourcetest is the conformance suite for this contract; every
// implementation runs it.
type Source interface {
	// Remotes returns the configured remote names, sorted. It must not
	// block: it is called on every lookup in the mount's root.
	Remotes() []string
	// Refs returns the current verified refs of a remote (ref name to
	// commit). It should answer from memory (the Source refreshes refs on
	// its own schedule) because fusefs calls it whenever the kernel
	// revalidates a ref directory. The map is not modified by the caller.
	Refs(ctx context.Context, remote string) (map[string]ostree.Checksum, error)
	// Commit returns a commit object verified for via: for a ref
	// directory, the signatures that remote requires, the commit's ref
	// and collection bindings for that ref, and no downgrade of it; for
	// .commits/<sum> (the zero Via), verified for at least one configured
	// remote. A commit is never trusted just because it was seen before
	// under another remote or ref.
	Commit(ctx context.Context, via Via, c ostree.Checksum) (*ostree.Commit, error)
	// DirTree returns a verified dirtree object. via is the path the
	// reader came through (where to fetch it from).
	DirTree(ctx context.Context, via Via, c ostree.Checksum) (*ostree.DirTree, error)
	// DirMeta returns a verified dirmeta object.
	DirMeta(ctx context.Context, via Via, c ostree.Checksum) (*ostree.DirMeta, error)
	// FileHeader returns the verified header of a content object: size,
	// mode, owner, symlink target and xattrs.
	FileHeader(ctx context.Context, via Via, c ostree.Checksum) (*ostree.FileHeader, error)
	// Open returns the verified content of a regular file. The File stays
	// valid (and its object in the cache) until Close.
	Open(ctx context.Context, via Via, c ostree.Checksum) (File, error)
	// Status returns JSON-marshalable counters for .lazytree/status.json.
	Status() any
	// RecordAccess notes that path (relative to the commit's root, with
	// "/" separators, e.g. "files/bin/sh") was opened, for access
	// profiles. It is called on every open, so it must not block and
	// should ignore repeats; it is best effort and returns nothing.
	// via is the path the reader came through.
	RecordAccess(via Via, commit ostree.Checksum, path string)
}

// Via is the path a reader came through: the remote and ref of
// MOUNT/<remote>/<ref>/, or the zero Via for MOUNT/.commits/<sum>/. Every
// node inside a commit carries the Via of the root it hangs from, so the
// Source verifies the commit for that remote and ref and fetches the
// objects below it from that remote.
type Via struct {
	Remote, Ref string
}

// File is the verified content of one regular file.
//
// Fd must be the descriptor of a regular file whose bytes are exactly the
// content (no header, no compression): the kernel reads it directly when
// FUSE passthrough is active, and ReadAt is used otherwise. Size is the
// content length. ReadAt is called concurrently. Close is called once, when
// the kernel releases the file handle.
type File interface {
	io.ReaderAt
	Fd() uintptr
	Size() int64
	Close() error
}

// StreamingFile is an optional interface of a File that is served before
// it is whole (a large file whose chunks have authenticated digests):
// ReadAtContext waits, under ctx (the request's deadline and interrupt),
// for the chunks a read covers and returns only bytes that were verified
// against their digests. Such a file is never passed through (its Fd is
// not the whole content), and while one is open on an inode no open of
// that inode asks for passthrough (the kernel does not mix the two modes
// on one inode). Read goes to ReadAtContext, never to ReadAt.
type StreamingFile interface {
	File
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// Refutable is an optional interface of a StreamingFile: Refuted is
// closed if the whole object, once every chunk is in, fails its checksum
// (the chunk digests it was served on were wrong). fusefs then drops the
// inode's cached pages (NotifyContent), so readers that keep the file
// open or mapped fault the pages in again from the daemon, which no
// longer serves them.
type Refutable interface {
	Refuted() <-chan struct{}
}

// HeaderPeeker is an optional interface of a Source: PeekFileHeader
// returns a verified header only if the Source has it at hand (in memory
// or in a local index), without any network I/O. fusefs uses it to fill in
// READDIRPLUS answers; without it, listing a directory never costs a fetch
// per file, and the attributes of its files are looked up one by one when
// someone asks for them.
type HeaderPeeker interface {
	PeekFileHeader(via Via, c ostree.Checksum) (*ostree.FileHeader, bool)
}

// DirHinter is an optional interface of a Source: HintDir says that a
// reader listed (listed true) the directory whose verified dirtree t has
// checksum c, or is looking up one of its files and will likely want
// others, so the Source may fetch its entries ahead. dir is the
// directory's path inside commit ("" for its root). It must not block.
type DirHinter interface {
	HintDir(via Via, commit ostree.Checksum, dir string, c ostree.Checksum, t *ostree.DirTree, listed bool)
}

// LookupHinter is an optional interface of a DirHinter: HintLookup says
// that a reader looked up the file at path (relative to the commit's
// root) for the first time: what the file's name says comes next (a
// Python module's imports) may be fetched ahead. It must not block.
type LookupHinter interface {
	HintLookup(via Via, commit ostree.Checksum, path string)
}

// ScanHinter is an optional interface of a DirHinter: HintScan says that
// a reader is looking up the files of the directory one after another in
// listing order (ls -l, du, a file manager), so the rest will follow.
type ScanHinter interface {
	HintScan(via Via, commit ostree.Checksum, dir string, c ostree.Checksum, t *ostree.DirTree)
}
