package fetch_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/testutil"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestAddStoresOnlyPublicGPGKeys reproduces hole 4 of issue 8: a secret
// key given to --gpg-import (or as a .flatpakrepo GPGKey) was written
// verbatim and world-readable under keys/. Now the remote is added (as
// ostree's --gpg-import adds it), only the public keys reach the disk,
// owner-only, and the caller is warned.
func TestAddStoresOnlyPublicGPGKeys(t *testing.T) {
	secretKey, err := os.ReadFile(testutil.VectorPath(t, testutil.GPGSecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(secretKey, []byte("PRIVATE KEY")) {
		t.Fatalf("%s is not a secret key export: the test would prove nothing", testutil.GPGSecretKeyFile)
	}
	for _, tc := range []struct {
		name       string
		key        []byte
		wantWarned bool
	}{
		{"secret armored", secretKey, true},
		{"public binary", vectorKey(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			cfg, err := fetch.LoadConfig(home)
			if err != nil {
				t.Fatal(err)
			}
			var warnings []string
			err = cfg.Add("r", fetch.AddOptions{URL: "http://127.0.0.1/", GPGKeys: [][]byte{tc.key}, Warn: func(m string) { warnings = append(warnings, m) }})
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Save(); err != nil {
				t.Fatal(err)
			}
			if got := len(warnings) > 0; got != tc.wantWarned {
				t.Fatalf("warned: %v (%q), want %v", got, warnings, tc.wantWarned)
			}
			if tc.wantWarned && !strings.Contains(warnings[0], "secret") {
				t.Fatalf("the warning does not say what happened: %q", warnings[0])
			}
			stored := filepath.Join(home, "keys", "r", "trustedkeys.gpg")
			b, err := os.ReadFile(stored)
			if err != nil {
				t.Fatal(err)
			}
			el, err := openpgp.ReadKeyRing(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("the stored keyring does not parse: %v", err)
			}
			if len(el) == 0 {
				t.Fatal("the stored keyring holds no key")
			}
			for _, e := range el {
				if e.PrivateKey != nil {
					t.Fatalf("the stored keyring holds the secret primary key %X", e.PrimaryKey.Fingerprint)
				}
				for _, sk := range e.Subkeys {
					if sk.PrivateKey != nil {
						t.Fatalf("the stored keyring holds the secret subkey %X", sk.PublicKey.Fingerprint)
					}
				}
			}
			// The stored keys are the ones that verify the vector repo.
			r, err := cfg.Remote("r")
			if err != nil {
				t.Fatal(err)
			}
			if !r.GPGVerify {
				t.Fatal("gpg-verify is off for a remote with a key")
			}
			want, err := os.ReadFile(testutil.VectorPath(t, "keys/test-gpg-fingerprint.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.ToUpper(fingerprintHex(el[0].PrimaryKey.Fingerprint)); got != strings.ToUpper(strings.TrimSpace(string(want))) {
				t.Fatalf("stored key %s, want the vector key %s", got, strings.TrimSpace(string(want)))
			}
			for path, want := range map[string]os.FileMode{
				home:                          0o700,
				filepath.Join(home, "config"): 0o600,
				filepath.Join(home, "keys"):   0o700,
				filepath.Join(home, "keys/r"): 0o700,
				stored:                        0o600,
			} {
				if got := mode(t, path); got != want {
					t.Errorf("%s: mode %o, want %o", path, got, want)
				}
			}
		})
	}
}

func fingerprintHex(fp []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(fp))
	for _, b := range fp {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

// TestAddNormalizesEd25519Keys: the ed25519 key file stored is the public
// keys alone, one per line, owner-only; a secret key given as a public key
// file is refused and writes nothing.
func TestAddNormalizesEd25519Keys(t *testing.T) {
	pub, err := os.ReadFile(testutil.VectorPath(t, "keys/test-ed25519.pub.b64"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(pub))
	home := t.TempDir()
	cfg, _ := fetch.LoadConfig(home)
	in := "# a comment that is not key material\n\n  " + strings.TrimRight(key, "=") + "  \n"
	if err := cfg.Add("ed", fetch.AddOptions{URL: "http://127.0.0.1/", Ed25519Keys: []byte(in)}); err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(home, "keys", "ed", "trusted.ed25519")
	b, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), key+"\n"; got != want {
		t.Fatalf("stored ed25519 keys %q, want %q", got, want)
	}
	if got := mode(t, stored); got != 0o600 {
		t.Fatalf("%s: mode %o, want 600", stored, got)
	}

	secret, err := os.ReadFile(testutil.VectorPath(t, "keys/test-ed25519.secret.b64"))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Add("oops", fetch.AddOptions{URL: "http://127.0.0.1/", Ed25519Keys: secret})
	if err == nil {
		t.Fatal("a secret ed25519 key was accepted as a public key file")
	}
	if strings.Contains(err.Error(), strings.TrimSpace(string(secret))) {
		t.Fatalf("the error carries the secret key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, "keys", "oops")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keys/oops exists after a refused add: %v", err)
	}
}

// TestAddTightensOldKeyDirs: a keys/ directory made by an older version
// (0755) becomes owner-only on the next add.
func TestAddTightensOldKeyDirs(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(home, "keys"), 0o755)
	cfg, _ := fetch.LoadConfig(home)
	if err := cfg.Add("r", fetch.AddOptions{URL: "http://127.0.0.1/", GPGKeys: [][]byte{vectorKey(t)}}); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, filepath.Join(home, "keys")); got != 0o700 {
		t.Fatalf("keys/: mode %o, want 700", got)
	}
}

// TestConfigIgnoresBadRemoteNames reproduces hole 9 of issue 8: `remote
// remove` of a group [remote "../../victim"] found in config deleted a
// directory outside keys/. Now such a group is reported, left out of
// Names and Remote, and removing it touches no path.
func TestConfigIgnoresBadRemoteNames(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	victim := filepath.Join(dir, "victim")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "precious"), []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	config := "[remote \"ok\"]\nurl=http://127.0.0.1/\ngpg-verify=false\n\n" +
		"[remote \"../../victim\"]\nurl=http://127.0.0.1/\ngpg-verify=false\n\n" +
		"[remote \"a/b\"]\nurl=http://127.0.0.1/\ngpg-verify=false\n"
	if err := os.WriteFile(filepath.Join(home, "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cfg.Names(), ","), "ok"; got != want {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if got, want := len(cfg.Problems()), 2; got != want {
		t.Fatalf("%d problems (%q), want %d", got, cfg.Problems(), want)
	}
	if !strings.Contains(cfg.Problems()[0], "../../victim") || !strings.Contains(cfg.Problems()[0], "ignored") {
		t.Fatalf("the problem does not name the group: %q", cfg.Problems()[0])
	}
	if _, err := cfg.Remote("../../victim"); !errors.Is(err, fetch.ErrNoRemote) {
		t.Fatalf("Remote(../../victim): %v, want ErrNoRemote", err)
	}
	if err := cfg.Remove("../../victim"); err != nil {
		t.Fatalf("removing the bad group from the config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(victim, "precious")); err != nil {
		t.Fatalf("Remove of a group named ../../victim deleted a directory outside keys/: %v", err)
	}
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	cfg2, err := fetch.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cfg2.Problems()), 1; got != want {
		t.Fatalf("after removing one bad group: %d problems (%q), want %d", got, cfg2.Problems(), want)
	}
	if err := cfg2.Remove("../../nothing-here"); !errors.Is(err, fetch.ErrNoRemote) {
		t.Fatalf("Remove of an unknown bad name: %v, want ErrNoRemote", err)
	}
}

// TestSecretKeyImportStillVerifies: the public keys kept from a secret-key
// export are enough to verify the repository that key signed.
func TestSecretKeyImportStillVerifies(t *testing.T) {
	secretKey, err := os.ReadFile(testutil.VectorPath(t, testutil.GPGSecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.ServeDir(t, testutil.CopyVectorRepo(t, "flatpak-repo"))
	e := newEnv(t, srv.URL, fetch.AddOptions{GPGKeys: [][]byte{secretKey}}, fetch.Options{})
	if _, err := e.fetcher.Summary(ctxT(t), "r", true); err != nil {
		t.Fatalf("verify the summary with the public keys kept from a secret export: %v", err)
	}
}
