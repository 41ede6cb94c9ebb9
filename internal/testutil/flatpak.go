package testutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FlatpakAppBranch is the branch FlatpakBuildExport exports apps on.
const FlatpakAppBranch = "master"

// FlatpakBuildExport publishes an app directory and a runtime directory
// (as BuildSandboxApp and BuildSandboxRuntime lay them out) with the real
// flatpak into the archive repository at repo, which is created when
// missing: `flatpak build-finish --command=CMD` on a copy of appDir (it
// adds export/ and rewrites metadata), `flatpak build-export` of it on
// FlatpakAppBranch, `flatpak build-export --runtime --files=files` of a
// copy of runtimeDir on the branch its metadata names, then `flatpak
// build-update-repo`, which writes the summary (and appstream branches).
// With keyID set, every commit and the summary are signed with that key
// of the GNUPGHOME gpgHome (GPGHome's fingerprint). It returns the two
// refs, "app/ID/ARCH/master" and "runtime/ID/ARCH/BRANCH". Either
// directory may be empty to publish only the other; its ref is then "".
func FlatpakBuildExport(t testing.TB, repo, appDir, runtimeDir, gpgHome, keyID string) (appRef, runtimeRef string) {
	t.Helper()
	flatpak := RequireTool(t, "flatpak")
	var sign []string
	if keyID != "" {
		sign = []string{"--gpg-sign=" + keyID, "--gpg-homedir=" + gpgHome}
	}
	work := t.TempDir()
	if appDir != "" {
		meta := readMetadata(t, appDir)
		id := keyfileValue(meta, "Application", "name")
		if id == "" {
			t.Fatalf("flatpak export: %s/metadata has no [Application] name", appDir)
		}
		build := filepath.Join(work, "app")
		if err := CopyDir(appDir, build); err != nil {
			t.Fatalf("flatpak export: %v", err)
		}
		finish := []string{"build-finish"}
		if cmd := keyfileValue(meta, "Application", "command"); cmd != "" {
			finish = append(finish, "--command="+cmd)
		}
		Run(t, "", nil, flatpak, append(finish, build)...)
		args := append([]string{"build-export", "--no-update-summary", "--arch=" + FlatpakArch()}, sign...)
		Run(t, "", nil, flatpak, append(args, repo, build, FlatpakAppBranch)...)
		appRef = "app/" + id + "/" + FlatpakArch() + "/" + FlatpakAppBranch
	}
	if runtimeDir != "" {
		meta := readMetadata(t, runtimeDir)
		id := keyfileValue(meta, "Runtime", "name")
		parts := strings.Split(keyfileValue(meta, "Runtime", "runtime"), "/")
		if id == "" || len(parts) != 3 {
			t.Fatalf("flatpak export: %s/metadata has no [Runtime] name and runtime=ID/ARCH/BRANCH", runtimeDir)
		}
		build := filepath.Join(work, "runtime")
		if err := CopyDir(runtimeDir, build); err != nil {
			t.Fatalf("flatpak export: %v", err)
		}
		args := append([]string{"build-export", "--runtime", "--files=files", "--no-update-summary", "--arch=" + parts[1]}, sign...)
		Run(t, "", nil, flatpak, append(args, repo, build, parts[2])...)
		runtimeRef = "runtime/" + id + "/" + parts[1] + "/" + parts[2]
	}
	Run(t, "", nil, flatpak, append(append([]string{"build-update-repo"}, sign...), repo)...)
	return appRef, runtimeRef
}

func readMetadata(t testing.TB, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metadata"))
	if err != nil {
		t.Fatalf("flatpak export: %v", err)
	}
	return string(b)
}

// keyfileValue returns key's value in [group] of a GLib keyfile, or "".
// It reads the plain keys metadata files use (no locales, no escapes).
func keyfileValue(content, group, key string) string {
	in := false
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			in = line[1:len(line)-1] == group
		case in:
			if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// FlatpakUser is a private `flatpak --user` installation for tests: HOME,
// the XDG directories, XDG_RUNTIME_DIR and the user and system
// installations (FLATPAK_USER_DIR, FLATPAK_SYSTEM_DIR) all live under
// Dir, so nothing touches the real user's or the system's flatpak. When
// the tests run as root it runs flatpak as uid and gid 65534 (nobody), so
// that `flatpak run` builds the sandbox an ordinary user gets (a user
// namespace, no capabilities at all); root's differs (uid 0 inside, full
// capabilities, no user namespace).
type FlatpakUser struct {
	// Dir holds everything; Home is HOME inside it.
	Dir, Home string
	// UID and GID are who flatpak runs as.
	UID, GID int
	// Env is added to the test process's environment for every flatpak
	// command.
	Env []string
}

// NewFlatpakUser makes a FlatpakUser in a temporary directory. As root
// the directory (and the test's temporary directory above it) is opened
// to other users, and its contents are owned by uid 65534.
func NewFlatpakUser(t testing.TB) *FlatpakUser {
	t.Helper()
	RequireTool(t, "flatpak")
	dir := t.TempDir()
	u := &FlatpakUser{Dir: dir, Home: filepath.Join(dir, "home"), UID: os.Getuid(), GID: os.Getgid()}
	if u.UID == 0 {
		u.UID, u.GID = 65534, 65534
		if err := shareDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(dir, "run")
	for _, d := range []string{u.Home, run, filepath.Join(dir, "user"), filepath.Join(dir, "system")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	u.Env = []string{
		"HOME=" + u.Home,
		"XDG_DATA_HOME=" + filepath.Join(u.Home, ".local", "share"),
		"XDG_CONFIG_HOME=" + filepath.Join(u.Home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(u.Home, ".cache"),
		"XDG_STATE_HOME=" + filepath.Join(u.Home, ".local", "state"),
		"XDG_RUNTIME_DIR=" + run,
		"FLATPAK_USER_DIR=" + filepath.Join(dir, "user"),
		"FLATPAK_SYSTEM_DIR=" + filepath.Join(dir, "system"),
		// There is no system bus here: without this, an unprivileged
		// `flatpak install` of an app fails asking malcontent over it
		// for parental controls ("Could not connect: No such file or
		// directory"). flatpak's own tests set it for the same reason.
		"FLATPAK_SYSTEM_HELPER_ON_SESSION=1",
		// Nothing of the host's session.
		"DBUS_SESSION_BUS_ADDRESS=disabled:",
		"LC_ALL=C.UTF-8",
	}
	return u
}

// shareDir lets other users reach dir: it adds the search (and read)
// bits to dir and to its parent when that is the test's own temporary
// directory (t.TempDir makes both 0700).
func shareDir(dir string) error {
	for _, d := range []string{filepath.Dir(dir), dir} {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
			return err
		}
	}
	return nil
}

// ShareRepo makes the repository at repo (for example one that
// FlatpakBuildExport wrote into a t.TempDir) readable by the user: the
// directories above it up to the system's temporary directory get the
// search bit. ostree writes its files world-readable.
func (u *FlatpakUser) ShareRepo(t testing.TB, repo string) {
	t.Helper()
	if u.UID == os.Getuid() {
		return
	}
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Clean(repo); d != tmp && d != "/" && strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
			t.Fatal(err)
		}
	}
}

// Flatpak runs `flatpak --user ARGS...` as the user with its environment
// and returns stdout; a failure fails the test with both streams.
func (u *FlatpakUser) Flatpak(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := u.FlatpakErr(t, args...)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, indent(out), indent(errOut))
	}
	return out
}

// FlatpakErr is Flatpak without failing the test: it returns stdout,
// stderr and an error naming the command and its exit status. The
// command is killed after DefaultTimeout or when the test ends.
func (u *FlatpakUser) FlatpakErr(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	flatpak := RequireTool(t, "flatpak")
	args = append([]string{"--user"}, args...)
	parent := t.Context()
	if parent.Err() != nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, DefaultTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, flatpak, args...)
	cmd.Dir = u.Dir
	cmd.Env = append(os.Environ(), u.Env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u.UID != os.Getuid() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), NoSetGroups: false}
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		line := commandLine(flatpak, args)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return o.String(), e.String(), fmt.Errorf("run %s as uid %d: timed out: %w", line, u.UID, err)
		}
		return o.String(), e.String(), fmt.Errorf("run %s as uid %d: %w", line, u.UID, err)
	}
	return o.String(), e.String(), nil
}

// AddRemote adds the repository at repo as remote name, trusting the GPG
// public key in keyFile (binary, as GPGPublicKeyFile), or with
// --no-gpg-verify when keyFile is empty.
func (u *FlatpakUser) AddRemote(t testing.TB, name, repo, keyFile string) {
	t.Helper()
	u.ShareRepo(t, repo)
	u.AddRemoteURL(t, name, "file://"+repo, keyFile)
}

// AddRemoteURL is AddRemote for a repository at url (for example one
// served over HTTP). The key is copied into the user's directory first,
// so it need not be readable by the user.
func (u *FlatpakUser) AddRemoteURL(t testing.TB, name, url, keyFile string) {
	t.Helper()
	args := []string{"remote-add", "--if-not-exists"}
	if keyFile == "" {
		args = append(args, "--no-gpg-verify")
	} else {
		key := filepath.Join(u.Dir, name+".gpg")
		b, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--gpg-import="+key)
	}
	u.Flatpak(t, append(args, name, url)...)
}

// Install installs ref (an app ID or a full ref) from remote, with the
// runtime it needs.
func (u *FlatpakUser) Install(t testing.TB, remote, ref string) {
	t.Helper()
	u.Flatpak(t, "install", "-y", "--noninteractive", remote, ref)
}
