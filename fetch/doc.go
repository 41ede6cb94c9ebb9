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
// once, in transient), mirrors tried before the origin with failover and
// fail-back (client), redirects that change the scheme refused.
//
// Mirrors (a neighbour's `serve --cache`, an HTTP cache) come first, in
// the order given, then the origin; a mirror's 404 sends the request on
// to the next URL, the origin's is final. A remote that verifies nothing
// takes its summary, summary signatures, summary.idx, sub-summaries and
// refs/ from its origin only, since from a mirror they could name any
// commit; its objects and deltas, checked by checksum, may come from
// mirrors (mirrorable). A signed remote takes everything from mirrors:
// signatures, bindings and the replay and downgrade checks judge it.
//
// Verification order: the summary signature before the summary is
// parsed; .commit, hashed as it streams, then .commitmeta and
// the signatures it holds over the commit, then the commit's structure
// and bindings, before anything is stored (both checks run inside the
// client, so that a mirror's damaged copy sends it to the next URL);
// every dirtree and dirmeta is hashed against the checksum its parent
// named; every content object is inflated, bounded by its declared size,
// and hashed (header and content) while objcache writes it to a temporary
// file, which becomes visible only when the hash matches.
//
// Trust follows the path, not the cache: a commit is checked for the
// remote and ref it is asked for (Commit; the mount passes the ref
// directory the reader came through) every time, whether its bytes come
// from the network, a static delta, another remote or the cache; only
// the result of a signature check is remembered, per remote state and
// commit. A commit asked for by checksum alone must verify for some
// configured remote. Delta parts may only produce dirtrees, dirmetas and
// content; what a delta adds that the verified commit does not reach is
// removed after it is applied.
//
// Bounds: every response has a cap by type (MaxDirTreeSize and friends in
// bounded.go; a content object by its ostree.sizes entry in a verified
// commit, else MaxContentSize), metadata is hashed while it streams into
// pooled chunks, and the heap held by metadata bodies is bounded as a
// whole (1 MiB per request, plus two large-body tokens). Delta parts are
// streamed through the decoder into a scratch file in the cache's tmp/
// (ostree/delta.OpenPartStream). objcache reserves a content object's
// declared size before it writes a byte.
//
// Summaries: the signature is checked before the summary is parsed; one
// past its ostree.summary.expires, older than the last one seen, or
// different from it with the same time is refused. The last verified
// summary stands in only while the remote cannot be reached at all
// (networkFailure), for at most Options.MaxOfflineAge, and the remote is
// then reported offline (RemoteStatus).
//
// One fetch per object runs at a time (singleflight); it runs on a
// context detached from its first caller, bounded by Options.FetchTimeout,
// so that a caller giving up (a FUSE INTERRUPT) does not fail the others.
// A background or speculative fetch ends with the work that started it
// (the mount closing) unless an on-demand reader waits for it. Pull starts
// worker goroutines for its duration only.
//
// The critical path (DESIGN.md, "Fetch strategies"):
//   - One scheduler per Fetcher (sched.go) orders every request by
//     Priority: on-demand first; speculative guesses with their own
//     concurrency, never paused; background (prefetch) with its own
//     concurrency, starting nothing and pausing the bodies it reads while
//     any urgent request is in flight. A shared fetch runs at the class of
//     its most urgent waiting caller, so a reader who asks for an object
//     a prefetch is fetching lifts that fetch at once.
//   - Prefetch (prefetch.go): metadata, profile, delta (metadata until
//     delta streaming exists), full/all, from --prefetch or a remote's
//     prefetch= key, one job per commit in status.json.
//   - Speculation in every mode (speculate.go): a listed or looked-up cold
//     directory's entries, an opened ELF file's DT_NEEDED libraries.
//   - The tree index (tindex.go): one request, authenticated by the
//     remote's verified summary, that answers every dirtree, dirmeta and
//     header of a commit for that remote's readers.
package fetch
