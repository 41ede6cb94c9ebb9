// Package reposource is a fusefs.Source over local OSTree archive
// repositories, for testing the mount before (and independently of) the
// HTTP-backed source in package fetch.
//
// Each remote is one archive repository directory; refs are read from
// refs/heads on every call (so a test moves a ref by writing the file),
// metadata objects are read, checked against their checksum and decoded,
// and content objects (.filez) are inflated into a cache directory,
// verified, and only then renamed into place and handed out. Failures are
// never cached: a corrupt object fails every time until it is repaired,
// and then succeeds. Every object read from a repository is logged, so
// tests can check which objects a mount touched.
//
// Objects are looked up in every repository (they are content-addressed).
// Commit signatures are not checked: the repositories are local and
// trusted.
//
// All methods are safe for concurrent use. Inflating a content object is
// shared by concurrent callers (singleflight) and runs to completion even
// if the caller that started it gives up. No goroutine outlives a call.
package reposource
