package sign

// Ed25519 judged by an implementation that is not ours: OpenSSL's
// `pkeyutl -rawin` (RFC 8032 pure Ed25519, as ostree signs) verifies what
// we sign, and we verify what OpenSSL signs.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
)

// flipByte returns a copy of b with one bit of byte i inverted.
func flipByte(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0x01
	return out
}

// TestOurEd25519SignaturesVerifyWithOpenSSL signs the vector commit and
// summary with SignEd25519 and checks the signatures with openssl, and
// also the signatures stored in the vectors' detached metadata and
// summary.sig; a flipped byte of the signature or of the data must make
// openssl refuse.
func TestOurEd25519SignaturesVerifyWithOpenSSL(t *testing.T) {
	testutil.RequireTool(t, "openssl")
	key := testEd25519Secret(t)
	pub := key.Public().(ed25519.PublicKey)
	if trusted := testEd25519Keys(t); len(trusted) != 1 || !bytes.Equal(trusted[0], pub) {
		t.Fatalf("the vector secret key does not match keys/test-ed25519.pub.b64")
	}
	commit := vector(t, objectPath("repo", c1, "commit"))
	summary := vector(t, "repo/summary")

	// stored: the signature was made when the vectors were, by our code.
	type sigCase struct {
		name      string
		data, sig []byte
		stored    bool
	}
	cases := []sigCase{
		{"SignEd25519 over commit " + c1[:8], commit, SignEd25519(key, commit), false},
		{"SignEd25519 over the summary", summary, SignEd25519(key, summary), false},
	}
	for _, c := range []string{c1, c2} {
		for _, rel := range []string{"ed25519/" + c + ".commitmeta-ed25519-only", "ed25519/" + c + ".commitmeta-with-ed25519"} {
			sigs := metaSigs(t, rel, KeyEd25519)
			if len(sigs) != 1 {
				t.Fatalf("%s: %d ed25519 signatures, want 1", rel, len(sigs))
			}
			cases = append(cases, sigCase{rel, vector(t, objectPath("repo", c, "commit")), sigs[0], true})
		}
	}
	sigs := metaSigs(t, "ed25519/summary.sig-ed25519-only", KeyEd25519)
	if len(sigs) != 1 {
		t.Fatalf("summary.sig-ed25519-only: %d ed25519 signatures, want 1", len(sigs))
	}
	cases = append(cases, sigCase{"ed25519/summary.sig-ed25519-only", summary, sigs[0], true})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.sig) != ed25519.SignatureSize {
				t.Fatalf("signature is %d bytes, want %d", len(tc.sig), ed25519.SignatureSize)
			}
			if tc.stored && !bytes.Equal(tc.sig, SignEd25519(key, tc.data)) {
				t.Error("the stored signature is not what SignEd25519 makes now (Ed25519 is deterministic)")
			}
			if err := testutil.OpenSSLVerifyEd25519(t, pub, tc.data, tc.sig); err != nil {
				t.Fatalf("openssl refuses our signature: %v", err)
			}
			for _, i := range []int{0, 31, 63} {
				if testutil.OpenSSLVerifyEd25519(t, pub, tc.data, flipByte(tc.sig, i)) == nil {
					t.Errorf("openssl accepts the signature with byte %d flipped", i)
				}
			}
			if testutil.OpenSSLVerifyEd25519(t, pub, flipByte(tc.data, len(tc.data)/2), tc.sig) == nil {
				t.Error("openssl accepts the signature over data with a flipped byte")
			}
		})
	}
}

// TestOpenSSLEd25519SignatureVerifiesWithOurs has openssl make a key and
// sign the vector commit: VerifyEd25519 accepts the signature with the
// public key given as a trusted.ed25519 line, refuses it flipped or over
// other data, and SignEd25519 with the same key (as a base64 seed, the
// form --sign-key takes) makes the same bytes as openssl.
func TestOpenSSLEd25519SignatureVerifiesWithOurs(t *testing.T) {
	commit := vector(t, objectPath("repo", c1, "commit"))
	osslKey, osslSig := testutil.OpenSSLSignEd25519(t, commit)
	line := base64.StdEncoding.EncodeToString(osslKey.Public().(ed25519.PublicKey)) + "\n"
	keys, err := ParseEd25519PublicKeys([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyEd25519(keys, commit, [][]byte{osslSig}); err != nil {
		t.Fatalf("VerifyEd25519 refuses openssl's signature: %v", err)
	}
	for _, i := range []int{0, 31, 63} {
		if err := VerifyEd25519(keys, commit, [][]byte{flipByte(osslSig, i)}); !errors.Is(err, ErrNoValidSignature) {
			t.Errorf("openssl's signature with byte %d flipped: %v, want ErrNoValidSignature", i, err)
		}
	}
	if err := VerifyEd25519(keys, flipByte(commit, len(commit)/2), [][]byte{osslSig}); !errors.Is(err, ErrNoValidSignature) {
		t.Errorf("openssl's signature over a flipped commit: %v, want ErrNoValidSignature", err)
	}
	if err := VerifyEd25519(testEd25519Keys(t), commit, [][]byte{osslSig}); !errors.Is(err, ErrNoValidSignature) {
		t.Errorf("openssl's signature checked with another key: %v, want ErrNoValidSignature", err)
	}

	ours, err := ParseEd25519Secret([]byte(base64.StdEncoding.EncodeToString(osslKey.Seed())))
	if err != nil {
		t.Fatal(err)
	}
	if got := SignEd25519(ours, commit); !bytes.Equal(got, osslSig) {
		t.Errorf("SignEd25519 with openssl's key:\n got %x\nwant %x (openssl)", got, osslSig)
	}
}
