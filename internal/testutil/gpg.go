package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// GPGSecretKeyFile is the test-vector key's secret part, relative to
// VectorsDir.
const GPGSecretKeyFile = "keys/test-gpg-SECRET-key.asc"

// GPGPublicKeyFile is the test-vector key's public part in binary form
// (what `gpg --export` writes and `ostree remote add --gpg-import` reads),
// relative to VectorsDir.
const GPGPublicKeyFile = "keys/test-gpg-pubkey.gpg"

// GPGHome makes a temporary GNUPGHOME with the test-vector secret key
// imported and returns it with the key's fingerprint (40 hex digits,
// upper case, as gpg prints it). Pass it to tools as --gpg-homedir or
// GNUPGHOME. The directory lives under /tmp with a short name because
// gpg-agent's socket path must fit in a sockaddr_un (108 bytes), which
// t.TempDir paths can exceed; the agent is killed and the directory
// removed at cleanup.
func GPGHome(t testing.TB) (home, fingerprint string) {
	t.Helper()
	gpg := RequireTool(t, "gpg")
	gpgconf := RequireTool(t, "gpgconf")
	home, err := os.MkdirTemp("/tmp", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Best effort: the agent may never have started.
		_, _ = RunErr(t, "", nil, gpgconf, "--homedir", home, "--kill", "all")
		if err := os.RemoveAll(home); err != nil {
			t.Errorf("remove gpg home: %v", err)
		}
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	key := VectorPath(t, filepath.FromSlash(GPGSecretKeyFile))
	Run(t, "", nil, gpg, "--batch", "--homedir", home, "--import", key)
	out := Output(t, "", nil, gpg, "--batch", "--homedir", home, "--with-colons", "--list-secret-keys")
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) > 9 && f[0] == "fpr" {
			fingerprint = f[9]
			break
		}
	}
	if fingerprint == "" {
		t.Fatalf("gpg --list-secret-keys in %s: no fingerprint in output:\n%s", home, indent(out))
	}
	return home, fingerprint
}
