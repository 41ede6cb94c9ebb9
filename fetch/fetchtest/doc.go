// Package fetchtest serves a directory (an OSTree archive repo, usually),
// or forwards to an upstream HTTP server, over HTTP on 127.0.0.1 through
// an emulated network that misbehaves on request: the in-process server
// that fetch's tests, `lazytree bench` and `lazytree demo` pull from.
//
// It owns:
//   - serving (New): GET and HEAD of regular files under the directory
//     only (confined with os.Root: no listings, no "..", no symlink
//     escapes), single byte ranges, keep-alive HTTP/1.1, and HTTP/2 over
//     cleartext with prior knowledge when Options.HTTP2 is set;
//   - proxying (NewProxy): GET and HEAD forwarded to an upstream base URL
//     (http or https, path prefix kept, redirects followed) with the
//     Range, If-None-Match and If-Range headers; the upstream's status,
//     body and its Content-Length, Content-Type, Content-Range,
//     Accept-Ranges, ETag, Last-Modified and Cache-Control headers come
//     back. An unreachable upstream is a 502, late response headers
//     (Options.UpstreamTimeout) a 504;
//   - the network, the same in both modes: per-request latency and
//     seeded jitter, a handshake delay per connection, bandwidth limits
//     for the whole link and per connection, and seeded losses that hold
//     a chunk of a body back for a retransmission timeout;
//   - faults, each chosen by a Rule (probability, path pattern,
//     predicate) and a seed so that runs reproduce: 5xx statuses,
//     connection resets, truncated bodies, stalled bodies, flipped
//     bytes, 404s, the first N requests of each path failing, and an
//     Override hook that replaces any file's content (an old summary,
//     for a replay test);
//   - the request log and totals that tests assert on.
//
// Faults in proxy mode: NotFound, FailFirstN, Status5xx and a Reset
// BeforeHeaders answer without asking the upstream; Override answers
// from its content, with ranges, as in directory mode. Reset, Stall,
// Truncate and Corrupt strike within upstream bodies of 200 and 206
// responses that carry a Content-Length, which is what static servers
// and fetchtest send. They do not apply to other statuses (a 404 or 304
// from the upstream passes as it is, as a directory's 404 does) nor to
// bodies of unknown length (chunked), where no cut or offset can be
// drawn from the length: those pass unharmed but for Loss.
//
// It never imports "testing" (bench and demo use it in the shipped
// binary), never listens beyond 127.0.0.1, and never writes to the
// directory.
//
// Goroutines: New and NewProxy start the http.Server's accept loop,
// which starts one goroutine per connection (plus net/http's own
// per-connection helpers); handlers run on those. In proxy mode each
// forwarded request also has a goroutine that cancels it when the Server
// closes, ending with the request, and the upstream http.Transport has
// its own per-connection goroutines. Close closes the listener and every
// connection, wakes every stalled, throttled, delayed or forwarded
// response, returns once all handlers have returned and then closes the
// idle upstream connections. Options can be changed at any time with
// SetOptions or Update; requests that start afterwards see the new ones.
package fetchtest
