// Package fusefs is lazytree's FUSE layer: it shows every ref of every
// remote, and any commit by checksum, as one read-only tree, over a small
// Source interface (source.go) that fetches, verifies and caches objects.
// It owns the layout, inode numbers and attributes, directory listings,
// xattrs and symlinks, kernel caching, FUSE passthrough, the single
// error-to-errno mapping (toErrno in errno.go) and .lazytree/status.json.
// It never fetches, parses or verifies anything itself, and never imports
// fetch, objcache or index: cli wires a Source in.
//
// # Layout
//
//	MOUNT/<remote>/<ref components...>/   ref name components are directories;
//	                                      the last one is the commit's root tree
//	MOUNT/.commits/<checksum>/            any commit (lookup only; listing shows
//	                                      the 64 most recently used)
//	MOUNT/.lazytree/status.json           regenerated on every open
//	MOUNT/.lazytree/refs.json             {remote: {ref: commit}}, likewise (what
//	                                      lazytree run records in /.flatpak-info)
//
// A ref that is also a directory prefix of a longer ref ("a/b" and "a/b/c",
// impossible in refs/heads but possible in a summary) shows as the ref;
// the longer one is hidden. Invalid ref names are never shown.
//
// # Inodes and attributes
//
// Files and symlinks are numbered by remote and content checksum, so
// identical files under one remote share an inode (they look like hard
// links, and share the page cache); under two remotes they do not (see
// Reads: each remote's node trusts only that remote).
// Directories are numbered from their parent's number and their name, from
// a root number per (remote, ref, commit) or per .commits checksum: the
// same path always has the same number, and two identical dirtrees, or the
// same commit under two refs, never share one (the kernel allows one
// dentry per directory inode). See attr.go.
//
// Directory mode, owner and xattrs come from the dirmeta; file size, mode,
// owner, symlink target and xattrs from the content header. Setuid and
// setgid bits and security.capability are never shown (the mount is also
// nosuid); the sticky bit is. Link counts are 1 (which also stops find(1)
// from counting subdirectories). All times are 0, like an ostree checkout:
// OSTree keeps no per-file times, and a commit timestamp on every file
// would make identical files in two commits look different to tools that
// compare mtimes (make, rsync).
//
// # Kernel caching and ref moves
//
// Everything inside a commit is immutable: entries, attributes and
// negative lookups are cached for Options.TreeTimeout (24 h), files are
// opened with FOPEN_KEEP_CACHE and FOPEN_NOFLUSH (a read-only file has
// nothing to flush, and go-fuse would otherwise answer a FLUSH round trip
// on every close) and directories with FOPEN_CACHE_DIR, whose listing is
// only made when the kernel reads it (a directory it listed before is
// listed from its cache, so a warm `find` costs one OPENDIR and one
// RELEASEDIR per directory and nothing per entry). The
// root, remote and ref directories use Options.RefTimeout (1 s) and never
// cache negative entries, so a moved ref shows within a second anyway;
// Server.Refresh (or Options.RefreshInterval) compares the refs with what
// the kernel was told and invalidates moved, added and removed ones at
// once (NotifyEntry). A moved ref gets a new root inode, so new lookups see
// the new commit while open files and working directories keep the old
// tree, which stays reachable under .commits.
//
// READDIRPLUS never calls the Source (one request covers a whole
// directory; waiting on the Source per name would multiply its deadline):
// it carries attributes for entries fusefs already knows and for files
// whose header the Source can give without I/O (the optional
// HeaderPeeker), and none for the rest, which the kernel then looks up
// when someone asks. Listing a directory therefore never fetches its
// files; `ls -l` of a cold directory looks them up one by one.
//
// # Reads, and when the first byte is served
//
// Open asks the Source for the file's content. Usually the Source returns
// it only after verifying the whole object: nothing is served before the
// SHA-256 over header and content matches the name. OSTree has no
// per-chunk digests, so a prefix of a content object cannot be verified on
// its own; serving it speculatively would let a program read, or the
// kernel map and execute, bytes that may later turn out to be forged, and
// failing the read afterwards does not undo that. DESIGN.md's rule
// ("every byte served has been verified") wins. The cost is latency for
// large files on a cold cache: the first byte of a file waits for its
// whole object, which is bounded by Options.RequestTimeout and is paid
// once (then it is cached); an open that times out leaves the Source's
// shared fetch running, so a retry picks it up.
//
// The exception is a large file whose chunks have authenticated digests
// (lazytree's tree index, named by the signed summary): the Source may
// return a StreamingFile, whose ReadAtContext waits, under the request's
// deadline and interrupt, only for the chunks a read covers, and returns
// only bytes verified against their digests (fetch/partial.go). Such a
// file is read through the daemon (never passed through: its descriptor
// is not the whole content), mmap included, so a mapped page of a chunk
// that failed its digest is a SIGBUS, never forged bytes. Chunk digests
// are only as good as the remote's index, and the whole-object hash
// checks the index when the last chunk arrives, so such pages are not
// kept: a streaming open, any open while one is, and the first open
// after the last one closed go without FOPEN_KEEP_CACHE (the kernel drops
// the inode's cached pages); from then on the object was hashed whole.
// While one is open on an inode, no open of that inode asks for
// passthrough (the kernel does not mix the two modes on one inode); the
// next open after the last one closed passes the then whole object
// through. status.json counts streaming_opens.
//
// For the same reason a file's inode is per remote: the same content
// object under two remotes is two nodes, each fetching through its own
// remote and trusting only that remote's index. Within a remote the node
// is shared by every ref, commit and path where the object appears.

// # Passthrough (what we found)
//
// On this machine (Linux 6.18, root) the kernel offers FUSE passthrough
// (CAP_PASSTHROUGH in INIT) and go-fuse v2.12.1 uses it: on the first open
// of an inode it asks the file handle for a descriptor (PassthroughFd,
// i.e. File.Fd) and registers it with FUSE_DEV_IOC_BACKING_OPEN; later
// opens of the same inode share the backing file until the last release.
// Reads and mmap (so exec) of such files never reach the daemon: the
// tests read 1 MiB with zero READ requests, and run programs from the
// mount both ways. go-fuse clears FOPEN_KEEP_CACHE for passthrough opens;
// the page cache is then the backing file's own. If registration fails
// (not root, a kernel without CONFIG_FUSE_PASSTHROUGH, or a backing file on
// a stacked file system such as overlayfs, deeper than max_stack_depth 1)
// go-fuse silently turns passthrough off for the whole mount and reads go
// through File.ReadAt. status.json reports passthrough_kernel and
// passthrough_files (backing files registered); bytes read through
// passthrough are not in bytes_served. Options.NoPassthrough forces the
// ReadAt path.
//
// Files under Options.PassthroughMin (128 KiB) are not passed through:
// a backing file costs two ioctls in the daemon (register on open,
// unregister on the last release) and a backing file open in the kernel,
// about 25 µs per open here, while a small file's reads are one READ
// when it is not in the page cache and none when it is (FOPEN_KEEP_CACHE
// keeps the mount's own page cache across opens). A warm `tar` of a
// runtime opens thousands of small files, each once; what is left per
// open is the OPEN and RELEASE round trips themselves.
//
// # Failures
//
// The Source calls made for one request run, together, under
// Options.RequestTimeout (30 s), and are cancelled when the kernel sends
// INTERRUPT (go-fuse closes the request context's Done channel; call
// watches it next to the deadline, see requestCtx). toErrno maps: ErrNotFound to ENOENT (except for
// an object a verified tree names, which is EIO), an interrupt to EINTR,
// and everything else, timeouts and ostree.ErrCorrupt included, to EIO.
// Failures other than a plain ENOENT are counted and the last
// Options.MaxErrors kept, with the request, the path under .commits, the
// object and the cause, in status.json. Failures are never cached, so a
// repaired object reads without a remount.
//
// # Goroutines and processes
//
// go-fuse's serve loop runs request goroutines until the mount goes away.
// Each Source call runs in a goroutine of its own so that a request can
// give up on a Source that ignores its context; such a call finishes in
// the background and an open File it returns is closed. With
// Options.RefreshInterval a goroutine calls Refresh until Unmount.
//
// Never fork+exec a program that lives in the mount directly from the
// process that serves it: Go forks with vfork, and the parent thread sits
// in a raw system call until the child's exec completes, which can need a
// stop-the-world that never comes while exec waits for this very server.
// Start a helper that is not on the mount (e.g. /bin/sh -c 'exec "$0"') or
// a separate process. go-fuse also leaves the /dev/fuse descriptor of a
// direct mount inheritable; Mount marks it close-on-exec so that no child
// holds the connection.
package fusefs
