package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp filter of a sandboxed command. Its policy is Flatpak's
// (setup_seccomp in flatpak-run.c, for a native, non-multiarch run) or
// stricter:
//
//   - a system call of another architecture (x86's int 0x80 on x86_64,
//     AArch32 on arm64) or an x32 one kills the process, where Flatpak's
//     libseccomp filter kills the thread; number -1 (no call) passes, as
//     in libseccomp's;
//   - namespaces, mounts, keyrings, NUMA memory policy, quotas, accounting,
//     the kernel log, uselib and modify_ldt fail with EPERM, and so does
//     clone with CLONE_NEWUSER;
//   - clone3 and the new mount API fail with ENOSYS, so that a C library
//     falls back to clone, whose flags the filter can see;
//   - ioctl TIOCSTI and TIOCLINUX fail with EPERM whatever the upper 32
//     bits of the request (CVE-2019-10063: the kernel ignores them);
//   - socket families other than AF_UNSPEC, unix, inet, inet6 and netlink
//     fail with EAFNOSUPPORT, judged by the low 32 bits, the int the
//     kernel reads (Flatpak's also refuses an allowed family with upper
//     bits set, which the kernel would ignore);
//   - without Devel, ptrace, perf_event_open and any personality but
//     PER_LINUX fail with EPERM (as in Flatpak, that includes the query
//     0xffffffff).
//
// Everything else is allowed: this is a deny list that keeps what a
// desktop app needs, not an allow list.
//
// The program is a prologue that checks the architecture, then one short
// block per system call, then ALLOW. A block starts with a test of the
// system call number that skips the block, and every path through the
// block ends in its own return; so every conditional jump stays inside
// its block (the 8-bit jump offsets of classic BPF never limit the number
// of rules), and the number in the accumulator is still there at the next
// block. The kernel runs the blocks in order: one compare per rule (some
// 35) for an allowed call, as libseccomp's unsorted output does.

// FilterOptions selects the variant of the filter.
type FilterOptions struct {
	// Devel allows ptrace, perf_event_open and personality, as
	// `flatpak run --devel` does, so that debuggers and profilers work.
	Devel bool
}

// Offsets in struct seccomp_data: int nr; __u32 arch; __u64
// instruction_pointer; __u64 args[6]. A load reads a 32-bit word in the
// machine's byte order; both architectures this builds for are little
// endian, so the low half of an argument comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Return values of the filter.
const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
)

// retErrno is the action that fails a system call with e.
func retErrno(e unix.Errno) uint32 {
	return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA
}

// A rule is what the filter does with one system call: the first of its
// checks that holds decides; when none does (or there are none),
// otherwise is the action.
type rule struct {
	name      string
	nr        uint32
	checks    []check
	otherwise uint32
}

// A check tests one 32-bit half of an argument against a constant.
type check struct {
	arg  int  // 0 to 5
	high bool // the upper 32 bits, else the lower
	cond bpf.JumpTest
	val  uint32
	ret  uint32 // the action when the test holds
}

// offset is where the checked half of the argument is in seccomp_data.
func (c check) offset() uint32 {
	off := uint32(offArgs + 8*c.arg)
	if c.high {
		off += 4
	}
	return off
}

// deny fails the system call nr with e, whatever its arguments.
func deny(name string, nr uint32, e unix.Errno) rule {
	return rule{name: name, nr: nr, otherwise: retErrno(e)}
}

// allowedFamilies are the socket families a sandboxed command may create
// sockets of (Flatpak's list without the CAN and Bluetooth permissions).
var allowedFamilies = []uint32{unix.AF_UNSPEC, unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}

// rules is the policy for opts, in program order; archRules (the
// architecture's file) holds the calls that not every architecture has.
// Neither x86_64 nor arm64 has umount(2), only umount2.
func rules(opts FilterOptions) []rule {
	eperm, enosys := unix.EPERM, unix.ENOSYS
	rs := []rule{
		// The kernel log.
		deny("syslog", unix.SYS_SYSLOG, eperm),
		// Turning accounting off, reading quotas.
		deny("acct", unix.SYS_ACCT, eperm),
		deny("quotactl", unix.SYS_QUOTACTL, eperm),
		// The kernel keyring.
		deny("add_key", unix.SYS_ADD_KEY, eperm),
		deny("keyctl", unix.SYS_KEYCTL, eperm),
		deny("request_key", unix.SYS_REQUEST_KEY, eperm),
		// NUMA memory policy and page migration.
		deny("move_pages", unix.SYS_MOVE_PAGES, eperm),
		deny("mbind", unix.SYS_MBIND, eperm),
		deny("get_mempolicy", unix.SYS_GET_MEMPOLICY, eperm),
		deny("set_mempolicy", unix.SYS_SET_MEMPOLICY, eperm),
		deny("migrate_pages", unix.SYS_MIGRATE_PAGES, eperm),
		// Namespaces and mounts inside the sandbox.
		deny("unshare", unix.SYS_UNSHARE, eperm),
		deny("setns", unix.SYS_SETNS, eperm),
		deny("mount", unix.SYS_MOUNT, eperm),
		deny("umount2", unix.SYS_UMOUNT2, eperm),
		deny("pivot_root", unix.SYS_PIVOT_ROOT, eperm),
		deny("chroot", unix.SYS_CHROOT, eperm),
		{name: "clone", nr: unix.SYS_CLONE, otherwise: retAllow, checks: []check{
			{arg: 0, cond: bpf.JumpBitsSet, val: unix.CLONE_NEWUSER, ret: retErrno(eperm)},
		}},
		// Faking terminal input (CVE-2017-5226) and the virtual console's
		// copy and paste (CVE-2023-28100). The request is an unsigned int
		// to the kernel: only the low half counts.
		{name: "ioctl", nr: unix.SYS_IOCTL, otherwise: retAllow, checks: []check{
			{arg: 1, cond: bpf.JumpEqual, val: unix.TIOCSTI, ret: retErrno(eperm)},
			{arg: 1, cond: bpf.JumpEqual, val: unix.TIOCLINUX, ret: retErrno(eperm)},
		}},
		// The filter cannot read clone3's struct clone_args, nor judge
		// the new mount API: ENOSYS sends callers back to clone and mount
		// (CVE-2021-41133).
		deny("clone3", unix.SYS_CLONE3, enosys),
		deny("open_tree", unix.SYS_OPEN_TREE, enosys),
		deny("move_mount", unix.SYS_MOVE_MOUNT, enosys),
		deny("fsopen", unix.SYS_FSOPEN, enosys),
		deny("fsconfig", unix.SYS_FSCONFIG, enosys),
		deny("fsmount", unix.SYS_FSMOUNT, enosys),
		deny("fspick", unix.SYS_FSPICK, enosys),
		deny("mount_setattr", unix.SYS_MOUNT_SETATTR, enosys),
		// Stricter than Flatpak 1.14: io_uring's own operations (e.g.
		// IORING_OP_SOCKET) pass no system call through this filter,
		// so the socket-family rule would not see them. ENOSYS: programs
		// fall back to plain system calls.
		deny("io_uring_setup", unix.SYS_IO_URING_SETUP, enosys),
		deny("io_uring_enter", unix.SYS_IO_URING_ENTER, enosys),
		deny("io_uring_register", unix.SYS_IO_URING_REGISTER, enosys),
		socketRule(),
	}
	rs = append(rs, archRules...)
	if !opts.Devel {
		rs = append(rs,
			// Profilers and debuggers run outside the sandbox; perf has
			// been the source of many CVEs.
			deny("perf_event_open", unix.SYS_PERF_EVENT_OPEN, eperm),
			deny("ptrace", unix.SYS_PTRACE, eperm),
			// No BSD emulation or other personality flags: only
			// PER_LINUX, compared on all 64 bits as Flatpak's
			// libseccomp rule does.
			rule{name: "personality", nr: unix.SYS_PERSONALITY, otherwise: retAllow, checks: []check{
				{arg: 0, cond: bpf.JumpNotEqual, val: 0, ret: retErrno(eperm)},
				{arg: 0, high: true, cond: bpf.JumpNotEqual, val: 0, ret: retErrno(eperm)},
			}},
		)
	}
	return rs
}

// socketRule refuses the families not in allowedFamilies. The family is
// an int to the kernel: only the low half counts.
func socketRule() rule {
	r := rule{name: "socket", nr: unix.SYS_SOCKET, otherwise: retErrno(unix.EAFNOSUPPORT)}
	for _, f := range allowedFamilies {
		r.checks = append(r.checks, check{arg: 0, cond: bpf.JumpEqual, val: f, ret: retAllow})
	}
	return r
}

// maxSkip is the longest forward jump of a conditional BPF instruction.
const maxSkip = 255

// skipOver returns the offset of a conditional jump over n instructions.
func skipOver(n int) (uint8, error) {
	if n < 0 || n > maxSkip {
		return 0, fmt.Errorf("jump over %d instructions: longer than %d", n, maxSkip)
	}
	return uint8(n), nil
}

// block turns r into instructions that expect the system call number in
// the accumulator and either return or fall through to the next block
// with the number still there.
func (r rule) block() ([]bpf.Instruction, error) {
	var body []bpf.Instruction
	loaded := uint32(offNr)
	for _, c := range r.checks {
		if off := c.offset(); off != loaded {
			body = append(body, bpf.LoadAbsolute{Off: off, Size: 4})
			loaded = off
		}
		// Holds: fall into its return; else skip it.
		body = append(body, bpf.JumpIf{Cond: c.cond, Val: c.val, SkipFalse: 1}, bpf.RetConstant{Val: c.ret})
	}
	body = append(body, bpf.RetConstant{Val: r.otherwise})
	skip, err := skipOver(len(body))
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", r.name, err)
	}
	return append([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: r.nr, SkipTrue: skip}}, body...), nil
}

// program assembles the prologue, the blocks of rs and the final ALLOW.
func program(rs []rule) ([]bpf.RawInstruction, error) {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipTrue: 1},
		bpf.RetConstant{Val: retKill},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	prog = append(prog, archPrologue...)
	seen := map[uint32]string{}
	for _, r := range rs {
		if other, dup := seen[r.nr]; dup {
			// The second block would never run.
			return nil, fmt.Errorf("rule %s: system call %d already has rule %s", r.name, r.nr, other)
		}
		seen[r.nr] = r.name
		b, err := r.block()
		if err != nil {
			return nil, err
		}
		prog = append(prog, b...)
	}
	prog = append(prog, bpf.RetConstant{Val: retAllow})
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("%d instructions: more than the kernel's %d", len(prog), unix.BPF_MAXINSNS)
	}
	return bpf.Assemble(prog)
}

// Filter returns the seccomp program of a sandboxed command, ready for
// loadFilter (or for bwrap --seccomp, as sock_filter structs in the
// machine's byte order).
func Filter(opts FilterOptions) ([]bpf.RawInstruction, error) {
	prog, err := program(rules(opts))
	if err != nil {
		return nil, fmt.Errorf("build seccomp filter: %w", err)
	}
	return prog, nil
}

// loadFilter installs prog as a seccomp filter of the calling OS thread
// only (seccomp(2) SECCOMP_SET_MODE_FILTER without TSYNC): the rest of
// the process, including the Go runtime's other threads, is not
// filtered. A filter cannot be removed; further filters stack on it.
//
// The contract: the caller runs on a thread it locked with
// runtime.LockOSThread and never unlocks, so that no other goroutine
// ever runs on it and the runtime ends the thread when the goroutine
// exits (the runtime also never clones a new thread from a locked one);
// it set no_new_privs on that thread first (setNoNewPrivs), or the kernel
// refuses the filter with EACCES unless the thread has CAP_SYS_ADMIN; and
// it starts the command from that same goroutine, so that the fork
// happens on the filtered thread and the child inherits the filter and
// the no_new_privs bit. os/exec works under the filter as long as its
// SysProcAttr asks for neither UseCgroupFD nor CLONE_NEWTIME: those make
// Go use clone3, which the filter fails with ENOSYS, and Go does not fall
// back to clone.
func loadFilter(prog []bpf.RawInstruction) error {
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return fmt.Errorf("load seccomp filter: %d instructions, want 1 to %d", len(prog), unix.BPF_MAXINSNS)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	return nil
}

// setNoNewPrivs sets no_new_privs on the calling OS thread (the caller
// locked it): from then on, execve grants no privileges (setuid bits,
// file capabilities) to the thread or to the processes it forks, which
// lets an unprivileged thread load a seccomp filter.
func setNoNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}
