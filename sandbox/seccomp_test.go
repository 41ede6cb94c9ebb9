package sandbox

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/internal/testutil"
)

// Environment of a probe child (see probeMain).
const (
	// probeEnv selects the filter the child loads: "none", "strict"
	// (Filter{}) or "devel" (Filter{Devel: true}).
	probeEnv = "LAZYTREE_SECCOMP_PROBE"
	// probeCallEnv, when set, is a system call number that the child
	// makes with no arguments instead of the probes.
	probeCallEnv = "LAZYTREE_SECCOMP_CALL"
)

// TestMain turns the test binary into a probe child when probeEnv is set.

// Actions, written out independently of seccomp.go.
const (
	allow = unix.SECCOMP_RET_ALLOW
	kill  = unix.SECCOMP_RET_KILL_PROCESS
	// killThread is libseccomp's default for a foreign architecture.
	killThread = unix.SECCOMP_RET_KILL_THREAD
)

func errnoAction(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

var (
	eperm        = errnoAction(unix.EPERM)
	enosys       = errnoAction(unix.ENOSYS)
	eafnosupport = errnoAction(unix.EAFNOSUPPORT)
)

// actionName is a readable action for test failures.
func actionName(a uint32) string {
	switch {
	case a == allow:
		return "ALLOW"
	case a == kill:
		return "KILL_PROCESS"
	case a == killThread:
		return "KILL_THREAD"
	case a&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO:
		return "ERRNO(" + unix.ErrnoName(unix.Errno(a&unix.SECCOMP_RET_DATA)) + ")"
	}
	return fmt.Sprintf("%#x", a)
}

// seccompData is struct seccomp_data as the kernel lays it out on a
// little-endian machine: int nr, __u32 arch, __u64 instruction_pointer,
// __u64 args[6].
func seccompData(nr, arch uint32, args [6]uint64) []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], nr)
	binary.LittleEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// vmPacket is data as x/net/bpf's VM must see it. The VM is a packet
// filter: its absolute loads read big-endian words, where the kernel's
// seccomp loads read words in the machine's order. Swapping the bytes
// of every 32-bit word makes each load of the VM return what the same
// load returns in the kernel.
func vmPacket(data []byte) []byte {
	p := make([]byte, len(data))
	for i := 0; i+4 <= len(data); i += 4 {
		binary.BigEndian.PutUint32(p[i:], binary.LittleEndian.Uint32(data[i:]))
	}
	return p
}

// newVM checks that prog is classic BPF the VM can run.
func newVM(t *testing.T, prog []bpf.RawInstruction) *bpf.VM {
	t.Helper()
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatalf("program does not disassemble:\n%v", insns)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	return vm
}

func runVM(t *testing.T, vm *bpf.VM, nr, arch uint32, args [6]uint64) uint32 {
	t.Helper()
	got, err := vm.Run(vmPacket(seccompData(nr, arch, args)))
	if err != nil {
		t.Fatalf("VM run: %v", err)
	}
	return uint32(got)
}

func mustFilter(t *testing.T, opts FilterOptions) []bpf.RawInstruction {
	t.Helper()
	prog, err := Filter(opts)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

func TestVMReadsSeccompData(t *testing.T) {
	args := [6]uint64{0x1_0000_0002, 0xaaaa_bbbb_cccc_dddd}
	for _, c := range []struct {
		off  uint32
		want uint32
	}{
		{0, 7}, {4, auditArch}, {16, 2}, {20, 1}, {24, 0xcccc_dddd}, {28, 0xaaaa_bbbb},
	} {
		prog, err := bpf.Assemble([]bpf.Instruction{bpf.LoadAbsolute{Off: c.off, Size: 4}, bpf.RetA{}})
		if err != nil {
			t.Fatal(err)
		}
		if got := runVM(t, newVM(t, prog), 7, auditArch, args); got != c.want {
			t.Errorf("load [%d] = %#x, want %#x", c.off, got, c.want)
		}
	}
}

// A vmCase is one system call and what the filter must do with it.
type vmCase struct {
	name   string
	nr     uint32
	args   [6]uint64
	strict uint32
	devel  uint32 // 0: as strict
	arch   uint32 // 0: auditArch
}

// vmCases are the policy, written out call by call; archVMCases (the
// architecture's test file) adds the calls only it has.
func vmCases() []vmCase {
	const high = 1 << 32
	cs := []vmCase{
		{name: "getpid", nr: unix.SYS_GETPID, strict: allow},
		{name: "read", nr: unix.SYS_READ, args: [6]uint64{0, 0, 4096}, strict: allow},
		{name: "openat", nr: unix.SYS_OPENAT, strict: allow},
		{name: "execve", nr: unix.SYS_EXECVE, strict: allow},
		{name: "mmap", nr: unix.SYS_MMAP, strict: allow},
		{name: "socketpair", nr: unix.SYS_SOCKETPAIR, args: [6]uint64{unix.AF_PACKET}, strict: allow},
		{name: "seccomp", nr: unix.SYS_SECCOMP, strict: allow},
		{name: "no call (-1)", nr: 0xffffffff, strict: allow},

		{name: "syslog", nr: unix.SYS_SYSLOG, args: [6]uint64{10}, strict: eperm},
		{name: "acct", nr: unix.SYS_ACCT, strict: eperm},
		{name: "quotactl", nr: unix.SYS_QUOTACTL, strict: eperm},
		{name: "add_key", nr: unix.SYS_ADD_KEY, strict: eperm},
		{name: "keyctl", nr: unix.SYS_KEYCTL, strict: eperm},
		{name: "request_key", nr: unix.SYS_REQUEST_KEY, strict: eperm},
		{name: "move_pages", nr: unix.SYS_MOVE_PAGES, strict: eperm},
		{name: "mbind", nr: unix.SYS_MBIND, strict: eperm},
		{name: "get_mempolicy", nr: unix.SYS_GET_MEMPOLICY, strict: eperm},
		{name: "set_mempolicy", nr: unix.SYS_SET_MEMPOLICY, strict: eperm},
		{name: "migrate_pages", nr: unix.SYS_MIGRATE_PAGES, strict: eperm},
		{name: "unshare(0)", nr: unix.SYS_UNSHARE, strict: eperm},
		{name: "unshare(CLONE_NEWUSER)", nr: unix.SYS_UNSHARE, args: [6]uint64{unix.CLONE_NEWUSER}, strict: eperm},
		{name: "setns", nr: unix.SYS_SETNS, strict: eperm},
		{name: "mount", nr: unix.SYS_MOUNT, strict: eperm},
		{name: "umount2", nr: unix.SYS_UMOUNT2, strict: eperm},
		{name: "pivot_root", nr: unix.SYS_PIVOT_ROOT, strict: eperm},
		{name: "chroot", nr: unix.SYS_CHROOT, strict: eperm},

		{name: "clone(CLONE_NEWUSER)", nr: unix.SYS_CLONE, args: [6]uint64{unix.CLONE_NEWUSER}, strict: eperm},
		{name: "clone(CLONE_NEWUSER|CLONE_NEWNS|SIGCHLD)", nr: unix.SYS_CLONE,
			args: [6]uint64{unix.CLONE_NEWUSER | unix.CLONE_NEWNS | uint64(unix.SIGCHLD)}, strict: eperm},
		{name: "clone(CLONE_NEWUSER|1<<32)", nr: unix.SYS_CLONE, args: [6]uint64{unix.CLONE_NEWUSER | high}, strict: eperm},
		{name: "clone(SIGCHLD)", nr: unix.SYS_CLONE, args: [6]uint64{uint64(unix.SIGCHLD)}, strict: allow},
		{name: "clone(thread)", nr: unix.SYS_CLONE, args: [6]uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES |
			unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM}, strict: allow},
		{name: "clone(vfork|CLONE_PIDFD)", nr: unix.SYS_CLONE, args: [6]uint64{unix.CLONE_VM | unix.CLONE_VFORK |
			unix.CLONE_PIDFD | uint64(unix.SIGCHLD)}, strict: allow},
		{name: "clone(1<<32, CLONE_NEWUSER in arg 1)", nr: unix.SYS_CLONE, args: [6]uint64{high, unix.CLONE_NEWUSER}, strict: allow},

		{name: "ioctl(TIOCSTI)", nr: unix.SYS_IOCTL, args: [6]uint64{0, unix.TIOCSTI}, strict: eperm},
		{name: "ioctl(TIOCSTI|1<<32)", nr: unix.SYS_IOCTL, args: [6]uint64{0, unix.TIOCSTI | high}, strict: eperm},
		{name: "ioctl(TIOCSTI|0xffffffff<<32)", nr: unix.SYS_IOCTL, args: [6]uint64{0, unix.TIOCSTI | 0xffff_ffff_0000_0000}, strict: eperm},
		{name: "ioctl(TIOCLINUX)", nr: unix.SYS_IOCTL, args: [6]uint64{3, unix.TIOCLINUX}, strict: eperm},
		{name: "ioctl(TIOCLINUX|1<<32)", nr: unix.SYS_IOCTL, args: [6]uint64{3, unix.TIOCLINUX | high}, strict: eperm},
		{name: "ioctl(TIOCGWINSZ)", nr: unix.SYS_IOCTL, args: [6]uint64{0, unix.TIOCGWINSZ}, strict: allow},
		{name: "ioctl(TCGETS)", nr: unix.SYS_IOCTL, args: [6]uint64{0, unix.TCGETS}, strict: allow},
		{name: "ioctl(fd TIOCSTI, TIOCINQ)", nr: unix.SYS_IOCTL, args: [6]uint64{unix.TIOCSTI, unix.TIOCINQ}, strict: allow},

		{name: "clone3", nr: unix.SYS_CLONE3, strict: enosys},
		{name: "open_tree", nr: unix.SYS_OPEN_TREE, strict: enosys},
		{name: "move_mount", nr: unix.SYS_MOVE_MOUNT, strict: enosys},
		{name: "fsopen", nr: unix.SYS_FSOPEN, strict: enosys},
		{name: "fsconfig", nr: unix.SYS_FSCONFIG, strict: enosys},
		{name: "fsmount", nr: unix.SYS_FSMOUNT, strict: enosys},
		{name: "fspick", nr: unix.SYS_FSPICK, strict: enosys},
		{name: "mount_setattr", nr: unix.SYS_MOUNT_SETATTR, strict: enosys},

		{name: "perf_event_open", nr: unix.SYS_PERF_EVENT_OPEN, strict: eperm, devel: allow},
		{name: "ptrace(PTRACE_TRACEME)", nr: unix.SYS_PTRACE, args: [6]uint64{unix.PTRACE_TRACEME}, strict: eperm, devel: allow},
		{name: "ptrace(PTRACE_ATTACH)", nr: unix.SYS_PTRACE, args: [6]uint64{unix.PTRACE_ATTACH, 1}, strict: eperm, devel: allow},
		{name: "personality(PER_LINUX)", nr: unix.SYS_PERSONALITY, args: [6]uint64{0}, strict: allow},
		{name: "personality(query)", nr: unix.SYS_PERSONALITY, args: [6]uint64{0xffffffff}, strict: eperm, devel: allow},
		{name: "personality(PER_BSD)", nr: unix.SYS_PERSONALITY, args: [6]uint64{6}, strict: eperm, devel: allow},
		{name: "personality(ADDR_NO_RANDOMIZE)", nr: unix.SYS_PERSONALITY, args: [6]uint64{0x0040000}, strict: eperm, devel: allow},
		{name: "personality(1<<32)", nr: unix.SYS_PERSONALITY, args: [6]uint64{high}, strict: eperm, devel: allow},

		{name: "socket(AF_UNSPEC)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_UNSPEC}, strict: allow},
		{name: "socket(AF_UNIX)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM}, strict: allow},
		{name: "socket(AF_INET)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_INET, unix.SOCK_DGRAM}, strict: allow},
		{name: "socket(AF_INET6)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_INET6, unix.SOCK_STREAM}, strict: allow},
		{name: "socket(AF_NETLINK)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_NETLINK, unix.SOCK_RAW}, strict: allow},
		{name: "socket(AF_INET|1<<32)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_INET | high}, strict: allow},
		{name: "socket(AF_PACKET)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_PACKET, unix.SOCK_RAW}, strict: eafnosupport},
		{name: "socket(AF_PACKET|1<<32)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_PACKET | high}, strict: eafnosupport},
		{name: "socket(AF_PACKET, AF_INET)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_PACKET, unix.AF_INET}, strict: eafnosupport},
		{name: "socket(AF_AX25)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_AX25}, strict: eafnosupport},
		{name: "socket(AF_KEY)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_KEY}, strict: eafnosupport},
		{name: "socket(AF_CAN)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_CAN}, strict: eafnosupport},
		{name: "socket(AF_BLUETOOTH)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_BLUETOOTH}, strict: eafnosupport},
		{name: "socket(AF_VSOCK)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_VSOCK}, strict: eafnosupport},
		{name: "socket(AF_ALG)", nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_ALG}, strict: eafnosupport},
		{name: "socket(-1)", nr: unix.SYS_SOCKET, args: [6]uint64{0xffff_ffff_ffff_ffff}, strict: eafnosupport},
	}
	for _, arch := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_AARCH64, 0xdeadbeef} {
		if arch == auditArch {
			continue
		}
		cs = append(cs,
			vmCase{name: fmt.Sprintf("getpid of arch %#x", arch), nr: unix.SYS_GETPID, arch: arch, strict: kill},
			vmCase{name: fmt.Sprintf("no call of arch %#x", arch), nr: 0xffffffff, arch: arch, strict: kill},
		)
	}
	return append(cs, archVMCases()...)
}

func TestFilterPolicy(t *testing.T) {
	strict := newVM(t, mustFilter(t, FilterOptions{}))
	devel := newVM(t, mustFilter(t, FilterOptions{Devel: true}))
	for _, c := range vmCases() {
		arch := cmp.Or(c.arch, auditArch)
		wantDevel := cmp.Or(c.devel, c.strict)
		if got := runVM(t, strict, c.nr, arch, c.args); got != c.strict {
			t.Errorf("%s: strict filter %s, want %s", c.name, actionName(got), actionName(c.strict))
		}
		if got := runVM(t, devel, c.nr, arch, c.args); got != wantDevel {
			t.Errorf("%s: devel filter %s, want %s", c.name, actionName(got), actionName(wantDevel))
		}
	}
}

// argVectors are arguments that the rules look at, in the places they
// look, and a few they do not.
func argVectors() [][6]uint64 {
	const high = 1 << 32
	vs := [][6]uint64{
		{},
		{unix.CLONE_NEWUSER}, {unix.CLONE_NEWUSER | high}, {unix.CLONE_NEWUSER | unix.CLONE_NEWNS},
		{high}, {0xffffffff}, {0xffff_ffff_ffff_ffff}, {6},
		{0, unix.TIOCSTI}, {0, unix.TIOCSTI | high}, {0, unix.TIOCLINUX}, {0, unix.TIOCLINUX | 0xffff_0000_0000_0000},
		{0, unix.TIOCGWINSZ}, {unix.TIOCSTI, 0},
		{0, 0, 0, 0, 0, unix.CLONE_NEWUSER},
	}
	for f := uint64(0); f <= unix.AF_MAX; f++ {
		vs = append(vs, [6]uint64{f, unix.SOCK_STREAM}, [6]uint64{f | high})
	}
	return vs
}

// maxNr is beyond the highest system call number of every architecture
// we build for.
const maxNr = 600

func TestFilterDevelRelaxesOnlyDebugging(t *testing.T) {
	strict := newVM(t, mustFilter(t, FilterOptions{}))
	devel := newVM(t, mustFilter(t, FilterOptions{Devel: true}))
	relaxed := map[uint32]bool{}
	for nr := uint32(0); nr < maxNr; nr++ {
		for _, args := range argVectors() {
			s, d := runVM(t, strict, nr, auditArch, args), runVM(t, devel, nr, auditArch, args)
			if s == d {
				continue
			}
			relaxed[nr] = true
			if d != allow {
				t.Errorf("call %d %#x: devel %s, want ALLOW where strict has %s", nr, args, actionName(d), actionName(s))
			}
		}
	}
	want := map[uint32]bool{unix.SYS_PTRACE: true, unix.SYS_PERF_EVENT_OPEN: true, unix.SYS_PERSONALITY: true}
	if !maps.Equal(relaxed, want) {
		t.Errorf("devel differs from strict for calls %v, want %v", slices.Sorted(maps.Keys(relaxed)), slices.Sorted(maps.Keys(want)))
	}
}

// checkJumps fails the test unless every jump of prog lands on one of its
// instructions and it ends in a return; it returns the longest skip of a
// conditional jump.
func checkJumps(t *testing.T, prog []bpf.RawInstruction) int {
	t.Helper()
	longest := 0
	for pc, ins := range prog {
		if ins.Op&0x07 != unix.BPF_JMP {
			continue
		}
		targets := []int{pc + 1 + int(ins.Jt), pc + 1 + int(ins.Jf)}
		if ins.Op&0xf0 == unix.BPF_JA {
			targets = []int{pc + 1 + int(ins.K)}
		} else {
			longest = max(longest, int(ins.Jt), int(ins.Jf))
		}
		for _, to := range targets {
			if to >= len(prog) {
				t.Errorf("instruction %d (%v) jumps to %d, past the program's %d instructions", pc, ins.Disassemble(), to, len(prog))
			}
		}
	}
	if last := prog[len(prog)-1]; last.Op&0x07 != unix.BPF_RET {
		t.Errorf("last instruction %v is not a return", last.Disassemble())
	}
	return longest
}

func TestFilterShape(t *testing.T) {
	for _, opts := range []FilterOptions{{}, {Devel: true}} {
		prog := mustFilter(t, opts)
		if len(prog) > unix.BPF_MAXINSNS {
			t.Errorf("%+v: %d instructions, the kernel takes %d", opts, len(prog), unix.BPF_MAXINSNS)
		}
		longest := checkJumps(t, prog)
		t.Logf("%+v: %d instructions, longest conditional jump %d", opts, len(prog), longest)
		insns, _ := bpf.Disassemble(prog)
		if insns[0] != (bpf.LoadAbsolute{Off: 4, Size: 4}) {
			t.Errorf("%+v: first instruction %v, want the load of the architecture", opts, insns[0])
		}
		if last := insns[len(insns)-1]; last != (bpf.RetConstant{Val: allow}) {
			t.Errorf("%+v: last instruction %v, want ALLOW", opts, last)
		}
	}
}

func TestSkipOver(t *testing.T) {
	if s, err := skipOver(255); err != nil || s != 255 {
		t.Errorf("skipOver(255) = %d, %v; want 255", s, err)
	}
	if _, err := skipOver(256); err == nil {
		t.Error("skipOver(256) succeeded")
	}
}

// TestProgramLongRules: a block too long for a conditional jump is an
// error that names its rule, not a wrong program.
func TestProgramLongRules(t *testing.T) {
	r := rule{name: "many", nr: unix.SYS_SOCKET, otherwise: allow}
	for i := range 127 {
		r.checks = append(r.checks, check{arg: 0, cond: bpf.JumpEqual, val: uint32(i), ret: eperm})
	}
	// 1 load, 127 compares and returns, 1 return: 256.
	if _, err := program([]rule{r}); err == nil || !strings.Contains(err.Error(), "rule many") {
		t.Errorf("program with a 256-instruction block: error %v, want one naming rule many", err)
	}
	r.checks = r.checks[:126]
	prog, err := program([]rule{r})
	if err != nil {
		t.Fatalf("program with a 254-instruction block: %v", err)
	}
	if longest := checkJumps(t, prog); longest != 254 {
		t.Errorf("longest jump %d, want 254", longest)
	}
	vm := newVM(t, prog)
	for _, c := range []struct {
		family uint64
		want   uint32
	}{{0, eperm}, {125, eperm}, {126, allow}} {
		if got := runVM(t, vm, unix.SYS_SOCKET, auditArch, [6]uint64{c.family}); got != c.want {
			t.Errorf("socket(%d) = %s, want %s", c.family, actionName(got), actionName(c.want))
		}
	}
}

// TestProgramManyRules: the number of rules is not bound by the 8-bit
// jumps; the last of 1500 blocks still works.
func TestProgramManyRules(t *testing.T) {
	var rs []rule
	for nr := uint32(1000); nr < 2500; nr++ {
		rs = append(rs, deny(strconv.Itoa(int(nr)), nr, unix.EPERM))
	}
	rs = append(rs, rule{name: "ioctl", nr: unix.SYS_IOCTL, otherwise: allow, checks: []check{
		{arg: 1, cond: bpf.JumpEqual, val: unix.TIOCSTI, ret: eperm},
	}})
	prog, err := program(rs)
	if err != nil {
		t.Fatal(err)
	}
	checkJumps(t, prog)
	vm := newVM(t, prog)
	for _, c := range []struct {
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{1000, [6]uint64{}, eperm}, {2499, [6]uint64{}, eperm}, {2500, [6]uint64{}, allow},
		{unix.SYS_IOCTL, [6]uint64{0, unix.TIOCSTI}, eperm}, {unix.SYS_IOCTL, [6]uint64{}, allow},
	} {
		if got := runVM(t, vm, c.nr, auditArch, c.args); got != c.want {
			t.Errorf("call %d %#x = %s, want %s", c.nr, c.args[:2], actionName(got), actionName(c.want))
		}
	}
	for nr := uint32(3000); nr < 3600; nr++ {
		rs = append(rs, deny(strconv.Itoa(int(nr)), nr, unix.EPERM))
	}
	if _, err := program(rs); err == nil {
		t.Errorf("program of %d rules, more than BPF_MAXINSNS instructions, succeeded", len(rs))
	}
}

func TestProgramDuplicateRule(t *testing.T) {
	_, err := program([]rule{deny("mount", unix.SYS_MOUNT, unix.EPERM), deny("mount again", unix.SYS_MOUNT, unix.ENOSYS)})
	if err == nil || !strings.Contains(err.Error(), "mount again") {
		t.Errorf("program with two rules for one call: error %v, want one naming the second", err)
	}
}

// A vmInput is a system call number and architecture.
type vmInput struct{ nr, arch uint32 }

// decodeBPF reads the sock_filter array that bwrap --seccomp reads.
func decodeBPF(b []byte) []bpf.RawInstruction {
	raw := make([]bpf.RawInstruction, len(b)/8)
	for i := range raw {
		w := b[8*i:]
		raw[i] = bpf.RawInstruction{Op: binary.NativeEndian.Uint16(w), Jt: w[2], Jf: w[3], K: binary.NativeEndian.Uint32(w[4:])}
	}
	return raw
}

// TestFilterMatchesFlatpakInVM runs ours and Flatpak's (built by
// libseccomp) over every call number with the arguments the rules look
// at: they agree but for the differences below.
func TestFilterMatchesFlatpakInVM(t *testing.T) {
	for _, devel := range []bool{false, true} {
		t.Run(fmt.Sprintf("devel=%v", devel), func(t *testing.T) {
			ours := newVM(t, mustFilter(t, FilterOptions{Devel: devel}))
			ref := decodeBPF(testutil.FlatpakSeccompBPF(t, devel))
			checkJumps(t, ref)
			theirs := newVM(t, ref)
			var inputs []vmInput
			for nr := uint32(0); nr < maxNr; nr++ {
				inputs = append(inputs, vmInput{nr, auditArch})
			}
			inputs = append(inputs, vmInput{0xffffffff, auditArch})
			for _, arch := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_AARCH64} {
				if arch != auditArch {
					inputs = append(inputs, vmInput{unix.SYS_GETPID, arch}, vmInput{unix.SYS_MOUNT, arch})
				}
			}
			inputs = append(inputs, archExtraInputs()...)
			differ := 0
			for _, in := range inputs {
				for _, args := range argVectors() {
					o, f := runVM(t, ours, in.nr, in.arch, args), runVM(t, theirs, in.nr, in.arch, args)
					if o == f {
						continue
					}
					differ++
					switch {
					case (in.nr == unix.SYS_IO_URING_SETUP || in.nr == unix.SYS_IO_URING_ENTER || in.nr == unix.SYS_IO_URING_REGISTER) && o == enosys && f == allow:
						// We refuse io_uring (its operations bypass
						// the socket-family rule); Flatpak 1.14 does not.
					case o == kill && f == killThread:
						// libseccomp's default for a foreign
						// architecture or an x32 call kills the
						// thread; we kill the process.
					case in.nr == unix.SYS_SOCKET && args[0]>>32 != 0 && f == eafnosupport:
						// Flatpak compares all 64 bits of the family;
						// the kernel reads an int, and we decide by
						// that: allow AF_INET|1<<32 as AF_INET.
						if want := runVM(t, ours, in.nr, in.arch, [6]uint64{args[0] & 0xffffffff}); o != want {
							t.Errorf("socket(%#x) = %s, socket(%#x) = %s", args[0], actionName(o), args[0]&0xffffffff, actionName(want))
						}
					default:
						t.Errorf("call %d arch %#x args %#x: ours %s, Flatpak's %s", in.nr, in.arch, args[:2], actionName(o), actionName(f))
					}
				}
			}
			if differ == 0 {
				t.Error("no input told the filters apart: the known differences are not exercised")
			}
		})
	}
}

// A probe is one harmless system call (or a few) whose result tells
// whether the filter let it through. Each probe returns "ok" or the
// errno's name, or for the status probes what it read.
type probe struct {
	name string
	run  func() string
}

// absent is a path that does not exist, so that a call the filter lets
// through fails in the kernel without doing anything.
const absent = "/nonexistent-lazytree-probe"

// atFdcwd is AT_FDCWD as a system call argument.
var atFdcwd = func() uintptr {
	fd := unix.AT_FDCWD
	return uintptr(fd)
}()

func result(r uintptr, e unix.Errno, closeFd bool) string {
	if e != 0 {
		return unix.ErrnoName(e)
	}
	if closeFd {
		unix.Close(int(r))
	}
	return "ok"
}

func sys(nr uintptr, args ...uintptr) string {
	var a [6]uintptr
	copy(a[:], args)
	r, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return result(r, e, false)
}

// pinned keeps alive the memory that probes hand to the kernel as a
// uintptr through sys (Go's heap does not move; a probe child is
// short-lived).
var pinned []any

// ptr is v as a system call argument; v escapes to the heap.
func ptr[T any](v *T) uintptr {
	pinned = append(pinned, v)
	return uintptr(unsafe.Pointer(v))
}

func str(s string) uintptr {
	p, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return ptr(p)
}

func sock(family uint64, typ int) string {
	r, _, e := unix.Syscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ|unix.SOCK_CLOEXEC), 0)
	return result(r, e, true)
}

func errResult(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// statusOf is the seccomp mode and no_new_privs bit of a
// /proc/.../status file.
func statusOf(status []byte) string {
	fields := map[string]string{}
	for line := range strings.Lines(string(status)) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("Seccomp=%s NoNewPrivs=%s", fields["Seccomp"], fields["NoNewPrivs"])
}

func probes() []probe {
	const high = 1 << 32
	ps := []probe{
		{"getpid", func() string { return sys(unix.SYS_GETPID) }},
		{"no call (-1)", func() string { return sys(^uintptr(0)) }},
		// A multithreaded process may not unshare its user namespace:
		// EINVAL without the filter, so nothing changes.
		{"unshare(CLONE_NEWUSER)", func() string { return sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER) }},
		{"setns(-1)", func() string { return sys(unix.SYS_SETNS, ^uintptr(0), 0) }},
		{"mount", func() string { return sys(unix.SYS_MOUNT, str("none"), str(absent), str("tmpfs"), 0, 0) }},
		{"umount2", func() string { return sys(unix.SYS_UMOUNT2, str(absent), 0) }},
		{"pivot_root", func() string { return sys(unix.SYS_PIVOT_ROOT, str(absent), str(absent)) }},
		{"chroot", func() string { return sys(unix.SYS_CHROOT, str(absent)) }},
		// SYSLOG_ACTION_SIZE_BUFFER reads the size of the kernel log.
		{"syslog(SIZE_BUFFER)", func() string { return sys(unix.SYS_SYSLOG, 10, 0, 0) }},
		{"acct", func() string { return sys(unix.SYS_ACCT, str(absent)) }},
		// QCMD(Q_SYNC, USRQUOTA) on a missing device.
		{"quotactl", func() string { return sys(unix.SYS_QUOTACTL, 0x80000100, str(absent), 0, 0) }},
		{"add_key(NULL)", func() string { return sys(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0) }},
		{"keyctl(bad op)", func() string { return sys(unix.SYS_KEYCTL, 9999) }},
		{"request_key(NULL)", func() string { return sys(unix.SYS_REQUEST_KEY, 0, 0, 0, 0) }},
		{"move_pages(none)", func() string { return sys(unix.SYS_MOVE_PAGES, 0, 0, 0, 0, 0, 0) }},
		{"mbind(bad mode)", func() string { return sys(unix.SYS_MBIND, 0, 0, 999, 0, 0, 0) }},
		{"get_mempolicy", func() string { return sys(unix.SYS_GET_MEMPOLICY, 0, 0, 0, 0, 0) }},
		{"set_mempolicy(bad mode)", func() string { return sys(unix.SYS_SET_MEMPOLICY, 999, 0, 0) }},
		{"migrate_pages(no such pid)", func() string { return sys(unix.SYS_MIGRATE_PAGES, 0x7fffffff, 0, 0, 0) }},
		// CLONE_NEWUSER|CLONE_FS is EINVAL in the kernel, and so is
		// CLONE_THREAD without CLONE_SIGHAND: no process is made.
		{"clone(CLONE_NEWUSER|CLONE_FS)", func() string { return sys(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_FS) }},
		{"clone(CLONE_NEWUSER|CLONE_FS|1<<32)", func() string {
			return sys(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_FS|high)
		}},
		{"clone(CLONE_THREAD)", func() string { return sys(unix.SYS_CLONE, unix.CLONE_THREAD) }},
		// A struct clone_args smaller than its first version: EINVAL.
		{"clone3(too small)", func() string { return sys(unix.SYS_CLONE3, ptr(new([64]byte)), 8) }},
		{"open_tree", func() string { return sys(unix.SYS_OPEN_TREE, atFdcwd, str(absent), 0) }},
		{"move_mount", func() string {
			return sys(unix.SYS_MOVE_MOUNT, atFdcwd, str(absent), atFdcwd, str(absent), 0)
		}},
		{"fsopen(NULL)", func() string { return sys(unix.SYS_FSOPEN, 0, 0) }},
		{"fsconfig(-1)", func() string { return sys(unix.SYS_FSCONFIG, ^uintptr(0), 0, 0, 0, 0) }},
		{"fsmount(-1)", func() string { return sys(unix.SYS_FSMOUNT, ^uintptr(0), 0, 0) }},
		{"fspick", func() string { return sys(unix.SYS_FSPICK, atFdcwd, str(absent), 0) }},
		{"mount_setattr", func() string {
			return sys(unix.SYS_MOUNT_SETATTR, atFdcwd, str(absent), 0, 0, 0)
		}},
		{"perf_event_open(NULL)", func() string { return sys(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0) }},
		{"ptrace(no such pid)", func() string { return sys(unix.SYS_PTRACE, unix.PTRACE_INTERRUPT, 0x7fffffff, 0, 0) }},
		{"personality(query)", func() string { return sys(unix.SYS_PERSONALITY, 0xffffffff) }},
		{"personality(PER_LINUX)", func() string { return sys(unix.SYS_PERSONALITY, 0) }},
		// The kernel reads an unsigned int: this sets PER_LINUX.
		{"personality(1<<32)", func() string { return sys(unix.SYS_PERSONALITY, high) }},
		{"socket(AF_PACKET)", func() string { return sock(unix.AF_PACKET, unix.SOCK_DGRAM) }},
		{"socket(AF_PACKET|1<<32)", func() string { return sock(unix.AF_PACKET|high, unix.SOCK_DGRAM) }},
		{"socket(AF_INET)", func() string { return sock(unix.AF_INET, unix.SOCK_DGRAM) }},
		{"socket(AF_INET|1<<32)", func() string { return sock(unix.AF_INET|high, unix.SOCK_DGRAM) }},
		{"socket(AF_INET6)", func() string { return sock(unix.AF_INET6, unix.SOCK_DGRAM) }},
		{"socket(AF_UNIX)", func() string { return sock(unix.AF_UNIX, unix.SOCK_STREAM) }},
		{"socket(AF_NETLINK)", func() string { return sock(unix.AF_NETLINK, unix.SOCK_RAW) }},
		{"exec /bin/true", func() string { return errResult(exec.Command("/bin/true").Run()) }},
		{"exec status", func() string {
			out, err := exec.Command("/bin/cat", "/proc/self/status").Output()
			if err != nil {
				return errResult(err)
			}
			return statusOf(out)
		}},
		// CLONE_NEWTIME makes Go fork with clone3.
		{"exec with clone3", func() string {
			cmd := exec.Command("/bin/true")
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWTIME}
			return errResult(cmd.Run())
		}},
		{"thread status", func() string {
			b, err := os.ReadFile("/proc/thread-self/status")
			if err != nil {
				return err.Error()
			}
			return statusOf(b)
		}},
		{"other threads", otherThreads},
	}
	ps = append(ps, ttyProbes()...)
	return append(ps, archProbes()...)
}

// ttyProbes ask /dev/null, which is no terminal, for terminal ioctls:
// ENOTTY when the filter lets them through.
func ttyProbes() []probe {
	ioctl := func(req uint64) string {
		f, err := os.Open("/dev/null")
		if err != nil {
			return err.Error()
		}
		defer f.Close()
		var b [64]byte
		_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(unsafe.Pointer(&b)))
		return result(0, e, false)
	}
	return []probe{
		{"ioctl(TIOCSTI)", func() string { return ioctl(unix.TIOCSTI) }},
		{"ioctl(TIOCSTI|1<<32)", func() string { return ioctl(unix.TIOCSTI | 1<<32) }},
		{"ioctl(TIOCLINUX)", func() string { return ioctl(unix.TIOCLINUX) }},
		{"ioctl(TIOCGWINSZ)", func() string { return ioctl(unix.TIOCGWINSZ) }},
	}
}

// otherThreads tells whether the process's other threads run without a
// filter ("some unfiltered") or all have one.
func otherThreads() string {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err.Error()
	}
	self := strconv.Itoa(unix.Gettid())
	for _, e := range ents {
		if e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "status"))
		if err == nil && strings.HasPrefix(statusOf(b), "Seccomp=0 ") {
			return "some unfiltered"
		}
	}
	return "all filtered"
}

// probeMain is the probe child: on its locked main thread it sets
// no_new_privs and loads the filter that mode names, then runs the probes
// (or the one call of probeCallEnv) and prints the results as a JSON
// object on stdout.
func probeMain(mode string) int {
	runtime.LockOSThread()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	if mode != "none" {
		if mode != "strict" && mode != "devel" {
			return fail(fmt.Errorf("unknown mode %q", mode))
		}
		prog, err := Filter(FilterOptions{Devel: mode == "devel"})
		if err != nil {
			return fail(err)
		}
		if err := setNoNewPrivs(); err != nil {
			return fail(err)
		}
		if err := loadFilter(prog); err != nil {
			return fail(err)
		}
	}
	results := map[string]string{}
	if nr := os.Getenv(probeCallEnv); nr != "" {
		n, err := strconv.ParseUint(nr, 0, 64)
		if err != nil {
			return fail(err)
		}
		// A kill must not leave a core file behind.
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			return fail(err)
		}
		r, _, e := unix.RawSyscall(uintptr(n), 0, 0, 0)
		results["call"] = result(r, e, false)
	} else {
		for _, p := range probes() {
			results[p.name] = p.run()
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		return fail(err)
	}
	return 0
}

// probeChild starts the test binary as a probe child in mode, under the
// command line wrap (none: directly), with extra open files from fd 3.
// env is added to the environment.
func probeChild(t *testing.T, mode string, wrap []string, extra []*os.File, env ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	argv := append(slices.Clone(wrap), self)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), append([]string{probeEnv + "=" + mode}, env...)...)
	cmd.ExtraFiles = extra
	cmd.Dir = t.TempDir()
	return cmd
}

// runProbes runs the probes in a probe child and returns their results.
func runProbes(t *testing.T, mode string, wrap []string, extra ...*os.File) map[string]string {
	t.Helper()
	cmd := probeChild(t, mode, wrap, extra)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe child %q %v: %v\nstderr:\n%s", mode, wrap, err, stderr.String())
	}
	var results map[string]string
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("probe child %q %v: %v\nstdout:\n%s\nstderr:\n%s", mode, wrap, err, out, stderr.String())
	}
	if len(results) != len(probes()) {
		t.Fatalf("probe child %q %v: %d results, want %d", mode, wrap, len(results), len(probes()))
	}
	return results
}

// A kernelExpectation is what a probe returns in a root process without
// a filter (base), under Filter{} (strict) and under Filter{Devel: true}
// (devel; empty: as strict).
type kernelExpectation struct{ base, strict, devel string }

// differs as a base means: anything but the strict result. The kernel's
// answer then depends on its version or configuration, but the probe
// still tells the filter's answer from the kernel's.
const differs = "(differs)"

// kernelWant is the expectation of each probe; archKernelWant adds the
// architecture's probes.
var kernelWant = map[string]kernelExpectation{
	"getpid":                              {"ok", "ok", ""},
	"no call (-1)":                        {"ENOSYS", "ENOSYS", ""},
	"unshare(CLONE_NEWUSER)":              {"EINVAL", "EPERM", ""},
	"setns(-1)":                           {"EBADF", "EPERM", ""},
	"mount":                               {"ENOENT", "EPERM", ""},
	"umount2":                             {"ENOENT", "EPERM", ""},
	"pivot_root":                          {"ENOENT", "EPERM", ""},
	"chroot":                              {"ENOENT", "EPERM", ""},
	"syslog(SIZE_BUFFER)":                 {"ok", "EPERM", ""},
	"acct":                                {"ENOENT", "EPERM", ""},
	"quotactl":                            {"ENOENT", "EPERM", ""},
	"add_key(NULL)":                       {"EFAULT", "EPERM", ""},
	"keyctl(bad op)":                      {"ENOTSUP", "EPERM", ""},
	"request_key(NULL)":                   {"EFAULT", "EPERM", ""},
	"move_pages(none)":                    {differs, "EPERM", ""},
	"mbind(bad mode)":                     {differs, "EPERM", ""},
	"get_mempolicy":                       {differs, "EPERM", ""},
	"set_mempolicy(bad mode)":             {differs, "EPERM", ""},
	"migrate_pages(no such pid)":          {differs, "EPERM", ""},
	"clone(CLONE_NEWUSER|CLONE_FS)":       {"EINVAL", "EPERM", ""},
	"clone(CLONE_NEWUSER|CLONE_FS|1<<32)": {"EINVAL", "EPERM", ""},
	"clone(CLONE_THREAD)":                 {"EINVAL", "EINVAL", ""},
	"clone3(too small)":                   {"EINVAL", "ENOSYS", ""},
	"open_tree":                           {"ENOENT", "ENOSYS", ""},
	"move_mount":                          {"ENOENT", "ENOSYS", ""},
	"fsopen(NULL)":                        {"EFAULT", "ENOSYS", ""},
	"fsconfig(-1)":                        {differs, "ENOSYS", ""},
	"fsmount(-1)":                         {"EBADF", "ENOSYS", ""},
	"fspick":                              {"ENOENT", "ENOSYS", ""},
	"mount_setattr":                       {"EINVAL", "ENOSYS", ""},
	"perf_event_open(NULL)":               {"EFAULT", "EPERM", "EFAULT"},
	"ptrace(no such pid)":                 {"ESRCH", "EPERM", "ESRCH"},
	"personality(query)":                  {"ok", "EPERM", "ok"},
	"personality(PER_LINUX)":              {"ok", "ok", ""},
	"personality(1<<32)":                  {"ok", "EPERM", "ok"},
	"socket(AF_PACKET)":                   {"ok", "EAFNOSUPPORT", ""},
	"socket(AF_PACKET|1<<32)":             {"ok", "EAFNOSUPPORT", ""},
	"socket(AF_INET)":                     {"ok", "ok", ""},
	"socket(AF_INET|1<<32)":               {"ok", "ok", ""},
	"socket(AF_INET6)":                    {"ok", "ok", ""},
	"socket(AF_UNIX)":                     {"ok", "ok", ""},
	"socket(AF_NETLINK)":                  {"ok", "ok", ""},
	"ioctl(TIOCSTI)":                      {"ENOTTY", "EPERM", ""},
	"ioctl(TIOCSTI|1<<32)":                {"ENOTTY", "EPERM", ""},
	"ioctl(TIOCLINUX)":                    {"ENOTTY", "EPERM", ""},
	"ioctl(TIOCGWINSZ)":                   {"ENOTTY", "ENOTTY", ""},
	"exec /bin/true":                      {"ok", "ok", ""},
	"exec status":                         {"Seccomp=0 NoNewPrivs=0", "Seccomp=2 NoNewPrivs=1", ""},
	"exec with clone3":                    {"ok", "ENOSYS", ""},
	"thread status":                       {"Seccomp=0 NoNewPrivs=0", "Seccomp=2 NoNewPrivs=1", ""},
	"other threads":                       {"some unfiltered", "some unfiltered", ""},
}

func TestFilterKernel(t *testing.T) {
	testutil.RequireRoot(t)
	want := allKernelWant()
	base := runProbes(t, "none", nil)
	strict := runProbes(t, "strict", nil)
	devel := runProbes(t, "devel", nil)
	for _, p := range probes() {
		w, ok := want[p.name]
		if !ok {
			t.Errorf("probe %q has no expectation", p.name)
			continue
		}
		if w.devel == "" {
			w.devel = w.strict
		}
		switch {
		case w.base == differs && base[p.name] == w.strict:
			t.Errorf("%s: %s without the filter too: the probe does not show the filter", p.name, base[p.name])
		case w.base != differs && base[p.name] != w.base:
			t.Errorf("%s: %s without the filter, want %s", p.name, base[p.name], w.base)
		}
		if strict[p.name] != w.strict {
			t.Errorf("%s: %s under the strict filter, want %s", p.name, strict[p.name], w.strict)
		}
		if devel[p.name] != w.devel {
			t.Errorf("%s: %s under the devel filter, want %s", p.name, devel[p.name], w.devel)
		}
	}
}

func allKernelWant() map[string]kernelExpectation {
	all := maps.Clone(kernelWant)
	maps.Copy(all, archKernelWant())
	return all
}

// bwrapDifferences are the probes whose results under bwrap differ
// between our filter and Flatpak's, with each side's result.
var bwrapDifferences = map[string]struct{ ours, flatpak string }{
	// Flatpak compares all 64 bits of the family; the kernel reads an
	// int, and we compare that.
	"socket(AF_INET|1<<32)": {"ok", "EAFNOSUPPORT"},
	// bwrap filters the whole process before it execs the probe; ours
	// filters the probe's thread that forks the command.
	"other threads": {"some unfiltered", "all filtered"},
}

// TestFilterMatchesFlatpakUnderBwrap runs the probes under bwrap twice:
// once with Flatpak's filter (built by libseccomp) given to bwrap
// --seccomp, once with ours loaded by the probe child itself. The
// results are the same but for bwrapDifferences.
func TestFilterMatchesFlatpakUnderBwrap(t *testing.T) {
	testutil.RequireRoot(t)
	bwrap := testutil.RequireTool(t, "bwrap")
	box := []string{bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--die-with-parent"}
	want := allKernelWant()
	for _, devel := range []bool{false, true} {
		t.Run(fmt.Sprintf("devel=%v", devel), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "flatpak.bpf")
			if err := os.WriteFile(path, testutil.FlatpakSeccompBPF(t, devel), 0o600); err != nil {
				t.Fatal(err)
			}
			ref, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			mode := "strict"
			if devel {
				mode = "devel"
			}
			theirs := runProbes(t, "none", append(slices.Clone(box), "--seccomp", "3", "--"), ref)
			ours := runProbes(t, mode, append(slices.Clone(box), "--"))
			for _, p := range probes() {
				o, f := ours[p.name], theirs[p.name]
				w := want[p.name].strict
				if devel && want[p.name].devel != "" {
					w = want[p.name].devel
				}
				if o != w {
					t.Errorf("%s: ours %s under bwrap, want %s as outside", p.name, o, w)
				}
				if d, ok := bwrapDifferences[p.name]; ok {
					if o != d.ours || f != d.flatpak {
						t.Errorf("%s: ours %s, Flatpak's %s; want the known difference %s, %s", p.name, o, f, d.ours, d.flatpak)
					}
					continue
				}
				if o != f {
					t.Errorf("%s: ours %s, Flatpak's %s", p.name, o, f)
				}
			}
		})
	}
}
