// Package objcache is lazytree's content-addressed object store: verified
// objects on disk under a quota, least-recently-used eviction that skips
// pinned and open objects, fsck, and start-up repair after a crash.
//
// It owns the files under $LAZYTREE_HOME/objects and tmp, and drives the
// index (package index, in $LAZYTREE_HOME/index) for everything it
// records. It never speaks HTTP and never parses OSTree formats: the
// caller hands in the content-stream header bytes of a content object
// (and the fields it parsed from them), and the store only hashes.
//
// # Layout
//
//	objects/xx/<62 hex>.file   uncompressed content of a verified content
//	                           object; its header is in the index
//	partial/<64 hex>.part      verified chunks of a large content object
//	                           being filled in, at their offsets (sparse);
//	                           see partial.go
//	tmp/                       writes in progress; emptied by Open
//	index/                     Badger (package index)
//
// Metadata objects (dirtree, dirmeta, commit, commitmeta, tombstones)
// live in the index, next to their record, not in files: they are small,
// they are read whole and parsed (never passed to the kernel as an fd),
// and one Badger transaction makes them present atomically without an
// fsync or a directory entry per object. A dirtree of a large directory
// can reach a few hundred kilobytes; Badger moves values over 4 KiB to
// its value log, which its GC compacts.
//
// # Writing
//
// PutContent writes to a temp file in tmp/ while hashing
// SHA-256(header || content) and compares with the checksum (a mismatch
// is a *CorruptError). The size the header declares is reserved against
// the quota before anything is read, a size over the quota is refused
// (ErrTooLarge), and no more than that size is ever written to tmp/, so a
// hostile body costs at most its declared size before it fails. Only then is the file renamed into objects/ —
// where, without a record, nothing serves it and start-up or fsck deletes
// it — and made durable, its bytes and its directory entry in one flush,
// and only then recorded. So an index record never names a file that a
// power cut could take away. Durability is a group commit: a syncer
// goroutine runs one syncfs(2) for every write that asked before the call
// started, so concurrent writers share the flush; fsync per file costs
// about a millisecond here and would make 10,000 small objects take ten
// seconds. (Where syncfs is missing, fsync of the file and its directory.)
//
// # Reading
//
// Open returns a reference-counted Handle whose fd can be given to the
// kernel for FUSE passthrough. Every open checks the file's size against
// the record, and a file is rehashed unless it was verified in this
// session (hashed on the way in, by an earlier open, or by fsck) and is
// still that file: each verification notes the file's device, inode,
// size, ctime and mtime, and each open compares them with an fstat of
// the fd it serves (the shared fd too, when other handles have the
// object open). Writing in place changes mtime and ctime, replacing
// changes the inode, and only the kernel sets ctime, so a changed file
// costs a rehash and an unchanged one an fstat. (With coarse
// timestamps, a same-size write in the same clock tick as the
// verification could go unseen; Linux's multigrain timestamps give a
// change that follows a stat a fine-grained ctime, and the verification
// is such a stat. TestChangedFileRehashed relies on that on ext4.) A damaged object is
// dropped and returned as a *CorruptError, never served. Metadata reads rehash content-addressed types once per session.
//
// A warm mount opens the same small files again and again (every process
// start reads its libraries and modules), so the file of an object whose
// last handle closes stays open, idle, for the next Open: up to
// Options.IdleFiles of them (8192 by default, at most a quarter of
// RLIMIT_NOFILE), least recently used closed first. Reopening one costs
// the fstat above instead of an index read, open(2) and close(2). An idle
// file is not "open": eviction, Remove and drop close it first, and
// Close closes them all. Like a descriptor shared with an open handle, it
// keeps serving the inode that was verified if someone replaces the file
// at its path; the path is opened again (and rehashed) once the idle file
// is closed. An open of an object verified in this session that is not
// idle skips the index too: the verification implies a present record,
// and the fstat shows it is still that file.
//
// # Quota and eviction
//
// The quota (Options.MaxBytes, default 10 GiB) counts the size of every
// present object: content file sizes plus metadata bytes, not Badger's
// own overhead or directory blocks. A write reserves its size before it
// writes anything (a content object: the size its header declares); when that would pass the quota, the writer evicts least
// recently used objects down to the low-water mark, 90 % of the quota by
// default (Options.LowWater). CVMFS cleans to half; with an LRU index in
// Badger an eviction pass costs little, so we keep more of the cache and
// evict about every tenth of a quota written. Reservation and eviction
// are serialized, so the cache never exceeds the quota while anything is
// evictable; pinned and open objects are never evicted and can hold it
// above the quota (a pin of more than the quota is honored).
//
// An open object is skipped, not unlinked under its handle: "eviction
// never removes an object that is open". Its handles therefore always
// read the verified bytes; it becomes evictable when the last handle
// closes.
//
// Access times are batched in the index (index.DB.Touch); an eviction
// pass flushes them first.
//
// # Crash safety
//
// Files enter objects/ only by rename of a complete, verified temp file,
// and are recorded only once durable; evictions and drops delete the
// record before the file. So a kill at any instant leaves at worst a temp file
// and files without records, never a record without its file. Open
// empties tmp/ and, when the index was not closed cleanly, reconciles
// each objects/xx directory with its records (dropping records without a
// file, which a power cut or a hand in objects/ can cause, and deleting
// files without a record). "Cleanly" takes both the index's flag and the
// store's own ("objcache.state" in the index's meta), so that an Open
// that fails part-way through reconciling is redone. Fsck rehashes
// everything and checks the index's invariants.
//
// # Goroutines
//
// Open starts the syncer (unless Options.NoSync) and the index's
// background goroutine; Close waits for operations in progress and stops
// both. Fsck hashes on up to GOMAXPROCS goroutines that end before it
// returns.
package objcache
