// Package fetch gets objects from OSTree archive repositories over HTTP
// into the object cache, and never stores or returns anything it has not
// verified.
//
// It owns remotes (the [remote "NAME"] groups of $LAZYTREE_HOME/config and
// their keys under keys/<remote>/), summary and ref resolution, signature
// checks (GPG and ed25519, on commits and on the summary), ref and
// collection bindings, downgrade and replay refusal (a commit older than
// the last one verified for its ref, a different commit with the same
// timestamp, a commit dated too far ahead, a summary older than the last
// one seen), and the HTTP client: keep-alive, HTTP/2 where a TLS server
// offers it, bounded concurrency (32 requests per remote by default,
// ostree uses 8), per-request deadlines, a stall timer and a minimum
// throughput, retries with backoff for transient failures only (decided
// once, in transient), mirror failover and fail-back, redirects that
// change the scheme refused.
//
// Verification order follows ostree pull: the summary signature before the
// summary is parsed; .commitmeta, then .commit, its SHA-256, its
// signatures, then its structure and bindings, before anything is stored;
// every dirtree and dirmeta is hashed against the checksum its parent
// named; every content object is inflated, bounded by its declared size,
// and hashed (header and content) while objcache writes it to a temporary
// file, which becomes visible only when the hash matches.
//
// One fetch per object runs at a time (singleflight); it runs on a
// context detached from its first caller, bounded by Options.FetchTimeout,
// so that a caller giving up (a FUSE INTERRUPT) does not fail the others.
// Pull starts worker goroutines for its duration only.
package fetch
