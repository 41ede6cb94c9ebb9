// Package fetchtest serves a directory (an OSTree archive repo, usually)
// over HTTP on 127.0.0.1 through an emulated network that misbehaves on
// request: the in-process server that fetch's tests, `lazytree bench` and
// `lazytree demo` pull from.
//
// It owns:
//   - serving: GET and HEAD of regular files under the directory only
//     (confined with os.Root: no listings, no "..", no symlink escapes),
//     single byte ranges, keep-alive HTTP/1.1, and HTTP/2 over cleartext
//     with prior knowledge when Options.HTTP2 is set;
//   - the network: per-request latency and seeded jitter, a handshake
//     delay per connection, and bandwidth limits for the whole link and
//     per connection;
//   - faults, each chosen by a Rule (probability, path pattern,
//     predicate) and a seed so that runs reproduce: 5xx statuses,
//     connection resets, truncated bodies, stalled bodies, flipped
//     bytes, 404s, the first N requests of each path failing, and an
//     Override hook that replaces any file's content (an old summary,
//     for a replay test);
//   - the request log and totals that tests assert on.
//
// It never imports "testing" (bench and demo use it in the shipped
// binary), never listens beyond 127.0.0.1, and never writes to the
// directory.
//
// Goroutines: New starts the http.Server's accept loop, which starts one
// goroutine per connection (plus net/http's own per-connection helpers);
// handlers run on those. Close closes the listener and every connection,
// wakes every stalled, throttled or delayed response and returns once all
// handlers have returned. Options can be changed at any time with
// SetOptions or Update; requests that start afterwards see the new ones.
package fetchtest
