package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
)

// TestReadmeTour runs the README's tour block as written, with the built
// binary first on PATH, and checks that it exits 0 and that the file it
// reads through the mount printed its line.
func TestReadmeTour(t *testing.T) {
	requireFuse(t)
	testutil.RequireTool(t, "ostree") // the tour's bench compares with it
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- tour -->\n```sh\n")
	block, _, ok2 := strings.Cut(rest, "```\n<!-- /tour -->")
	if !ok || !ok2 || strings.TrimSpace(block) == "" {
		t.Fatal("README.md has no tour block between <!-- tour --> and <!-- /tour -->")
	}
	bin := t.TempDir()
	data, err := os.ReadFile(testutil.BuildLazytree(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "lazytree"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// A mount or server the block leaves behind is found under TMPDIR.
	t.Cleanup(func() {
		filepath.Walk(tmp, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() && fusefs.Mounted(p) {
				exec.Command(filepath.Join(bin, "lazytree"), "unmount", p).Run()
				t.Errorf("the tour left %s mounted", p)
				return filepath.SkipDir
			}
			return nil
		})
	})
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", block)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "TMPDIR="+tmp)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tour failed: %v\n%s", err, out)
	}
	arch := flatpakArch()
	for _, want := range []string{
		"runtime/org.example.Tour/" + arch + "/1", // ls-remote
		"permissions:",                 // info
		"hello from org.example.Hello", // run, in the sandbox
		"pinned tour:runtime/org.example.Tour/" + arch + "/1", "daemon", "hit ratio", // pin, status, cache stats
		"peer:ostree", // bench
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("tour output:\n%s", out)
}
