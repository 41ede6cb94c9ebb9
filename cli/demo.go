package cli

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/sample"
	"github.com/lazytree/lazytree/ostree/repo"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// demoBinaries are host programs copied into the demo runtime (those that
// exist), with every library they need and the loader.
var demoBinaries = []string{
	"bash", "sh", "ls", "cat", "echo", "head", "tail", "wc", "sort", "uniq", "cut", "tr", "sed", "grep",
	"find", "xargs", "date", "env", "id", "uname", "du", "df", "cp", "mv", "rm", "mkdir", "ln", "chmod",
	"stat", "md5sum", "sha256sum", "gzip", "tar", "diff", "perl", "gpg", "ostree", "less", "tee", "seq",
}

type demoOptions struct {
	Latency  time.Duration
	Prefetch string
	Keep     bool
	// Binary is the lazytree binary that runs the app (default this
	// one; tests set the built binary).
	Binary string
}

func newDemoCmd(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	c := &cobra.Command{
		Use:   "demo",
		Short: "The whole story on a built-in sample, offline: publish a runtime and an app, mount them lazily, run the app sandboxed, compare with ostree pull",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	c.Flags().DurationVar(&o.Latency, "latency", 25*time.Millisecond, "latency added to every request")
	c.Flags().StringVar(&o.Prefetch, "prefetch", fetch.PrefetchMetadata, "prefetch mode of the mount")
	c.Flags().BoolVar(&o.Keep, "keep", false, "leave the server and the mount running until Ctrl-C, and print commands to try")
	return c
}

// runDemo builds a runtime from host binaries, publishes it signed, serves
// it with added latency, mounts it lazily and runs a program from it twice
// (cold, then warm). Everything it made is removed when it returns, also
// after Ctrl-C (ctx is cancelled by SIGINT and SIGTERM).
func runDemo(ctx context.Context, o *demoOptions, out io.Writer) error {
	work, err := os.MkdirTemp("", "lazytree-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }

	step("building a runtime from this host's programs and their libraries")
	rt := filepath.Join(work, "runtime")
	nfiles, err := buildDemoRuntime(rt)
	if err != nil {
		return err
	}
	pub := filepath.Join(work, "repo")
	signer, pubKey, err := throwawayKey(work)
	if err != nil {
		return err
	}
	r, err := repo.Init(pub, "")
	if err != nil {
		return err
	}
	arch := flatpakArch()
	runtimeID, appID := "org.lazytree.Demo", "org.lazytree.DemoApp"
	ref := "runtime/" + runtimeID + "/" + arch + "/1"
	appRef := "app/" + appID + "/" + arch + "/stable"
	app := filepath.Join(work, "app")
	if err := buildDemoApp(app, appID, runtimeID+"/"+arch+"/1"); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(rt, "metadata"), []byte("[Runtime]\nname="+runtimeID+"\nruntime="+runtimeID+"/"+arch+"/1\n"), 0o644)
	start := time.Now()
	res, err := r.CommitDir(ctx, rt, repo.CommitOptions{Branch: ref, Subject: "lazytree demo runtime", Signer: signer})
	if err != nil {
		return err
	}
	if _, err := r.CommitDir(ctx, app, repo.CommitOptions{Branch: appRef, Subject: "lazytree demo app", Signer: signer}); err != nil {
		return err
	}
	if _, err := r.Export(ctx, repo.ExportOptions{Signer: signer, Deltas: generateDelta, TreeIndex: true,
		TreeIndexOptions: treeindex.BuildOptions{Scan: treeindex.ZranScan}}); err != nil {
		return err
	}
	refBytes, err := dirSize(filepath.Join(pub, "objects"))
	if err != nil {
		return err
	}
	step("committed a runtime of %d files (%s, %s compressed) and an app using it, signed with a throwaway ed25519 key, with static deltas and a tree index, in %s",
		nfiles, formatBytes(res.Bytes), formatBytes(refBytes), time.Since(start).Round(time.Millisecond))

	const bandwidth = 100e6 / 8
	srv, err := fetchtest.New(pub, fetchtest.Options{Latency: o.Latency, Bandwidth: bandwidth})
	if err != nil {
		return err
	}
	defer srv.Close()
	step("serving it on %s through an emulated link: %s per request, 100 Mbit/s", srv.URL(), o.Latency)

	home := filepath.Join(work, "home")
	g := &globalOptions{Home: home}
	if _, err := runRemoteAdd(ctx, g, &remoteAddOptions{SignPubkey: []string{pubKey}}, []string{"demo", srv.URL()}); err != nil {
		return err
	}
	step("added it as remote \"demo\": lazytree --home %s remote add demo %s --sign-pubkey-file %s", home, srv.URL(), pubKey)
	mp := filepath.Join(work, "mnt")
	dctx, stopDaemon := context.WithCancel(ctx)
	ready := make(chan *fusefs.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(dctx, g, mp, &mountOptions{Prefetch: o.Prefetch, Timeout: 30 * time.Second, LogLevel: slog.LevelWarn}, func(s *fusefs.Server) { ready <- s })
	}()
	defer func() {
		stopDaemon()
		<-done
	}()
	select {
	case s := <-ready:
		step("mounted lazily at %s (prefetch %s, FUSE passthrough: %v); nothing fetched yet", mp, o.Prefetch, s.PassthroughKernel())
	case err := <-done:
		return fmt.Errorf("mount: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}

	self := o.Binary
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	userHome := filepath.Join(work, "user")
	os.MkdirAll(userHome, 0o755)
	argv := []string{self, "--home", home, "run", "--mount", mp, "--remote", "demo", appID}
	env := []string{"HOME=" + userHome}
	step("running the app with: lazytree run %s (sandboxed: runtime at /usr, app at /app, read lazily)", appID)
	var cold time.Duration
	for _, run := range []string{"cold", "warm"} {
		srv.Reset()
		before := srv.Stats()
		first, total, line, err := timeFirstOutput(ctx, argv, env...)
		if err != nil {
			return fmt.Errorf("%s run: %w", run, err)
		}
		if run == "cold" {
			cold = total
		}
		st := srv.Stats()
		fmt.Fprintf(out, "    %s: %q\n", run, line)
		fmt.Fprintf(out, "    %s start: first output after %s (exit after %s); fetched %s of %s in the repo (%.1f%%) in %d requests\n",
			run, first.Round(time.Millisecond), total.Round(time.Millisecond),
			formatBytes(st.Bytes-before.Bytes), formatBytes(refBytes),
			100*float64(st.Bytes-before.Bytes)/float64(max(refBytes, 1)), st.Requests-before.Requests)
	}
	if ostreeBin, err := exec.LookPath("ostree"); err == nil {
		step("the same app the usual way: ostree pull (bare-user, static deltas) of both refs, checkout, start")
		srv.Reset()
		secs, line, err := demoOstreeStart(ctx, ostreeBin, filepath.Join(work, "ostree"), srv.URL(), ref, appRef)
		if err != nil {
			return fmt.Errorf("ostree comparison: %w", err)
		}
		fmt.Fprintf(out, "    ostree: %q\n", line)
		fmt.Fprintf(out, "    ostree pull + checkout + start: %s, %s in %d requests; lazytree run cold was %.1fx faster\n",
			secs.Round(time.Millisecond), formatBytes(srv.Stats().Bytes), srv.Stats().Requests, secs.Seconds()/cold.Seconds())
	} else {
		step("ostree is not installed: no comparison with ostree pull (apt-get install ostree)")
	}
	if o.Keep {
		step("kept running until Ctrl-C; try, in another terminal:")
		for _, c := range []string{
			"ls " + filepath.Join(mp, "demo", appRef, "files"),
			fmt.Sprintf("%s --home %s run --mount %s %s", self, home, mp, appID),
			fmt.Sprintf("%s --home %s status", self, home),
			fmt.Sprintf("%s --home %s ls-remote demo", self, home),
			fmt.Sprintf("%s bench --repo %s --sign-pubkey-file %s --ref %s --rtt 25ms --strategy none,metadata --peer ostree", self, srv.URL(), pubKey, ref),
		} {
			fmt.Fprintf(out, "    %s\n", c)
		}
		<-ctx.Done()
	}
	step("done; unmounting and cleaning up")
	return nil
}

// flatpakArch is the host's architecture as Flatpak names it.
func flatpakArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// buildDemoApp lays out an app of the demo runtime: metadata and a bash
// script as its command.
func buildDemoApp(dir, id, runtimeRef string) error {
	if err := os.MkdirAll(filepath.Join(dir, "files", "bin"), 0o755); err != nil {
		return err
	}
	meta := "[Application]\nname=" + id + "\nruntime=" + runtimeRef + "\ncommand=hello\n"
	if err := os.WriteFile(filepath.Join(dir, "metadata"), []byte(meta), 0o644); err != nil {
		return err
	}
	script := "#!/usr/bin/bash\necho \"hello from $FLATPAK_ID: bash $BASH_VERSION from /usr/bin, this script from /app/bin\"\n"
	return os.WriteFile(filepath.Join(dir, "files", "bin", "hello"), []byte(script), 0o755)
}

// demoOstreeStart is what a user of ostree does: pull both refs into a
// bare-user repo (static deltas allowed), check them out, start the app's
// script with the runtime's loader and libraries. It returns the time for
// all of it and the app's first line.
func demoOstreeStart(ctx context.Context, ostreeBin, dir, url, runtimeRef, appRef string) (time.Duration, string, error) {
	repoDir := filepath.Join(dir, "repo")
	rtCo, appCo := filepath.Join(dir, "runtime"), filepath.Join(dir, "app")
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, ostreeBin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ostree %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, "", err
	}
	start := time.Now()
	for _, args := range [][]string{
		{"init", "--repo=" + repoDir, "--mode=bare-user"},
		{"remote", "add", "--repo=" + repoDir, "--no-gpg-verify", "demo", url},
		{"pull", "--repo=" + repoDir, "demo", runtimeRef, appRef},
		{"checkout", "--repo=" + repoDir, "-U", "demo:" + runtimeRef, rtCo},
		{"checkout", "--repo=" + repoDir, "-U", "demo:" + appRef, appCo},
	} {
		if err := run(args...); err != nil {
			return 0, "", err
		}
	}
	files := filepath.Join(rtCo, "files")
	loader := filepath.Join(files, "lib64", "ld-linux-x86-64.so.2")
	argv := []string{loader, "--library-path", filepath.Join(files, "lib"), filepath.Join(files, "bin", "bash"), filepath.Join(appCo, "files", "bin", "hello")}
	_, _, line, err := timeFirstOutput(ctx, argv, "FLATPAK_ID=org.lazytree.DemoApp")
	return time.Since(start), line, err
}

// throwawayKey makes an ed25519 key pair for one run: the signer, and
// the public key in dir in the form remote add --sign-pubkey-file reads.
// The secret key never reaches the disk.
func throwawayKey(dir string) (*repo.Signer, string, error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	pubKey := filepath.Join(dir, "throwaway.pub")
	if err := os.WriteFile(pubKey, []byte(base64.StdEncoding.EncodeToString(pk)+"\n"), 0o644); err != nil {
		return nil, "", err
	}
	return &repo.Signer{Ed25519: sk}, pubKey, nil
}

// timeFirstOutput runs argv in a child process and returns the time to its
// first line of output, the time to exit, and that line.
func timeFirstOutput(ctx context.Context, argv []string, env ...string) (first, total time.Duration, line string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// The program may live in a FUSE mount this process serves: let a
	// host shell exec it, so that the kernel reads it from the mount in
	// the child and never during this process's fork (see fusefs/doc.go).
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `exec "$0" "$@"`}, argv...)...)
	cmd.Env = append([]string{"PATH=/nonexistent", "LC_ALL=C"}, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, "", err
	}
	br := bufio.NewReader(stdout)
	line, rerr := br.ReadString('\n')
	first = time.Since(start)
	io.Copy(io.Discard, br)
	if err := cmd.Wait(); err != nil {
		return 0, 0, "", fmt.Errorf("%v: %s", err, stderr.String())
	}
	if rerr != nil && line == "" {
		return 0, 0, "", errors.New("no output")
	}
	return first, time.Since(start), strings.TrimSpace(line), nil
}

// buildDemoRuntime lays out a Flatpak-style runtime: metadata, files/bin,
// files/lib (every library the binaries need), files/lib64 (the loader).
func buildDemoRuntime(dir string) (int, error) {
	bin, lib, lib64 := filepath.Join(dir, "files", "bin"), filepath.Join(dir, "files", "lib"), filepath.Join(dir, "files", "lib64")
	for _, d := range []string{bin, lib, lib64} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	os.WriteFile(filepath.Join(dir, "metadata"), []byte("[Runtime]\nname=org.lazytree.Demo\nruntime=org.lazytree.Demo/x86_64/1\n"), 0o644)
	n := 1
	libs := map[string]bool{}
	var interp string
	for _, b := range demoBinaries {
		p, err := exec.LookPath(b)
		if err != nil {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		f, err := elf.Open(real)
		if err != nil {
			continue // a script
		}
		needed, _ := f.ImportedLibraries()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				buf := make([]byte, prog.Filesz)
				prog.ReadAt(buf, 0)
				interp = strings.TrimRight(string(buf), "\x00")
			}
		}
		f.Close()
		if err := sample.CopyRegular(real, filepath.Join(bin, b), 0o755); err != nil {
			return 0, err
		}
		n++
		if err := addLibs(needed, libs); err != nil {
			return 0, err
		}
	}
	if interp == "" {
		return 0, errors.New("demo: no dynamically linked host programs found")
	}
	for l := range libs {
		if err := sample.CopyRegular(l, filepath.Join(lib, filepath.Base(l)), 0o755); err != nil {
			return 0, err
		}
		n++
	}
	real, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return 0, err
	}
	if err := sample.CopyRegular(real, filepath.Join(lib64, filepath.Base(interp)), 0o755); err != nil {
		return 0, err
	}
	return n + 1, nil
}

var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// addLibs resolves sonames to host files, recursively.
func addLibs(needed []string, seen map[string]bool) error {
	for _, so := range needed {
		var path string
		for _, d := range libDirs {
			if real, err := filepath.EvalSymlinks(filepath.Join(d, so)); err == nil {
				path = real
				break
			}
		}
		if path == "" {
			return fmt.Errorf("demo: library %s not found", so)
		}
		key := filepath.Join(filepath.Dir(path), so)
		if seen[key] {
			continue
		}
		seen[key] = true
		// Copied under the soname, which is what the loader looks for.
		f, err := elf.Open(path)
		if err != nil {
			return err
		}
		more, _ := f.ImportedLibraries()
		f.Close()
		if err := addLibs(more, seen); err != nil {
			return err
		}
	}
	return nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}
