package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
)

// TestSignKeyVerifiesWithOpenSSL commits and exports with --sign-key and
// checks, with openssl rather than our verifier, the ed25519 signature in
// the commit's detached metadata over the .commit file and the one in
// summary.sig over summary, as a client reads them from the repository;
// each with a flipped byte must be refused.
func TestSignKeyVerifiesWithOpenSSL(t *testing.T) {
	testutil.RequireTool(t, "openssl")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, map[string]string{"a": "a\n", "b/c": "c\n", "usr/bin/x": "#!/bin/sh\n"})
	pub := filepath.Join(dir, "pub")
	key := testutil.VectorPath(t, "keys/test-ed25519.secret.b64")
	lt(t, "init", "--repo", pub)
	sum := strings.TrimSpace(lt(t, "commit", "--repo", pub, "-b", "x", "--sign-key", key, src))
	lt(t, "export", "--repo", pub, "--sign-key", key)

	// The public key as ostree's trusted.ed25519 holds it, decoded here
	// without our parser.
	b64, err := os.ReadFile(testutil.VectorPath(t, "keys/test-ed25519.pub.b64"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("keys/test-ed25519.pub.b64: %d bytes, %v", len(raw), err)
	}
	pubKey := ed25519.PublicKey(raw)

	read := func(rel string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(pub, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	c, err := ostree.ParseChecksum(sum)
	if err != nil {
		t.Fatalf("commit printed %q: %v", sum, err)
	}
	for _, signed := range []struct{ what, data, sigs string }{
		{"commit " + sum[:8], "objects/" + sum[:2] + "/" + sum[2:] + ".commit", ostree.ObjectPath(c, ostree.ObjCommitMeta, true)},
		{"summary", "summary", "summary.sig"},
	} {
		data := read(signed.data)
		dict, err := ostree.DecodeVarDict(signed.sigs, read(signed.sigs))
		if err != nil {
			t.Fatal(err)
		}
		sigs := ostree.Signatures(dict, "ostree.sign.ed25519")
		if len(sigs) != 1 {
			t.Fatalf("%s: %d ed25519 signatures in %s, want 1", signed.what, len(sigs), signed.sigs)
		}
		if err := testutil.OpenSSLVerifyEd25519(t, pubKey, data, sigs[0]); err != nil {
			t.Errorf("%s: openssl refuses the signature in %s: %v", signed.what, signed.sigs, err)
		}
		bad := append([]byte(nil), data...)
		bad[len(bad)/2] ^= 1
		if testutil.OpenSSLVerifyEd25519(t, pubKey, bad, sigs[0]) == nil {
			t.Errorf("%s: openssl accepts the signature over a flipped byte", signed.what)
		}
		badSig := append([]byte(nil), sigs[0]...)
		badSig[10] ^= 1
		if testutil.OpenSSLVerifyEd25519(t, pubKey, data, badSig) == nil {
			t.Errorf("%s: openssl accepts a flipped signature", signed.what)
		}
	}
}
