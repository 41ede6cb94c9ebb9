package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
)

// The app of the run tests, published by lazytree on branch stable and by
// flatpak build-export on testutil.FlatpakAppBranch.
const (
	runTestApp    = "org.lazytree.Probe"
	runTestBranch = "stable"
	// runUnusedBytes is a runtime file that no start reads
	// (incompressible): what lazy fetching saves, at least.
	runUnusedBytes = 16 << 20
)

// runFixture is an app carrying the escape probe and a runtime made of
// host programs, published by lazytree (remote "lt") and by the real
// flatpak (remote "fp"), served on 127.0.0.1, and a daemon of this
// process mounting both; lazytree run itself runs as a child (the built
// binary), as a user would start it.
type runFixture struct {
	base, lt, mp, home string
	bwrap              string
	pubBytes           int64 // archive objects published by lazytree
	ltSrv, fpSrv       *fetchtest.Server
	secret             string // a host file no sandbox may see
}

func newRunFixture(t *testing.T) *runFixture {
	t.Helper()
	requireFuse(t)
	f := &runFixture{bwrap: testutil.RequireBwrap(t)}
	testutil.RequireTool(t, "flatpak")
	base, err := os.MkdirTemp("", "lazytree-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755) // the unprivileged user's run reads the binary here
	f.base = base
	f.lt = publicLazytree(t, base)
	probe := testutil.BuildEscapeProbe(t)
	rt, app := filepath.Join(base, "runtime"), filepath.Join(base, "app")
	if err := testutil.BuildSandboxRuntime(rt, testutil.SandboxRuntimeOptions{}); err != nil {
		t.Fatal(err)
	}
	unused := make([]byte, runUnusedBytes)
	rand.Read(unused)
	os.MkdirAll(filepath.Join(rt, "files", "share", "unused"), 0o755)
	if err := os.WriteFile(filepath.Join(rt, "files", "share", "unused", "data.bin"), unused, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testutil.BuildSandboxApp(app, testutil.SandboxApp{ID: runTestApp, Probe: probe,
		Files: map[string]string{"bin/--help": "#!/bin/sh\necho \"dashed program ran $*\"\n"}}); err != nil {
		t.Fatal(err)
	}
	// Apps that fail to start: metadata that does not parse, a runtime
	// no remote has, a hostile permission string.
	bad := map[string]string{
		"org.lazytree.Broken":   "[Application\nruntime=" + testutil.SandboxRuntimeRef + "\n",
		"org.lazytree.Orphan":   "[Application]\nname=org.lazytree.Orphan\nruntime=org.nowhere.Platform/x86_64/9\ncommand=hello\n",
		"org.lazytree.Escaping": "[Application]\nname=org.lazytree.Escaping\nruntime=" + testutil.SandboxRuntimeRef + "\ncommand=hello\n\n[Context]\nfilesystems=/srv/\x1b[8mhidden\x1b[0m;\n",
		// Asks for the user's home and every device.
		"org.lazytree.Greedy": "[Application]\nname=org.lazytree.Greedy\nruntime=" + testutil.SandboxRuntimeRef + "\ncommand=sh\n\n[Context]\nfilesystems=home;\ndevices=all;\n",
		// files/ is a symlink to a host directory.
		"org.lazytree.Linked": "[Application]\nname=org.lazytree.Linked\nruntime=" + testutil.SandboxRuntimeRef + "\ncommand=sh\n",
	}
	pub := filepath.Join(base, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "runtime/"+testutil.SandboxRuntimeRef, "--gpg-sign", secret, rt)
	lt(t, "commit", "--repo", pub, "-b", "app/"+runTestApp+"/"+testutil.FlatpakArch()+"/"+runTestBranch, "--gpg-sign", secret, app)
	for id, meta := range bad {
		d := filepath.Join(base, "bad", id)
		if id == "org.lazytree.Linked" {
			os.MkdirAll(d, 0o755)
			os.Symlink("/etc", filepath.Join(d, "files"))
		} else {
			os.MkdirAll(filepath.Join(d, "files", "bin"), 0o755)
		}
		os.WriteFile(filepath.Join(d, "metadata"), []byte(meta), 0o644)
		lt(t, "commit", "--repo", pub, "-b", "app/"+id+"/"+testutil.FlatpakArch()+"/"+runTestBranch, "--gpg-sign", secret, d)
	}
	lt(t, "export", "--repo", pub, "--gpg-sign", secret)
	f.pubBytes, _ = dirSize(filepath.Join(pub, "objects"))
	fp := filepath.Join(base, "fp")
	gpgHome, fpr := testutil.GPGHome(t)
	testutil.FlatpakBuildExport(t, fp, app, rt, gpgHome, fpr)

	for _, s := range []struct {
		dir string
		srv **fetchtest.Server
	}{{pub, &f.ltSrv}, {fp, &f.fpSrv}} {
		srv, err := fetchtest.New(s.dir, fetchtest.Options{Latency: 2 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		*s.srv = srv
	}
	f.home = filepath.Join(base, "state")
	key := testutil.VectorPath(t, testutil.GPGPublicKeyFile)
	lt(t, "--home", f.home, "remote", "add", "lt", f.ltSrv.URL(), "--gpg-import", key)
	lt(t, "--home", f.home, "remote", "add", "fp", f.fpSrv.URL(), "--gpg-import", key)
	f.mp = filepath.Join(base, "mnt")
	m := &mounted{home: f.home, mp: f.mp}
	m.runDaemon(t, mountOptions{})
	f.secret = filepath.Join(base, "host-secret")
	os.WriteFile(f.secret, []byte("host secret\n"), 0o644)
	return f
}

// runAs is one identity lazytree run starts as: root (cred nil) or a
// created user.
type runAs struct {
	name string
	cred *syscall.Credential
	home string
}

// publicLazytree copies the built binary into dir (which created users
// can enter; the build's own directory is under t.TempDir, 0700) and
// returns its path.
func publicLazytree(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(testutil.BuildLazytree(t))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "lazytree")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// newUser creates an unprivileged user for the test, with a home in the
// fixture's directory.
func (f *runFixture) newUser(t *testing.T) runAs {
	t.Helper()
	return createRunAs(t, filepath.Join(f.base, "home-user"))
}

// createRunAs creates an unprivileged user with its home at home.
func createRunAs(t *testing.T, home string) runAs {
	t.Helper()
	u := testutil.CreateUser(t, home)
	return runAs{name: u.Name, cred: u.Cred, home: u.Home}
}

// root is lazytree run as root, with a home of its own.
func (f *runFixture) root(t *testing.T) runAs {
	home := filepath.Join(f.base, "home-root")
	os.MkdirAll(home, 0o755)
	return runAs{name: "root", home: home}
}

// run starts `lazytree run --mount MP args...` as who, with env added, and
// returns its output and exit code.
func (f *runFixture) run(t *testing.T, who runAs, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return who.exec(t, env, f.lt, append([]string{"run", "--mount", f.mp}, args...)...)
}

// exec runs name args as who, in its home, with PATH, HOME and a
// LAZYTREE_HOME of its own, and env added; it returns the output and the
// exit code (a failure to start fails the test).
func (who runAs) exec(t *testing.T, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + who.home, "LAZYTREE_HOME=" + filepath.Join(who.home, ".lazytree")}, env...)
	cmd.Dir = who.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: who.cred}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v as %s: %v", name, args, who.name, err)
	}
	return out.String(), errb.String(), 0
}

func (f *runFixture) mustRun(t *testing.T, who runAs, env []string, args ...string) string {
	t.Helper()
	out, errb, code := f.run(t, who, env, args...)
	if code != 0 {
		t.Fatalf("lazytree run %v as %s: exit %d\n%s%s", args, who.name, code, out, errb)
	}
	return out
}

// TestRunApp starts the app from both remotes (published by lazytree and
// by flatpak), as root and as a created user, checks that it was read
// lazily, runs the escape suite in lazytree's sandbox and in bwrap with
// Flatpak's options and seccomp filter, and checks run's errors.
func TestRunApp(t *testing.T) {
	f := newRunFixture(t)
	root := f.root(t)
	usr := f.newUser(t)
	arch := testutil.FlatpakArch()

	t.Run("hello", func(t *testing.T) {
		for _, who := range []runAs{root, usr} {
			for _, remote := range []string{"lt", "fp"} {
				out := f.mustRun(t, who, nil, "--remote", remote, runTestApp, "a", "b c")
				want := testutil.SandboxHelloLine(runTestApp) + "\narg: a\narg: b c\n"
				if out != want {
					t.Errorf("%s, remote %s: got %q, want %q", who.name, remote, out, want)
				}
			}
		}
		// The runtime's data file is never read: the start must not
		// have fetched it (a whole pull would).
		if st := f.ltSrv.Stats(); st.Bytes <= 0 || st.Bytes >= f.pubBytes-runUnusedBytes/2 {
			t.Errorf("starting the app fetched %d bytes of the %d published, %d of them a file nothing reads: not lazily", st.Bytes, f.pubBytes, runUnusedBytes)
		}
		// The same app in two remotes (two branches): say which.
		_, errb, code := f.run(t, root, nil, runTestApp)
		if code == 0 || !strings.Contains(errb, "2 matches") {
			t.Errorf("an app in two remotes: exit %d, %q; want a refusal naming both", code, errb)
		}
		if out := f.mustRun(t, root, nil, "--branch", testutil.FlatpakAppBranch, runTestApp); !strings.HasPrefix(out, testutil.SandboxHelloLine(runTestApp)) {
			t.Errorf("--branch %s: %q", testutil.FlatpakAppBranch, out)
		}
	})

	t.Run("flatpak-info", func(t *testing.T) {
		out := f.mustRun(t, root, nil, "--remote", "lt", "--command", "escapeprobe", runTestApp, "-readfile", "/.flatpak-info")
		for _, want := range []string{"[Application]\nname=" + runTestApp + "\nruntime=runtime/" + testutil.SandboxRuntimeRef + "\n",
			"[Instance]\n", "branch=" + runTestBranch + "\n", "arch=" + arch + "\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("/.flatpak-info lacks %q:\n%s", want, out)
			}
		}
		for _, key := range []string{"app-commit", "runtime-commit"} {
			if !regexp.MustCompile("(?m)^" + key + "=[0-9a-f]{64}$").MatchString(out) {
				t.Errorf("/.flatpak-info has no %s:\n%s", key, out)
			}
		}
		etc := f.mustRun(t, root, nil, "--remote", "lt", "--command", "sh", runTestApp, "-c", "cat /etc/lazytree-test.conf /etc/passwd")
		if !strings.Contains(etc, testutil.SandboxRuntimeEtc["lazytree-test.conf"]) || strings.Contains(etc, testutil.SandboxRuntimePasswdMarker) {
			t.Errorf("/etc: want the runtime's files and a generated passwd:\n%s", etc)
		}
	})

	t.Run("escape-suite", func(t *testing.T) {
		for _, who := range []runAs{root, usr} {
			t.Run(who.name, func(t *testing.T) { f.escapeSuite(t, who) })
		}
	})

	t.Run("network", func(t *testing.T) {
		addr := testutil.TCPSink(t)
		for _, share := range []bool{false, true} {
			args := []string{"--remote", "lt", "--command", "escapeprobe", runTestApp, "-connect", addr}
			if share {
				args = append([]string{"--share", "network"}, args...)
			}
			res := testutil.DecodeEscapeProbe(t, []byte(f.mustRun(t, usr, nil, args...)))
			if got, connected := res["net:connect"], res["net:connect"] == "connected"; connected != share {
				t.Errorf("--share network %v: net:connect %s", share, got)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"org.lazytree.Missing"}, "is not in any configured remote"},
			{[]string{"org.lazytree.Orphan"}, "no configured remote has it"},
			{[]string{"org.lazytree.Broken"}, "metadata does not parse"},
			{[]string{"org.lazytree.Linked"}, "symlink is never followed"},
			{[]string{"--remote", "lt", "--command", "no-such-program", runTestApp}, `command "no-such-program" not found`},
			{[]string{"--remote", "lt", "--share", "everything", runTestApp}, "want network or ipc"},
			{[]string{"not an id"}, "app id"},
		} {
			_, errb, code := f.run(t, root, nil, c.args...)
			if code == 0 || !strings.Contains(errb, c.want) {
				t.Errorf("run %q: exit %d, stderr %q; want a failure saying %q", c.args, code, errb, c.want)
			}
		}
		// A command that looks like an option is a program name.
		out := f.mustRun(t, root, nil, "--remote", "lt", "--command", "--help", runTestApp, "x")
		if out != "dashed program ran x\n" {
			t.Errorf("--command --help: got %q, want the app's bin/--help to run", out)
		}
	})

	t.Run("info", func(t *testing.T) {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), []string{"info", "--mount", f.mp, "--remote", "lt", "org.lazytree.Escaping"}, &out, &errb); code != 0 {
			t.Fatalf("info: exit %d: %s", code, errb.String())
		}
		if bytes.ContainsRune(out.Bytes(), 0x1b) || !strings.Contains(out.String(), `\x1b[8mhidden`) {
			t.Errorf("info shows a remote's escape codes raw:\n%q", out.String())
		}
		out.Reset()
		if code := Run(context.Background(), []string{"info", "--mount", f.mp, "--remote", "lt", runTestApp}, &out, &errb); code != 0 {
			t.Fatalf("info: exit %d: %s", code, errb.String())
		}
		for _, want := range []string{"lt:app/" + runTestApp, "runtime:", "lt:runtime/" + testutil.SandboxRuntimeRef, "FOO=bar"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("info lacks %q:\n%s", want, out.String())
			}
		}
	})

	t.Run("devel", func(t *testing.T) {
		res := testutil.DecodeEscapeProbe(t, []byte(f.mustRun(t, usr, nil, "--devel", "--remote", "lt", "--command", "escapeprobe", runTestApp)))
		for _, k := range []string{"seccomp:ptrace", "seccomp:perf_event_open", "seccomp:personality"} {
			if res[k] == testutil.FlatpakEscapeProbeSeccomp[k] {
				t.Errorf("--devel: %s still %s", k, res[k])
			}
		}
		if res["seccomp:mount"] != "denied:EPERM" || res["userns:unshare"] != "denied:EPERM" {
			t.Errorf("--devel relaxed more than ptrace, perf and personality: mount %s, unshare %s", res["seccomp:mount"], res["userns:unshare"])
		}
	})

	t.Run("data-symlink", func(t *testing.T) {
		// The app (or anyone with the user's rights) swaps its data
		// directory for a link to a host directory: run refuses to bind
		// it (CVE-2024-42472).
		data := filepath.Join(usr.home, ".var", "app", runTestApp, "data")
		os.RemoveAll(data)
		if err := os.Symlink("/etc", data); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Remove(data)
			os.Mkdir(data, 0o700)
			os.Chown(data, int(usr.cred.Uid), int(usr.cred.Gid))
		}()
		out, errb, code := f.run(t, usr, nil, "--remote", "lt", "--command", "sh", runTestApp, "-c", "ls $XDG_DATA_HOME")
		if code == 0 || !strings.Contains(errb, "symlink") {
			t.Errorf("data directory swapped for a symlink to /etc: exit %d, stdout %q, stderr %q; want a refusal", code, out, errb)
		}
	})

	t.Run("grant", func(t *testing.T) {
		os.WriteFile(filepath.Join(usr.home, "mine.txt"), []byte("the user's file\n"), 0o644)
		probe := "cat ~/mine.txt 2>/dev/null || echo no-home; test -e /dev/sda -o -e /dev/vda -o -e /dev/kmsg && echo host-dev || echo no-dev; ls -A ~/.lazytree 2>/dev/null | wc -l"
		out, errb, code := f.run(t, usr, nil, "org.lazytree.Greedy", "-c", probe)
		if code != 0 || out != "no-home\nno-dev\n0\n" || !strings.Contains(errb, "not granted without --grant") {
			t.Errorf("metadata asking for home and all devices, no --grant: exit %d, %q, %q; want neither, and a notice", code, out, errb)
		}
		os.MkdirAll(filepath.Join(usr.home, ".lazytree"), 0o755)
		os.WriteFile(filepath.Join(usr.home, ".lazytree", "config"), []byte("state\n"), 0o644)
		out, errb, code = f.run(t, usr, nil, "--grant", "org.lazytree.Greedy", "-c", probe)
		if code != 0 || out != "the user's file\nhost-dev\n0\n" || !strings.Contains(errb, "granted to org.lazytree.Greedy: devices=all filesystems=home") {
			t.Errorf("--grant: exit %d, %q, %q; want the home (but not lazytree's state in it) and the devices", code, out, errb)
		}
	})

	t.Run("commit", func(t *testing.T) {
		ref := mountRef{Remote: "lt", Ref: "app/" + runTestApp + "/" + arch + "/" + runTestBranch}
		fillCommits(f.mp, &ref)
		c := ref.Commit
		if len(c) != 64 {
			t.Fatalf("refs.json has no commit for %s", ref)
		}
		out := f.mustRun(t, root, nil, "--remote", "lt", "--commit", c, "--command", "escapeprobe", runTestApp, "-readfile", "/.flatpak-info")
		if !strings.Contains(out, "app-commit="+c+"\n") || !strings.Contains(out, "app-path="+filepath.Join(f.mp, ".commits", c, "files")+"\n") {
			t.Errorf("--commit %s: /.flatpak-info:\n%s", c, out)
		}
		_, errb, code := f.run(t, root, nil, "--remote", "lt", "--commit", strings.Repeat("0", 64), runTestApp)
		if code == 0 || !strings.Contains(errb, "no configured remote has a verified commit") {
			t.Errorf("--commit of a commit no remote has: exit %d, %q", code, errb)
		}
	})

	t.Run("runtime-only", func(t *testing.T) {
		out := f.mustRun(t, usr, nil, "--runtime", "lt:runtime/"+testutil.SandboxRuntimeRef, "--", "sh", "-c", "echo in-runtime; ls /app | wc -l")
		if out != "in-runtime\n0\n" {
			t.Errorf("run --runtime: %q", out)
		}
	})

	t.Run("killed", func(t *testing.T) {
		token := fmt.Sprintf("%d.%d", 700+os.Getpid()%200, time.Now().UnixNano()%1e6)
		cmd := exec.Command(f.lt, "run", "--mount", f.mp, "--remote", "lt", "--command", "sh", runTestApp, "-c", "sleep "+token+" & sleep "+token+"; wait")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + usr.home}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: usr.cred}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		sleep := []string{"sleep", token}
		if n := len(testutil.WaitProcs(sleep, 2, 30*time.Second)); n < 2 {
			t.Fatalf("the sandboxed sleeps did not start (%d found)", n)
		}
		cmd.Process.Kill()
		cmd.Wait()
		if left := testutil.WaitProcs(sleep, 0, 5*time.Second); len(left) != 0 {
			for _, p := range left {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("processes %v left behind after lazytree run was killed", left)
		}
	})
}

// escapeSuite runs the escape probe in lazytree's sandbox and in bwrap
// (Flatpak's options, the same trees from the mount, Flatpak's seccomp
// filter built by libseccomp) as who, requires the same results but where
// lazytree is stricter, and checks lazytree's against what must hold.
func (f *runFixture) escapeSuite(t *testing.T, who runAs) {
	hostFlags, err := testutil.EscapeProbeHostFlags()
	if err != nil {
		t.Fatal(err)
	}
	inHome := filepath.Join(who.home, "outside-the-app-data")
	os.WriteFile(inHome, []byte("private\n"), 0o644)
	data := filepath.Join(who.home, ".var", "app", runTestApp, "data")
	flags := append([]string{"-hidden", "/root", "-hidden", "/etc/shadow", "-hidden", f.secret, "-hidden", inHome, "-hidden", "/var/lib",
		"-env-expect", "FOO=bar", "-env-absent", "LD_PRELOAD", "-env-absent", "LD_AUDIT", "-env-absent", "LAZYTREE_HOME"}, hostFlags...)

	// Ours, with a host fd left open and LD_PRELOAD set for the caller.
	leak, err := os.Open(f.secret)
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.lt, append([]string{"run", "--mount", f.mp, "--remote", "lt", "--command", "escapeprobe", runTestApp, "-data", data}, flags...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + who.home, "LD_PRELOAD=/nonexistent/preload.so", "LAZYTREE_HOME=" + filepath.Join(who.home, ".lazytree")}
	cmd.Dir = who.home
	cmd.ExtraFiles = []*os.File{leak}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: who.cred}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("lazytree run escapeprobe: %v\n%s", err, errb.String())
	}
	ours := testutil.DecodeEscapeProbe(t, out.Bytes())

	// The reference: bwrap as Flatpak starts it, on the same trees.
	if err := testutil.CloexecInheritedFDs(); err != nil {
		t.Fatal(err)
	}
	rtFiles := filepath.Join(f.mp, "lt", "runtime", testutil.SandboxRuntimeRef, "files")
	appFiles := filepath.Join(f.mp, "lt", "app", runTestApp, testutil.FlatpakArch(), runTestBranch, "files")
	bargs, err := testutil.BwrapFlatpakArgs(rtFiles, appFiles)
	if err != nil {
		t.Fatal(err)
	}
	bargs = append(bargs, "--bind", data, data, "--setenv", "FOO", "bar", "--setenv", "HOME", who.home, "--seccomp", "3")
	seccomp := testutil.FlatpakSeccompBPF(t, false)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.Write(seccomp); w.Close() }()
	defer r.Close()
	bw := exec.CommandContext(ctx, f.bwrap, append(append(bargs, "--", "/app/bin/escapeprobe", "-data", data), flags...)...)
	bw.Env = []string{"PATH=/app/bin:/usr/bin"}
	bw.ExtraFiles = []*os.File{r}
	// As root, bwrap runs as the uid lazytree gives the command (Flatpak
	// as root would keep root: no reference for a sandbox that drops it).
	bwCred := who.cred
	if bwCred == nil {
		bwCred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	bw.SysProcAttr = &syscall.SysProcAttr{Credential: bwCred}
	out.Reset()
	errb.Reset()
	bw.Stdout, bw.Stderr = &out, &errb
	if err := bw.Run(); err != nil {
		t.Fatalf("bwrap escapeprobe: %v\n%s", err, errb.String())
	}
	ref := testutil.DecodeEscapeProbe(t, out.Bytes())

	// Where lazytree is stricter than bwrap, by design: an empty bounding
	// set, a read-only root, /etc and /proc/sys; and a filter that kills
	// the process, not the thread, on an x32 call.
	stricter := map[string]string{
		"status:CapBnd": "CapBnd:0000000000000000", "write:/": "readonly", "mount:/": "ro,nosuid,nodev",
		"mount:/proc/sys": "ro,nosuid,nodev,noexec",
	}
	ignore := []string{"mount:/etc", "mount:/dev", "seccomp:x32-unshare"}
	if who.cred == nil {
		// As root lazytree makes no user namespace: the command runs as
		// a real unprivileged uid (bwrap maps its uid onto root's).
		stricter["ns:user"] = "host"
	}
	for k, want := range stricter {
		if ours[k] != want {
			t.Errorf("%s: ours %q, want %q", k, ours[k], want)
		}
		ignore = append(ignore, k)
	}
	if !strings.HasPrefix(ours["seccomp:x32-unshare"], "killed:") {
		t.Errorf("x32 syscall: %q, want killed", ours["seccomp:x32-unshare"])
	}
	// i386 calls (int $0x80): where the kernel has no i386 ABI for 64-bit
	// processes both sides fault; where it has one (this differs between
	// machines of this kind), Flatpak's filter kills the thread and ours
	// the process. Either is a refusal; any answer that ran the call is not.
	for k, v := range ours {
		if !strings.HasPrefix(k, "seccomp:i386-") {
			continue
		}
		ignore = append(ignore, k)
		if !strings.HasPrefix(v, "killed:") && v != "fault:SIGSEGV" {
			t.Errorf("%s: %q, want killed or the gate's fault", k, v)
		}
		if r := ref[k]; !strings.HasPrefix(r, "killed:") && r != "fault:SIGSEGV" {
			t.Errorf("%s under bwrap: %q, want killed or the gate's fault", k, r)
		}
	}
	for _, d := range testutil.EscapeProbeDiff(ours, ref, ignore...) {
		t.Errorf("lazytree vs bwrap: %s", d)
	}
	// What must hold, whatever bwrap says.
	must := map[string]string{
		"hidden:/root": "absent", "hidden:/etc/shadow": "absent", "hidden:" + f.secret: "absent", "hidden:" + inHome: "absent",
		"write:/usr": "readonly", "write:/app": "readonly", "pid1": "sandbox", "pid": "pidns",
		"status:NoNewPrivs": "NoNewPrivs:1", "status:CapEff": "CapEff:0000000000000000", "status:Seccomp": "Seccomp:2",
		"uid": "uid:nonroot", "fds": "none", "env:LD_PRELOAD": "LD_PRELOAD:absent", "env:FOO": "ok",
		"net:interfaces": "loopback-only", "data:" + data: "writable",
		"userns:unshare": "denied:EPERM", "userns:clone": "denied:EPERM",
	}
	for k, v := range testutil.FlatpakEscapeProbeSeccomp {
		must[k] = v
	}
	delete(must, "seccomp:x32-unshare") // killed, checked above
	for k, want := range must {
		if ours[k] != want {
			t.Errorf("%s: %q, want %q", k, ours[k], want)
		}
	}
	t.Logf("%d checks, %d equal to bwrap's", len(ours), len(ours)-len(testutil.EscapeProbeDiff(ours, ref)))
}
