package sandbox

import (
	"errors"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func archVMCases() []vmCase {
	return []vmCase{
		{name: "uselib", nr: unix.SYS_USELIB, strict: eperm},
		{name: "modify_ldt", nr: unix.SYS_MODIFY_LDT, strict: eperm},
		{name: "x32 getpid", nr: x32Bit | unix.SYS_GETPID, strict: kill},
		{name: "x32 mount", nr: x32Bit | unix.SYS_MOUNT, strict: kill},
		{name: "x32 0x7fffffff", nr: 0x7fffffff, strict: kill},
		{name: "x32 -2", nr: 0xfffffffe, strict: kill},
		// No call of any ABI; the kernel answers ENOSYS.
		{name: "bit 31 only", nr: 0x80000000 | unix.SYS_GETPID, strict: allow},
	}
}

func archExtraInputs() []vmInput {
	return []vmInput{
		{x32Bit | unix.SYS_GETPID, auditArch}, {x32Bit | unix.SYS_MOUNT, auditArch},
		{x32Bit | unix.SYS_SOCKET, auditArch}, {0xfffffffe, auditArch},
	}
}

func archProbes() []probe {
	return []probe{
		{"uselib", func() string { return sys(unix.SYS_USELIB, str(absent)) }},
		// Reads 0 bytes of the LDT.
		{"modify_ldt(read 0)", func() string { return sys(unix.SYS_MODIFY_LDT, 0, ptr(new([8]byte)), 0) }},
	}
}

func archKernelWant() map[string]kernelExpectation {
	return map[string]kernelExpectation{
		// ENOSYS where the kernel has no uselib any more.
		"uselib":             {differs, "EPERM", ""},
		"modify_ldt(read 0)": {"ok", "EPERM", ""},
	}
}

// TestFilterKillsX32 makes an x32 getpid in a child: the kernel answers
// it (or ENOSYS without the x32 ABI) without the filter, and kills the
// process with SIGSYS under it.
func TestFilterKillsX32(t *testing.T) {
	call := probeCallEnv + "=" + strconv.Itoa(x32Bit|unix.SYS_GETPID)

	out, err := probeChild(t, "none", nil, nil, call).Output()
	if err != nil {
		t.Fatalf("x32 getpid without the filter: %v", err)
	}
	t.Logf("x32 getpid without the filter: %s", out)

	for _, mode := range []string{"strict", "devel"} {
		out, err = probeChild(t, mode, nil, nil, call).Output()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("x32 getpid under the %s filter: %v, output %q; want death by SIGSYS", mode, err, out)
		}
		ws := exit.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
			t.Errorf("x32 getpid under the %s filter: %v; want death by SIGSYS", mode, exit)
		}
	}
}
