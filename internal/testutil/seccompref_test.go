package testutil

import (
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// decodeBPF reads a sock_filter array in the machine's byte order.
func decodeBPF(t *testing.T, b []byte) []bpf.Instruction {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(b)/8)
	for i := range raw {
		w := b[8*i:]
		raw[i] = bpf.RawInstruction{Op: binary.NativeEndian.Uint16(w), Jt: w[2], Jf: w[3], K: binary.NativeEndian.Uint32(w[4:])}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the program has instructions that are not classic BPF:\n%v", insns)
	}
	return insns
}

// comparesWith reports whether insns test the accumulator against k.
func comparesWith(insns []bpf.Instruction, k uint32) bool {
	for _, ins := range insns {
		if j, ok := ins.(bpf.JumpIf); ok && j.Val == k {
			return true
		}
	}
	return false
}

func TestFlatpakSeccompBPF(t *testing.T) {
	strict := decodeBPF(t, FlatpakSeccompBPF(t, false))
	devel := decodeBPF(t, FlatpakSeccompBPF(t, true))
	for name, insns := range map[string][]bpf.Instruction{"strict": strict, "devel": devel} {
		if _, ok := insns[len(insns)-1].(bpf.RetConstant); !ok {
			t.Errorf("%s: last instruction %v, want a return", name, insns[len(insns)-1])
		}
		if l, ok := insns[0].(bpf.LoadAbsolute); !ok || l.Off != 4 {
			t.Errorf("%s: first instruction %v, want the load of seccomp_data.arch", name, insns[0])
		}
		for _, k := range []uint32{unix.SYS_CLONE3, unix.SYS_MOUNT, unix.TIOCSTI, unix.CLONE_NEWUSER} {
			if !comparesWith(insns, k) {
				t.Errorf("%s: no compare with %#x", name, k)
			}
		}
	}
	if !comparesWith(strict, unix.SYS_PTRACE) {
		t.Error("strict filter does not test for ptrace")
	}
	if comparesWith(devel, unix.SYS_PTRACE) {
		t.Error("devel filter tests for ptrace")
	}
}

func TestFlatpakSeccompBPFWithoutModule(t *testing.T) {
	// -S leaves out the site directories, where Debian's
	// python3-seccomp is.
	noSite := []string{debianPython, "-S"}
	RequireTool(t, debianPython)
	t.Run("skips outside CI", func(t *testing.T) {
		t.Setenv(CIEnv, "")
		r := record(t, func(tb testing.TB) { flatpakSeccompBPF(tb, noSite, false) })
		if !r.skipped || r.failed {
			t.Errorf("skipped=%v failed=%v, want a skip", r.skipped, r.failed)
		}
		if !strings.Contains(r.msg, "apt-get install python3-seccomp") {
			t.Errorf("skip message %q does not name the Debian package", r.msg)
		}
	})
	t.Run("fails in CI", func(t *testing.T) {
		t.Setenv(CIEnv, "1")
		r := record(t, func(tb testing.TB) { flatpakSeccompBPF(tb, noSite, false) })
		if r.skipped || !r.failed {
			t.Errorf("skipped=%v failed=%v, want a failure", r.skipped, r.failed)
		}
	})
}
