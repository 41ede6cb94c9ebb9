package sandbox

import (
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// auditArch is the only architecture the filter lets through: an i386
// call (int 0x80) on x86_64 is of AUDIT_ARCH_I386.
const auditArch = unix.AUDIT_ARCH_X86_64

// x32Bit marks the x32 ABI's system call numbers, which share
// AUDIT_ARCH_X86_64 with the 64-bit ones.
const x32Bit = 0x40000000

// archPrologue runs with the system call number in the accumulator: it
// kills an x32 call. It lets -1 through, as libseccomp does: that is no
// call (the kernel answers ENOSYS), and a tracer sets it to skip one.
var archPrologue = []bpf.Instruction{
	bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: x32Bit, SkipFalse: 2},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0xffffffff, SkipTrue: 1},
	bpf.RetConstant{Val: retKill},
}

// archRules are the x86 calls Flatpak refuses that arm64 lacks: uselib
// (an old way to load a library) and modify_ldt (a history of
// information leaks; Flatpak allows it only for multiarch apps, which we
// do not run).
var archRules = []rule{
	deny("uselib", unix.SYS_USELIB, unix.EPERM),
	deny("modify_ldt", unix.SYS_MODIFY_LDT, unix.EPERM),
}
