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

// OstreeCheckout pulls ref from the archive repository at url with the
// real ostree into a fresh bare repository, trusting the GPG public key in
// keyFile for commits and the summary, and checks it out; it returns the
// checkout. extra goes to `ostree pull` (e.g. --disable-static-deltas).
func OstreeCheckout(t testing.TB, url, ref, keyFile string, extra ...string) string {
	t.Helper()
	ostreeBin := RequireTool(t, "ostree")
	dir := t.TempDir()
	client, co := filepath.Join(dir, "client"), filepath.Join(dir, "co")
	Run(t, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare")
	Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--set=gpg-verify-summary=true", "--gpg-import="+keyFile, "o", url)
	Run(t, "", nil, ostreeBin, append([]string{"pull", "--repo=" + client, "o", ref}, extra...)...)
	Run(t, "", nil, ostreeBin, "checkout", "--repo="+client, "o:"+ref, co)
	return co
}

// BuildRSSWrap builds internal/testutil/rsswrap, which measures a
// child's own peak RSS (see its doc), and returns its path.
func BuildRSSWrap(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rsswrap")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/testutil/rsswrap")
	cmd.Dir = ModuleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build rsswrap: %v\n%s", err, out)
	}
	return bin
}
