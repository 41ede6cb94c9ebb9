package sample

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Layout of the runtime BuildPythonRuntime writes, relative to its
// directory.
const (
	// PythonLoader is the dynamic loader, which starts the interpreter so
	// that nothing of the host's /lib is used.
	PythonLoader = "files/lib64/ld-linux-x86-64.so.2"
	// PythonBin is the interpreter.
	PythonBin = "files/bin/python3"
	// PythonHome is what PYTHONHOME must be set to (the interpreter's
	// prefix: the standard library is in lib/python3.X under it).
	PythonHome = "files"
)

// PythonLibraryPath is the loader's --library-path for the runtime in
// dir: where BuildPythonRuntime put the shared libraries.
func PythonLibraryPath(dir string) string {
	return filepath.Join(dir, "files", "lib", "x86_64-linux-gnu") + ":" + filepath.Join(dir, "files", "lib")
}

// PythonArgv is the command line that runs the runtime in dir (at its
// built place or wherever it was mounted) with args, through its own
// loader, and env the environment it needs; a program from a FUSE mount
// must still be exec'd from a child (see fusefs/doc.go).
func PythonArgv(dir string, args ...string) (argv, env []string) {
	argv = append([]string{filepath.Join(dir, PythonLoader), "--library-path", PythonLibraryPath(dir),
		filepath.Join(dir, PythonBin)}, args...)
	env = []string{"PYTHONHOME=" + filepath.Join(dir, PythonHome), "PYTHONDONTWRITEBYTECODE=1",
		"PYTHONNOUSERSITE=1", "PATH=/nonexistent", "LC_ALL=C"}
	return argv, env
}

// pythonData are host trees copied into the runtime beside the standard
// library, as real data that a runtime ships (to /usr/share there).
var pythonData = []string{"/usr/share/zoneinfo"}

var pythonName = regexp.MustCompile(`^python3\.[0-9]+$`)

// BuildPythonRuntime lays out a Flatpak-style runtime in dir (created if
// missing) from the host's system Python (/usr/bin/python3.X, never a
// pyenv or venv shim): metadata; files/bin/python3; its whole standard
// library (files/lib/python3.X, and files/lib/python3 when the host has
// /usr/lib/python3, Debian's dist-packages); every shared library that the
// interpreter and the extension modules of those trees need, as ldd
// resolves them, under their sonames in files/lib/x86_64-linux-gnu; the
// dynamic loader in files/lib64; and real data (/usr/share/zoneinfo) in
// files/share. PythonArgv runs it.
//
// Relative symlinks are kept; an absolute one is replaced by a copy of
// its target, so the tree means the same wherever it is mounted. Files
// that the host's sandbox added to dist-packages (_sandboxing*) are left
// out. It returns the interpreter's path.
func BuildPythonRuntime(dir string) (python string, err error) {
	python, _, err = BuildPythonRuntimeLibs(dir)
	return python, err
}

// BuildPythonRuntimeLibs is BuildPythonRuntime that also returns the host
// files it copied the shared libraries from (soname -> host file), so
// that BuildHostRuntime does not copy them twice.
func BuildPythonRuntimeLibs(dir string) (python string, libs map[string]string, err error) {
	hostPy, err := HostPython()
	if err != nil {
		return "", nil, err
	}
	ver := filepath.Base(hostPy)
	files := filepath.Join(dir, "files")
	libDir := filepath.Join(files, "lib", "x86_64-linux-gnu")
	for _, d := range []string{filepath.Join(files, "bin"), libDir, filepath.Join(files, "lib64"), filepath.Join(files, "share")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", nil, fmt.Errorf("python runtime: %w", err)
		}
	}
	meta := "[Runtime]\nname=org.lazytree.Python\nruntime=org.lazytree.Python/x86_64/1\n"
	if err := os.WriteFile(filepath.Join(dir, "metadata"), []byte(meta), 0o644); err != nil {
		return "", nil, fmt.Errorf("python runtime: %w", err)
	}
	python = filepath.Join(dir, PythonBin)
	if err := CopyRegular(hostPy, python, 0o755); err != nil {
		return "", nil, fmt.Errorf("python runtime: %w", err)
	}
	elfs := []string{hostPy}
	for _, src := range []string{filepath.Join("/usr/lib", ver), "/usr/lib/python3"} {
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) && src == "/usr/lib/python3" {
			continue
		}
		so, err := copyTree(src, filepath.Join(files, "lib", filepath.Base(src)))
		if err != nil {
			return "", nil, fmt.Errorf("python runtime: %w", err)
		}
		elfs = append(elfs, so...)
	}
	for _, src := range pythonData {
		if _, err := copyTree(src, filepath.Join(files, "share", filepath.Base(src))); err != nil {
			return "", nil, fmt.Errorf("python runtime: %w", err)
		}
	}
	libs = map[string]string{} // soname -> host file
	for _, e := range elfs {
		if err := LddInto(e, libs); err != nil {
			return "", nil, fmt.Errorf("python runtime: %w", err)
		}
	}
	for so, src := range libs {
		if err := CopyRegular(src, filepath.Join(libDir, so), 0o755); err != nil {
			return "", nil, fmt.Errorf("python runtime: %w", err)
		}
	}
	interp, err := ElfInterp(hostPy)
	if err != nil {
		return "", nil, fmt.Errorf("python runtime: %w", err)
	}
	if err := CopyRegular(interp, filepath.Join(dir, PythonLoader), 0o755); err != nil {
		return "", nil, fmt.Errorf("python runtime: %w", err)
	}
	return python, libs, nil
}

// HostPython finds the newest /usr/bin/python3.X that is an ELF program.
func HostPython() (string, error) {
	ents, err := os.ReadDir("/usr/bin")
	if err != nil {
		return "", fmt.Errorf("find host python: %w", err)
	}
	var found []string
	for _, e := range ents {
		if !pythonName.MatchString(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join("/usr/bin", e.Name())
		if f, err := elf.Open(p); err == nil {
			f.Close()
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return "", errors.New("find host python: no /usr/bin/python3.X (apt-get install python3)")
	}
	// python3.9 < python3.11: compare the minor versions as numbers.
	minor := func(p string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), "python3."))
		return n
	}
	slices.SortFunc(found, func(a, b string) int { return minor(a) - minor(b) })
	return found[len(found)-1], nil
}

// copyTree copies the tree at src to dst and returns the shared objects
// (*.so*) it copied, by their host paths, for LddInto.
func copyTree(src, dst string) (shared []string, err error) {
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if strings.HasPrefix(d.Name(), "_sandboxing") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !filepath.IsAbs(target) {
				return os.Symlink(target, to)
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling on the host: leave it out
			}
			if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			return CopyRegular(real, to, 0o644)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if strings.HasSuffix(d.Name(), ".so") || strings.Contains(d.Name(), ".so.") {
				shared = append(shared, p)
			}
			return CopyRegular(p, to, fi.Mode().Perm())
		}
		return nil // sockets, devices: not in a runtime
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", src, err)
	}
	return shared, nil
}

// LddInto adds to libs (soname -> host file) every library that ldd lists
// for the ELF file at p. A file ldd cannot handle (not dynamic) adds none.
func LddInto(p string, libs map[string]string) error {
	out, err := exec.Command("ldd", p).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil // "not a dynamic executable"
		}
		return fmt.Errorf("ldd %s: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)"
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[1] != "=>" {
			continue
		}
		if f[2] == "not" {
			return fmt.Errorf("ldd %s: %s not found", p, f[0])
		}
		if _, ok := libs[f[0]]; ok {
			continue
		}
		real, err := filepath.EvalSymlinks(f[2])
		if err != nil {
			return fmt.Errorf("ldd %s: %w", p, err)
		}
		libs[f[0]] = real
	}
	return sc.Err()
}

// ElfInterp returns the host file of the program's PT_INTERP loader.
func ElfInterp(p string) (string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return "", fmt.Errorf("read interpreter of %s: %w", p, err)
			}
			return filepath.EvalSymlinks(strings.TrimRight(string(b), "\x00"))
		}
	}
	return "", fmt.Errorf("%s has no interpreter (statically linked)", p)
}

// CopyRegular copies the regular file src to dst with mode perm.
func CopyRegular(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
