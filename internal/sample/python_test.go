package sample_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/internal/sample"
	"github.com/lazytree/lazytree/internal/testutil"
)

func TestBuildPythonRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("copies about 100 MB")
	}
	testutil.RequireTool(t, "ldd")
	if _, err := sample.HostPython(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	dir := filepath.Join(t.TempDir(), "rt")
	python, err := sample.BuildPythonRuntime(dir)
	if err != nil {
		t.Fatal(err)
	}
	if python != filepath.Join(dir, sample.PythonBin) {
		t.Errorf("python = %s, want %s", python, filepath.Join(dir, sample.PythonBin))
	}
	argv, env := sample.PythonArgv(dir, "-c", `import sys, json, decimal, ssl, http.client; print(sys.prefix); print(decimal.Decimal(1)/3); print(*sys.path)`)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run the runtime's python: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != filepath.Join(dir, sample.PythonHome) || !strings.HasPrefix(lines[1], "0.333") {
		t.Fatalf("python printed %q, want its prefix %s, 0.333... and sys.path", out, filepath.Join(dir, sample.PythonHome))
	}
	for _, p := range strings.Fields(lines[2]) {
		if !strings.HasPrefix(p, dir+"/") {
			t.Errorf("sys.path has %s, outside the runtime", p)
		}
	}
	var files int
	var bytes int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if target, _ := os.Readlink(p); filepath.IsAbs(target) {
				t.Errorf("absolute symlink %s -> %s", p, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d bytes", files, bytes)
	if files < 5000 || bytes < 90<<20 {
		t.Errorf("%d files of %d bytes, want at least 5,000 files and 90 MiB", files, bytes)
	}
}

func TestBuildHostRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("copies about 150 MB")
	}
	testutil.RequireTool(t, "ldd")
	if _, err := sample.HostPython(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	const minBytes = 150 << 20
	dir := filepath.Join(t.TempDir(), "rt")
	if _, err := sample.BuildHostRuntime(dir, minBytes); err != nil {
		t.Fatal(err)
	}
	argv, env := sample.PythonArgv(dir, "-c", `import json, decimal, ssl; print("ok")`)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("run the runtime's python: %v\n%s", err, out)
	}
	var files, links int
	var bytes int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		case d.Type()&fs.ModeSymlink != 0:
			links++
			if target, _ := os.Readlink(p); filepath.IsAbs(target) {
				t.Errorf("absolute symlink %s -> %s", p, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d symlinks, %d bytes", files, links, bytes)
	if files < 5000 || bytes < minBytes {
		t.Errorf("%d files of %d bytes, want at least 5,000 files and %d bytes", files, bytes, minBytes)
	}
}
