package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initArg0 is the argv[0] of the re-executed binary: Init recognises it.
const initArg0 = "lazytree-sandbox-init"

// Errors Run returns before anything is started.
var (
	// ErrNoUserNamespaces: an unprivileged user cannot create the
	// sandbox's namespaces on this kernel.
	ErrNoUserNamespaces = errors.New("sandbox: this kernel does not let unprivileged users create user namespaces (see /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)")
)

// SetupError is a failure to build the sandbox (before the command ran).
type SetupError struct{ Msg string }

func (e *SetupError) Error() string { return "sandbox: " + e.Msg }

// NotFoundError is a command that does not exist inside the sandbox.
type NotFoundError struct{ Command string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("sandbox: command %q not found in /app/bin or /usr/bin of the sandbox", e.Command)
}

// wire is what the sandbox's pid 1 is told over its config pipe. Host
// directories arrive as file descriptors (fds), never as paths, so no
// path is resolved again after Run checked it.
type wire struct {
	RuntimeFD int
	AppFD     int // -1: no app
	AppID     string
	Argv      []string
	Env       []string
	Dir       string
	Home      string
	UID, GID  int
	UserName  string
	NewNet    bool
	Devel     bool
	// DataFD is ~/.var/app/ID (-1: none), bound at Home/.var/app/ID.
	DataFD int
	Binds  []wireBind
	// Devices are host device paths bound at the same place ("/dev" for
	// devices=all).
	Devices []string
	HostSHM bool
	Files   map[string]string // generated files: path inside → content
	// EtcLinks are runtime etc entries linked from /etc to /usr/etc.
	EtcLinks []string
	// UsrLinks are the top-level links to /usr (bin, lib, lib64, sbin, ...).
	UsrLinks []string
	// Mask are paths hidden under an empty tmpfs where a bind shows them.
	Mask []string
}

type wireBind struct {
	FD       int
	Dest     string
	ReadOnly bool
	Dir      bool
}

// generated are the /etc files the sandbox writes itself, never taken
// from the runtime.
var generated = map[string]bool{"passwd": true, "group": true, "hosts": true, "resolv.conf": true,
	"machine-id": true, "host.conf": true, "localtime": true, "timezone": true}

// Run starts spec.Command in a new sandbox and waits for it. It returns
// the command's exit status (128+N for a signal N), or an error when the
// sandbox could not be built (a *SetupError, *NotFoundError or
// ErrNoUserNamespaces). When ctx ends, the command gets SIGTERM, and the
// whole sandbox SIGKILL 5 s later.
func Run(ctx context.Context, spec *Spec) (int, error) {
	p, err := prepare(spec)
	if err != nil {
		return 0, err
	}
	defer p.close()
	return p.run(ctx)
}

// prepared is a Spec turned into fds and a wire config.
type prepared struct {
	spec  *Spec
	w     wire
	files []*os.File // ExtraFiles after the two pipes (addFD)
	// socketEnv points the app at the sockets bound for it.
	socketEnv []string
}

func (p *prepared) close() {
	for _, f := range p.files {
		f.Close()
	}
}

// addFD keeps f open for the child and returns the fd number it will have
// there (ExtraFiles start at 3; fd 3 is the config pipe, 4 the error
// pipe).
func (p *prepared) addFD(f *os.File) int {
	p.files = append(p.files, f)
	return 4 + len(p.files)
}

func prepare(spec *Spec) (*prepared, error) {
	if spec.Runtime == "" {
		return nil, &SetupError{"no runtime"}
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, &SetupError{"no command"}
	}
	p := &prepared{spec: spec}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	w := &p.w
	w.AppFD, w.DataFD = -1, -1
	w.AppID = spec.AppID
	w.Argv = spec.Command
	w.Devel = spec.Devel
	w.NewNet = !slices.Contains(spec.Share, "network")
	if err := p.identity(); err != nil {
		return nil, err
	}

	rt, err := openDir(spec.Runtime)
	if err != nil {
		return nil, &SetupError{fmt.Sprintf("runtime %s: %v", spec.Runtime, err)}
	}
	w.RuntimeFD = p.addFD(rt)
	for _, l := range []string{"bin", "lib", "lib32", "lib64", "libx32", "sbin"} {
		var st unix.Stat_t
		if fstatatE(int(rt.Fd()), l, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			w.UsrLinks = append(w.UsrLinks, l)
		}
	}
	// The runtime's etc, never through a link (that would list a host
	// directory's names in /etc).
	if efd, err := openatE(int(rt.Fd()), "etc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		ef := os.NewFile(uintptr(efd), "etc")
		ents, _ := ef.ReadDir(-1)
		ef.Close()
		for _, e := range ents {
			if !generated[e.Name()] {
				w.EtcLinks = append(w.EtcLinks, e.Name())
			}
		}
	}
	if spec.App != "" {
		app, err := openDir(spec.App)
		if err != nil {
			return nil, &SetupError{fmt.Sprintf("app %s: %v", spec.App, err)}
		}
		w.AppFD = p.addFD(app)
	}
	if spec.AppID != "" {
		if strings.ContainsAny(spec.AppID, "/\x00") || spec.AppID == "." || spec.AppID == ".." {
			return nil, &SetupError{fmt.Sprintf("app id %q is not a name", spec.AppID)}
		}
		d, err := openDataDir(w.Home, spec.AppID, w.UID, w.GID)
		if err != nil {
			return nil, &SetupError{err.Error()}
		}
		w.DataFD = p.addFD(d)
	}
	for _, b := range spec.Filesystems {
		if err := p.bind(b); err != nil {
			return nil, err
		}
	}
	p.sockets()
	p.devices()
	w.Dir = spec.Dir
	if w.Dir == "" {
		w.Dir = w.Home
	}
	w.Env = buildEnv(os.Environ(), w, append(p.socketEnv, spec.Env...))
	w.Files = p.etcFiles()
	if spec.FlatpakInfo != nil {
		w.Files["/.flatpak-info"] = string(spec.FlatpakInfo)
	}
	for _, m := range spec.Mask {
		if !filepath.IsAbs(m) {
			return nil, &SetupError{fmt.Sprintf("mask %q: not an absolute path", m)}
		}
		w.Mask = append(w.Mask, filepath.Clean(m))
	}
	ok = true
	return p, nil
}

// identity fills in the command's uid, gid, user name and home.
func (p *prepared) identity() error {
	w, spec := &p.w, p.spec
	w.UID, w.GID = spec.UID, spec.GID
	if w.UID == 0 {
		w.UID, w.GID = os.Getuid(), os.Getgid()
		if w.UID == 0 {
			w.UID, w.GID = 65534, 65534
			if u, err := strconv.Atoi(os.Getenv("SUDO_UID")); err == nil && u > 0 {
				w.UID = u
				if g, err := strconv.Atoi(os.Getenv("SUDO_GID")); err == nil && g > 0 {
					w.GID = g
				}
			}
		}
	}
	if os.Getuid() != 0 && w.UID != os.Getuid() {
		return &SetupError{fmt.Sprintf("uid %d: an unprivileged user can only run as itself", w.UID)}
	}
	if os.Getuid() != 0 && !userNamespacesWork() {
		return ErrNoUserNamespaces
	}
	w.UserName = spec.UserName
	w.Home = spec.Home
	if u, err := user.LookupId(strconv.Itoa(w.UID)); err == nil {
		if w.UserName == "" {
			w.UserName = u.Username
		}
		if w.Home == "" && os.Getuid() != 0 {
			w.Home = u.HomeDir
		}
	}
	if w.UserName == "" || !validName(w.UserName) {
		w.UserName = "user"
	}
	if w.Home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return &SetupError{"no home directory: " + err.Error()}
		}
		w.Home = h
	}
	if !filepath.IsAbs(w.Home) {
		return &SetupError{fmt.Sprintf("home %q is not absolute", w.Home)}
	}
	w.Home = filepath.Clean(w.Home)
	if reserved(w.Home) {
		return &SetupError{fmt.Sprintf("home %s is inside a directory the sandbox owns", w.Home)}
	}
	return nil
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return s != ""
}

// reservedDirs are built by the sandbox; nothing from the host is bound
// over them or inside them.
var reservedDirs = []string{"/usr", "/app", "/proc", "/dev", "/etc", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/.flatpak-info"}

func reserved(p string) bool {
	if p == "/" {
		return true
	}
	for _, r := range reservedDirs {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// bind opens one --filesystem path for the child.
func (p *prepared) bind(b Bind) error {
	if !filepath.IsAbs(b.Path) {
		return &SetupError{fmt.Sprintf("filesystem %q: not an absolute path", b.Path)}
	}
	dest := filepath.Clean(b.Path)
	if reserved(dest) {
		return &SetupError{fmt.Sprintf("filesystem %s: the sandbox owns that path", dest)}
	}
	// A bind inside another host directory would be made by walking
	// that directory, whose contents the app may control.
	if p.w.AppID != "" && within(dest, filepath.Join(p.w.Home, ".var", "app")) {
		return &SetupError{fmt.Sprintf("filesystem %s: inside the apps' data directories", dest)}
	}
	for _, o := range p.w.Binds {
		if within(dest, o.Dest) || within(o.Dest, dest) {
			return &SetupError{fmt.Sprintf("filesystem %s: nested with %s (bind the outer one only)", dest, o.Dest)}
		}
	}
	if b.Create {
		if !within(dest, p.w.Home) || dest == p.w.Home {
			return &SetupError{fmt.Sprintf("filesystem %s:create: only directories under the home directory are created", dest)}
		}
		rel, _ := filepath.Rel(p.w.Home, dest)
		d, err := walkNoFollow(p.w.Home, rel, true, p.w.UID, p.w.GID)
		if err != nil {
			return &SetupError{fmt.Sprintf("filesystem %s: %v", dest, err)}
		}
		unix.Close(d)
	}
	var f *os.File
	if b.NoSymlinks || b.Create {
		fd, err := openat2E(unix.AT_FDCWD, dest, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if err != nil {
			if err == unix.ELOOP {
				return &SetupError{fmt.Sprintf("filesystem %s: the path has a symlink, which is never followed for it", dest)}
			}
			return &SetupError{fmt.Sprintf("filesystem %s: %v", dest, err)}
		}
		f = os.NewFile(uintptr(fd), dest)
	} else {
		var err error
		if f, err = os.OpenFile(dest, unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
			return &SetupError{fmt.Sprintf("filesystem %s: %v", dest, err)}
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return &SetupError{fmt.Sprintf("filesystem %s: %v", dest, err)}
	}
	p.w.Binds = append(p.w.Binds, wireBind{FD: p.addFD(f), Dest: dest, ReadOnly: b.ReadOnly, Dir: fi.IsDir()})
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// sockets binds the display and sound sockets the app asked for, where
// the host has them.
func (p *prepared) sockets() {
	w := &p.w
	run := fmt.Sprintf("/run/user/%d", w.UID)
	xdg := os.Getenv("XDG_RUNTIME_DIR")
	add := func(host, dest, env string) {
		// A socket bind never lands inside another bind (whose content
		// the app may control), and only a socket is bound: not a file
		// a planted link points to.
		for _, o := range p.w.Binds {
			if within(dest, o.Dest) || within(o.Dest, dest) {
				return
			}
		}
		f, err := os.OpenFile(host, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		if st, err := f.Stat(); err != nil || st.Mode()&os.ModeSocket == 0 {
			f.Close()
			return
		}
		p.w.Binds = append(p.w.Binds, wireBind{FD: p.addFD(f), Dest: dest})
		if env != "" {
			p.socketEnv = append(p.socketEnv, env)
		}
	}
	for _, s := range p.spec.Sockets {
		switch s {
		case "x11", "fallback-x11":
			d := os.Getenv("DISPLAY")
			if n, ok := strings.CutPrefix(d, ":"); ok {
				n, _, _ = strings.Cut(n, ".")
				if _, err := strconv.Atoi(n); err == nil {
					add("/tmp/.X11-unix/X"+n, "/tmp/.X11-unix/X99", "DISPLAY=:99.0")
				}
			}
		case "wayland":
			if xdg != "" {
				wd := os.Getenv("WAYLAND_DISPLAY")
				if wd == "" {
					wd = "wayland-0"
				}
				if !strings.Contains(wd, "/") {
					add(filepath.Join(xdg, wd), run+"/wayland-0", "WAYLAND_DISPLAY=wayland-0")
				}
			}
		case "pulseaudio":
			if xdg != "" {
				add(filepath.Join(xdg, "pulse", "native"), run+"/pulse/native", "PULSE_SERVER=unix:"+run+"/pulse/native")
			}
		}
	}
}

// devices lists the host devices the app asked for.
func (p *prepared) devices() {
	for _, d := range p.spec.Devices {
		switch d {
		case "all":
			p.w.Devices = []string{"/dev"}
			return
		case "dri":
			p.w.Devices = append(p.w.Devices, "/dev/dri")
		case "kvm":
			p.w.Devices = append(p.w.Devices, "/dev/kvm")
		case "shm":
			p.w.HostSHM = true
		}
	}
}

// etcFiles are the generated /etc files.
func (p *prepared) etcFiles() map[string]string {
	w := &p.w
	files := map[string]string{}
	var pw, gr strings.Builder
	fmt.Fprintf(&pw, "%s:x:%d:%d:%s:%s:/bin/sh\n", w.UserName, w.UID, w.GID, w.UserName, w.Home)
	fmt.Fprintf(&gr, "%s:x:%d:\n", w.UserName, w.GID)
	if w.UID != 65534 {
		pw.WriteString("nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n")
	}
	if w.GID != 65534 {
		gr.WriteString("nogroup:x:65534:\n")
	}
	files["/etc/passwd"], files["/etc/group"] = pw.String(), gr.String()
	host, _ := os.Hostname()
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if validName(host) {
		hosts += "127.0.1.1\t" + host + "\n"
	}
	files["/etc/hosts"] = hosts
	files["/etc/resolv.conf"] = ""
	if !w.NewNet {
		files["/etc/resolv.conf"] = readSmall("/etc/resolv.conf")
	}
	id := strings.TrimSpace(readSmall("/etc/machine-id"))
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		id = randomHex(16)
	}
	files["/etc/machine-id"] = id + "\n"
	return files
}

// readSmall reads a small host file ("" when missing or too big).
func readSmall(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil || len(b) > 64<<10 {
		return ""
	}
	return string(b)
}

// openDir opens a host directory for a bind (an O_PATH fd). Its last
// component must not be a symlink: a tree from a remote that makes
// files/ a link (to /home, say) must not turn into a bind of the host's
// directory.
func openDir(p string) (*os.File, error) {
	fd, err := openE(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOTDIR || err == unix.ELOOP {
			return nil, errors.New("not a directory (a symlink is never followed)")
		}
		return nil, err
	}
	var st unix.Stat_t
	if err := fstatE(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		return nil, errors.New("not a directory (a symlink is never followed)")
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openDataDir opens (creating what is missing) home/.var/app/ID and its
// data, config and cache directories one component at a time, never
// following a symlink (CVE-2024-42472: a symlink planted there must not
// turn into a bind of a host directory). Directories it creates belong to
// uid:gid.
func openDataDir(home, appID string, uid, gid int) (*os.File, error) {
	path := filepath.Join(home, ".var", "app", appID)
	for _, sub := range []string{"data", "config", "cache"} {
		d, err := walkNoFollow(home, filepath.Join(".var", "app", appID, sub), true, uid, gid)
		if err != nil {
			return nil, fmt.Errorf("app data: %w", err)
		}
		unix.Close(d)
	}
	fd, err := walkNoFollow(home, filepath.Join(".var", "app", appID), false, uid, gid)
	if err != nil {
		return nil, fmt.Errorf("app data: %w", err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// userNamespacesWork reports whether this process may create a user
// namespace (probed once with a child that does nothing).
func userNamespacesWork() bool {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err == nil && strings.TrimSpace(string(b)) == "0" {
		return false
	}
	b, err = os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone")
	if err == nil && strings.TrimSpace(string(b)) == "0" {
		return false
	}
	return true
}

// run starts pid 1 of the sandbox and waits for it.
func (p *prepared) run(ctx context.Context) (int, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer cfgR.Close()
	defer cfgW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer errR.Close()
	defer errW.Close()

	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{initArg0},
		Env:        []string{},
		ExtraFiles: append([]*os.File{cfgR, errW}, p.files...),
		Stdin:      p.spec.Stdin,
		Stdout:     p.spec.Stdout,
		Stderr:     p.spec.Stderr,
	}
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP)
	if !slices.Contains(p.spec.Share, "ipc") {
		flags |= unix.CLONE_NEWIPC
	}
	if p.w.NewNet {
		flags |= unix.CLONE_NEWNET
	}
	attr := &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if os.Getuid() != 0 {
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: p.w.UID, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: p.w.GID, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		// pid 1 keeps, in the new user namespace only, what it needs
		// to build the root; it drops them before the command starts.
		attr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETPCAP, unix.CAP_SYS_CHROOT,
			unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_CHOWN, unix.CAP_MKNOD}
	}
	cmd.SysProcAttr = attr
	cfg, err := json.Marshal(&p.w)
	if err != nil {
		return 0, err
	}

	type result struct {
		code int
		err  error
	}
	started := make(chan error, 1)
	done := make(chan result, 1)
	go func() {
		// The parent death signal fires when the thread that started
		// the child exits: keep this one until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		done <- result{exitCode(cmd.ProcessState), err}
	}()
	if err := <-started; err != nil {
		if os.Getuid() != 0 && errors.Is(err, syscall.EPERM) {
			return 0, fmt.Errorf("%w: %v", ErrNoUserNamespaces, err)
		}
		return 0, &SetupError{fmt.Sprintf("start: %v", err)}
	}
	cfgR.Close()
	errW.Close()
	go func() {
		cfgW.Write(cfg)
		cfgW.Close()
	}()
	// The error pipe closes (on exec of the command, CLOEXEC) without a
	// word when the sandbox is up, or carries what went wrong.
	msg := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(errR, 64<<10))
		msg <- b
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case res = <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			res = <-done
		}
	}
	if b := <-msg; len(b) > 0 {
		return 0, decodeSetupError(b)
	}
	if res.err != nil {
		var ee *exec.ExitError
		if !errors.As(res.err, &ee) {
			return 0, res.err
		}
	}
	return res.code, nil
}

// setup error messages from pid 1: "notfound\x00CMD" or "setup\x00MSG".
func decodeSetupError(b []byte) error {
	kind, rest, _ := bytes.Cut(b, []byte{0})
	if string(kind) == "notfound" {
		return &NotFoundError{Command: string(rest)}
	}
	return &SetupError{string(rest)}
}

// exitCode is the shell's view of a process's end: its status, or 128+N
// when signal N killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
