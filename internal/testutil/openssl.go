package testutil

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// OpenSSLVerifyEd25519 checks the raw 64-byte Ed25519 signature sig over
// data with pub using the openssl command, an implementation independent
// of Go's crypto/ed25519. It returns nil when openssl accepts the
// signature and an error with openssl's output when it refuses it. A
// missing openssl skips the test (fails it under CI); a key that cannot
// be written fails it.
func OpenSSLVerifyEd25519(t testing.TB, pub ed25519.PublicKey, data, sig []byte) error {
	t.Helper()
	openssl := RequireTool(t, "openssl")
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal ed25519 public key: %v", err)
	}
	dir := t.TempDir()
	pubFile, dataFile, sigFile := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "data"), filepath.Join(dir, "sig")
	writeOwnerOnly(t, pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	writeOwnerOnly(t, dataFile, data)
	writeOwnerOnly(t, sigFile, sig)
	out, err := RunErr(t, "", nil, openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pubFile, "-rawin", "-in", dataFile, "-sigfile", sigFile)
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// OpenSSLSignEd25519 has openssl generate a fresh Ed25519 key and sign
// data with it. It returns the key (read back from openssl's PKCS #8
// file) and the raw 64-byte signature.
func OpenSSLSignEd25519(t testing.TB, data []byte) (ed25519.PrivateKey, []byte) {
	t.Helper()
	openssl := RequireTool(t, "openssl")
	dir := t.TempDir()
	keyFile, dataFile, sigFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "data"), filepath.Join(dir, "sig")
	Run(t, "", nil, openssl, "genpkey", "-algorithm", "ed25519", "-out", keyFile)
	writeOwnerOnly(t, dataFile, data)
	Run(t, "", nil, openssl, "pkeyutl", "-sign", "-inkey", keyFile, "-rawin", "-in", dataFile, "-out", sigFile)
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("openssl genpkey wrote no PEM block:\n%s", keyPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse openssl's key: %v", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("openssl genpkey made a %T, want ed25519", k)
	}
	sig, err := os.ReadFile(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != ed25519.SignatureSize {
		t.Fatalf("openssl signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	return key, sig
}

// writeOwnerOnly writes a file for a command to read, or fails the test.
func writeOwnerOnly(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
