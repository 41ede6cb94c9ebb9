// Package sample lays out trees of real programs from the host (its
// Python interpreter with its standard library and shared libraries, and
// more host files up to a size) as Flatpak-style runtimes: what the
// benchmarks, `lazytree bench` and `lazytree demo` publish and start.
// Real programs, because a start's pattern of opens, library loads and
// reads is what decides how a lazy mount performs; generated files would
// not show it.
//
// It only reads the host and writes under the directory it is given, and
// it never imports "testing" (the shipped binary uses it).
package sample
