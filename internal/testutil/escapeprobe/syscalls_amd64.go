//go:build linux && amd64

package main

import (
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// int80 makes a syscall through the i386 ABI (int $0x80) with up to three
// arguments and returns the raw result (a negative errno on failure).
// Implemented in int80_amd64.s.
func int80(nr, a1, a2, a3 uintptr) uintptr

// i386 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl) and the
// x32 ABI's marker bit.
const (
	i386Ioctl   = 54
	i386Keyctl  = 288
	i386Unshare = 310
	x32Bit      = 0x40000000
)

// Arguments that make a syscall fail harmlessly when nothing filters it.
const (
	badKeyctlOp = 0x7fffffff // no such KEYCTL_* operation: EOPNOTSUPP (printed ENOTSUP)
	noSuchPID   = 0x7fffffff // above any pid_max: ESRCH
	badMemMode  = 0x1000     // no such MPOL_* mode: EINVAL
	badMemFlags = 0x100      // no such MPOL_F_* / MPOL_MF_* flag: EINVAL
	badQuotaCmd = 0xff       // quota type 255 >= MAXQUOTAS: EINVAL
	syslogSize  = 10         // SYSLOG_ACTION_SIZE_BUFFER: read-only
	personQuery = 0xffffffff // personality(0xffffffff) only queries
)

// empty is a NUL-terminated empty path or name (lookups of "" fail with
// ENOENT, key types "" with EINVAL) and scratch a buffer that ioctls may
// read. Both are package variables, which never move, so their addresses
// stay valid as plain uintptrs.
var (
	empty   = []byte{0}
	scratch = []byte{'x', 0, 0, 0, 0, 0, 0, 0}
)

func emptyPtr() uintptr   { return uintptr(unsafe.Pointer(&empty[0])) }
func scratchPtr() uintptr { return uintptr(unsafe.Pointer(&scratch[0])) }

// fdcwd is AT_FDCWD; atFDCWD is it as a syscall argument (the kernel
// reads an int, the low 32 bits).
var fdcwd int32 = unix.AT_FDCWD

var atFDCWD = uintptr(uint32(fdcwd))

func sys(nr uintptr, args ...uintptr) string {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return errnoResult(e)
}

// i386Call makes an i386 syscall and returns its result, or "fault:SIGSEGV"
// when the kernel refuses the int $0x80 gate itself (a general protection
// fault: no i386 ABI for 64-bit processes on this kernel, as with
// ia32_emulation=0 or under some hypervisors), which is no filter's doing.
func i386Call(nr, a1, a2, a3 uintptr) (res string) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			res = "fault:SIGSEGV"
		}
	}()
	r := int80(nr, a1, a2, a3)
	if n := int32(uint32(r)); n < 0 && n > -4096 {
		return errnoResult(unix.Errno(-n))
	}
	return "ok"
}

// archProbes is the table of syscall probes for x86_64. For each, the
// comment gives what the kernel answers when no filter is installed (for
// an unprivileged caller; a caller with capabilities may get another
// errno, never a change) and what Flatpak's filter answers
// (common/flatpak-run.c, setup_seccomp). A sandbox "at least as strict as
// Flatpak's" gives Flatpak's answer or kills the caller.
func archProbes() []probe {
	return []probe{
		// Nested user namespaces: the door to every other namespace and to
		// capabilities over them.
		// unshare(CLONE_NEWUSER): EINVAL (a Go process is multithreaded) | EPERM.
		{"userns:unshare", func() string { return sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER) }},
		// clone(CLONE_NEWUSER) of a child that exits at once: ok | EPERM.
		{"userns:clone", cloneNewUser},
		// unshare(0) does nothing: ok | EPERM (Flatpak blocks unshare whole).
		{"seccomp:unshare-0", func() string { return sys(unix.SYS_UNSHARE, 0) }},
		// setns(-1, 0): EBADF | EPERM.
		{"seccomp:setns", func() string { return sys(unix.SYS_SETNS, ^uintptr(0), 0) }},
		// clone3(NULL, 0): EINVAL (size below CLONE_ARGS_SIZE_VER0) | ENOSYS,
		// so that libc falls back to clone, whose flags a filter can see.
		{"seccomp:clone3", func() string { return sys(unix.SYS_CLONE3, 0, 0) }},

		// Mounts, old and new API, on the empty path.
		// mount("", "", "", 0, NULL): ENOENT (the target is looked up before
		// any permission check) | EPERM.
		{"seccomp:mount", func() string { return sys(unix.SYS_MOUNT, emptyPtr(), emptyPtr(), emptyPtr(), 0, 0) }},
		// umount2("", 0): ENOENT | EPERM.
		{"seccomp:umount2", func() string { return sys(unix.SYS_UMOUNT2, emptyPtr(), 0) }},
		// pivot_root("", ""): EPERM without CAP_SYS_ADMIN (checked first),
		// ENOENT with it | EPERM. Not discriminating for an unprivileged
		// caller: it tells only that capabilities are gone.
		{"seccomp:pivot_root", func() string { return sys(unix.SYS_PIVOT_ROOT, emptyPtr(), emptyPtr()) }},
		// chroot(""): ENOENT (lookup before the CAP_SYS_CHROOT check) | EPERM.
		{"seccomp:chroot", func() string { return sys(unix.SYS_CHROOT, emptyPtr()) }},
		// open_tree(AT_FDCWD, "", 0): ENOENT | ENOSYS.
		{"seccomp:open_tree", func() string {
			return sys(unix.SYS_OPEN_TREE, atFDCWD, emptyPtr(), 0)
		}},
		// move_mount(-1, "", -1, "", 0): EPERM (may_mount first) | ENOSYS.
		{"seccomp:move_mount", func() string {
			return sys(unix.SYS_MOVE_MOUNT, ^uintptr(0), emptyPtr(), ^uintptr(0), emptyPtr(), 0)
		}},
		// fsopen("", 0): EPERM (capability first; ENODEV with it) | ENOSYS.
		{"seccomp:fsopen", func() string { return sys(unix.SYS_FSOPEN, emptyPtr(), 0) }},
		// fsconfig(-1, FSCONFIG_SET_FLAG, NULL, NULL, 0): EINVAL | ENOSYS.
		{"seccomp:fsconfig", func() string { return sys(unix.SYS_FSCONFIG, ^uintptr(0), 0, 0, 0, 0) }},
		// fsmount(-1, 0, 0): EPERM or EBADF | ENOSYS.
		{"seccomp:fsmount", func() string { return sys(unix.SYS_FSMOUNT, ^uintptr(0), 0, 0) }},
		// fspick(-1, "", 0): EPERM or ENOENT | ENOSYS.
		{"seccomp:fspick", func() string { return sys(unix.SYS_FSPICK, ^uintptr(0), emptyPtr(), 0) }},
		// mount_setattr(-1, "", 0, NULL, 0): EINVAL (size 0) | ENOSYS.
		{"seccomp:mount_setattr", func() string { return sys(unix.SYS_MOUNT_SETATTR, ^uintptr(0), emptyPtr(), 0, 0, 0) }},

		// Terminal injection (CVE-2017-5226, CVE-2019-10063, CVE-2023-28100),
		// on /dev/null, which is no terminal.
		// ioctl(fd, TIOCSTI): ENOTTY | EPERM.
		{"seccomp:ioctl-tiocsti", func() string {
			return withDevNull(func(fd int) string {
				return sys(unix.SYS_IOCTL, uintptr(fd), unix.TIOCSTI, scratchPtr())
			})
		}},
		// ioctl(fd, TIOCSTI | 1<<32): the kernel truncates the request to 32
		// bits, so ENOTTY | EPERM (a filter that compares all 64 bits lets it
		// through: CVE-2019-10063).
		{"seccomp:ioctl-tiocsti-high", func() string {
			return withDevNull(func(fd int) string {
				return sys(unix.SYS_IOCTL, uintptr(fd), unix.TIOCSTI|1<<32, scratchPtr())
			})
		}},
		// ioctl(fd, TIOCLINUX): ENOTTY | EPERM (Flatpak 1.14.4 and later).
		{"seccomp:ioctl-tioclinux", func() string {
			return withDevNull(func(fd int) string {
				return sys(unix.SYS_IOCTL, uintptr(fd), unix.TIOCLINUX, scratchPtr())
			})
		}},

		// Socket families: Flatpak allows AF_UNSPEC, AF_UNIX, AF_INET,
		// AF_INET6 and AF_NETLINK and answers EAFNOSUPPORT for the rest.
		// AF_PACKET: EPERM (CAP_NET_RAW) | EAFNOSUPPORT.
		{"seccomp:socket-packet", func() string { return socketResult(unix.AF_PACKET, unix.SOCK_RAW, 0) }},
		// AF_VSOCK: ok where the kernel has vsock (a VM's way to its host) | EAFNOSUPPORT.
		{"seccomp:socket-vsock", func() string { return socketResult(unix.AF_VSOCK, unix.SOCK_STREAM, 0) }},
		// AF_ALG: ok where the kernel has the crypto API sockets | EAFNOSUPPORT.
		{"seccomp:socket-alg", func() string { return socketResult(unix.AF_ALG, unix.SOCK_SEQPACKET, 0) }},
		// Allowed families: ok | ok.
		{"seccomp:socket-unix", func() string { return socketResult(unix.AF_UNIX, unix.SOCK_STREAM, 0) }},
		{"seccomp:socket-inet", func() string { return socketResult(unix.AF_INET, unix.SOCK_STREAM, 0) }},
		{"seccomp:socket-inet6", func() string { return socketResult(unix.AF_INET6, unix.SOCK_STREAM, 0) }},
		{"seccomp:socket-netlink", func() string { return socketResult(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE) }},

		// The kernel keyring, shared with the whole session.
		// keyctl(bad op): ENOTSUP (EOPNOTSUPP) | EPERM.
		{"seccomp:keyctl", func() string { return sys(unix.SYS_KEYCTL, badKeyctlOp, 0, 0, 0, 0) }},
		// add_key("", "", NULL, 0, 0): EINVAL (empty type) | EPERM.
		{"seccomp:add_key", func() string { return sys(unix.SYS_ADD_KEY, emptyPtr(), emptyPtr(), 0, 0, 0) }},
		// request_key("", "", NULL, 0): EINVAL | EPERM.
		{"seccomp:request_key", func() string { return sys(unix.SYS_REQUEST_KEY, emptyPtr(), emptyPtr(), 0, 0) }},

		// Kernel information and tracing.
		// syslog(SIZE_BUFFER): ok when kernel.dmesg_restrict=0, EPERM when it
		// is 1 (then not discriminating) | EPERM.
		{"seccomp:syslog", func() string { return sys(unix.SYS_SYSLOG, syslogSize, 0, 0) }},
		// perf_event_open(NULL, 0, -1, -1, 0): EFAULT (the attr is copied
		// first) | EPERM.
		{"seccomp:perf_event_open", func() string {
			return sys(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)
		}},
		// ptrace(PTRACE_PEEKDATA, no such pid): ESRCH | EPERM. PTRACE_TRACEME
		// would make the probe's parent its tracer when nothing filters it,
		// which is not harmless, so a request that cannot succeed is used.
		{"seccomp:ptrace", func() string { return sys(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, noSuchPID, 0, 0) }},
		// personality(0xffffffff) only reads it: ok | EPERM (Flatpak allows
		// the one persona it sets and nothing else).
		{"seccomp:personality", func() string { return sys(unix.SYS_PERSONALITY, personQuery) }},

		// Old, obscure or NUMA syscalls Flatpak blocks.
		// uselib(NULL): ENOSYS without CONFIG_USELIB, else EFAULT | EPERM.
		{"seccomp:uselib", func() string { return sys(unix.SYS_USELIB, 0) }},
		// modify_ldt(0 = read, NULL, 0): ok (nothing to read) | EPERM
		// (without --allow=multiarch).
		{"seccomp:modify_ldt", func() string { return sys(unix.SYS_MODIFY_LDT, 0, 0, 0) }},
		// quotactl(type 255, NULL, 0, NULL): EINVAL | EPERM.
		{"seccomp:quotactl", func() string { return sys(unix.SYS_QUOTACTL, badQuotaCmd, 0, 0, 0) }},
		// get_mempolicy(NULL, NULL, 0, NULL, bad flags): EINVAL | EPERM.
		{"seccomp:get_mempolicy", func() string { return sys(unix.SYS_GET_MEMPOLICY, 0, 0, 0, 0, badMemFlags) }},
		// set_mempolicy(bad mode, NULL, 0): EINVAL | EPERM.
		{"seccomp:set_mempolicy", func() string { return sys(unix.SYS_SET_MEMPOLICY, badMemMode, 0, 0) }},
		// mbind(0, 0, bad mode, NULL, 0, 0): EINVAL | EPERM.
		{"seccomp:mbind", func() string { return sys(unix.SYS_MBIND, 0, 0, badMemMode, 0, 0, 0) }},
		// migrate_pages(no such pid, 0, NULL, NULL): ESRCH | EPERM.
		{"seccomp:migrate_pages", func() string { return sys(unix.SYS_MIGRATE_PAGES, noSuchPID, 0, 0, 0) }},
		// move_pages(0, 0, NULL, NULL, NULL, bad flags): EINVAL | EPERM.
		{"seccomp:move_pages", func() string { return sys(unix.SYS_MOVE_PAGES, 0, 0, 0, 0, 0, badMemFlags) }},

		// Other ABIs of an x86_64 kernel, which a filter that checks only the
		// x86_64 syscall numbers misses. Flatpak adds the i386 ABI to its
		// filter only with --allow=multiarch and never the x32 one; a
		// syscall of an ABI not in a libseccomp filter kills the caller
		// (SIGSYS), of one in it gets the same answer as on x86_64.
		// Where the kernel offers no i386 ABI to 64-bit processes all three
		// give "fault:SIGSEGV" with or without a filter (see i386Call).
		// i386 unshare(CLONE_NEWUSER): EINVAL | killed:SIGSYS, or EPERM
		// with multiarch.
		{"seccomp:i386-unshare", func() string { return i386Call(i386Unshare, unix.CLONE_NEWUSER, 0, 0) }},
		// i386 ioctl(fd, TIOCSTI, NULL): ENOTTY | killed:SIGSYS, or EPERM.
		{"seccomp:i386-ioctl-tiocsti", func() string {
			return withDevNull(func(fd int) string { return i386Call(i386Ioctl, uintptr(fd), unix.TIOCSTI, 0) })
		}},
		// i386 keyctl(bad op): ENOTSUP | killed:SIGSYS, or EPERM.
		{"seccomp:i386-keyctl", func() string { return i386Call(i386Keyctl, badKeyctlOp, 0, 0) }},
		// x32 unshare(CLONE_NEWUSER): ENOSYS without CONFIG_X86_X32_ABI,
		// else EINVAL | killed:SIGSYS.
		{"seccomp:x32-unshare", func() string { return sys(x32Bit|unix.SYS_UNSHARE, unix.CLONE_NEWUSER) }},
	}
}
