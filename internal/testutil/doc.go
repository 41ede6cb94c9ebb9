// Package testutil holds the test helpers that many packages' tests share:
// running the real ostree, flatpak and gpg tools, finding the test vectors,
// rebuilding the test-vector content tree, serving a directory over HTTP,
// comparing directory trees, generating large trees for benchmarks, and
// laying out a runtime from the host's real Python (BuildPythonRuntime),
// optionally grown with more of the host's libraries, programs and data
// (BuildHostRuntime), Flatpak's seccomp filter built with libseccomp as
// the reference for sandbox's (FlatpakSeccompBPF), and the material of the
// sandbox's escape suite: a Flatpak runtime and app made of the host's real
// programs (BuildSandboxRuntime, BuildSandboxApp), bwrap's arguments for
// the reference sandbox of them (BwrapFlatpakArgs), the escape probe that
// runs inside (BuildEscapeProbe, DecodeEscapeProbe, EscapeProbeDiff), and
// the same app and runtime published by the real flatpak
// (FlatpakBuildExport).
//
// It is imported only by _test.go files and benchmarks, never by production
// code. Helpers that take a testing.TB fail or skip the test themselves;
// the others (GenTree, TreeDiff) return errors so that benchmarks and tools
// can use them too.
//
// Missing tools: RequireTool skips the test on a developer machine but fails
// it when LAZYTREE_CI=1, because CI installs every tool and must not turn a
// broken setup into a green run of skipped tests.
//
// Goroutines: ServeDir starts an httptest server whose goroutines stop at the
// test's cleanup; GenTree writes files from a few worker goroutines that end
// before it returns. Nothing else starts goroutines.
package testutil
