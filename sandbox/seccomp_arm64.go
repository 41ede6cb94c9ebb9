package sandbox

import (
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// auditArch is the only architecture the filter lets through: an AArch32
// call on arm64 is of AUDIT_ARCH_ARM.
const auditArch = unix.AUDIT_ARCH_AARCH64

// archPrologue is empty: arm64 has one system call table.
var archPrologue []bpf.Instruction

// archRules is empty: arm64 has neither uselib nor modify_ldt.
var archRules []rule
