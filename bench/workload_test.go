package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseWorkload(t *testing.T) {
	for _, b := range Builtins {
		for _, spec := range []string{b, "builtin:" + b} {
			if w, err := ParseWorkload(spec); err != nil || w.Builtin != b || w.Name != b {
				t.Errorf("ParseWorkload(%q) = %+v, %v", spec, w, err)
			}
		}
	}
	if _, err := ParseWorkload("builtin:nope"); err == nil {
		t.Error("an unknown built-in was accepted")
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"escape":   `{"ops": [{"op": "read", "path": "../../etc/shadow"}]}`,
		"absolute": `{"ops": [{"op": "stat", "path": "/etc/shadow"}]}`,
		"op":       `{"ops": [{"op": "unlink", "path": "a"}]}`,
		"negative": `{"ops": [{"op": "read", "path": "a", "offset": -1}]}`,
		"two":      `{"command": ["sh"], "ops": [{"op": "stat", "path": "a"}]}`,
		"none":     `{"name": "x"}`,
		"unknown":  `{"ops": [{"op": "stat", "path": "a"}], "shell": "rm -rf /"}`,
		"garbage":  `not json`,
		"trailing": `{"ops": [{"op": "stat", "path": "a"}]} {"ops": []}`,
		"builtin":  `{"builtin": "bogus"}`,
		"deep":     `{"builtin": "first-read", "deep": "../../../../etc/shadow"}`,
		"at":       `{"ops": [{"op": "stat", "path": "a", "at_ms": 1e300}]}`,
	} {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(body), 0o644)
		if w, err := ParseWorkload(p); err == nil {
			t.Errorf("%s: accepted %+v", name, w)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	p := filepath.Join(dir, "reads.json")
	os.WriteFile(p, []byte(`{"ops": [{"op": "stat", "path": "files/bin/sh"}, {"op": "read", "path": "files/lib/libc.so.6", "length": 4096, "at_ms": 3}]}`), 0o644)
	w, err := ParseWorkload(p)
	if err != nil || w.Name != "reads" || len(w.Ops) != 2 || w.Ops[1].Length != 4096 {
		t.Fatalf("ParseWorkload = %+v, %v", w, err)
	}
}

// TestWorkloadOps runs an ops workload on a local tree: each operation
// must happen, a missing file must fail naming it, and at_ms must hold an
// operation back.
func TestWorkloadOps(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "files", "lib"), 0o755)
	os.WriteFile(filepath.Join(root, "files", "lib", "a.so"), []byte(strings.Repeat("x", 300<<10)), 0o644)
	w := Workload{Name: "w", Ops: []Op{{Op: "readdir", Path: "files"}, {Op: "stat", Path: "files/lib/a.so"},
		{Op: "read", Path: "files/lib/a.so", Offset: 100, Length: 10}, {Op: "open", Path: "files/lib/a.so", AtMS: 30}}}
	if err := w.validate(); err != nil {
		t.Fatal(err)
	}
	tm, err := w.run(t.Context(), root, timeNow())
	if err != nil {
		t.Fatal(err)
	}
	if tm.done.Milliseconds() < 30 || tm.first > tm.done {
		t.Errorf("timing %+v: at_ms 30 not honoured", tm)
	}
	w.Ops = append(w.Ops, Op{Op: "read", Path: "files/missing"})
	if _, err := w.run(t.Context(), root, timeNow()); err == nil || !strings.Contains(err.Error(), "files/missing") {
		t.Errorf("missing file: %v", err)
	}
	for _, b := range []string{WorkloadLsLR, WorkloadReadAll} {
		w := Workload{Name: b, Builtin: b}
		if _, err := w.run(t.Context(), root, timeNow()); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, _, err := startCommand(rt, root); err == nil {
		t.Error("start found a program in a tree without one")
	}
	// The host's loader through an absolute symlink is not the tree's.
	os.MkdirAll(filepath.Join(root, "files", "lib64"), 0o755)
	os.MkdirAll(filepath.Join(root, "files", "bin"), 0o755)
	os.Symlink("/lib64/ld-linux-x86-64.so.2", filepath.Join(root, "files", "lib64", "ld-linux-x86-64.so.2"))
	os.WriteFile(filepath.Join(root, "files", "bin", "sh"), []byte("#!/bin/sh\n"), 0o755)
	if argv, _, err := startCommand(rt, root); err == nil {
		t.Errorf("start took a symlink out of the tree for its loader: %q", argv)
	}
}

// TestWorkloadConfined: nothing a workload reads leaves its tree, and
// nothing blocks it.
func TestWorkloadConfined(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(root, "abs"))
	os.Symlink("../../../../../../.."+outside, filepath.Join(root, "rel"))
	os.Symlink(filepath.Dir(outside), filepath.Join(root, "dir"))
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"abs", "rel", "dir/secret", "fifo"} {
		for _, op := range []string{"read", "open"} {
			w := Workload{Name: "w", Ops: []Op{{Op: op, Path: p}}}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			_, err := w.run(ctx, root, timeNow())
			cancel()
			if err == nil && !(op == "open" && p == "fifo") {
				t.Errorf("%s %s: read outside the tree or a FIFO", op, p)
			}
		}
		w := Workload{Name: "deep", Builtin: WorkloadFirstRead, Deep: p}
		if _, err := w.run(t.Context(), root, timeNow()); err == nil {
			t.Errorf("first-read %s: read outside the tree or a FIFO", p)
		}
	}
	w := Workload{Name: "all", Builtin: WorkloadReadAll}
	if _, err := w.run(t.Context(), root, timeNow()); err != nil {
		t.Errorf("read-all over symlinks and a FIFO: %v", err)
	}
	if err := (&Workload{Builtin: WorkloadFirstRead, Deep: "../x"}).validate(); err == nil {
		t.Error("a deep path outside the tree validated")
	}
	if err := (&Workload{Builtin: "bogus"}).validate(); err == nil {
		t.Error("an unknown built-in validated")
	}
}
