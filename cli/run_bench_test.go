package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/sample"
	"github.com/lazytree/lazytree/internal/testutil"
)

// The apps of BenchmarkRun, on a runtime of real host programs: a shell
// script, and a Python script importing a few standard modules (whose
// start reads far more of the runtime).
const (
	benchRuntime    = "org.lazytree.BenchPlatform/x86_64/1"
	benchRuntimeRef = "runtime/" + benchRuntime
)

type benchApp struct {
	name, id, ref string
	interp        string // the runtime's interpreter, under files/
	script        string
}

var benchApps = []benchApp{
	{name: "shell", id: "org.lazytree.BenchShell", interp: "bin/sh", script: "#!/bin/sh\necho ok\n"},
	{name: "python", id: "org.lazytree.BenchPython", interp: "bin/python3",
		script: "#!/usr/bin/python3\nimport json, os, re, email.message, decimal\nprint(\"ok\")\n"},
}

func init() {
	for i := range benchApps {
		benchApps[i].ref = "app/" + benchApps[i].id + "/x86_64/" + testutil.FlatpakAppBranch
	}
}

// BenchmarkRun judges issue 12's figures: `lazytree run` of an app whose
// runtime is not cached, against (a) the same program started from a
// plain lazy mount (no sandbox), (b) `ostree pull` (bare-user, static
// deltas) of the app and its runtime + `ostree checkout` + `bwrap` with
// Flatpak's options, and (c) what a Flatpak user does, `flatpak install`
// + `flatpak run` (a private --user installation, as uid 65534); then,
// warm, `lazytree run` of a trivial command against `bwrap` with the same
// binds on the same mount (and, labelled, with Flatpak's seccomp filter
// built by libseccomp). The runtime is sample.BuildHostRuntime's (Python
// and real host programs, LAZYTREE_BENCH_RUNTIME_MB, default 150 MB),
// published with the real flatpak (build-export, build-update-repo
// --generate-static-deltas), exported again with `lazytree export
// --tree-index` for the lazy side,
// served at 25 ms per request and 100 Mbit/s:
// `go test -run '^$' -bench 'Run$' -benchtime 1x ./cli`.
func BenchmarkRun(b *testing.B) {
	requireMountB(b)
	ostreeBin := testutil.RequireTool(b, "ostree")
	bwrap := testutil.RequireTool(b, "bwrap")
	ctx := context.Background()
	dir := b.TempDir()
	os.Chmod(dir, 0o755)
	lt := testutil.BuildLazytree(b)

	rt := filepath.Join(dir, "runtime")
	if _, err := sample.BuildHostRuntime(rt, int64(testutil.EnvInt("LAZYTREE_BENCH_RUNTIME_MB", 150))<<20); err != nil {
		b.Fatal(err)
	}
	writeBenchApps(b, dir, rt)
	nfiles, nbytes := treeSize(b, rt)
	// Published by the real flatpak (build-export, then static deltas
	// from scratch and the summary by build-update-repo), as a Flatpak
	// remote would be.
	pub := filepath.Join(dir, "pub")
	for i, a := range benchApps {
		rtDir := ""
		if i == 0 {
			rtDir = rt
		}
		appRef, rtRef := testutil.FlatpakBuildExport(b, pub, filepath.Join(dir, "app-"+a.name), rtDir, "", "")
		if appRef != a.ref || (rtDir != "" && rtRef != benchRuntimeRef) {
			b.Fatalf("flatpak exported %s and %s, want %s and %s", appRef, rtRef, a.ref, benchRuntimeRef)
		}
	}
	// From-scratch static deltas for every ref (what a Flatpak user's
	// first install pulls), then the summary.
	for _, ref := range []string{benchRuntimeRef, benchApps[0].ref, benchApps[1].ref} {
		testutil.Run(b, "", nil, ostreeBin, "static-delta", "generate", "--repo="+pub, "--empty", "--to="+ref)
	}
	testutil.Run(b, "", nil, testutil.RequireTool(b, "flatpak"), "build-update-repo", pub)
	pubIdx := filepath.Join(dir, "pub-index")
	testutil.Run(b, "", nil, "cp", "-a", pub, pubIdx)
	c := newExportCmd(&globalOptions{Home: filepath.Join(dir, "export-home")})
	c.SetArgs([]string{"--repo", pubIdx, "--tree-index"})
	c.SetOut(io.Discard)
	if err := c.ExecuteContext(ctx); err != nil {
		b.Fatalf("export --tree-index: %v", err)
	}
	repoBytes, _ := dirSize(filepath.Join(pub, "objects"))
	b.Logf("runtime: %d files, %.1f MB; archive objects %.1f MB", nfiles, float64(nbytes)/1e6, float64(repoBytes)/1e6)
	link := fetchtest.Options{Latency: critLatency, Bandwidth: critBandwidth}
	srv, err := fetchtest.New(pub, link)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	idxSrv, err := fetchtest.New(pubIdx, link)
	if err != nil {
		b.Fatal(err)
	}
	defer idxSrv.Close()

	results := map[string]critRun{}
	var order []string
	measure := func(name, base string, higherBetter bool, run func(b *testing.B) critRun) {
		b.Run(name, func(b *testing.B) {
			var sum critRun
			for i := 0; i < b.N; i++ {
				r := run(b)
				sum.secs += r.secs
				sum.requests += r.requests
				sum.bytes += r.bytes
			}
			mean := critRun{secs: sum.secs / float64(b.N), requests: sum.requests / b.N, bytes: sum.bytes / int64(b.N)}
			results[name] = mean
			order = append(order, name)
			b.ReportMetric(mean.secs, "s")
			b.ReportMetric(float64(mean.requests), "requests")
			b.ReportMetric(float64(mean.bytes)/1e6, "MB")
			if ref, ok := results[base]; ok {
				if higherBetter {
					b.ReportMetric(ref.secs/mean.secs, "x-faster-than-"+base)
				} else {
					b.ReportMetric(mean.secs/ref.secs, "x-of-"+base)
				}
			}
		})
	}

	// Per app: (a) the same program from a plain lazy mount, through the
	// runtime's loader; lazytree run with an empty cache (run adds the
	// sandbox); ostree pull + checkout + bwrap; flatpak install + run.
	mp := filepath.Join(dir, "mnt")
	for _, a := range benchApps {
		measure(a.name+"/lazy-mount", "", false, func(b *testing.B) critRun {
			return lazyCold(b, idxSrv, dir, fetch.PrefetchNone, nil, func(root string) {
				if out := runInTree(b, root, a.interp, filepath.Join(mp, "b", a.ref, "files", "bin", "hello")); out != "ok" {
					b.Fatalf("lazy mount start printed %q, want ok", out)
				}
			}, benchRuntimeRef).run
		})
		measure(a.name+"/run-cold", a.name+"/lazy-mount", false, func(b *testing.B) critRun {
			return lazyCold(b, idxSrv, dir, fetch.PrefetchNone, nil, func(string) {
				if out := ltRun(b, lt, mp, a.id); out != "ok" {
					b.Fatalf("lazytree run printed %q, want ok", out)
				}
			}, a.ref).run
		})
		measure(a.name+"/ostree-bwrap", a.name+"/run-cold", false, func(b *testing.B) critRun {
			client, co := filepath.Join(dir, "client"), filepath.Join(dir, "co")
			os.RemoveAll(client)
			os.RemoveAll(co)
			if err := os.MkdirAll(co, 0o755); err != nil {
				b.Fatal(err)
			}
			srv.Reset()
			start := time.Now()
			testutil.Run(b, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare-user")
			testutil.Run(b, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--no-gpg-verify", "b", srv.URL())
			testutil.Run(b, "", nil, ostreeBin, "pull", "--repo="+client, "b", a.ref, benchRuntimeRef)
			for name, ref := range map[string]string{"app": a.ref, "runtime": benchRuntimeRef} {
				testutil.Run(b, "", nil, ostreeBin, "checkout", "--repo="+client, "-U", "b:"+ref, filepath.Join(co, name))
			}
			if out := runBwrap(b, bwrap, filepath.Join(co, "runtime", "files"), filepath.Join(co, "app", "files"), nil, "/app/bin/hello"); out != "ok" {
				b.Fatalf("bwrap printed %q, want ok", out)
			}
			return newCritRun(time.Since(start).Seconds(), srv.Log(), srv.Stats().Bytes)
		})
		measure(a.name+"/flatpak", a.name+"/run-cold", false, func(b *testing.B) critRun {
			u := testutil.NewFlatpakUser(b)
			srv.Reset()
			start := time.Now()
			u.Flatpak(b, "remote-add", "--no-gpg-verify", "b", srv.URL())
			u.Install(b, "b", a.ref)
			if out := strings.TrimSpace(u.Flatpak(b, "run", a.id)); out != "ok" {
				b.Fatalf("flatpak run printed %q, want ok", out)
			}
			return newCritRun(time.Since(start).Seconds(), srv.Log(), srv.Stats().Bytes)
		})
	}

	// Warm: the daemon keeps the cache the cold run filled; start to exit
	// of a trivial command, alternating the two sides.
	b.Run("warm", func(b *testing.B) {
		home := filepath.Join(dir, "home")
		dctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- runDaemon(dctx, &globalOptions{Home: home}, mp, &mountOptions{Prefetch: fetch.PrefetchNone, Timeout: time.Minute, LogLevel: slog.LevelWarn},
				func(*fusefs.Server) { close(ready) })
		}()
		select {
		case <-ready:
		case err := <-done:
			cancel()
			b.Fatalf("daemon: %v", err)
		}
		defer func() { cancel(); <-done }()
		app := benchApps[0]
		rtFiles, appFiles := filepath.Join(mp, "b", benchRuntimeRef, "files"), filepath.Join(mp, "b", app.ref, "files")
		seccomp := flatpakSeccompOrNil(b)
		sides := []struct {
			name string
			run  func()
		}{
			{"lazytree-run", func() { ltRun(b, lt, mp, "--command", "true", app.id) }},
			{"bwrap", func() { runBwrap(b, bwrap, rtFiles, appFiles, nil, "/app/bin/true") }},
		}
		if seccomp != nil {
			sides = append(sides, struct {
				name string
				run  func()
			}{"bwrap-seccomp", func() { runBwrap(b, bwrap, rtFiles, appFiles, seccomp, "/app/bin/true") }})
		}
		for _, s := range sides {
			s.run() // warm the kernel's caches and the daemon's
		}
		rounds := testutil.EnvInt("LAZYTREE_BENCH_ROUNDS", 30)
		total := make([]time.Duration, len(sides))
		for i := 0; i < rounds; i++ {
			for j, s := range sides {
				start := time.Now()
				s.run()
				total[j] += time.Since(start)
			}
		}
		ms := func(j int) float64 { return total[j].Seconds() * 1e3 / float64(rounds) }
		for j, s := range sides {
			b.ReportMetric(ms(j), s.name+"-ms")
		}
		b.ReportMetric(ms(0)/ms(1), "x-run-of-bwrap")
		if len(sides) > 2 {
			b.ReportMetric(ms(0)/ms(2), "x-run-of-bwrap-seccomp")
		}
	})

	b.Run("table", func(b *testing.B) {
		var t strings.Builder
		fmt.Fprintf(&t, "| start | seconds | requests | MB |\n|---|---|---|---|\n")
		for _, n := range order {
			r := results[n]
			fmt.Fprintf(&t, "| %s | %.2f | %d | %.1f |\n", n, r.secs, r.requests, float64(r.bytes)/1e6)
		}
		b.Log("\n" + t.String())
	})
}

// writeBenchApps writes the runtime's metadata and each app (in
// dir/app-NAME): metadata, bin/hello (its script) and bin/true (the
// host's, for the warm trivial start).
func writeBenchApps(b *testing.B, dir, rt string) {
	b.Helper()
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(rt, "metadata"), []byte("[Runtime]\nname=org.lazytree.BenchPlatform\nruntime="+benchRuntime+"\n"), 0o644))
	// The shell app's interpreter: the host's /bin/sh (dash), unless the
	// runtime already has one; its libraries (libc) are there.
	if _, err := os.Lstat(filepath.Join(rt, "files", "bin", "sh")); err != nil {
		sh, err := filepath.EvalSymlinks("/bin/sh")
		must(err)
		data, err := os.ReadFile(sh)
		must(err)
		must(os.WriteFile(filepath.Join(rt, "files", "bin", "sh"), data, 0o755))
	}
	tru, err := exec.LookPath("true")
	must(err)
	trueBin, err := os.ReadFile(tru)
	must(err)
	for _, a := range benchApps {
		app := filepath.Join(dir, "app-"+a.name)
		must(os.MkdirAll(filepath.Join(app, "files", "bin"), 0o755))
		must(os.WriteFile(filepath.Join(app, "metadata"), []byte("[Application]\nname="+a.id+"\nruntime="+benchRuntime+"\ncommand=hello\n"), 0o644))
		must(os.WriteFile(filepath.Join(app, "files", "bin", "hello"), []byte(a.script), 0o755))
		must(os.WriteFile(filepath.Join(app, "files", "bin", "true"), trueBin, 0o755))
	}
}

// runInTree runs the runtime's interpreter (at root/files/interp) on
// script through the runtime's own loader and libraries, in a child (a
// program on the mount must not be exec'd by the process serving it),
// and returns its trimmed stdout: a plain lazy start, no sandbox.
func runInTree(b *testing.B, root, interp, script string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	argv := []string{filepath.Join(root, sample.PythonLoader), "--library-path", sample.PythonLibraryPath(root),
		filepath.Join(root, "files", interp), script}
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `exec "$0" "$@"`}, argv...)...)
	cmd.Env = []string{"PYTHONHOME=" + filepath.Join(root, sample.PythonHome), "PYTHONDONTWRITEBYTECODE=1", "PATH=/nonexistent", "LC_ALL=C"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s from %s: %v\n%s", interp, root, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// ltRun runs `lazytree run --mount mp ARGS...` and returns its trimmed
// stdout.
func ltRun(b *testing.B, lt, mp string, args ...string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lt, append([]string{"run", "--mount", mp}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + b.TempDir(), "LAZYTREE_HOME=" + filepath.Join(filepath.Dir(mp), "home")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("lazytree run %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// runBwrap starts argv in bwrap with the binds and options Flatpak gives
// an app (runtime at /usr, app at /app, new /proc and /dev, every
// namespace unshared, no capabilities, a non-root uid), optionally with a
// seccomp program, and returns its trimmed stdout.
func runBwrap(b *testing.B, bwrap, usr, app string, seccomp []byte, argv ...string) string {
	b.Helper()
	args := []string{"--ro-bind", usr, "/usr", "--ro-bind", app, "/app",
		"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/run/user/65534", "--dir", "/var/tmp",
		"--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--die-with-parent", "--cap-drop", "ALL",
		"--setenv", "PATH", "/app/bin:/usr/bin", "--setenv", "HOME", "/tmp"}
	var files []*os.File
	if seccomp != nil {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		go func() { w.Write(seccomp); w.Close() }()
		defer r.Close()
		files = append(files, r)
		args = append(args, "--seccomp", "3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bwrap, append(append(args, "--"), argv...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = files
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("bwrap %v: %v\n%s", argv, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// flatpakSeccompOrNil is Flatpak's seccomp filter built by libseccomp
// (testutil.FlatpakSeccompBPF; it fails the benchmark under CI where
// python3-seccomp is missing).
func flatpakSeccompOrNil(b *testing.B) []byte { return testutil.FlatpakSeccompBPF(b, false) }
