package testutil

import (
	"github.com/lazytree/lazytree/internal/sample"

	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testAppID = "org.lazytree.Hello"

// sandboxFixture is a runtime, an app with the escape probe, and a home
// directory with the app's data directories and a private file, as a
// sandbox test uses them.
type sandboxFixture struct {
	runtime, app string // the runtime's and the app's directories
	home, data   string // the home directory and the app's data directory in it
	secret       string // a file in home outside the app's data
}

func newSandboxFixture(t *testing.T, opts SandboxRuntimeOptions) *sandboxFixture {
	t.Helper()
	RequireTool(t, "ldd")
	dir := t.TempDir()
	f := &sandboxFixture{runtime: filepath.Join(dir, "runtime"), app: filepath.Join(dir, "app"), home: filepath.Join(dir, "home")}
	if err := BuildSandboxRuntime(f.runtime, opts); err != nil {
		t.Fatal(err)
	}
	if err := BuildSandboxApp(f.app, SandboxApp{ID: testAppID, Probe: BuildEscapeProbe(t)}); err != nil {
		t.Fatal(err)
	}
	appVar := filepath.Join(f.home, ".var", "app", testAppID)
	for _, d := range []string{"data", "config", "cache"} {
		if err := os.MkdirAll(filepath.Join(appVar, d), 0o777); err != nil {
			t.Fatal(err)
		}
		// The sandbox's user is not the owner of these directories.
		if err := os.Chmod(filepath.Join(appVar, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	f.data = filepath.Join(appVar, "data")
	f.secret = filepath.Join(f.home, "secret.txt")
	if err := os.WriteFile(f.secret, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// bwrap runs argv in a Flatpak-like bwrap sandbox of the fixture (see
// BwrapFlatpakArgs) as uid 65534, with the app's ~/.var/app/ID bound and
// HOME set, plus extra bwrap options; it returns stdout.
func (f *sandboxFixture) bwrap(t *testing.T, extra []string, argv ...string) string {
	t.Helper()
	bwrap := RequireBwrap(t)
	if err := CloexecInheritedFDs(); err != nil {
		t.Fatal(err)
	}
	args, err := BwrapFlatpakArgs(filepath.Join(f.runtime, "files"), filepath.Join(f.app, "files"))
	if err != nil {
		t.Fatal(err)
	}
	appVar := filepath.Dir(f.data)
	args = append(args,
		"--uid", "65534", "--gid", "65534",
		"--bind", appVar, appVar,
		"--clearenv",
		"--setenv", "PATH", "/app/bin:/usr/bin",
		"--setenv", "HOME", f.home,
		"--setenv", "FOO", "bar",
		"--chdir", "/",
	)
	args = append(args, extra...)
	args = append(args, "--")
	args = append(args, argv...)
	return Output(t, "", nil, bwrap, args...)
}

func TestSandboxFixturesUnderBwrap(t *testing.T) {
	f := newSandboxFixture(t, SandboxRuntimeOptions{})

	out := f.bwrap(t, nil, "/usr/bin/sh", "-c", `hello one "two words"`)
	want := SandboxHelloLine(testAppID) + "\narg: one\narg: two words\n"
	if out != want {
		t.Errorf("hello printed %q, want %q", out, want)
	}

	// Every required tool runs from the runtime alone.
	script := `set -e
ls /usr/bin >/dev/null
cat /etc/lazytree-test.conf
echo "echo works"
id -u
env | grep '^FOO='
true
if false; then exit 1; fi
sleep 0
stat -c %n /usr/bin/sh
mkdir /tmp/d
touch /tmp/d/f
ls /tmp/d
bash -c 'echo "bash $BASH_VERSINFO"'
`
	out = f.bwrap(t, nil, "/bin/sh", "-c", script)
	for _, w := range []string{"this file comes from the runtime's etc\n", "echo works\n", "65534\n", "FOO=bar\n", "/usr/bin/sh\n", "f\n", "bash "} {
		if !strings.Contains(out, w) {
			t.Errorf("the tools printed:\n%s\nwant %q in it", out, w)
		}
	}

	// The runtime's etc is linked into /etc.
	for rel, content := range SandboxRuntimeEtc {
		if rel == "passwd" || rel == "group" {
			continue
		}
		if got := f.bwrap(t, nil, "/app/bin/escapeprobe", "-readfile", "/etc/"+rel); got != content {
			t.Errorf("/etc/%s in the sandbox = %q, want %q", rel, got, content)
		}
	}
}

func TestEscapeProbeUnderBwrap(t *testing.T) {
	f := newSandboxFixture(t, SandboxRuntimeOptions{})
	hostFlags, err := EscapeProbeHostFlags()
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var rnd [8]byte
	rand.Read(rnd[:])
	abstract := "lazytree-probe-" + hex.EncodeToString(rnd[:])
	unix, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	for _, l := range []net.Listener{tcp, unix} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}

	probe := append([]string{"/app/bin/escapeprobe",
		"-hidden", "/root", "-hidden", "/etc/shadow", "-hidden", f.secret, "-hidden", "/var/lib",
		"-data", f.data, "-connect", tcp.Addr().String(), "-connect-abstract", abstract,
		"-env-expect", "FOO=bar", "-env-absent", "LAZYTREE_CI",
	}, hostFlags...)

	res := DecodeEscapeProbe(t, []byte(f.bwrap(t, nil, probe...)))
	pretty, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("escape probe under bwrap:\n%s", pretty)
	// What bwrap itself guarantees (it installs no seccomp filter, so the
	// seccomp probes are not checked here).
	want := map[string]string{
		"hidden:/root": "absent", "hidden:/etc/shadow": "absent", "hidden:" + f.secret: "absent", "hidden:/var/lib": "absent",
		"write:/usr": "readonly", "write:/app": "readonly",
		"data:" + f.data:    "writable",
		"net:interfaces":    "loopback-only",
		"net:connect":       "unreachable:ECONNREFUSED",
		"net:abstract":      "unreachable:ECONNREFUSED",
		"net:expected":      "ok",
		"pid1":              "sandbox",
		"pid":               "pidns",
		"ns:pid":            "new",
		"ns:net":            "new",
		"ns:mnt":            "new",
		"ns:user":           "new",
		"uid":               "uid:nonroot",
		"gid":               "gid:nonroot",
		"status:NoNewPrivs": "NoNewPrivs:1",
		"status:CapEff":     "CapEff:0000000000000000",
		"status:CapPrm":     "CapPrm:0000000000000000",
		"fds":               "none",
		"env:LD_PRELOAD":    "LD_PRELOAD:absent",
		"env:FOO":           "ok",
		"env:LAZYTREE_CI":   "LAZYTREE_CI:absent",
		"dev:null":          "char:1:3",
		"dev:urandom":       "char:1:9",
		"dev:pts":           "dir",
		"dev:shm":           "dir",
		"dev:host":          "none",
		"mount:/usr":        "ro,nosuid,nodev",
		"mount:/app":        "ro,nosuid,nodev",
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q", k, res[k], v)
		}
	}

	// Every syscall probe discriminates: without a filter, bwrap's
	// answers differ from Flatpak's, but for the documented few.
	for k, flatpak := range FlatpakEscapeProbeSeccomp {
		if res[k] == flatpak && !slices.Contains(EscapeProbeUndiscriminating, k) {
			t.Errorf("%s = %q without a filter, the same as Flatpak's answer: the probe does not discriminate", k, res[k])
		}
	}

	// With the network shared, the same listeners are reachable.
	shared := append(probe, "-expect-network")
	res = DecodeEscapeProbe(t, []byte(f.bwrap(t, []string{"--share-net"}, shared...)))
	for k, v := range map[string]string{"net:interfaces": "non-loopback", "net:connect": "connected", "net:abstract": "connected", "net:expected": "ok", "ns:net": "host"} {
		if res[k] != v {
			t.Errorf("with --share-net: %s = %q, want %q", k, res[k], v)
		}
	}
}

func TestSandboxRuntimePython(t *testing.T) {
	if testing.Short() {
		t.Skip("copies about 100 MB")
	}
	if _, err := sample.HostPython(); err != nil {
		SkipOrFail(t, "%v", err)
	}
	f := newSandboxFixture(t, SandboxRuntimeOptions{Python: true})
	out := f.bwrap(t, nil, "/usr/bin/python3", "-c", `import sys, json, ssl, decimal; print(sys.prefix, json.dumps([1]))`)
	if out != "/usr [1]\n" {
		t.Errorf("python in the sandbox printed %q, want %q", out, "/usr [1]\n")
	}
}

func TestSandboxAppMetadata(t *testing.T) {
	dir := t.TempDir()
	app := SandboxApp{
		ID: "org.lazytree.Perms", Shared: []string{"network", "ipc"}, Sockets: []string{"x11"},
		Filesystems: []string{"home", "/srv:ro"}, Env: map[string]string{"B": "2", "A": "1"},
		Files: map[string]string{"bin/tool": "#!/bin/sh\n", "share/data.txt": "x"},
	}
	if err := BuildSandboxApp(dir, app); err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "metadata"))
	if err != nil {
		t.Fatal(err)
	}
	want := "[Application]\nname=org.lazytree.Perms\nruntime=" + SandboxRuntimeRef + "\nsdk=" + SandboxRuntimeRef + "\ncommand=hello\n" +
		"\n[Context]\nshared=network;ipc;\nsockets=x11;\nfilesystems=home;/srv:ro;\n" +
		"\n[Environment]\nA=1\nB=2\n"
	if string(meta) != want {
		t.Errorf("metadata =\n%s\nwant\n%s", meta, want)
	}
	for p, mode := range map[string]os.FileMode{"files/bin/hello": 0o755, "files/bin/tool": 0o755, "files/share/data.txt": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	if err := BuildSandboxApp(t.TempDir(), SandboxApp{ID: "x", Files: map[string]string{"../escape": ""}}); err == nil {
		t.Error("BuildSandboxApp wrote a file outside files/")
	}
	// The hello script is valid sh on the host too.
	out, err := exec.Command("sh", filepath.Join(dir, "files", "bin", "hello"), "a b").Output()
	if err != nil || string(out) != SandboxHelloLine("org.lazytree.Perms")+"\narg: a b\n" {
		t.Errorf("hello printed %q (%v)", out, err)
	}
}
