package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CIEnv is the environment variable that marks a CI run. When it is "1",
// helpers that would skip a test for a missing tool or privilege fail it
// instead.
const CIEnv = "LAZYTREE_CI"

// DefaultTimeout bounds every command started by Run, RunErr and Output.
const DefaultTimeout = 2 * time.Minute

// InCI reports whether the tests run under CI (LAZYTREE_CI=1).
func InCI() bool { return os.Getenv(CIEnv) == "1" }

// SkipOrFail skips the test with the formatted reason, or fails it when
// InCI, where every prerequisite is installed and a skip would hide a
// broken setup.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format+" (%s=1: CI must not skip)", append(args, CIEnv)...)
	}
	t.Skipf(format, args...)
}

// RequireTool returns the absolute path of the named executable, from
// $PATH or else from the sbin directories. When it is in neither the test
// is skipped, or failed under CI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		SkipOrFail(t, "%s not installed (%v); on Debian: apt-get install %s", name, err, debPackage(name))
	}
	return p
}

// sbinDirs are searched after $PATH: daemons and admin tools (nginx,
// useradd) live there, and a root shell from su or sudo may not have them
// on $PATH.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, d := range sbinDirs {
		if p, serr := exec.LookPath(filepath.Join(d, name)); serr == nil {
			return p, nil
		}
	}
	return "", err
}

// debPackage names the Debian package that ships a tool, for skip messages.
func debPackage(tool string) string {
	switch tool {
	case "gpg", "gpgconf", "gpg-agent":
		return "gnupg"
	case "fusermount3":
		return "fuse3"
	case "setfattr", "getfattr":
		return "attr"
	case "xz":
		return "xz-utils"
	case "bwrap":
		return "bubblewrap"
	}
	return tool
}

// RequireRoot skips the test unless it runs as root (failed under CI, which
// runs as root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (uid %d)", os.Geteuid())
	}
}

// Run runs name with args in dir (the current directory when empty) and
// returns its combined stdout and stderr. env entries are added to the
// test process's environment (later entries win). The command is killed
// after DefaultTimeout or when the test ends. Any failure fails the test
// with the command line and its output.
func Run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(t, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, indent(out))
	}
	return out
}

// RunErr is Run without failing the test: it returns the combined output
// and an error that names the command and its exit status.
func RunErr(t testing.TB, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	err := run(t, dir, env, &buf, &buf, name, args)
	return buf.String(), err
}

// Output is Run that returns stdout only, for commands such as
// `ostree commit` whose result is on stdout while warnings go to stderr.
// On failure both streams are in the test log.
func Output(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(t, dir, env, &stdout, &stderr, name, args); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, indent(stdout.String()), indent(stderr.String()))
	}
	return stdout.String()
}

func run(t testing.TB, dir string, env []string, stdout, stderr *bytes.Buffer, name string, args []string) error {
	t.Helper()
	// t.Context is cancelled before cleanup functions run; commands run
	// from a cleanup (gpgconf --kill) still get their own timeout.
	parent := t.Context()
	if parent.Err() != nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, DefaultTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// Kill the whole process group so that helpers the command spawned do
	// not keep the output pipes open; WaitDelay bounds the wait if a
	// daemonized grandchild (gpg-agent) still holds them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	if err == nil {
		return nil
	}
	line := commandLine(name, args)
	if dir != "" {
		line += " (in " + dir + ")"
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("run %s: timed out after %v: %w", line, time.Since(start).Round(time.Millisecond), err)
	}
	return fmt.Errorf("run %s: %w", line, err)
}

// commandLine quotes args that need it, so a failure can be pasted into a
// shell.
func commandLine(name string, args []string) string {
	parts := make([]string, 0, len(args)+1)
	for _, a := range append([]string{name}, args...) {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>(){}*?#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
