package testutil

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// exportSandboxFixtures publishes the fixture's app and runtime with the
// real flatpak, signed with the test key, and returns the repository and
// the two refs.
func exportSandboxFixtures(t *testing.T, f *sandboxFixture) (repo, appRef, runtimeRef string) {
	t.Helper()
	gpgHome, fpr := GPGHome(t)
	repo = filepath.Join(t.TempDir(), "repo")
	appRef, runtimeRef = FlatpakBuildExport(t, repo, f.app, f.runtime, gpgHome, fpr)
	return repo, appRef, runtimeRef
}

func TestFlatpakBuildExport(t *testing.T) {
	ostree := RequireTool(t, "ostree")
	f := newSandboxFixture(t, SandboxRuntimeOptions{})
	repo, appRef, runtimeRef := exportSandboxFixtures(t, f)
	if want := "app/" + testAppID + "/" + FlatpakArch() + "/master"; appRef != want {
		t.Errorf("app ref = %q, want %q", appRef, want)
	}
	if want := "runtime/" + SandboxRuntimeRef; runtimeRef != want {
		t.Errorf("runtime ref = %q, want %q", runtimeRef, want)
	}
	refs := strings.Fields(Output(t, "", nil, ostree, "--repo="+repo, "refs"))
	for _, r := range []string{appRef, runtimeRef} {
		if !slices.Contains(refs, r) {
			t.Errorf("ostree refs = %q, want %s in it", refs, r)
		}
	}
	Run(t, "", nil, ostree, "--repo="+repo, "fsck")

	u := NewFlatpakUser(t)
	u.AddRemote(t, "signed", repo, VectorPath(t, GPGPublicKeyFile))
	u.AddRemote(t, "plain", repo, "")
	for _, remote := range []string{"signed", "plain"} {
		out := u.Flatpak(t, "remote-ls", "--all", "--columns=ref", remote)
		for _, r := range []string{appRef, runtimeRef} {
			if !strings.Contains(out, strings.SplitN(r, "/", 2)[1]) {
				t.Errorf("flatpak remote-ls %s:\n%s\nwant %s in it", remote, out, r)
			}
		}
	}
}

// TestFlatpakRunEscapeProbe installs the fixtures with the real flatpak,
// runs them with `flatpak run` as an unprivileged user, and checks the
// escape probe's answers against FlatpakEscapeProbeSeccomp and what any
// Flatpak sandbox must show.
func TestFlatpakRunEscapeProbe(t *testing.T) {
	RequireBwrap(t)
	if err := CloexecInheritedFDs(); err != nil {
		t.Fatal(err)
	}
	f := newSandboxFixture(t, SandboxRuntimeOptions{})
	repo, _, _ := exportSandboxFixtures(t, f)
	u := NewFlatpakUser(t)
	u.AddRemote(t, "test", repo, VectorPath(t, GPGPublicKeyFile))
	u.Install(t, "test", testAppID)

	out := u.Flatpak(t, "run", testAppID, "one", "two words")
	if want := SandboxHelloLine(testAppID) + "\narg: one\narg: two words\n"; out != want {
		t.Errorf("flatpak run printed %q, want %q", out, want)
	}
	info := u.Flatpak(t, "run", "--command=escapeprobe", testAppID, "-readfile", "/.flatpak-info")
	if !strings.Contains(info, "[Application]\nname="+testAppID+"\n") {
		t.Errorf("/.flatpak-info =\n%s\nwant an [Application] group naming %s", info, testAppID)
	}
	t.Logf("/.flatpak-info:\n%s", info)

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	hostFlags, err := EscapeProbeHostFlags()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(u.Home, ".var", "app", testAppID, "data")
	secret := filepath.Join(u.Home, "secret.txt")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--command=escapeprobe", testAppID,
		"-hidden", "/root", "-hidden", "/etc/shadow", "-hidden", secret, "-hidden", repo,
		"-data", data, "-connect", tcp.Addr().String(), "-env-expect", "FOO=bar"}, hostFlags...)
	res := DecodeEscapeProbe(t, []byte(u.Flatpak(t, args...)))
	pretty, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("escape probe under flatpak run (uid %d):\n%s", u.UID, pretty)

	for k, v := range FlatpakEscapeProbeSeccomp {
		if res[k] != v {
			t.Errorf("%s = %q, want Flatpak's %q (FlatpakEscapeProbeSeccomp)", k, res[k], v)
		}
	}
	want := map[string]string{
		"hidden:/root": "absent", "hidden:/etc/shadow": "absent", "hidden:" + secret: "absent", "hidden:" + repo: "absent",
		"write:/usr": "readonly", "write:/app": "readonly",
		"data:" + data:      "writable",
		"net:interfaces":    "loopback-only",
		"net:connect":       "unreachable:ECONNREFUSED",
		"pid1":              "sandbox",
		"pid":               "pidns",
		"ns:pid":            "new",
		"ns:net":            "new",
		"ns:mnt":            "new",
		"status:NoNewPrivs": "NoNewPrivs:1",
		"status:Seccomp":    "Seccomp:2",
		"env:FOO":           "ok",
		"env:LD_PRELOAD":    "LD_PRELOAD:absent",
		"dev:host":          "none",
		"fds":               "none",
	}
	if u.UID != 0 {
		for k, v := range map[string]string{"uid": "uid:nonroot", "ns:user": "new", "status:CapEff": "CapEff:0000000000000000",
			"status:CapPrm": "CapPrm:0000000000000000", "status:CapBnd": "CapBnd:0000000000000000"} {
			want[k] = v
		}
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q", k, res[k], v)
		}
	}
}
