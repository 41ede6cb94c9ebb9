package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocs: `lazytree docs` writes a man page for every command and
// completion scripts that bash parses.
func TestDocs(t *testing.T) {
	dir := t.TempDir()
	man, comp := filepath.Join(dir, "man"), filepath.Join(dir, "comp")
	lt(t, "docs", "--man", man, "--completions", comp)
	root, _ := newRootCommand()
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		page := filepath.Join(man, "lazytree-"+c.Name()+".1")
		b, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("no man page for %s: %v", c.Name(), err)
			continue
		}
		if s := string(b); !strings.Contains(s, `.TH "LAZYTREE"`) || !strings.Contains(s, ".SH NAME") || !strings.Contains(s, "lazytree-"+c.Name()) {
			t.Errorf("%s does not look like a man page:\n%.300s", page, s)
		}
	}
	if _, err := os.Stat(filepath.Join(man, "lazytree.1")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"lazytree.bash", "_lazytree", "lazytree.fish"} {
		if fi, err := os.Stat(filepath.Join(comp, f)); err != nil || fi.Size() == 0 {
			t.Fatalf("completion %s: %v", f, err)
		}
	}
	if out, err := exec.Command("bash", "-n", filepath.Join(comp, "lazytree.bash")).CombinedOutput(); err != nil {
		t.Fatalf("bash -n lazytree.bash: %v %s", err, out)
	}
	if _, _, code := ltCode(t, "docs"); code != 2 {
		t.Fatalf("docs without a directory exited %d, want 2", code)
	}
}
