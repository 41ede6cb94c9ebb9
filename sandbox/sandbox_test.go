package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/internal/testutil"
)

// runnerEnv marks a re-execution of this test binary that runs one
// sandbox and waits (TestRunKilledLeavesNothing kills it).
const runnerEnv = "LAZYTREE_SANDBOX_TEST_RUNNER"

// asUserEnv marks a run of this test binary as an unprivileged user
// (TestUnprivileged), where that test must not recurse.
const asUserEnv = "LAZYTREE_SANDBOX_TEST_AS_USER"

func TestMain(m *testing.M) {
	Init()
	if mode := os.Getenv(probeEnv); mode != "" {
		os.Exit(probeMain(mode))
	}
	if cmd := os.Getenv(runnerEnv); cmd != "" {
		home, _ := os.MkdirTemp("", "runner-home-")
		code, err := Run(context.Background(), &Spec{Runtime: "/usr", Home: home, Command: []string{"sh", "-c", cmd}})
		fmt.Println("runner:", code, err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// requireSandbox skips (fails under CI) where namespaces cannot be made.
func requireSandbox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/sh"); err != nil {
		t.Skip("no /usr/bin/sh on this host to use as the runtime")
	}
	if os.Getuid() != 0 && !userNamespacesWork() {
		testutil.SkipOrFail(t, "user namespaces are disabled for unprivileged users here")
	}
}

// sh runs a shell script in a sandbox with the host's /usr as its runtime.
func sh(t *testing.T, spec Spec, script string) (code int, stdout, stderr string, err error) {
	t.Helper()
	requireSandbox(t)
	var out, errb bytes.Buffer
	if spec.Runtime == "" {
		spec.Runtime = "/usr"
	}
	if spec.Home == "" {
		spec.Home = t.TempDir()
		os.Chmod(spec.Home, 0o755)
	}
	spec.Command = []string{"sh", "-c", script}
	spec.Stdout, spec.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, err = Run(ctx, &spec)
	return code, out.String(), errb.String(), err
}

func mustSh(t *testing.T, spec Spec, script string) string {
	t.Helper()
	code, out, errb, err := sh(t, spec, script)
	if err != nil || code != 0 {
		t.Fatalf("sandbox: code %d, err %v\nstdout:\n%s\nstderr:\n%s", code, err, out, errb)
	}
	return out
}

func TestRunIdentityAndPrivileges(t *testing.T) {
	out := mustSh(t, Spec{}, `id -u; grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp|PPid):' /proc/self/status; tr '\0' ' ' </proc/1/cmdline; echo; echo ppid=$PPID`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] == "0" {
		t.Errorf("the command runs as root")
	}
	if os.Getuid() != 0 && lines[0] != strconv.Itoa(os.Getuid()) {
		t.Errorf("uid %s, want the invoking user's %d", lines[0], os.Getuid())
	}
	for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
		"CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, initArg0) {
		t.Errorf("pid 1 is not the sandbox's init:\n%s", out)
	}
	// pid 1 holds nothing the command may reach: not its fds (host
	// directories before the pivot), not its memory.
	probe := mustSh(t, Spec{}, `ls /proc/1/fd/ >/dev/null 2>&1 && echo fd-listed; cat /proc/1/maps >/dev/null 2>&1 && echo maps-read; (exec 9<>/proc/1/mem) 2>/dev/null && echo mem-opened; readlink /proc/1/exe >/dev/null 2>&1 && echo exe-read; echo done`)
	if probe != "done\n" {
		t.Errorf("pid 1 is open to the command:\n%s", probe)
	}
	if !strings.Contains(out, "ppid=1\n") {
		t.Errorf("the command is not a child of pid 1 of a new pid namespace:\n%s", out)
	}
}

func TestRunExitStatus(t *testing.T) {
	code, _, _, err := sh(t, Spec{}, "exit 7")
	if err != nil || code != 7 {
		t.Errorf("exit 7: got %d, %v", code, err)
	}
	code, _, _, err = sh(t, Spec{}, "kill -9 $$")
	if err != nil || code != 128+9 {
		t.Errorf("killed by SIGKILL: got %d, %v; want 137", code, err)
	}
}

func TestRunNoLeakedFDs(t *testing.T) {
	// An fd the caller left inheritable must not reach the command.
	fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
	if err != nil {
		fd, err = syscall.Open("/etc/passwd", syscall.O_RDONLY, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	out := mustSh(t, Spec{}, `ls -l /proc/self/fd/`)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		before, target, ok := strings.Cut(l, " -> ")
		if !ok {
			continue
		}
		f := strings.Fields(before)
		n := f[len(f)-1]
		if n == "0" || n == "1" || n == "2" || strings.HasPrefix(target, "/proc/") {
			continue // ls's own directory fd
		}
		t.Errorf("fd leaked into the sandbox: %s", l)
	}
}

func TestRunEnvironment(t *testing.T) {
	t.Setenv("LD_PRELOAD", "/nonexistent/evil.so")
	t.Setenv("LD_LIBRARY_PATH", "/nonexistent")
	t.Setenv("PYTHONPATH", "/nonexistent")
	t.Setenv("LANG", "C.UTF-8")
	out := mustSh(t, Spec{AppID: "org.example.Env", Env: []string{"FOO=bar", "FOO=baz", "PATH=/usr/bin:/app/bin"}}, "env")
	for _, bad := range []string{"LD_PRELOAD=", "LD_LIBRARY_PATH=", "PYTHONPATH="} {
		if strings.Contains(out, bad) {
			t.Errorf("host %s reached the sandbox", bad)
		}
	}
	for _, want := range []string{"FOO=baz\n", "LANG=C.UTF-8\n", "FLATPAK_ID=org.example.Env\n", "PATH=/usr/bin:/app/bin\n", "XDG_DATA_HOME="} {
		if !strings.Contains(out, want) {
			t.Errorf("environment lacks %q:\n%s", want, out)
		}
	}
}

func TestRunFileSystem(t *testing.T) {
	app := t.TempDir()
	os.MkdirAll(filepath.Join(app, "bin"), 0o755)
	os.WriteFile(filepath.Join(app, "bin", "--version"), []byte("#!/bin/sh\necho app-program-ran \"$@\"\n"), 0o755)
	shared := t.TempDir()
	os.WriteFile(filepath.Join(shared, "f"), []byte("shared\n"), 0o644)
	os.Chmod(shared, 0o755)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host secret\n"), 0o644)
	spec := Spec{App: app, AppID: "org.example.Fs", FlatpakInfo: []byte("[Application]\nname=org.example.Fs\n"),
		Filesystems: []Bind{{Path: shared, ReadOnly: true}}}
	out := mustSh(t, spec, `
for p in /usr/x /app/x /x /.flatpak-info /etc/passwd; do if (: > $p) 2>/dev/null; then echo "$p writable"; else echo "$p refused"; fi; done
cat /.flatpak-info; cat `+shared+`/f; (: > `+shared+`/g) 2>/dev/null && echo "shared writable"
test -e `+secret+` && echo "host secret visible"; test -e /root/. && ls /root
test -e /etc/shadow && echo "shadow visible"
echo data > $XDG_DATA_HOME/d && cat $XDG_DATA_HOME/d
grep -c . /etc/passwd; ls -l /bin /lib64 | cut -c1
/app/bin/--version x`)
	for _, want := range []string{"/usr/x refused", "/app/x refused", "/x refused", "/.flatpak-info refused", "/etc/passwd refused",
		"name=org.example.Fs", "shared\n", "data\n", "app-program-ran x"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"writable", "host secret visible", "shadow visible"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%s", bad, out)
		}
	}
	if _, err := os.Stat(filepath.Join(spec.Home, ".var/app/org.example.Fs/data/d")); err != nil && spec.Home != "" {
		t.Errorf("the app's data did not reach the host: %v", err)
	}
}

func TestRunCommandIsNeverAnOption(t *testing.T) {
	requireSandbox(t)
	var errb bytes.Buffer
	_, err := Run(context.Background(), &Spec{Runtime: "/usr", Home: t.TempDir(), Command: []string{"--ro-bind", "/", "/"}, Stderr: &errb})
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Command != "--ro-bind" {
		t.Fatalf("a command named --ro-bind: got %v, want NotFoundError for it", err)
	}
}

func TestRunDataSymlinkRefused(t *testing.T) {
	requireSandbox(t)
	for _, link := range []string{".var/app/org.example.Ln/data", ".var/app/org.example.Ln"} {
		home := t.TempDir()
		os.MkdirAll(filepath.Dir(filepath.Join(home, link)), 0o755)
		if err := os.Symlink("/etc", filepath.Join(home, link)); err != nil {
			t.Fatal(err)
		}
		code, out, _, err := sh(t, Spec{Home: home, AppID: "org.example.Ln"}, "ls $XDG_DATA_HOME; ls $HOME/.var/app/org.example.Ln")
		var se *SetupError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, "symlink") {
			t.Errorf("%s a symlink to /etc: got code %d, err %v, output %q; want a refusal", link, code, err, out)
		}
	}
}

func TestRunNetwork(t *testing.T) {
	requireSandbox(t)
	if _, err := os.Stat("/usr/bin/bash"); err != nil {
		t.Skip("no bash for /dev/tcp")
	}
	addr := strings.Split(testutil.TCPSink(t), ":")
	port := addr[len(addr)-1]
	probe := fmt.Sprintf(`bash -c 'echo > /dev/tcp/127.0.0.1/%s' 2>/dev/null && echo connected || echo unreachable; grep -c : /proc/net/dev`, port)
	out := mustSh(t, Spec{}, probe)
	if !strings.HasPrefix(out, "unreachable\n") {
		t.Errorf("without --share network the host's loopback is reachable:\n%s", out)
	}
	out = mustSh(t, Spec{Share: []string{"network"}}, probe)
	if !strings.HasPrefix(out, "connected\n") {
		t.Errorf("with --share network the host is unreachable:\n%s", out)
	}
}

// TestRunKilledLeavesNothing kills the process that runs a sandbox and
// checks that every process in the sandbox went with it.
func TestRunKilledLeavesNothing(t *testing.T) {
	requireSandbox(t)
	token := fmt.Sprintf("%d.%d", 500+os.Getpid()%400, time.Now().UnixNano()%1e6)
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), runnerEnv+"=sleep "+token+" & sleep "+token+"; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sleep := []string{"sleep", token}
	if n := len(testutil.WaitProcs(sleep, 2, 20*time.Second)); n < 2 {
		t.Fatalf("the sandboxed sleeps did not start (%d found)", n)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if left := testutil.WaitProcs(sleep, 0, 5*time.Second); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("processes left behind after the runner was killed: %v", left)
	}
}

// TestUnprivileged runs this package's sandbox tests again as a user
// created for the purpose (user namespaces instead of root).
func TestUnprivileged(t *testing.T) {
	if os.Getenv(asUserEnv) != "" {
		t.Skip("already running as the unprivileged user")
	}
	testutil.RequireRoot(t)
	requireSandbox(t)
	dir, err := os.MkdirTemp("", "sandbox-user-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	u := testutil.CreateUser(t, filepath.Join(dir, "home"))
	uid, gid, name, home := u.UID, u.GID, u.Name, u.Home
	bin := filepath.Join(dir, "sandbox.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^TestRun", "-test.v", "-test.count=1")
	cmd.Dir = home
	cmd.Env = []string{asUserEnv + "=1", "HOME=" + home, "PATH=/usr/bin:/bin", "TMPDIR=" + home}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("\nPASS\n")) {
		t.Fatalf("sandbox tests as %s (uid %d): %v\n%s", name, uid, err, out)
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Errorf("tests skipped as %s:\n%s", name, out)
	}
	t.Logf("as %s: %d tests passed", name, bytes.Count(out, []byte("--- PASS")))
}

func TestRunReapsOrphans(t *testing.T) {
	// A grandchild orphaned by its parent is re-parented to pid 1, which
	// must reap it: no zombie stays in the namespace.
	out := mustSh(t, Spec{}, `sh -c 'sleep 0.05 & exit 0'; sleep 0.5; z=0; for s in /proc/[0-9]*/stat; do read -r l < $s 2>/dev/null || continue; case "$l" in *") Z "*) z=$((z+1));; esac; done; echo zombies=$z`)
	if !strings.Contains(out, "zombies=0") {
		t.Errorf("orphans not reaped: %s", out)
	}
}

func TestRunSockets(t *testing.T) {
	requireSandbox(t)
	xdg := t.TempDir()
	os.Chmod(xdg, 0o755)
	ln, err := net.Listen("unix", filepath.Join(xdg, "wayland-7"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(filepath.Join(xdg, "wayland-7"), 0o777)
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	t.Setenv("WAYLAND_DISPLAY", "wayland-7")
	script := `test -S $XDG_RUNTIME_DIR/$WAYLAND_DISPLAY && echo "socket $WAYLAND_DISPLAY"; echo done`
	out := mustSh(t, Spec{Sockets: []string{"wayland"}}, script)
	if !strings.Contains(out, "socket wayland-0") {
		t.Errorf("sockets=wayland: the host's socket is not at $XDG_RUNTIME_DIR/wayland-0:\n%s", out)
	}
	out = mustSh(t, Spec{}, script)
	if strings.Contains(out, "socket") {
		t.Errorf("no sockets= but a wayland socket is there:\n%s", out)
	}
}

func TestRunTreeSymlinkRefused(t *testing.T) {
	// A runtime or app directory that is a symlink (a remote's tree can
	// make files/ one) is never followed to a host directory.
	requireSandbox(t)
	link := filepath.Join(t.TempDir(), "files")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []Spec{{Runtime: link}, {App: link}} {
		code, out, _, err := sh(t, spec, "ls /usr /app")
		var se *SetupError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, "symlink") {
			t.Errorf("%+v: code %d, err %v, output %q; want a refusal", spec, code, err, out)
		}
	}
}

func TestRunHomeBindHidesOtherApps(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	os.Chmod(home, 0o755)
	for _, d := range []string{".var/app/org.example.Other/data", ".local/share/lazytree"} {
		os.MkdirAll(filepath.Join(home, d), 0o755)
	}
	os.WriteFile(filepath.Join(home, ".var/app/org.example.Other/data/secret"), []byte("other app\n"), 0o644)
	os.WriteFile(filepath.Join(home, ".local/share/lazytree/config"), []byte("state\n"), 0o644)
	os.WriteFile(filepath.Join(home, "doc.txt"), []byte("user file\n"), 0o644)
	if os.Getuid() == 0 {
		filepath.Walk(home, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, 65534, 65534) })
	}
	spec := Spec{Home: home, AppID: "org.example.Home", Filesystems: []Bind{{Path: home}},
		Mask: []string{filepath.Join(home, ".local/share/lazytree")}}
	out := mustSh(t, spec, `cat ~/doc.txt; ls ~/.var/app; ls -A ~/.local/share/lazytree | wc -l; echo x > $XDG_DATA_HOME/f && echo data-ok`)
	if out != "user file\norg.example.Home\n0\ndata-ok\n" {
		t.Errorf("home bound: got %q; want the user's files, only this app's data, lazytree's state hidden", out)
	}
	if _, err := os.Stat(filepath.Join(home, ".var/app/org.example.Home/data/f")); err != nil {
		t.Errorf("the app's data did not land on the host: %v", err)
	}
	// Renaming a directory above a mask would carry the mask away for
	// the next run: the directories between the bind and it are pinned.
	out = mustSh(t, spec, `mv ~/.local ~/.l2 2>/dev/null && echo moved-local; mv ~/.var ~/.v2 2>/dev/null && echo moved-var; echo done`)
	if out != "done\n" {
		t.Errorf("a directory above a mask could be renamed:\n%s", out)
	}
}

func TestRunBindRules(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	os.Chmod(home, 0o755)
	outside := t.TempDir()
	os.Symlink("/etc", filepath.Join(home, "link"))
	for name, c := range map[string]struct {
		binds []Bind
		want  string
	}{
		"create outside home": {[]Bind{{Path: filepath.Join(outside, "new"), Create: true}}, "only directories under the home"},
		"create through link": {[]Bind{{Path: filepath.Join(home, "link", "x"), Create: true}}, "symlink"},
		"nested":              {[]Bind{{Path: home}, {Path: filepath.Join(home, "link")}}, "nested"},
		"no symlinks":         {[]Bind{{Path: filepath.Join(home, "link"), NoSymlinks: true}}, "symlink"},
		"reserved":            {[]Bind{{Path: "/usr/lib"}}, "owns that path"},
		"in app data":         {[]Bind{{Path: filepath.Join(home, ".var/app/x")}}, "data directories"},
	} {
		_, _, _, err := sh(t, Spec{Home: home, AppID: "org.example.Rules", Filesystems: c.binds}, "true")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	if _, err := os.Lstat("/etc/x"); err == nil {
		t.Errorf("a bind created /etc/x through a symlink")
	}
}
