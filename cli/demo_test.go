package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/testutil"
)

// TestDemo runs `lazytree demo` (the built binary, as a user would: a
// race-enabled test binary would measure the race detector) and checks
// that it prints its figures, finishes in bounded time and leaves nothing
// mounted or on disk.
func TestDemo(t *testing.T) {
	requireFuse(t)
	bin := testutil.BuildLazytree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "demo")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("demo took %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	for _, want := range []string{"cold start: first output after", "warm start: first output after", "hello from org.lazytree.DemoApp: bash",
		"ostree: \"hello from org.lazytree.DemoApp", "ostree pull + checkout + start:"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`mounted lazily at (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatal("demo did not say where it mounted")
	}
	if fusefs.Mounted(m[1]) {
		t.Fatalf("%s is still mounted", m[1])
	}
	if _, err := os.Stat(filepath.Dir(m[1])); !os.IsNotExist(err) {
		t.Fatalf("demo left %s behind", filepath.Dir(m[1]))
	}
	// The cold start fetched a small share of the ref.
	share := regexp.MustCompile(`cold start: .*\(([0-9.]+)%\)`).FindStringSubmatch(out.String())
	if share == nil {
		t.Fatal("no fetched share in the output")
	}
	if pct, err := strconv.ParseFloat(share[1], 64); err != nil || pct > 50 {
		t.Fatalf("the cold start fetched %s%% of the repo", share[1])
	}
	ratio := regexp.MustCompile(`lazytree run cold was ([0-9.]+)x faster`).FindStringSubmatch(out.String())
	if ratio == nil {
		t.Fatal("no comparison ratio in the output")
	}
	if r, err := strconv.ParseFloat(ratio[1], 64); err != nil || r <= 1 {
		t.Fatalf("lazytree run cold was %sx the ostree path", ratio[1])
	}
	// Under a minute on a quiet machine (about 30 s here); make test runs
	// other packages' tests beside it, so the bound here is looser.
	if time.Since(start) > 2*time.Minute {
		t.Errorf("the demo took %s", time.Since(start))
	}
}
