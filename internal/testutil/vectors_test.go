package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVectorsDir(t *testing.T) {
	t.Setenv(VectorsEnv, "")
	dir := VectorsDir(t)
	if want := filepath.Join(ModuleRoot(t), "testdata", "vectors"); dir != want {
		t.Errorf("VectorsDir = %s, want the in-module copy %s", dir, want)
	}
	for _, p := range []string{
		"commits.txt", GPGSecretKeyFile, GPGPublicKeyFile, "repo/config", "flatpak-repo/summary",
		"repo/refs/remotes/.gitkeep", "repo/refs/mirrors/.gitkeep",
		"flatpak-repo/refs/remotes/.gitkeep", "flatpak-repo/refs/mirrors/.gitkeep",
		"repo/objects/c2/7dc3c08eac29fffc6a2b4fdfe5cda3dd50ef3866b7c14e5eb9a2e999835c4c.commit",
	} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("vectors: %v", err)
		}
	}
	commits, err := os.ReadFile(filepath.Join(dir, "commits.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{C1Checksum, C2Checksum} {
		if !strings.Contains(string(commits), c) {
			t.Errorf("commits.txt does not list %s", c)
		}
	}
}

func TestVectorsDirEnv(t *testing.T) {
	alt := t.TempDir()
	if err := os.WriteFile(filepath.Join(alt, "commits.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(VectorsEnv, alt)
	if got := VectorsDir(t); got != alt {
		t.Errorf("VectorsDir with %s=%s = %s", VectorsEnv, alt, got)
	}
}

func TestCopyVectorRepo(t *testing.T) {
	repo := CopyVectorRepo(t, "repo")
	// CopyDir does not copy owners, which differ when not run as root.
	if err := TreeDiff(VectorPath(t, "repo"), repo, DiffOptions{IgnoreRootMode: true, IgnoreOwner: true}); err != nil {
		t.Error(err)
	}
}

func TestGPGHome(t *testing.T) {
	home, fpr := GPGHome(t)
	want, err := os.ReadFile(VectorPath(t, "keys", "test-gpg-fingerprint.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fpr != strings.TrimSpace(string(want)) {
		t.Errorf("fingerprint = %s, want %s", fpr, want)
	}
	if st, err := os.Stat(home); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("gpg home %s: %v %v, want mode 0700", home, st.Mode(), err)
	}
	// The agent socket must fit in sockaddr_un, or signing fails.
	if len(home) > 40 {
		t.Errorf("gpg home %s is too long for the agent socket", home)
	}
	// The secret key signs without a passphrase, and the signature verifies.
	msg := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msg, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Run(t, "", nil, "gpg", "--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", "",
		"--local-user", fpr, "--detach-sign", msg)
	Run(t, "", nil, "gpg", "--batch", "--homedir", home, "--verify", msg+".sig", msg)
}

func TestGPGHomeCleanup(t *testing.T) {
	var home string
	t.Run("inner", func(t *testing.T) {
		home, _ = GPGHome(t)
		// Start the agent, which the cleanup must stop.
		Run(t, "", nil, RequireTool(t, "gpg-connect-agent"), "--homedir", home, "/bye")
	})
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("gpg home %s still exists after the test: %v", home, err)
	}
}
