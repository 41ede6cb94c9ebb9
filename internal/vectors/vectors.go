// Package vectors finds the OSTree test vectors (testdata/vectors, or the
// shared original) for every test of the module, the one way. It imports
// nothing of the module, so that the format packages' own tests can use
// it (internal/testutil imports them).
package vectors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Env overrides where Dir looks for the test vectors.
const Env = "LAZYTREE_VECTORS"

var moduleRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && st.Mode().IsRegular() {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find module root: no go.mod above %s", dir)
		}
	}
})

// ModuleRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (go test runs each package's
// tests in that package's directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Dir returns the absolute path of the OSTree test vectors (the
// tree described by their README.md). It looks, in order, at
// $LAZYTREE_VECTORS, <module root>/testdata/vectors (the copy committed
// with the module, which a fresh clone has), and
// <parent of module root>/shared/testvectors (the original). It fails the
// test when none holds a commits.txt.
func Dir(t testing.TB) string {
	t.Helper()
	var candidates []string
	if env := os.Getenv(Env); env != "" {
		candidates = append(candidates, env)
	}
	root := ModuleRoot(t)
	candidates = append(candidates,
		filepath.Join(root, "testdata", "vectors"),
		filepath.Join(filepath.Dir(root), "shared", "testvectors"))
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "commits.txt")); err == nil {
			abs, err := filepath.Abs(c)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	t.Fatalf("test vectors not found; looked in %s", strings.Join(candidates, ", "))
	return ""
}
