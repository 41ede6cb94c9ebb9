// Package cli is the lazytree command line: the cobra commands, the one
// place where the stack is wired (objcache under fetch, fetch under the
// mount's source, fusefs over it), the daemon with its control socket,
// and everything a person or a script sees: tables, --json, progress
// lines, exit codes (0 success, 1 failure, 2 usage) and escaped strings.
//
// It must never hold logic that belongs below it: a command parses its
// flags, calls one function of a lower package (or, for the verbs that
// change the cache while a daemon runs, sends it over the control socket
// to the daemon, which owns the cache), and prints the result. Every
// string that came from a remote goes through Escape before it reaches a
// terminal. Usage errors are typed (usageError); the exit code follows
// from the error's type.
//
// Goroutines: Main's signal handler (ctx is cancelled on SIGINT and
// SIGTERM); in the daemon (mount --foreground), the control server's
// accept loop and one goroutine per connection, the mount's source and
// the FUSE server, all stopped when the daemon's context ends or an
// unmount request arrives.
package cli
