package sign

import (
	"errors"
	"testing"
)

// FuzzGPGVerify feeds arbitrary signature bytes to Verify: it must never
// panic, and its result must agree with its error.
func FuzzGPGVerify(f *testing.F) {
	for _, rel := range []string{
		objectPath("repo", c1, "commitmeta"),
		objectPath("repo", c2, "commitmeta"),
		"repo/summary.sig",
		"flatpak-repo/summary.sig",
		"flatpak-repo/summary.idx.sig",
	} {
		for _, sig := range metaSigs(f, rel, KeyGPG) {
			f.Add(sig)
		}
	}
	f.Add(vector(f, "keys/test-gpg-pubkey.gpg"))
	f.Add([]byte{})
	f.Add([]byte{0x89})
	f.Add([]byte{0xc2, 0xff, 0xff, 0xff, 0xff, 0xff})

	k := testKeyring(f)
	commit := vector(f, objectPath("repo", c1, "commit"))
	f.Fuzz(func(t *testing.T, sig []byte) {
		for _, sigs := range [][][]byte{
			{sig},
			{sig[:len(sig)/2], sig[len(sig)/2:]},
		} {
			res, err := k.Verify(commit, sigs)
			if res == nil {
				t.Fatal("nil result")
			}
			if err == nil {
				if len(res.Good) == 0 {
					t.Fatal("no error but no good signature")
				}
				continue
			}
			if !errors.Is(err, ErrNoValidSignature) {
				t.Fatalf("error %v does not match ErrNoValidSignature", err)
			}
			if len(res.Good) != 0 {
				t.Fatalf("error %v with good signatures %v", err, res.Good)
			}
		}
	})
}

// FuzzLoadGPGKeyring feeds arbitrary key material to LoadGPGKeyring and
// LoadGPGSigner: they must never panic, and a keyring that loads must be
// usable.
func FuzzLoadGPGKeyring(f *testing.F) {
	for _, rel := range []string{
		"keys/test-gpg-pubkey.gpg",
		"keys/test-gpg-pubkey.asc",
		"keys/test-gpg-SECRET-key.asc",
	} {
		f.Add(vector(f, rel))
	}
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte{})

	commit := vector(f, objectPath("repo", c1, "commit"))
	good := metaSigs(f, objectPath("repo", c1, "commitmeta"), KeyGPG)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := LoadGPGKeyring(data)
		if err == nil {
			if len(k.Fingerprints()) == 0 {
				t.Fatal("keyring loaded without keys")
			}
			if _, err := k.Verify(commit, good); err != nil && !errors.Is(err, ErrNoValidSignature) {
				t.Fatalf("error %v does not match ErrNoValidSignature", err)
			}
		}
		if s, err := LoadGPGSigner(data); err == nil {
			if _, err := s.Sign(commit); err != nil {
				t.Logf("Sign with a loaded signer: %v", err)
			}
			_ = s.Fingerprint()
			_ = s.PublicKey()
		}
	})
}

// FuzzParseEd25519PublicKeys feeds arbitrary text to the ed25519 key
// parsers: they must never panic and must return only well-sized keys.
func FuzzParseEd25519PublicKeys(f *testing.F) {
	f.Add(vector(f, "keys/test-ed25519.pub.b64"))
	f.Add(vector(f, "keys/test-ed25519.secret.b64"))
	f.Add([]byte("# comment\n\n" + testEd25519Pub + "\r\n"))
	f.Add([]byte{})

	commit := vector(f, objectPath("repo", c1, "commit"))
	good := vector(f, "ed25519/"+c1+".commit.ed25519sig")
	f.Fuzz(func(t *testing.T, text []byte) {
		keys, err := ParseEd25519PublicKeys(text)
		if err == nil {
			for i, k := range keys {
				if len(k) != 32 {
					t.Fatalf("key %d is %d bytes", i, len(k))
				}
			}
			if err := VerifyEd25519(keys, commit, [][]byte{good, text}); err != nil && !errors.Is(err, ErrNoValidSignature) {
				t.Fatalf("error %v does not match ErrNoValidSignature", err)
			}
		}
		if key, err := ParseEd25519Secret(text); err == nil {
			if len(key) != 64 {
				t.Fatalf("secret key is %d bytes", len(key))
			}
			_ = SignEd25519(key, commit)
		}
	})
}
