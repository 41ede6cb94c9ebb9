// Package index is lazytree's Badger database: what the cache knows about
// objects, file headers, refs, summaries, pins and access profiles.
//
// It owns the records; it never stores file content (objcache keeps that
// in files and calls AddObject once a file is durable) and never speaks
// HTTP or parses OSTree formats. AddObject, Drop, Evict and LRU change
// or read what objcache accounts for and are meant for it alone; other
// packages store and remove objects through objcache and use the rest
// (headers, refs, summaries, profiles, pins) directly. Checksums are raw 32-byte Sums and types
// are OSTree's numbers, so the ostree package's values convert directly.
//
// # Goroutines
//
// Open starts one goroutine that flushes batched access times (every
// Options.FlushInterval) and runs Badger's value-log GC (every
// Options.GCInterval). Close stops it, flushes, marks the index clean and
// closes Badger. Badger runs its own goroutines between Open and Close.
//
// # Crash safety
//
// Every change that must stay consistent is one Badger transaction:
// an object record with its LRU key and header or bytes; an eviction; a
// chunk of pin memberships with the pin counts they change. Pins are
// added and removed in chunks through a pending state that Open rolls
// back (pins.go). Open also tells the caller whether the last session
// closed cleanly (WasClean), so that it can reconcile its files after a
// crash. Check verifies every invariant below. Before Badger opens, Open
// removes empty .vlog and .mem files: a kill between Badger creating one
// and sizing it otherwise makes every later open fail (found by
// objcache's kill test).
//
// # Keys and values
//
// Keys start with one byte naming their kind. Integers in values are
// unsigned LEB128 varints (uv), signed zig-zag varints (sv, times in Unix
// nanoseconds, 0 meaning unset) or fixed big-endian (u64, where keys must
// sort). Byte strings in values are uv length then bytes. Every value
// starts with a version byte, 1; decoders allow trailing bytes so that a
// later version can append fields.
//
//	'o' type:u8 sum:32                 object record
//	    1 state:u8 size:uv pins:uv added:sv access:sv origin:bytes
//	    state 1 present, 2 absent (pinned but not stored)
//	'a' access:u64 type:u8 sum:32      LRU index: present, unpinned objects
//	    size:uv                        only, oldest first; kept in the same
//	                                   transaction as the record
//	'h' sum:32                         header of a content object
//	    1 uid:uv gid:uv mode:uv size:uv symlink:bytes raw:bytes
//	    raw is the content-stream header prefix the checksum covers
//	'd' type:u8 sum:32                 bytes of a present metadata object
//	    (raw object bytes, no version byte)
//	'r' len:u8 remote ref              last verified commit of a ref
//	    1 commit:32 verified:sv timestamp:uv (commit time; absent in old records)
//	's' remote                         last verified summary of a remote
//	    1 verified:sv data:bytes sig:bytes
//	'p' pin:u64                        pin record
//	    1 kind:u8 state:u8 created:sv commit:32 objects:uv remote:bytes ref:bytes
//	    kind 1 ref, 2 commit; state 1 complete, 2 pending
//	'n' 1 len:u8 remote ref            name of a ref pin      -> pin:u64
//	'n' 2 commit:32                    name of a commit pin   -> pin:u64
//	'q' pin:u64 type:u8 sum:32         the pin names the object (empty value)
//	'f' commit:32                      access profile of a commit
//	    1 updated:sv count:uv entries:bytes...
//	'm' name                           small values: "state" ("open" while
//	                                   running, "clean" after Close),
//	                                   "pinseq" (u64, last pin id), and
//	                                   whatever callers keep with SetMeta
//
// Header lookups go through an in-memory cache of recently used headers
// (Options.HeaderCache), since stat is the hottest lookup a mount makes.
// File headers outlive eviction (stat of an evicted file stays free) and
// are not counted against the cache quota; they are small, but nothing
// removes headers of objects that are never cached again.
//
// Access times are batched: Touch updates an in-memory map, and the LRU
// keys move when the map is flushed. An eviction pass flushes first.
package index
