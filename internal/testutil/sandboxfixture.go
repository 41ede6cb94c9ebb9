package testutil

import (
	"github.com/lazytree/lazytree/internal/sample"

	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The runtime that BuildSandboxRuntime lays out and BuildSandboxApp's apps
// use by default.
const (
	// SandboxRuntimeID is the runtime's name.
	SandboxRuntimeID = "org.lazytree.TestPlatform"
	// SandboxRuntimeBranch is its branch.
	SandboxRuntimeBranch = "1"
)

// SandboxRuntimeRef is the runtime as an app's metadata names it
// (runtime=ID/ARCH/BRANCH); the OSTree ref is "runtime/" + it.
var SandboxRuntimeRef = SandboxRuntimeID + "/" + FlatpakArch() + "/" + SandboxRuntimeBranch

// FlatpakArch is the host's architecture as Flatpak names it.
func FlatpakArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i386"
	}
	return runtime.GOARCH
}

// SandboxRuntimeEtc are the files BuildSandboxRuntime writes to files/etc
// (path under etc/ -> content). A sandbox links the runtime's etc into
// /etc, so each must appear there with this content, except passwd and
// group, which a sandbox generates for its user and which must therefore
// not be the runtime's (they hold SandboxRuntimePasswdMarker).
var SandboxRuntimeEtc = map[string]string{
	"os-release": "NAME=\"lazytree test platform\"\nID=lazytree-test\nVERSION_ID=" + SandboxRuntimeBranch +
		"\nPRETTY_NAME=\"lazytree test platform " + SandboxRuntimeBranch + "\"\n",
	"ld.so.conf":         "/app/lib\n",
	"profile":            "# /etc/profile of the lazytree test platform\nPATH=/app/bin:/usr/bin\nexport PATH\n",
	"profile.d/test.sh":  "LAZYTREE_TEST_PROFILE=1\nexport LAZYTREE_TEST_PROFILE\n",
	"passwd":             SandboxRuntimePasswdMarker + ":x:4242:4242::/nonexistent:/bin/false\n",
	"group":              SandboxRuntimePasswdMarker + ":x:4242:\n",
	"lazytree-test.conf": "this file comes from the runtime's etc\n",
}

// SandboxRuntimePasswdMarker is the user and group name in the runtime's
// own etc/passwd and etc/group.
const SandboxRuntimePasswdMarker = "lazytree-runtime-passwd"

// sandboxTools are the host programs BuildSandboxRuntime copies to
// files/bin (sh is added separately); the first ones are required, the
// rest are copied when the host has them.
var (
	sandboxToolsRequired = []string{"bash", "ls", "cat", "echo", "id", "env", "true", "false", "sleep", "stat", "mkdir", "touch"}
	sandboxToolsOptional = []string{
		"rm", "ln", "cp", "mv", "chmod", "readlink", "realpath", "head", "tail", "wc", "grep", "sed", "tr", "cut", "sort",
		"uname", "pwd", "printf", "test", "basename", "dirname", "whoami", "mktemp", "timeout", "tee", "date", "hostname",
		"ps", "findmnt",
	}
)

// SandboxRuntimeOptions says what BuildSandboxRuntime adds beyond the
// shell tools; the zero value is the small runtime (a few MB).
type SandboxRuntimeOptions struct {
	// Python adds the host's python3 with its whole standard library
	// (BuildPythonRuntime's tree, about 100 MB) at files/bin/python3;
	// inside a sandbox it finds its library under /usr by itself.
	Python bool
}

// BuildSandboxRuntime lays out in dir (created if missing) a Flatpak
// runtime made of the host's real programs, for sandbox tests:
//
//	metadata                     [Runtime] name=SandboxRuntimeID, runtime=SandboxRuntimeRef, sdk=the same
//	files/bin/sh                 the host's dash (bash when there is none)
//	files/bin/{bash,ls,cat,...}  the tools of sandboxToolsRequired and whichever of sandboxToolsOptional the host has
//	files/lib/x86_64-linux-gnu/  every shared library they need, under its soname (ldd)
//	files/lib64/ld-linux-x86-64.so.2   the dynamic loader
//	files/etc/                   SandboxRuntimeEtc
//
// files/ is what a sandbox binds at /usr; with the usual /lib -> usr/lib,
// /lib64 -> usr/lib64 and /bin -> usr/bin links the programs' interpreter
// path and the loader's default library directories resolve inside it,
// so nothing of the host's /usr is needed. With opts.Python the tree of
// BuildPythonRuntime comes first, sharing its libraries. A missing
// required tool or library is an error.
func BuildSandboxRuntime(dir string, opts SandboxRuntimeOptions) error {
	files := filepath.Join(dir, "files")
	libDir := filepath.Join(files, "lib", "x86_64-linux-gnu")
	libs := map[string]string{} // soname -> host file
	if opts.Python {
		var err error
		if _, libs, err = sample.BuildPythonRuntimeLibs(dir); err != nil {
			return fmt.Errorf("sandbox runtime: %w", err)
		}
	}
	for _, d := range []string{filepath.Join(files, "bin"), libDir, filepath.Join(files, "lib64"), filepath.Join(files, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("sandbox runtime: %w", err)
		}
	}
	meta := fmt.Sprintf("[Runtime]\nname=%s\nruntime=%s\nsdk=%s\n", SandboxRuntimeID, SandboxRuntimeRef, SandboxRuntimeRef)
	if err := os.WriteFile(filepath.Join(dir, "metadata"), []byte(meta), 0o644); err != nil {
		return fmt.Errorf("sandbox runtime: %w", err)
	}

	tools := map[string]string{} // name in files/bin -> host file
	sh, err := hostTool("dash")
	if err != nil {
		if sh, err = hostTool("bash"); err != nil {
			return fmt.Errorf("sandbox runtime: no dash or bash for /bin/sh: %w", err)
		}
	}
	tools["sh"] = sh
	for _, n := range sandboxToolsRequired {
		p, err := hostTool(n)
		if err != nil {
			return fmt.Errorf("sandbox runtime: %w", err)
		}
		tools[n] = p
	}
	for _, n := range sandboxToolsOptional {
		if p, err := hostTool(n); err == nil {
			tools[n] = p
		}
	}
	var interp string
	for name, host := range tools {
		if err := sample.CopyRegular(host, filepath.Join(files, "bin", name), 0o755); err != nil {
			return fmt.Errorf("sandbox runtime: copy %s: %w", host, err)
		}
		if err := sample.LddInto(host, libs); err != nil {
			return fmt.Errorf("sandbox runtime: %w", err)
		}
		if interp == "" {
			if interp, err = sample.ElfInterp(host); err != nil {
				return fmt.Errorf("sandbox runtime: %w", err)
			}
		}
	}
	for so, host := range libs {
		dst := filepath.Join(libDir, so)
		if _, err := os.Lstat(dst); err == nil {
			continue // the Python runtime's copy
		}
		if err := sample.CopyRegular(host, dst, 0o755); err != nil {
			return fmt.Errorf("sandbox runtime: copy %s: %w", host, err)
		}
	}
	if err := sample.CopyRegular(interp, filepath.Join(files, "lib64", filepath.Base(sample.PythonLoader)), 0o755); err != nil {
		return fmt.Errorf("sandbox runtime: copy %s: %w", interp, err)
	}
	for rel, content := range SandboxRuntimeEtc {
		p := filepath.Join(files, "etc", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("sandbox runtime: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("sandbox runtime: %w", err)
		}
	}
	return nil
}

// hostTool finds the host program name in /usr/bin or /bin and returns
// the regular ELF file it resolves to.
func hostTool(name string) (string, error) {
	for _, d := range []string{"/usr/bin", "/bin"} {
		p, err := filepath.EvalSymlinks(filepath.Join(d, name))
		if err != nil {
			continue
		}
		if _, err := sample.ElfInterp(p); err != nil {
			return "", fmt.Errorf("host tool %s: %w", p, err)
		}
		return p, nil
	}
	return "", fmt.Errorf("host tool %s: not in /usr/bin or /bin", name)
}

// SandboxApp describes an app for BuildSandboxApp. The zero value, with
// an ID, is an app of the SandboxRuntimeRef runtime whose command is
// hello, with FOO=bar in its [Environment] and no permissions.
type SandboxApp struct {
	// ID is the app's name (required), e.g. "org.lazytree.Hello".
	ID string
	// Runtime is [Application] runtime= (default SandboxRuntimeRef).
	Runtime string
	// Command is [Application] command= (default "hello", the script
	// BuildSandboxApp writes).
	Command string
	// Shared, Sockets, Filesystems and Devices are the [Context] lists
	// (shared=network;ipc; sockets=x11; filesystems=home;/srv:ro;
	// devices=dri;).
	Shared, Sockets, Filesystems, Devices []string
	// Env is the [Environment] group; nil means {"FOO": "bar"}, an empty
	// map none.
	Env map[string]string
	// Probe is the host path of the escape probe (BuildEscapeProbe),
	// copied to files/bin/escapeprobe when set.
	Probe string
	// Files are more files, by path under files/, with their content
	// (mode 0755 under bin/, 0644 elsewhere).
	Files map[string]string
}

// SandboxHelloLine is the first line that an app's files/bin/hello
// prints; one "arg: ARG" line per argument follows.
func SandboxHelloLine(appID string) string { return "hello from " + appID }

// BuildSandboxApp lays out in dir (created if missing) a Flatpak app
// directory as flatpak build-finish leaves one:
//
//	metadata               [Application] name, runtime, sdk, command; [Context]; [Environment]
//	files/bin/hello        a #!/bin/sh script printing SandboxHelloLine and its arguments
//	files/bin/escapeprobe  app.Probe, when set
//	files/...              app.Files
//
// files/ is what a sandbox binds at /app.
func BuildSandboxApp(dir string, app SandboxApp) error {
	if app.ID == "" {
		return errors.New("sandbox app: no ID")
	}
	if app.Runtime == "" {
		app.Runtime = SandboxRuntimeRef
	}
	if app.Command == "" {
		app.Command = "hello"
	}
	if app.Env == nil {
		app.Env = map[string]string{"FOO": "bar"}
	}
	bin := filepath.Join(dir, "files", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("sandbox app %s: %w", app.ID, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata"), []byte(app.metadata()), 0o644); err != nil {
		return fmt.Errorf("sandbox app %s: %w", app.ID, err)
	}
	hello := "#!/bin/sh\nprintf '%s\\n' '" + SandboxHelloLine(app.ID) + "'\nfor a; do printf 'arg: %s\\n' \"$a\"; done\n"
	if err := os.WriteFile(filepath.Join(bin, "hello"), []byte(hello), 0o755); err != nil {
		return fmt.Errorf("sandbox app %s: %w", app.ID, err)
	}
	if app.Probe != "" {
		if err := sample.CopyRegular(app.Probe, filepath.Join(bin, "escapeprobe"), 0o755); err != nil {
			return fmt.Errorf("sandbox app %s: copy escape probe: %w", app.ID, err)
		}
	}
	for rel, content := range app.Files {
		rel = filepath.FromSlash(rel)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("sandbox app %s: file %q is not below files/", app.ID, rel)
		}
		p := filepath.Join(dir, "files", rel)
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(rel, "bin"+string(filepath.Separator)) {
			mode = 0o755
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("sandbox app %s: %w", app.ID, err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return fmt.Errorf("sandbox app %s: %w", app.ID, err)
		}
	}
	return nil
}

// metadata renders the app's metadata keyfile.
func (app *SandboxApp) metadata() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Application]\nname=%s\nruntime=%s\nsdk=%s\ncommand=%s\n", app.ID, app.Runtime, app.Runtime, app.Command)
	ctx := []struct {
		key  string
		vals []string
	}{{"shared", app.Shared}, {"sockets", app.Sockets}, {"filesystems", app.Filesystems}, {"devices", app.Devices}}
	wrote := false
	for _, c := range ctx {
		if len(c.vals) == 0 {
			continue
		}
		if !wrote {
			b.WriteString("\n[Context]\n")
			wrote = true
		}
		fmt.Fprintf(&b, "%s=%s;\n", c.key, strings.Join(c.vals, ";"))
	}
	if len(app.Env) > 0 {
		b.WriteString("\n[Environment]\n")
		keys := make([]string, 0, len(app.Env))
		for k := range app.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, app.Env[k])
		}
	}
	return b.String()
}

// BwrapFlatpakArgs returns bwrap's arguments for a Flatpak-like sandbox
// of the runtime files in runtimeFiles and the app files in appFiles
// (empty for none): both bound read-only at /usr and /app, the usual
// /lib, /lib64, /bin and /sbin links into /usr, the runtime's etc linked
// into /etc entry by entry, a new /proc, a minimal /dev, a tmpfs /tmp,
// every namespace unshared (user, pid, net, ipc, uts, cgroup), a new
// session, and death with the parent. The caller appends its own options
// (--uid, --bind of data directories, --share-net, --setenv) and then
// "--" and the command. bwrap installs no seccomp filter by itself:
// Flatpak hands it one.
func BwrapFlatpakArgs(runtimeFiles, appFiles string) ([]string, error) {
	args := []string{
		"--unshare-all", "--die-with-parent", "--new-session",
		"--ro-bind", runtimeFiles, "/usr",
		"--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64",
		"--symlink", "usr/bin", "/bin",
		"--symlink", "usr/sbin", "/sbin",
		"--proc", "/proc",
		"--dev", "/dev",
		"--tmpfs", "/tmp",
		"--dir", "/etc",
	}
	if appFiles != "" {
		args = append(args, "--ro-bind", appFiles, "/app")
	} else {
		args = append(args, "--dir", "/app")
	}
	ents, err := os.ReadDir(filepath.Join(runtimeFiles, "etc"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bwrap args: %w", err)
	}
	for _, e := range ents {
		if e.Name() == "passwd" || e.Name() == "group" {
			continue // the sandbox's own, as Flatpak generates them
		}
		args = append(args, "--symlink", "/usr/etc/"+e.Name(), "/etc/"+e.Name())
	}
	return args, nil
}

// RequireBwrap returns the path of bwrap, skipping the test (failing it
// under CI) when it is missing or cannot make a sandbox here.
func RequireBwrap(t testing.TB) string {
	t.Helper()
	p := RequireTool(t, "bwrap")
	if out, err := exec.Command(p, "--unshare-all", "--ro-bind", "/", "/", "--", "/bin/true").CombinedOutput(); err != nil {
		SkipOrFail(t, "bwrap cannot make a sandbox here: %v\n%s", err, out)
	}
	return p
}

// CloexecInheritedFDs sets close-on-exec on every open file descriptor of
// this process above 2. Go opens its own fds with O_CLOEXEC, but fds that
// the test binary inherited without it (from a shell, a CI runner or an
// IDE) go on to every child os/exec starts; bwrap and flatpak run pass
// them into the sandbox as they find them (flatpak 1.14 execs bwrap with
// them), and the escape probe would report them as leaked. Call it before
// starting a reference sandbox; a sandbox under test may be given such an
// fd on purpose (exec.Cmd.ExtraFiles) to check that it closes it.
func CloexecInheritedFDs() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("cloexec inherited fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		// The fd ReadDir listed with is closed by now: EBADF is fine.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("cloexec inherited fd %d: %w", fd, err)
		}
	}
	return nil
}
