package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// escapeProbePkg is the escape probe's package, relative to the module
// root.
const escapeProbePkg = "internal/testutil/escapeprobe"

var escapeProbe struct {
	once sync.Once
	path string
	err  error
}

// BuildEscapeProbe returns the path of the escape probe
// (internal/testutil/escapeprobe), a static program (CGO_ENABLED=0) that
// runs in any runtime and prints what a sandbox lets it see and do as one
// JSON object (see its doc; DecodeEscapeProbe reads it). It is built at
// most once per test binary, into the user's cache directory
// (~/.cache/lazytree-test, or one in the temporary directory) under a
// name derived from its sources, the module's dependencies and the Go
// version, so that test binaries of several packages and later runs
// share one build. The file is mode 0755, so a sandbox's unprivileged
// user can run it where it is bound.
func BuildEscapeProbe(t testing.TB) string {
	t.Helper()
	root := ModuleRoot(t)
	escapeProbe.once.Do(func() {
		escapeProbe.path, escapeProbe.err = buildEscapeProbe(root)
	})
	if escapeProbe.err != nil {
		t.Fatal(escapeProbe.err)
	}
	return escapeProbe.path
}

func buildEscapeProbe(root string) (string, error) {
	key, err := escapeProbeKey(root)
	if err != nil {
		return "", fmt.Errorf("build escape probe: %w", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		// No HOME: a directory of this user's in the temporary directory.
		cache = filepath.Join(os.TempDir(), fmt.Sprintf("lazytree-test-cache-%d", os.Getuid()))
	}
	dir := filepath.Join(cache, "lazytree-test", "escapeprobe-"+key)
	bin := filepath.Join(dir, "escapeprobe")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build escape probe: %w", err)
	}
	// Build beside the final name and rename, so that a concurrent test
	// binary never runs a half-written file.
	tmp, err := os.CreateTemp(dir, "escapeprobe.tmp*")
	if err != nil {
		return "", fmt.Errorf("build escape probe: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp.Name(), "./"+escapeProbePkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build escape probe: go build: %w\n%s", err, out)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", fmt.Errorf("build escape probe: %w", err)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", fmt.Errorf("build escape probe: %w", err)
	}
	return bin, nil
}

// escapeProbeKey hashes what the probe binary is made of: the Go version,
// go.mod and go.sum, and the package's non-test sources.
func escapeProbeKey(root string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	ents, err := os.ReadDir(filepath.Join(root, escapeProbePkg))
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && (strings.HasSuffix(n, ".go") || strings.HasSuffix(n, ".s")) && !strings.HasSuffix(n, "_test.go") {
			files = append(files, filepath.Join(root, escapeProbePkg, n))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// EscapeProbeHostFlags returns the escape probe's flags that describe the
// host it is started from (-host-pid1 and one -host-ns per namespace), so
// that its "pid1" and "ns:..." checks compare against this host rather
// than against the kernel's initial namespaces (which differ when the
// tests themselves run in a container).
func EscapeProbeHostFlags() ([]string, error) {
	b, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		return nil, fmt.Errorf("escape probe host flags: %w", err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	flags := []string{"-host-pid1", strings.TrimSpace(strings.Join(args, " "))}
	for _, ns := range []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"} {
		link, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			continue // a kernel without that namespace type
		}
		flags = append(flags, "-host-ns", link)
	}
	return flags, nil
}

// DecodeEscapeProbe parses the escape probe's output (one JSON object of
// strings), failing the test when it is not that.
func DecodeEscapeProbe(t testing.TB, out []byte) map[string]string {
	t.Helper()
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil || len(res) == 0 {
		t.Fatalf("escape probe output is not a JSON object of results (%v):\n%s", err, indent(string(out)))
	}
	return res
}

// EscapeProbeDiff lists, sorted, the keys whose results differ between a
// and b ("key: a-result != b-result", a missing key as "<missing>"),
// leaving out the keys in ignore.
func EscapeProbeDiff(a, b map[string]string, ignore ...string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if slices.Contains(ignore, k) {
			continue
		}
		av, aok := a[k]
		bv, bok := b[k]
		if !aok {
			av = "<missing>"
		}
		if !bok {
			bv = "<missing>"
		}
		if av != bv {
			out = append(out, fmt.Sprintf("%s: %s != %s", k, av, bv))
		}
	}
	return out
}

// FlatpakEscapeProbeSeccomp is what Flatpak's seccomp filter answers to
// each of the escape probe's syscall probes ("seccomp:..." and
// "userns:..."), as flatpak 1.14.10 (Debian 12) gave them on Linux 6.18
// x86_64, run by an unprivileged user; TestFlatpakRunEscapeProbe checks
// that it still does wherever flatpak runs. A sandbox whose filter is at
// least as strict as Flatpak's gives these answers, or kills the caller.
// The i386 probes are left out: their answer depends on the kernel (where
// int $0x80 faults for 64-bit processes, as here, they give
// "fault:SIGSEGV" with any filter or none). For an unprivileged sandbox
// without a filter, every answer differs from these except those of the
// probes in EscapeProbeUndiscriminating.
var FlatpakEscapeProbeSeccomp = map[string]string{
	"seccomp:add_key":            "denied:EPERM",
	"seccomp:chroot":             "denied:EPERM",
	"seccomp:clone3":             "denied:ENOSYS",
	"seccomp:fsconfig":           "denied:ENOSYS",
	"seccomp:fsmount":            "denied:ENOSYS",
	"seccomp:fsopen":             "denied:ENOSYS",
	"seccomp:fspick":             "denied:ENOSYS",
	"seccomp:get_mempolicy":      "denied:EPERM",
	"seccomp:ioctl-tioclinux":    "denied:EPERM",
	"seccomp:ioctl-tiocsti":      "denied:EPERM",
	"seccomp:ioctl-tiocsti-high": "denied:EPERM",
	"seccomp:keyctl":             "denied:EPERM",
	"seccomp:mbind":              "denied:EPERM",
	"seccomp:migrate_pages":      "denied:EPERM",
	"seccomp:modify_ldt":         "denied:EPERM",
	"seccomp:mount":              "denied:EPERM",
	"seccomp:mount_setattr":      "denied:ENOSYS",
	"seccomp:move_mount":         "denied:ENOSYS",
	"seccomp:move_pages":         "denied:EPERM",
	"seccomp:open_tree":          "denied:ENOSYS",
	"seccomp:perf_event_open":    "denied:EPERM",
	"seccomp:personality":        "denied:EPERM",
	"seccomp:pivot_root":         "denied:EPERM",
	"seccomp:ptrace":             "denied:EPERM",
	"seccomp:quotactl":           "denied:EPERM",
	"seccomp:request_key":        "denied:EPERM",
	"seccomp:set_mempolicy":      "denied:EPERM",
	"seccomp:setns":              "denied:EPERM",
	"seccomp:socket-alg":         "denied:EAFNOSUPPORT",
	"seccomp:socket-inet":        "ok",
	"seccomp:socket-inet6":       "ok",
	"seccomp:socket-netlink":     "ok",
	"seccomp:socket-packet":      "denied:EAFNOSUPPORT",
	"seccomp:socket-unix":        "ok",
	"seccomp:socket-vsock":       "denied:EAFNOSUPPORT",
	"seccomp:syslog":             "denied:EPERM",
	"seccomp:umount2":            "denied:EPERM",
	"seccomp:unshare-0":          "denied:EPERM",
	"seccomp:uselib":             "denied:EPERM",
	"seccomp:x32-unshare":        "killed:thread",
	"userns:clone":               "denied:EPERM",
	"userns:unshare":             "denied:EPERM",
}

// EscapeProbeUndiscriminating are the syscall probes whose answer under
// FlatpakEscapeProbeSeccomp is also the unfiltered kernel's for an
// unprivileged caller, or may be: the socket families Flatpak allows,
// pivot_root (the kernel checks CAP_SYS_ADMIN before anything else),
// syslog when kernel.dmesg_restrict is 1, and the families a kernel may
// lack (AF_ALG without CONFIG_CRYPTO_USER_API, as here; AF_VSOCK outside
// a VM), which fail with EAFNOSUPPORT either way.
var EscapeProbeUndiscriminating = []string{
	"seccomp:pivot_root",
	"seccomp:socket-alg",
	"seccomp:socket-vsock",
	"seccomp:socket-inet",
	"seccomp:socket-inet6",
	"seccomp:socket-netlink",
	"seccomp:socket-unix",
	"seccomp:syslog",
}
