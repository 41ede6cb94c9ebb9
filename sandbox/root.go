package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// newRoot is where pid 1 builds the sandbox's root, on a tmpfs of its own
// mount namespace (the host's /tmp is untouched: every host directory
// arrives as an fd).
const newRoot = "/tmp"

// fdPath names an inherited fd for mount(2).
func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// buildRoot makes the sandbox's file system and pivots into it.
func buildRoot(w *wire) error {
	// Nothing done here reaches the host; host unmounts still reach us.
	if err := mountE("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave: %v", err)
	}
	if err := reopenAll(w); err != nil {
		return err
	}
	if err := mountE("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64m"); err != nil {
		return fmt.Errorf("root tmpfs: %v", err)
	}
	r := func(p string) string { return filepath.Join(newRoot, p) }
	mkdir := func(p string, mode os.FileMode) error {
		// Parents are traversable; only p gets mode.
		if err := os.MkdirAll(r(p), 0o755); err != nil {
			return err
		}
		return os.Chmod(r(p), mode)
	}

	// /usr, the links to it, /app.
	if err := bindFD(w.RuntimeFD, r("/usr"), true, true); err != nil {
		return fmt.Errorf("runtime at /usr: %v", err)
	}
	for _, l := range w.UsrLinks {
		if err := os.Symlink("usr/"+l, r(l)); err != nil {
			return err
		}
	}
	if w.AppFD >= 0 {
		if err := bindFD(w.AppFD, r("/app"), true, true); err != nil {
			return fmt.Errorf("app at /app: %v", err)
		}
	} else if err := mkdir("/app", 0o755); err != nil {
		return err
	}

	// /etc: the runtime's entries as links into /usr/etc, then the
	// generated files.
	if err := mkdir("/etc", 0o755); err != nil {
		return err
	}
	for _, e := range w.EtcLinks {
		if err := os.Symlink("/usr/etc/"+e, r("/etc/"+e)); err != nil {
			return err
		}
	}

	// /proc of the new pid namespace, its kernel knobs read-only.
	if err := mkdir("/proc", 0o555); err != nil {
		return err
	}
	if err := mountE("proc", r("/proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %v", err)
	}
	for _, p := range []string{"sys", "sysrq-trigger", "irq", "bus"} {
		t := r("/proc/" + p)
		if _, err := os.Lstat(t); err != nil {
			continue
		}
		if err := mountE(t, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("protect /proc/%s: %v", p, err)
		}
		if err := remountRO(t); err != nil {
			return fmt.Errorf("protect /proc/%s: %v", p, err)
		}
	}

	if err := buildDev(w, r); err != nil {
		return err
	}
	for _, d := range []string{"/tmp", "/run"} {
		mode := "mode=1777"
		if d == "/run" {
			mode = "mode=0755"
		}
		if err := mkdir(d, 0o755); err != nil {
			return err
		}
		if err := mountE("tmpfs", r(d), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, mode); err != nil {
			return fmt.Errorf("mount %s: %v", d, err)
		}
	}
	if err := mkdir("/var", 0o755); err != nil {
		return err
	}
	if err := os.Symlink("../tmp", r("/var/tmp")); err != nil {
		return err
	}
	run := fmt.Sprintf("/run/user/%d", w.UID)
	if err := mkdir(run, 0o700); err != nil {
		return err
	}
	if err := os.Chown(r(run), w.UID, w.GID); err != nil {
		return err
	}

	// The home directory (empty but for the app's data), owned by the
	// user.
	if err := mkdir(w.Home, 0o755); err != nil {
		return fmt.Errorf("home %s: %v", w.Home, err)
	}
	if err := os.Chown(r(w.Home), w.UID, w.GID); err != nil {
		return err
	}
	// Host binds. prepare refused targets inside another bind or a
	// directory the sandbox builds, so making them crosses only this
	// tmpfs.
	for _, b := range w.Binds {
		if err := bindFD(b.FD, r(b.Dest), b.ReadOnly, b.Dir); err != nil {
			return fmt.Errorf("bind %s: %v", b.Dest, err)
		}
	}
	// Masks (lazytree's own state; the other apps' data when a bind
	// shows the home directory), then the app's data on top. Paths under
	// a bind are resolved without following symlinks: the app may have
	// planted some there.
	masks := w.Mask
	appsDir := filepath.Join(w.Home, ".var", "app")
	if w.DataFD >= 0 {
		for _, b := range w.Binds {
			if within(appsDir, b.Dest) {
				masks = append(masks, appsDir)
				break
			}
		}
	}
	for _, m := range masks {
		// A directory between a bind and the mask could be renamed by
		// the app, taking the mask along: make each a mount point of its
		// own (which cannot be renamed).
		for _, b := range w.Binds {
			if !b.Dir || !within(m, b.Dest) || m == b.Dest {
				continue
			}
			rel, _ := filepath.Rel(b.Dest, m)
			parts := strings.Split(rel, "/")
			for i := 1; i < len(parts); i++ {
				mid := filepath.Join(b.Dest, filepath.Join(parts[:i]...))
				fd, err := walkNoFollow(r(""), mid, false, w.UID, w.GID)
				if err == unix.ENOENT {
					break
				}
				if err != nil {
					return fmt.Errorf("hide %s: %v", m, err)
				}
				err = mountE(fdPath(fd), fdPath(fd), "", unix.MS_BIND, "")
				unix.Close(fd)
				if err != nil {
					return fmt.Errorf("hide %s: pin %s: %v", m, mid, err)
				}
			}
		}
		fd, err := walkNoFollow(r(""), m, false, w.UID, w.GID)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return fmt.Errorf("hide %s: %v", m, err)
		}
		err = mountE("tmpfs", fdPath(fd), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("hide %s: %v", m, err)
		}
	}
	if w.DataFD >= 0 {
		d := filepath.Join(appsDir, w.AppID)
		fd, err := walkNoFollow(r(""), d, true, w.UID, w.GID)
		if err != nil {
			return fmt.Errorf("app data at %s: %v", d, err)
		}
		err = mountE(fdPath(w.DataFD), fdPath(fd), "", unix.MS_BIND|unix.MS_REC, "")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("app data at %s: %v", d, err)
		}
	}

	// Nothing of the host stays open in pid 1: an fd into the old root
	// would outlive the pivot (a user namespace keeps locked mounts
	// attached).
	closeHostFDs(w)

	// Generated files, in a stable order.
	names := make([]string, 0, len(w.Files))
	for p := range w.Files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if err := os.WriteFile(r(p), []byte(w.Files[p]), 0o644); err != nil {
			return fmt.Errorf("write %s: %v", p, err)
		}
		if p == "/.flatpak-info" {
			os.Chmod(r(p), 0o444)
		}
	}

	// Into the new root; the old one goes away entirely.
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %v", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %v", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := remountRO("/"); err != nil {
		return fmt.Errorf("make / read-only: %v", err)
	}
	return nil
}

// buildDev makes a minimal /dev: a few host devices, a new devpts, a
// private /dev/shm (devices= can add host devices or all of /dev).
func buildDev(w *wire, r func(string) string) error {
	if len(w.Devices) == 1 && w.Devices[0] == "/dev" {
		return bindPath("/dev", r("/dev"), false, true)
	}
	if err := os.MkdirAll(r("/dev"), 0o755); err != nil {
		return err
	}
	if err := mountE("tmpfs", r("/dev"), "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %v", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bindPath("/dev/"+d, r("/dev/"+d), false, false); err != nil {
			return fmt.Errorf("/dev/%s: %v", d, err)
		}
	}
	for _, d := range w.Devices {
		if st, err := os.Stat(d); err == nil {
			if err := bindPath(d, r(d), false, st.IsDir()); err != nil {
				return fmt.Errorf("%s: %v", d, err)
			}
		}
	}
	if err := os.Mkdir(r("/dev/pts"), 0o755); err != nil {
		return err
	}
	if err := mountE("devpts", r("/dev/pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"); err != nil {
		return fmt.Errorf("mount /dev/pts: %v", err)
	}
	if err := os.Symlink("pts/ptmx", r("/dev/ptmx")); err != nil {
		return err
	}
	if err := os.Mkdir(r("/dev/shm"), 0o1777); err != nil {
		return err
	}
	if w.HostSHM {
		if err := bindPath("/dev/shm", r("/dev/shm"), false, true); err != nil {
			return fmt.Errorf("/dev/shm: %v", err)
		}
	} else if err := mountE("tmpfs", r("/dev/shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /dev/shm: %v", err)
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"} {
		if err := os.Symlink(target, r("/dev/"+name)); err != nil {
			return err
		}
	}
	return nil
}

// reopen opens the file an inherited fd refers to again, in this mount
// namespace (an fd opened in the parent's cannot be a bind source here),
// by its path without following any symlink; it must be the same inode,
// so a path swapped between the parent's open and this one fails instead
// of binding something else.
func reopen(fd int) (int, error) {
	src, err := os.Readlink(fdPath(fd))
	if err != nil {
		return -1, err
	}
	nfd, err := openat2E(unix.AT_FDCWD, src, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("open %s again: %v", src, err)
	}
	var a, b unix.Stat_t
	if err := fstatE(fd, &a); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	if err := fstatE(nfd, &b); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		unix.Close(nfd)
		return -1, fmt.Errorf("%s changed while the sandbox started", src)
	}
	unix.Close(fd)
	return nfd, nil
}

// reopenAll replaces every inherited fd of w by one of this namespace,
// before the root tmpfs hides any host path.
func reopenAll(w *wire) error {
	fds := []*int{&w.RuntimeFD}
	if w.AppFD >= 0 {
		fds = append(fds, &w.AppFD)
	}
	if w.DataFD >= 0 {
		fds = append(fds, &w.DataFD)
	}
	for i := range w.Binds {
		fds = append(fds, &w.Binds[i].FD)
	}
	for _, p := range fds {
		nfd, err := reopen(*p)
		if err != nil {
			return err
		}
		*p = nfd
	}
	return nil
}

// walkNoFollow opens root/p (p relative to root, or absolute inside it)
// one component at a time without following a symlink, creating missing
// directories (0700, owned by uid:gid) when create is set, and returns an
// O_PATH fd of it. Missing without create: ENOENT. It serves both the
// host side (data directories, :create under home) and pid 1 (targets
// under binds).
func walkNoFollow(root, p string, create bool, uid, gid int) (int, error) {
	fd, err := openE(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" || name == "." || name == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("bad path %q", p)
		}
		nfd, err := openatE(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			// mkdirat needs a real directory fd.
			dfd, derr := openatE(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if derr == nil {
				if derr = mkdiratE(dfd, name, 0o700); derr == nil {
					unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
				}
				unix.Close(dfd)
			}
			if derr != nil && derr != unix.EEXIST {
				unix.Close(fd)
				return -1, derr
			}
			nfd, err = openatE(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		unix.Close(fd)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			return -1, fmt.Errorf("%s: a symlink or not a directory on the way", p)
		}
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// closeHostFDs closes every fd of w that refers to a host file.
func closeHostFDs(w *wire) {
	for _, fd := range []*int{&w.RuntimeFD, &w.AppFD, &w.DataFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	for i := range w.Binds {
		unix.Close(w.Binds[i].FD)
		w.Binds[i].FD = -1
	}
}

// bindFD binds the directory or file fd refers to at dest.
func bindFD(fd int, dest string, ro, dir bool) error {
	return bindPath(fdPath(fd), dest, ro, dir)
}

// bindPath binds src (recursively) at dest, creating dest, and makes the
// bind read-only when asked.
func bindPath(src, dest string, ro, dir bool) error {
	if dir {
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := mountE(src, dest, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if ro {
		return remountRO(dest)
	}
	return nil
}

// remountRO makes the mount at p read-only, nosuid and nodev, keeping the
// flags it already has (a user namespace may not clear locked ones).
func remountRO(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	for _, f := range []struct{ st, ms int64 }{
		{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st.Flags&f.st != 0 {
			flags |= uintptr(f.ms)
		}
	}
	return mountE("", p, "", flags, "")
}
