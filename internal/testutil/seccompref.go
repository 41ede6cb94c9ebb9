package testutil

import (
	_ "embed"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// seccompRefScript builds Flatpak's filter with libseccomp; see its
// docstring for the rules and the exit status that means the module is
// missing.
//
//go:embed seccompref.py
var seccompRefScript []byte

// seccompRefMissing is seccompref.py's exit status when it cannot import
// the seccomp module.
const seccompRefMissing = 3

// debianPython is the system interpreter, which Debian's python3-*
// modules are installed for; a python3 earlier on $PATH (pyenv, a venv)
// would not see them.
const debianPython = "/usr/bin/python3"

// FlatpakSeccompBPF returns the seccomp filter that Flatpak gives a
// native, non-multiarch app without the CAN and Bluetooth permissions
// (with devel: as `flatpak run --devel` does), built by an implementation
// independent of ours: Flatpak's rule list, written as Flatpak writes it,
// compiled by libseccomp through its Python binding. The bytes are the
// raw sock_filter array, in the machine's byte order, that
// `bwrap --seccomp FD` reads from FD. The test is skipped (failed under
// CI) when python3 or its seccomp module (Debian: python3-seccomp) is
// missing.
func FlatpakSeccompBPF(t testing.TB, devel bool) []byte {
	t.Helper()
	python := debianPython
	if _, err := os.Stat(python); err != nil {
		python = RequireTool(t, "python3")
	}
	return flatpakSeccompBPF(t, []string{python}, devel)
}

// flatpakSeccompBPF is FlatpakSeccompBPF with the interpreter's command
// line.
func flatpakSeccompBPF(t testing.TB, python []string, devel bool) []byte {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "seccompref.py")
	if err := os.WriteFile(script, seccompRefScript, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "flatpak.bpf")
	args := append(python[1:len(python):len(python)], script)
	if devel {
		args = append(args, "--devel")
	}
	args = append(args, out)
	output, err := RunErr(t, "", nil, python[0], args...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == seccompRefMissing {
		SkipOrFail(t, "%s: %s; on Debian: apt-get install python3-seccomp", python[0], strings.TrimSpace(output))
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, indent(output))
	}
	prog, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) == 0 || len(prog)%8 != 0 {
		t.Fatalf("%s wrote %d bytes, want a whole number of 8-byte sock_filter structs", script, len(prog))
	}
	return prog
}
