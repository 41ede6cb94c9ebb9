package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// BuildLazytree builds the lazytree command into a temporary directory and
// returns its path, for benchmarks and tests that run it as a child
// process (to measure it alone, or to run it as a daemon).
func BuildLazytree(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lazytree")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = ModuleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// EnvInt returns the positive integer in environment variable name, or
// def (benchmark sizes such as LAZYTREE_BENCH_FILES).
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
