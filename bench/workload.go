package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Built-in workloads, named builtin:NAME on the command line.
const (
	WorkloadStart     = "start"      // a program start: Python importing a script's modules, else a shell
	WorkloadLsLR      = "ls-lR"      // list and stat the whole tree
	WorkloadFirstRead = "first-read" // read one deep file
	WorkloadReadAll   = "read-all"   // read every file
)

// Builtins lists the built-in workloads.
var Builtins = []string{WorkloadStart, WorkloadLsLR, WorkloadFirstRead, WorkloadReadAll}

// PythonImports is what the start workload has Python import: a typical
// script's modules.
const PythonImports = `import json, os, re, subprocess, email.message, http.client, decimal; print("ok")`

// Workload is what a cell measures on a tree: a built-in, a command, or a
// list of file operations. It is read from a JSON file:
//
//	{"name": "my-start", "command": ["{root}/files/bin/sh", "-c", "echo hi"], "env": ["K=V"]}
//	{"name": "my-reads", "ops": [{"op": "stat", "path": "files/bin/sh"}, {"op": "read", "path": "files/lib/libc.so.6", "length": 4096, "at_ms": 12}]}
//
// "{root}" in a command or its environment is the tree's root (the ref's
// directory in the mount, or the peer's checkout). A command runs outside
// any sandbox, with only its env and LC_ALL=C; its first line of output is
// its first byte.
type Workload struct {
	Name    string   `json:"name"`
	Builtin string   `json:"builtin,omitempty"`
	Command []string `json:"command,omitempty"`
	Env     []string `json:"env,omitempty"`
	Ops     []Op     `json:"ops,omitempty"`
	// Deep is the file first-read reads, relative to the root; Run picks
	// the deepest regular file of the ref when it is empty.
	Deep string `json:"deep,omitempty"`
}

// Op is one file operation of a recorded workload.
type Op struct {
	// Op is open (open and close), read (Length bytes at Offset; 0 is to
	// the end), stat (lstat), readdir.
	Op     string `json:"op"`
	Path   string `json:"path"`
	Offset int64  `json:"offset,omitempty"`
	Length int64  `json:"length,omitempty"`
	// AtMS, when set, holds the operation until that many milliseconds
	// after the workload started: the think time of the recorded run.
	AtMS float64 `json:"at_ms,omitempty"`
}

// Bounds of a workload file.
const (
	maxOps          = 1 << 20
	maxWorkloadFile = 16 << 20
	maxAtMS         = 24 * 3600 * 1000
)

// ParseWorkload resolves a --workload word: builtin:NAME, a bare built-in
// name, or a JSON file.
func ParseWorkload(spec string) (Workload, error) {
	name := strings.TrimPrefix(spec, "builtin:")
	for _, b := range Builtins {
		if name == b {
			return Workload{Name: b, Builtin: b}, nil
		}
	}
	if strings.HasPrefix(spec, "builtin:") {
		return Workload{}, fmt.Errorf("workload %s: no such built-in (have %s)", spec, strings.Join(Builtins, ", "))
	}
	f, err := os.Open(spec)
	if err != nil {
		return Workload{}, fmt.Errorf("workload %s: %w", spec, err)
	}
	defer f.Close()
	var w Workload
	dec := json.NewDecoder(io.LimitReader(f, maxWorkloadFile))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Workload{}, fmt.Errorf("workload %s: %w", spec, err)
	}
	if dec.More() {
		return Workload{}, fmt.Errorf("workload %s: data after the workload", spec)
	}
	if err := w.validate(); err != nil {
		return Workload{}, fmt.Errorf("workload %s: %w", spec, err)
	}
	if w.Name == "" {
		w.Name = strings.TrimSuffix(filepath.Base(spec), filepath.Ext(spec))
	}
	return w, nil
}

func (w *Workload) validate() error {
	n := 0
	if w.Builtin != "" {
		n++
	}
	if len(w.Command) > 0 {
		n++
	}
	if len(w.Ops) > 0 {
		n++
	}
	if n != 1 {
		return errors.New("needs exactly one of builtin, command, ops")
	}
	if w.Builtin != "" && !slices.Contains(Builtins, w.Builtin) {
		return fmt.Errorf("no built-in %q (have %s)", w.Builtin, strings.Join(Builtins, ", "))
	}
	if w.Deep != "" && !filepath.IsLocal(w.Deep) {
		return fmt.Errorf("deep %q is not inside the tree", w.Deep)
	}
	if len(w.Ops) > maxOps {
		return fmt.Errorf("%d operations, at most %d", len(w.Ops), maxOps)
	}
	for i, op := range w.Ops {
		switch op.Op {
		case "open", "read", "stat", "readdir":
		default:
			return fmt.Errorf("operation %d: unknown op %q", i, op.Op)
		}
		if !filepath.IsLocal(op.Path) && op.Path != "." {
			return fmt.Errorf("operation %d: path %q is not inside the tree", i, op.Path)
		}
		if op.Offset < 0 || op.Length < 0 || op.AtMS < 0 || op.AtMS > maxAtMS {
			return fmt.Errorf("operation %d: negative offset or length, or a time not within a day", i)
		}
	}
	return nil
}

// timing is when a workload got its first byte and when it finished,
// from the run's start.
type timing struct{ first, done time.Duration }

// run performs w on the tree at root; t0 is the run's start. Every file
// is opened through an os.Root at root, so that no path or symlink of the
// tree (or of a workload file) reaches outside it, and non-blocking, so
// that a FIFO cannot hold it; only regular files are read.
func (w *Workload) run(ctx context.Context, root string, t0 time.Time) (timing, error) {
	var t timing
	firstByte := func() {
		if t.first == 0 {
			t.first = time.Since(t0)
		}
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return t, err
	}
	defer rt.Close()
	switch {
	case w.Builtin == WorkloadStart:
		argv, env, e := startCommand(rt, root)
		if e != nil {
			return t, e
		}
		t.first, err = runCommand(ctx, argv, env, t0)
	case w.Builtin == WorkloadLsLR:
		err = walk(ctx, root, func(string, fs.DirEntry) error { firstByte(); return nil })
	case w.Builtin == WorkloadReadAll:
		err = walk(ctx, root, func(rel string, d fs.DirEntry) error {
			if !d.Type().IsRegular() {
				return nil
			}
			return readFile(ctx, rt, rel, 0, 0, firstByte)
		})
	case w.Builtin == WorkloadFirstRead:
		if w.Deep == "" {
			return t, errors.New("first-read: no file chosen")
		}
		err = readFile(ctx, rt, w.Deep, 0, 0, firstByte)
	case len(w.Command) > 0:
		argv := make([]string, len(w.Command))
		for i, a := range w.Command {
			argv[i] = strings.ReplaceAll(a, "{root}", root)
		}
		env := []string{"LC_ALL=C", "PATH=/nonexistent"}
		for _, e := range w.Env {
			env = append(env, strings.ReplaceAll(e, "{root}", root))
		}
		t.first, err = runCommand(ctx, argv, env, t0)
	default:
		err = w.runOps(ctx, rt, t0, firstByte)
	}
	t.done = time.Since(t0)
	if t.first == 0 {
		t.first = t.done
	}
	return t, err
}

func (w *Workload) runOps(ctx context.Context, rt *os.Root, t0 time.Time, firstByte func()) error {
	for i, op := range w.Ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		if op.AtMS > 0 {
			if d := time.Until(t0.Add(time.Duration(op.AtMS * float64(time.Millisecond)))); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		var err error
		switch op.Op {
		case "stat":
			_, err = rt.Lstat(op.Path)
		case "open":
			var f *os.File
			if f, err = rt.OpenFile(op.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		case "readdir":
			var f *os.File
			if f, err = rt.Open(op.Path); err == nil {
				_, err = f.ReadDir(-1)
				f.Close()
			}
		case "read":
			err = readFile(ctx, rt, op.Path, op.Offset, op.Length, firstByte)
		}
		if err != nil {
			return fmt.Errorf("operation %d (%s %s): %w", i, op.Op, op.Path, err)
		}
		firstByte()
	}
	return nil
}

// walk visits every entry under root, lstat'ing each as ls -lR does; it
// never follows a symlink. visit gets the path relative to root.
func walk(ctx context.Context, root string, visit func(string, fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := d.Info(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return visit(rel, d)
	})
}

// readFile reads length bytes at off (to the end when 0) of the regular
// file name under rt, and calls first when the first bytes arrived.
func readFile(ctx context.Context, rt *os.Root, name string, off, length int64, first func()) error {
	f, err := rt.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", name, fi.Mode().Type())
	}
	var r io.Reader = io.NewSectionReader(f, off, 1<<62)
	if length > 0 {
		r = io.LimitReader(r, length)
	}
	buf := make([]byte, 128<<10)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		if n > 0 {
			first()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// startCommand picks the program the start workload runs from the tree at
// root, through the tree's own loader and libraries so that nothing of the
// host's /lib is used: Python importing PythonImports when the tree has
// it, else bash or sh echoing a line. Flatpak runtimes keep their tree in
// files/, OS commits in usr/. The files are looked up through rt, so a
// symlink out of the tree (an absolute one to the host's loader) is not
// taken for the tree's.
//
// The program is the tree's own and runs on this host as the caller,
// outside any sandbox: bench only trees whose programs you would run.
func startCommand(rt *os.Root, root string) (argv, env []string, err error) {
	regular := func(name string) bool {
		fi, err := rt.Stat(name)
		return err == nil && fi.Mode().IsRegular()
	}
	for _, prefix := range []string{"files", "usr"} {
		loader := filepath.Join(prefix, "lib64", "ld-linux-x86-64.so.2")
		if !regular(loader) {
			continue
		}
		base := filepath.Join(root, prefix)
		libs := filepath.Join(base, "lib", "x86_64-linux-gnu") + ":" + filepath.Join(base, "lib")
		env = []string{"LC_ALL=C", "PATH=/nonexistent"}
		if py := filepath.Join(prefix, "bin", "python3"); regular(py) {
			return []string{filepath.Join(root, loader), "--library-path", libs, filepath.Join(root, py), "-c", PythonImports},
				append(env, "PYTHONHOME="+base, "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1"), nil
		}
		for _, sh := range []string{"bash", "sh"} {
			if p := filepath.Join(prefix, "bin", sh); regular(p) {
				return []string{filepath.Join(root, loader), "--library-path", libs, filepath.Join(root, p), "-c", "echo started"}, env, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("start: no python3, bash or sh with a loader under files/ or usr/ of %s", root)
}

// runCommand runs argv and returns when its first line of output came,
// from t0. The program may live in a FUSE mount: a host shell execs it, so
// that the kernel reads it in the child. It runs in a process group of its
// own, killed whole when ctx ends and after the program exits, so that
// nothing it started outlives the run.
func runCommand(ctx context.Context, argv, env []string, t0 time.Time) (first time.Duration, err error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `exec "$0" "$@"`}, argv...)...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	// The first line, or the first 4 KiB without a newline: a program
	// that prints without end must not fill memory.
	br := bufio.NewReaderSize(stdout, 4096)
	_, rerr := br.ReadSlice('\n')
	first = time.Since(t0)
	io.Copy(io.Discard, br)
	if err := cmd.Wait(); err != nil {
		return first, fmt.Errorf("%s: %v: %s", filepath.Base(argv[len(argv)-1]), err, strings.TrimSpace(stderr.String()))
	}
	if rerr != nil && rerr != io.EOF && rerr != bufio.ErrBufferFull {
		return first, rerr
	}
	return first, nil
}

// limitedWriter keeps the first n bytes written to it and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
