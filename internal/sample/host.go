package sample

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// hostMaxFile is the largest host file BuildHostRuntime adds: it keeps the
// added bytes spread over many files, as in a runtime, rather than in one
// libLLVM.
const hostMaxFile = 8 << 20

// hostSource is one host tree that BuildHostRuntime draws from, in
// sorted order.
type hostSource struct {
	name  string
	files []string // host paths, sorted
	next  int
	dst   func(host string) string // where a host file goes in the runtime
	added int64
}

// BuildHostRuntime lays out the runtime of BuildPythonRuntime in dir, then
// adds real host content until its regular files hold at least minBytes:
// shared libraries of /usr/lib/x86_64-linux-gnu (to
// files/lib/x86_64-linux-gnu, with the relative symlinks that name them),
// programs of /usr/bin (to files/bin) and data of /usr/share (to
// files/share). The three sources are drawn from in turn, each next file
// from the one that has added the fewest bytes so far, each in sorted
// order, so the same host always gives the same tree. Files already in the
// runtime (by name, or the host files the Python runtime copied), further
// hard links of an added file, files over 8 MiB and files that cannot be
// read are skipped. PythonArgv still runs the result. It returns the
// interpreter's path, as BuildPythonRuntime does.
func BuildHostRuntime(dir string, minBytes int64) (python string, err error) {
	python, libs, err := BuildPythonRuntimeLibs(dir)
	if err != nil {
		return "", err
	}
	total, err := regularBytes(dir)
	if err != nil {
		return "", fmt.Errorf("host runtime: %w", err)
	}
	seen := map[[2]uint64]bool{} // device and inode of host files in the runtime
	mark := func(p string) {
		if fi, err := os.Stat(p); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				seen[[2]uint64{st.Dev, st.Ino}] = true
			}
		}
	}
	for _, host := range libs {
		mark(host)
	}
	if hostPy, err := HostPython(); err == nil {
		mark(hostPy)
		if interp, err := ElfInterp(hostPy); err == nil {
			mark(interp)
		}
	}
	files := filepath.Join(dir, "files")
	const hostLib, hostBin, hostShare = "/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/share"
	srcs := []*hostSource{
		{name: hostLib, dst: func(p string) string { return filepath.Join(files, "lib", "x86_64-linux-gnu", filepath.Base(p)) }},
		{name: hostBin, dst: func(p string) string { return filepath.Join(files, "bin", filepath.Base(p)) }},
		{name: hostShare, dst: func(p string) string {
			return filepath.Join(files, "share", strings.TrimPrefix(p, hostShare+"/"))
		}},
	}
	if srcs[0].files, err = listDir(hostLib, func(n string) bool { return strings.HasSuffix(n, ".so") || strings.Contains(n, ".so.") }); err != nil {
		return "", fmt.Errorf("host runtime: %w", err)
	}
	if srcs[1].files, err = listDir(hostBin, func(string) bool { return true }); err != nil {
		return "", fmt.Errorf("host runtime: %w", err)
	}
	if srcs[2].files, err = listTree(hostShare); err != nil {
		return "", fmt.Errorf("host runtime: %w", err)
	}
	for total < minBytes {
		var s *hostSource
		for _, c := range srcs {
			if c.next < len(c.files) && (s == nil || c.added < s.added) {
				s = c
			}
		}
		if s == nil {
			return "", fmt.Errorf("host runtime: the host has %d bytes to add, want %d", total, minBytes)
		}
		p := s.files[s.next]
		s.next++
		n, err := addHostFile(p, s.dst(p), seen)
		if err != nil {
			return "", fmt.Errorf("host runtime: %w", err)
		}
		s.added += n
		total += n
	}
	if err := linkLibs(hostLib, filepath.Join(files, "lib", "x86_64-linux-gnu")); err != nil {
		return "", fmt.Errorf("host runtime: %w", err)
	}
	return python, nil
}

// addHostFile copies the host's regular file p to dst and returns its
// size, or 0 when it is skipped (see BuildHostRuntime).
func addHostFile(p, dst string, seen map[[2]uint64]bool) (int64, error) {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > hostMaxFile {
		return 0, nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, nil
	}
	key := [2]uint64{st.Dev, st.Ino}
	if seen[key] {
		return 0, nil
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	if err := CopyRegular(p, dst, fi.Mode().Perm()); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			os.Remove(dst)
			return 0, nil
		}
		return 0, fmt.Errorf("copy %s: %w", p, err)
	}
	seen[key] = true
	return fi.Size(), nil
}

// linkLibs adds to dst the relative symlinks of the host's library
// directory src that name a file in the same directory which dst has and
// whose own name dst lacks (libfoo.so.1 -> libfoo.so.1.2.3).
func linkLibs(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(src, e.Name()))
		if err != nil || strings.Contains(target, "/") {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(dst, target)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dst, e.Name())); err == nil {
			continue
		}
		if err := os.Symlink(target, filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// listDir returns the paths of the entries of dir whose names keep
// accepts, sorted (what they are is checked when they are copied).
func listDir(dir string, keep func(name string) bool) ([]string, error) {
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if keep(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// listTree returns the paths of the regular files under dir in the
// order filepath.WalkDir visits them (lexical per directory); unreadable
// directories are left out.
func listTree(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && p != dir {
				return filepath.SkipDir
			}
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// regularBytes sums the sizes of the regular files under dir.
func regularBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}
