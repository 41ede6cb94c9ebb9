// Package serve publishes OSTree archive repositories over HTTP: a
// repository directory (`lazytree serve DIR`) or the object cache with its
// upstream remote behind it (`lazytree serve --cache`, fetch.CacheBackend).
//
// It owns the HTTP side only: which paths an archive repository has (Name),
// how long each may be cached (objects, deltas, sub-summaries and tree
// indexes are immutable; summary, signatures, refs and config are
// short-lived), strong ETags, If-None-Match and single Range requests
// (net/http's ServeContent), GET and HEAD only, an access log, and a
// server that speaks HTTP/1.1 and cleartext HTTP/2 with prior knowledge.
// A Backend says what a name holds; Dir is the one for a directory,
// confined with os.Root so that no "..", absolute path or symlink leads
// out of it.
//
// It never verifies or rewrites repository content (a Backend serves what
// it has verified) and never writes to a repository.
//
// Goroutines: none of its own; http.Server starts one per connection.
package serve
