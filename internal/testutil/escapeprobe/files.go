//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// writeProbeName is the file the write checks create (O_EXCL) and remove.
const writeProbeName = ".escapeprobe-write"

// checkFiles runs the file checks:
//
//   - "hidden:PATH" for each -hidden PATH: "absent" when stat fails with
//     ENOENT (the host file is not in the sandbox), "visible" when it
//     succeeds, "denied:ERRNO" for any other failure (EACCES means the
//     file is there but unreadable: still a leak of its existence).
//   - "write:PATH" for /, /usr, /app and each -readonly PATH: creates a
//     file in the directory and removes it again. "readonly" for EROFS (a
//     read-only mount, what /usr and /app must be), "denied:EACCES" (or
//     another errno) when permissions refuse it, "absent" when the
//     directory is missing, "writable" when the file was created.
//   - "mount:PATH" for /, /usr, /app, /etc, /dev, /proc/sys and each
//     -readonly PATH: the options of the mount that holds PATH, from
//     /proc/self/mountinfo, reduced to "ro" or "rw" then nosuid, nodev and
//     noexec when set ("ro,nosuid,nodev"); "absent" when PATH is missing.
//   - "data:DIR" for each -data DIR: "writable" when a file can be
//     created, written, read back and removed there, else "absent" or
//     "denied:ERRNO".
func checkFiles(res results, cfg *config) {
	for _, p := range cfg.hidden {
		res["hidden:"+p] = hiddenResult(p)
	}
	writeDirs := append([]string{"/", "/usr", "/app"}, cfg.readonly...)
	for _, d := range writeDirs {
		res["write:"+d] = writeResult(d)
	}
	mounts, err := readMountinfo("/proc/self/mountinfo")
	for _, p := range append([]string{"/", "/usr", "/app", "/etc", "/dev", "/proc/sys"}, cfg.readonly...) {
		switch _, serr := os.Stat(p); {
		case serr != nil && errors.Is(serr, fs.ErrNotExist):
			res["mount:"+p] = "absent"
		case err != nil:
			res["mount:"+p] = "mountinfo:" + errnoName(err)
		default:
			res["mount:"+p] = mountOptions(mounts, p)
		}
	}
	for _, d := range cfg.data {
		res["data:"+d] = dataResult(d)
	}
}

func hiddenResult(p string) string {
	_, err := os.Stat(p)
	switch {
	case err == nil:
		return "visible"
	case errors.Is(err, fs.ErrNotExist):
		return "absent"
	}
	return denied(err)
}

func writeResult(dir string) string {
	p := filepath.Join(dir, writeProbeName)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	switch {
	case err == nil:
		unix.Close(fd)
		unix.Unlink(p)
		return "writable"
	case errors.Is(err, unix.EROFS):
		return "readonly"
	case errors.Is(err, unix.ENOENT):
		return "absent"
	}
	return denied(err)
}

func dataResult(dir string) string {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "absent"
		}
		return denied(err)
	}
	p := filepath.Join(dir, writeProbeName)
	want := []byte("escapeprobe\n")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return denied(err)
	}
	defer os.Remove(p)
	defer f.Close()
	if _, err := f.Write(want); err != nil {
		return "write:" + errnoName(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		return "read:" + errnoName(err)
	}
	if !bytes.Equal(got, want) {
		return "read-back-differs"
	}
	return "writable"
}

// mountEntry is one line of /proc/self/mountinfo, reduced to what the
// checks use.
type mountEntry struct {
	point string
	opts  []string // per-mount options, then the superblock's
}

// parseMountinfo parses /proc/PID/mountinfo (proc(5)): fields 5 (mount
// point, with octal escapes) and 6 (per-mount options), and the super
// options after the " - fstype source" separator. Mount points are
// cleaned. Malformed lines and relative mount points are an error; the
// kernel writes neither.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+4 {
			return nil, fmt.Errorf("parse mountinfo line %q: too few fields", line)
		}
		point, err := unescapeOctal(f[4])
		if err != nil {
			return nil, fmt.Errorf("parse mountinfo line %q: %w", line, err)
		}
		if !strings.HasPrefix(point, "/") {
			return nil, fmt.Errorf("parse mountinfo line %q: mount point is not absolute", line)
		}
		point = filepath.Clean(point)
		opts := strings.Split(f[5], ",")
		opts = append(opts, strings.Split(f[sep+3], ",")...)
		out = append(out, mountEntry{point: point, opts: opts})
	}
	return out, sc.Err()
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mountinfo paths.
func unescapeOctal(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 >= len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(n))
		i += 3
	}
	return b.String(), nil
}

func readMountinfo(p string) ([]mountEntry, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// mountOptions describes the mount that holds p: the last-listed mount
// (the one on top) among those whose mount point is the longest prefix
// of p.
func mountOptions(mounts []mountEntry, p string) string {
	p = filepath.Clean(p)
	best := -1
	for i, m := range mounts {
		if !pathWithin(p, m.point) {
			continue
		}
		if best < 0 || len(m.point) >= len(mounts[best].point) {
			best = i
		}
	}
	if best < 0 {
		return "unmounted"
	}
	return summarizeOptions(mounts[best].opts)
}

// pathWithin reports whether p is dir or below it.
func pathWithin(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// summarizeOptions reduces mount options to "ro" or "rw", then nosuid,
// nodev and noexec in that order when present.
func summarizeOptions(opts []string) string {
	out := []string{"rw"}
	if slices.Contains(opts, "ro") {
		out[0] = "ro"
	}
	for _, o := range []string{"nosuid", "nodev", "noexec"} {
		if slices.Contains(opts, o) {
			out = append(out, o)
		}
	}
	return strings.Join(out, ",")
}

// devRequired are the /dev entries a Flatpak sandbox has (bwrap --dev).
var devRequired = []string{"null", "zero", "full", "random", "urandom", "tty"}

// devHost are host devices that must not be in a sandbox's /dev: disks,
// memory, the kernel log, FUSE, KVM, vsock, loop and mapper control,
// consoles, input and sound.
var devHost = []string{
	"sda", "vda", "xvda", "hda", "nvme0", "nvme0n1", "mmcblk0", "sr0", "sg0", "dm-0", "md0", "zram0",
	"loop0", "loop-control", "mapper", "disk", "btrfs-control",
	"mem", "kmem", "port", "kmsg", "mcelog", "hpet", "nvram", "cpu", "hwrng", "watchdog", "rtc0",
	"fuse", "cuse", "kvm", "vsock", "vhost-net", "vhost-vsock", "net", "userfaultfd", "autofs",
	"tty0", "tty1", "ttyS0", "vcs", "vcsa", "vga_arbiter", "uinput", "input", "snd", "dri", "bus",
}

// checkDev runs the /dev checks:
//
//   - "dev:NAME" for null, zero, full, random, urandom and tty: the node's
//     type and numbers after following symlinks ("char:1:3"), or
//     "absent".
//   - "dev:pts", "dev:shm": "dir" when they are directories.
//   - "dev:ptmx": "symlink:pts/ptmx" or "char:5:2".
//   - "dev:host": "none" when none of a fixed list of host devices (disks,
//     /dev/mem, /dev/kmsg, /dev/fuse, /dev/kvm, /dev/vsock, loop devices,
//     consoles, ...) exists, else "present:" and their names.
//   - "dev:entries": every name in /dev, sorted, space-separated (for
//     information: sandboxes may differ in harmless extras such as core).
func checkDev(res results) {
	for _, n := range devRequired {
		res["dev:"+n] = nodeType("/dev/"+n, true)
	}
	for _, n := range []string{"pts", "shm"} {
		res["dev:"+n] = nodeType("/dev/"+n, true)
	}
	res["dev:ptmx"] = nodeType("/dev/ptmx", false)
	var present []string
	for _, n := range devHost {
		if _, err := os.Lstat("/dev/" + n); err == nil {
			present = append(present, n)
		}
	}
	res["dev:host"] = "none"
	if len(present) > 0 {
		res["dev:host"] = "present:" + strings.Join(present, ",")
	}
	ents, err := os.ReadDir("/dev")
	if err != nil {
		res["dev:entries"] = denied(err)
		return
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	res["dev:entries"] = strings.Join(names, " ")
}

// nodeType describes what is at p: "char:MAJ:MIN", "block:MAJ:MIN", "dir",
// "file", "symlink:TARGET" (only when follow is false), or "absent".
func nodeType(p string, follow bool) string {
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(p, &st)
	} else {
		err = unix.Lstat(p, &st)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "absent"
		}
		return denied(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return "char:" + dev
	case unix.S_IFBLK:
		return "block:" + dev
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return "symlink"
		}
		return "symlink:" + t
	}
	return fmt.Sprintf("mode:%o", st.Mode&unix.S_IFMT)
}
