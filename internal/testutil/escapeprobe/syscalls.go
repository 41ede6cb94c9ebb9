//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// probe is one syscall check: key is its name in the results, run makes
// the call and returns the result.
type probe struct {
	key string
	run func() string
}

// probes are the syscall checks, in the order the child runs them. They
// are defined per architecture (syscalls_amd64.go); this order is the
// protocol between runSyscallProbes and its child.
var probes = archProbes()

// runSyscallProbes runs probes in a child process (escapeprobe -child
// syscalls -from I), which prints "I RESULT" after each. When the child
// dies, the probe after the last one it printed is the one that killed
// it: it is reported as "killed:SIGNAME" (a filter that answers with
// SECCOMP_RET_KILL_PROCESS, or with SIGSYS) or "crashed:exitN", and a new
// child goes on with the next probe. A probe that prints nothing for
// probeTimeout is "killed:thread" when the child's main thread, which
// runs the probes, is gone while the process lives on (a filter's
// SECCOMP_RET_KILL_THREAD, libseccomp's SCMP_ACT_KILL, which Flatpak's
// filter uses for the ABIs it does not cover: the Go runtime cannot go on
// without that thread, so the child hangs), else "hung"; the child is
// killed and the next one goes on. Running them away from the main
// process also keeps the side effects a probe could have (none are
// meant) out of the other checks.
func runSyscallProbes(res results) {
	exe := selfExe()
	next := 0
	for next < len(probes) {
		got, status := runProbeChild(exe, next)
		for i, r := range got {
			res[probes[i].key] = r
			if i+1 > next {
				next = i + 1
			}
		}
		if status == "" {
			// A clean exit that printed nothing for the rest would be a
			// bug here: report it rather than loop.
			for ; next < len(probes); next++ {
				res[probes[next].key] = "unreported"
			}
			return
		}
		if strings.HasPrefix(status, "start:") {
			for ; next < len(probes); next++ {
				res[probes[next].key] = status
			}
			return
		}
		if next < len(probes) {
			res[probes[next].key] = status
			next++
		}
	}
}

// probeTimeout is how long one probe may take; every probe returns in
// milliseconds unless its thread was killed.
const probeTimeout = 3 * time.Second

// selfExe is the path to start this program again from inside the
// sandbox.
func selfExe() string {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe"
	}
	return os.Args[0]
}

// runProbeChild runs probes from index from in a child and returns what
// it printed (index -> result) and "" for a clean exit, else how the
// child ended ("killed:SIGSYS", "killed:thread", "hung", "crashed:exit2",
// "start:ERRNO"). A goroutine reads the child's output; it ends when the
// child is gone and the pipe closes, before this returns.
func runProbeChild(exe string, from int) (map[int]string, string) {
	cmd := exec.Command(exe, "-child", "syscalls", "-from", strconv.Itoa(from))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "start:" + errnoName(err)
	}
	if err := cmd.Start(); err != nil {
		return nil, "start:" + errnoName(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	got := map[int]string{}
	timer := time.NewTimer(probeTimeout)
	defer timer.Stop()
	stuck := ""
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break read
			}
			is, r, ok := strings.Cut(l, " ")
			i, err := strconv.Atoi(is)
			if ok && err == nil && i >= from && i < len(probes) {
				got[i] = r
			}
			timer.Reset(probeTimeout)
		case <-timer.C:
			stuck = "hung"
			if procState(cmd.Process.Pid) == "Z" {
				stuck = "killed:thread"
			}
			cmd.Process.Kill()
			for range lines {
			}
			break read
		}
	}
	err = cmd.Wait()
	switch {
	case stuck != "":
		return got, stuck
	case err == nil:
		return got, ""
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return got, "killed:" + unix.SignalName(ws.Signal())
		}
		return got, fmt.Sprintf("crashed:exit%d", ee.ExitCode())
	}
	return got, "wait:" + errnoName(err)
}

// procState returns the state letter of process pid's main thread
// ("R", "S", "Z", ...), or "" when it cannot be read.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	return statState(string(b))
}

// statState extracts the state field of a /proc/PID/stat line, "PID (COMM)
// STATE ...", where COMM may itself hold spaces and parentheses.
func statState(s string) string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// init keeps the main goroutine on the main thread (a lock taken in init
// holds it there for main), which runChild's probes need.
func init() { runtime.LockOSThread() }

// runChild is the -child mode: "syscalls" runs probes from index from,
// printing "I RESULT" after each (one write each, so a line is out before
// the next probe can kill the process); "noop" exits at once (the
// grandchild of "userns:clone").
func runChild(mode string, from int) int {
	switch mode {
	case "noop":
		return 0
	case "syscalls":
		// The probes run on the main thread (see runSyscallProbes), so
		// that a filter that kills the calling thread leaves a zombie
		// main thread that the parent can recognise. The main goroutine
		// is on that thread only because init locked it there: locked
		// here, it would stay on whatever thread it had moved to.
		for i := from; i < len(probes); i++ {
			fmt.Fprintf(os.Stdout, "%d %s\n", i, probes[i].run())
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "escapeprobe: unknown child mode %q\n", mode)
	return 2
}

// errnoResult is the result of a raw syscall: "ok" or "denied:ERRNO".
func errnoResult(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return denied(e)
}

// cloneNewUser is "userns:clone": start this program again as "-child
// noop" with CLONE_NEWUSER (os/exec's clone, not clone3). "ok" when the
// nested user namespace was made (the child exits at once: nothing runs
// in it), "denied:EPERM" from a seccomp filter, "denied:ENOSPC" when
// user.max_user_namespaces is exhausted (bwrap --disable-userns sets it
// to 1 inside).
func cloneNewUser() string {
	cmd := exec.Command(selfExe(), "-child", "noop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Sprintf("child:exit%d", ee.ExitCode())
		}
		return denied(err)
	}
	return "ok"
}

// withDevNull runs f on an fd of /dev/null (or of a pipe when there is
// none): an fd that is not a terminal, so that the tty ioctls fail with
// ENOTTY when nothing filters them, and can never reach a terminal.
func withDevNull(f func(fd int) string) string {
	fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return "setup:" + errnoName(err)
		}
		defer unix.Close(p[1])
		fd = p[0]
	}
	defer unix.Close(fd)
	return f(fd)
}

// socketResult is a socket(2) probe: "ok" (the socket is closed at once)
// or "denied:ERRNO".
func socketResult(domain, typ, proto int) string {
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return denied(err)
	}
	unix.Close(fd)
	return "ok"
}
