package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init must be the first thing main does. In the process Run re-executed
// as the sandbox's pid 1 it builds the sandbox, runs the command and exits
// with its status; anywhere else it returns at once.
func Init() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 || os.Getpid() != 1 {
		return
	}
	// Everything up to the command's start runs on this thread: the
	// command inherits its credentials and seccomp filter. It is never
	// unlocked, so no other goroutine ever runs with them.
	runtime.LockOSThread()
	// No process of the sandbox may look into pid 1 (/proc/1/fd, mem,
	// exe: it holds host files and, in a user namespace, capabilities on
	// its other threads). The command's exec makes it dumpable again.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	errPipe := os.NewFile(4, "error pipe")
	code, err := pid1(errPipe)
	if err != nil {
		var nf *NotFoundError
		if errors.As(err, &nf) {
			errPipe.Write(append([]byte("notfound\x00"), nf.Command...))
		} else {
			errPipe.Write(append([]byte("setup\x00"), err.Error()...))
		}
		os.Exit(125)
	}
	os.Exit(code)
}

// pid1 builds the sandbox, starts the command and reaps until it exits.
func pid1(errPipe *os.File) (int, error) {
	var w wire
	// Asked before this thread drops its credentials.
	root := os.Getuid() == 0
	cfg := os.NewFile(3, "config pipe")
	b, err := io.ReadAll(io.LimitReader(cfg, 16<<20))
	cfg.Close()
	if err != nil {
		return 0, fmt.Errorf("read config: %v", err)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return 0, fmt.Errorf("read config: %v", err)
	}
	closeInherited(&w)
	if err := buildRoot(&w); err != nil {
		return 0, err
	}
	if w.NewNet {
		if err := loopbackUp(); err != nil {
			return 0, fmt.Errorf("loopback: %v", err)
		}
	}
	path, err := lookPath(w.Argv[0], w.Env)
	if err != nil {
		return 0, err
	}
	prog, err := Filter(FilterOptions{Devel: w.Devel})
	if err != nil {
		return 0, fmt.Errorf("seccomp: %v", err)
	}
	if err := dropPrivileges(&w, root); err != nil {
		return 0, err
	}
	// setresuid reset the dumpable flag to fs.suid_dumpable.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("dumpable: %v", err)
	}
	if err := setNoNewPrivs(); err != nil {
		return 0, fmt.Errorf("no_new_privs: %v", err)
	}
	if err := loadFilter(prog); err != nil {
		return 0, fmt.Errorf("seccomp: %v", err)
	}
	// Only 0, 1 and 2 reach the command; whatever the caller of
	// lazytree left open is closed at exec.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, fmt.Errorf("close_range: %v", err)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	dir := w.Dir
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = "/"
	}
	proc, err := os.StartProcess(path, w.Argv, &os.ProcAttr{
		Dir:   dir,
		Env:   w.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %v", w.Argv[0], err)
	}
	errPipe.Close()
	return reap(proc.Pid, sigs), nil
}

// closeInherited closes the fds pid 1 inherited without close-on-exec
// that are not its own (fds lazytree's caller left open, which would
// reach the host), keeping 0-2, the error pipe and the config's.
func closeInherited(w *wire) {
	keep := map[int]bool{0: true, 1: true, 2: true, 4: true, w.RuntimeFD: true, w.AppFD: true, w.DataFD: true}
	for _, b := range w.Binds {
		keep[b.FD] = true
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || keep[fd] {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

// reap forwards signals to the command and waits for every process of
// the namespace until the command exits; its status is pid 1's.
func reap(pid int, sigs chan os.Signal) int {
	exited := make(chan int, 1)
	go func() {
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(-1, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				exited <- 1
				return
			}
			if got == pid {
				if ws.Signaled() {
					exited <- 128 + int(ws.Signal())
				} else {
					exited <- ws.ExitStatus()
				}
				return
			}
		}
	}()
	for {
		select {
		case code := <-exited:
			return code
		case s := <-sigs:
			syscall.Kill(pid, s.(syscall.Signal))
		}
	}
}

// lookPath finds argv[0] inside the sandbox: a path with a slash as it
// is, else in PATH (/app/bin:/usr/bin unless the app changed it).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if st, err := os.Stat(name); err == nil && !st.IsDir() {
			return name, nil
		}
		return "", &NotFoundError{Command: name}
	}
	path := "/app/bin:/usr/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &NotFoundError{Command: name}
}

// dropPrivileges gives this thread (and so the command) the sandbox's
// uid and gid, an empty bounding set and no capabilities at all. As root
// the uid change is process-wide; in a user namespace pid 1's other
// threads keep the namespace's capabilities, which reach nothing outside
// it and which the command (no ptrace, other credentials) cannot use.
func dropPrivileges(w *wire, root bool) error {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %v", c, err)
		}
	}
	if root {
		// For every thread of pid 1 too (Go and glibc apply set*id to
		// all threads): root's capabilities go with root's uid.
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %v", err)
		}
		if err := syscall.Setresgid(w.GID, w.GID, w.GID); err != nil {
			return fmt.Errorf("setresgid %d: %v", w.GID, err)
		}
		if err := syscall.Setresuid(w.UID, w.UID, w.UID); err != nil {
			return fmt.Errorf("setresuid %d: %v", w.UID, err)
		}
		// A change of credentials clears the parent death signal.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("parent death signal: %v", err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %v", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %v", err)
	}
	return nil
}

// loopbackUp brings lo up in the new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
