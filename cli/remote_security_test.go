package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
)

// TestRemoteAddSecretKeyWarns: `remote add --gpg-import` of a secret-key
// export succeeds, as ostree's does, says on stderr that only the public
// keys were kept, and stores no secret key (issue 8, hole 4).
func TestRemoteAddSecretKeyWarns(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	out, errOut, code := ltCode(t, "--home", home, "remote", "add", "r", "http://127.0.0.1:1/", "--gpg-import", secret)
	if code != 0 {
		t.Fatalf("remote add: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "added remote r") {
		t.Fatalf("stdout: %q", out)
	}
	if !strings.Contains(errOut, "warning") || !strings.Contains(errOut, "secret") {
		t.Fatalf("no warning about the secret key on stderr: %q", errOut)
	}
	b, err := os.ReadFile(filepath.Join(home, "keys", "r", "trustedkeys.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(secret)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) == string(in) || strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatal("the secret key file was stored as given")
	}
	// A public key adds without a warning.
	_, errOut, code = ltCode(t, "--home", home, "remote", "add", "p", "http://127.0.0.1:1/", "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	if code != 0 || errOut != "" {
		t.Fatalf("remote add of a public key: exit %d, stderr %q", code, errOut)
	}
}

// TestRemoteBadGroupIgnored: a config group [remote "../../victim"] is
// listed as ignored, and `remote remove` of it deletes nothing outside
// keys/ (issue 8, hole 9).
func TestRemoteBadGroupIgnored(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	victim := filepath.Join(dir, "victim")
	os.MkdirAll(filepath.Join(home, "keys"), 0o700)
	os.MkdirAll(victim, 0o755)
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep\n"), 0o644)
	os.WriteFile(filepath.Join(home, "config"), []byte("[remote \"../../victim\"]\nurl=http://127.0.0.1:1/\ngpg-verify=false\n"), 0o600)

	out, errOut, code := ltCode(t, "--home", home, "remote", "list")
	if code != 0 {
		t.Fatalf("remote list: exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "victim") || !strings.Contains(errOut, "../../victim") || !strings.Contains(errOut, "ignored") {
		t.Fatalf("remote list: stdout %q, stderr %q; want the group reported as ignored on stderr only", out, errOut)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(lt(t, "--home", home, "remote", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0]["ignored"] != true {
		t.Fatalf("remote list --json: %v, want one ignored row", rows)
	}
	if _, errOut, code := ltCode(t, "--home", home, "remote", "remove", "../../victim"); code != 0 {
		t.Fatalf("remote remove of the bad group: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(victim, "precious")); err != nil {
		t.Fatalf("remote remove ../../victim deleted outside keys/: %v", err)
	}
	if _, errOut, _ := ltCode(t, "--home", home, "remote", "list"); errOut != "" {
		t.Fatalf("the group is still there after remove: %q", errOut)
	}
}

// TestRemoteShowMasksPassword: list and show print a remote URL with its
// password masked, and the config holding it is owner-only (issue 8,
// hole 8).
func TestRemoteShowMasksPassword(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	lt(t, "--home", home, "remote", "add", "r", "http://user:s3cr3t@127.0.0.1:1/repo", "--mirror", "http://m:s3cr3t@127.0.0.2:1/", "--no-gpg-verify")
	for _, args := range [][]string{{"show", "r"}, {"show", "r", "--json"}, {"list"}, {"list", "--json"}} {
		out := lt(t, append([]string{"--home", home, "remote"}, args...)...)
		if strings.Contains(out, "s3cr3t") || !strings.Contains(out, "user:xxxxx@127.0.0.1:1") {
			t.Fatalf("remote %s: %q, want the password masked", strings.Join(args, " "), out)
		}
	}
	st, err := os.Stat(filepath.Join(home, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Fatalf("config: mode %o, want 600", got)
	}
}
