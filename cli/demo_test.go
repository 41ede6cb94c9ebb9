package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fusefs"
)

// TestDemo runs `lazytree demo` and checks that it prints its figures and
// leaves nothing mounted or on disk.
func TestDemo(t *testing.T) {
	requireFuse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	if err := runDemo(ctx, &demoOptions{Latency: 25 * time.Millisecond, Prefetch: "none"}, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("demo took %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	for _, want := range []string{"cold start: first output after", "warm start: first output after", "hello from bash"} {
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
	if share[1] == "100.0" {
		t.Fatal("the cold start fetched the whole ref")
	}
}
