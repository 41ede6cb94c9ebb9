package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Skipf and Fatalf instead of acting
// on them, so the skip-or-fail policy itself can be tested.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// record runs f with a recorder in its own goroutine, as the testing
// package runs a test, so that Goexit ends only f.
func record(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestRequireTool(t *testing.T) {
	if p := RequireTool(t, "sh"); !strings.HasPrefix(p, "/") {
		t.Errorf("RequireTool(sh) = %q, want an absolute path", p)
	}
	t.Run("missing skips outside CI", func(t *testing.T) {
		t.Setenv(CIEnv, "")
		r := record(t, func(tb testing.TB) { RequireTool(tb, "lazytree-no-such-tool") })
		if !r.skipped || r.failed {
			t.Errorf("skipped=%v failed=%v, want a skip", r.skipped, r.failed)
		}
		if !strings.Contains(r.msg, "lazytree-no-such-tool") {
			t.Errorf("skip message %q does not name the tool", r.msg)
		}
	})
	t.Run("sbin outside PATH", func(t *testing.T) {
		var want string
		for _, d := range sbinDirs {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if st, err := os.Stat(filepath.Join(d, e.Name())); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
					want = filepath.Join(d, e.Name())
					break
				}
			}
			if want != "" {
				break
			}
		}
		if want == "" {
			t.Skip("no executable in any sbin directory")
		}
		t.Setenv("PATH", "/nonexistent")
		if got := RequireTool(t, filepath.Base(want)); got != want {
			t.Errorf("RequireTool(%s) with PATH=/nonexistent = %q, want %q", filepath.Base(want), got, want)
		}
	})
	t.Run("missing fails in CI", func(t *testing.T) {
		t.Setenv(CIEnv, "1")
		r := record(t, func(tb testing.TB) { RequireTool(tb, "lazytree-no-such-tool") })
		if r.skipped || !r.failed {
			t.Errorf("skipped=%v failed=%v, want a failure", r.skipped, r.failed)
		}
	})
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := Run(t, dir, []string{"LT_TEST_VAR=hello"}, "sh", "-c", `echo "$LT_TEST_VAR $(pwd)"; echo err >&2`)
	if want := "hello " + dir + "\nerr\n"; out != want {
		t.Errorf("Run output = %q, want %q", out, want)
	}
	if got := Output(t, "", nil, "sh", "-c", "echo out; echo err >&2"); got != "out\n" {
		t.Errorf("Output = %q, want stdout only", got)
	}
}

func TestRunErr(t *testing.T) {
	out, err := RunErr(t, "", nil, "sh", "-c", "echo something broke; exit 3")
	if err == nil {
		t.Fatal("RunErr of a failing command returned no error")
	}
	if out != "something broke\n" {
		t.Errorf("output = %q", out)
	}
	for _, want := range []string{"sh -c", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	r := record(t, func(tb testing.TB) { Run(tb, "", nil, "sh", "-c", "echo visible; exit 1") })
	if !r.failed || !strings.Contains(r.msg, "visible") {
		t.Errorf("Run of a failing command: failed=%v msg=%q, want a failure showing the output", r.failed, r.msg)
	}
}

func TestCommandLineQuoting(t *testing.T) {
	got := commandLine("ostree", []string{"commit", "-s", "Initial commit", "-m", "a'b", ""})
	want := `ostree commit -s 'Initial commit' -m 'a'\''b' ''`
	if got != want {
		t.Errorf("commandLine = %s, want %s", got, want)
	}
}
