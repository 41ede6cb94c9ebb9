package sign

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
)

// maxEd25519Signatures bounds the signatures one VerifyEd25519 examines;
// each is tried against every key, and each try hashes all of the signed
// data, so the remote must not choose how many there are.
const maxEd25519Signatures = 64

// ParseEd25519PublicKeys reads an ostree ed25519 key file
// (trusted.ed25519, revoked.ed25519, verification-ed25519-file): one base64
// 32-byte public key per line. Blank lines and lines starting with '#' are
// skipped. A file with no keys gives an empty list and no error, because an
// empty trusted.ed25519 is valid; VerifyEd25519 then rejects everything.
func ParseEd25519PublicKeys(text []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, l := range strings.Split(string(text), "\n") {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		raw, err := decodeBase64(s)
		if err != nil {
			return nil, fmt.Errorf("parse ed25519 public keys: line %d: %w: %v", i+1, ErrMalformed, err)
		}
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("parse ed25519 public keys: line %d: %w: key is %d bytes, want %d", i+1, ErrMalformed, len(raw), ed25519.PublicKeySize)
		}
		keys = append(keys, ed25519.PublicKey(raw))
	}
	return keys, nil
}

// ParseEd25519Secret reads a secret key as `ostree sign` takes it: base64
// of the 64-byte libsodium form (32-byte seed followed by the public key),
// or of the 32-byte seed alone. In the 64-byte form the public half must
// match the seed, so a corrupted key file cannot produce signatures that
// nobody can verify. Errors never contain key material.
func ParseEd25519Secret(text []byte) (ed25519.PrivateKey, error) {
	raw, err := decodeBase64(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("parse ed25519 secret key: %w: not base64", ErrMalformed)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(key[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
			return nil, fmt.Errorf("parse ed25519 secret key: %w: public half does not match the seed", ErrMalformed)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("parse ed25519 secret key: %w: key is %d bytes, want %d or %d",
			ErrMalformed, len(raw), ed25519.SeedSize, ed25519.PrivateKeySize)
	}
}

// decodeBase64 accepts padded and unpadded standard base64, as GLib's
// lenient g_base64_decode does for the keys ostree reads.
func decodeBase64(s string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		return raw, nil
	}
	if raw, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
		return raw, nil
	}
	return nil, err
}

// VerifyEd25519 checks the "ostree.sign.ed25519" signatures over signed.
// It passes when any signature verifies with any of keys, which is ostree's
// rule; revoked keys must already be removed by the caller. Keys of the
// wrong length are ignored. At most 64 signatures are examined. The error,
// when there is one, is a *VerifyError.
func VerifyEd25519(keys []ed25519.PublicKey, signed []byte, sigs [][]byte) error {
	if len(sigs) == 0 {
		return &VerifyError{Scheme: "ed25519", Problems: []error{ErrNoSignatures}}
	}
	usable := make([]ed25519.PublicKey, 0, len(keys))
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize {
			usable = append(usable, k)
		}
	}
	if len(usable) == 0 {
		return &VerifyError{Scheme: "ed25519", Problems: []error{ErrNoKeys}}
	}
	var problems []error
	for i, sig := range sigs {
		if i == maxEd25519Signatures {
			problems = append(problems, &SignatureError{Index: i, Err: fmt.Errorf("%w: more than %d signatures, rest ignored", ErrUnsupported, maxEd25519Signatures)})
			break
		}
		if len(sig) != ed25519.SignatureSize {
			problems = append(problems, &SignatureError{Index: i, Err: fmt.Errorf("%w: signature is %d bytes, want %d", ErrMalformed, len(sig), ed25519.SignatureSize)})
			continue
		}
		for _, k := range usable {
			if ed25519.Verify(k, signed, sig) {
				return nil
			}
		}
		// Ed25519 signatures do not name their key, so "made by a key we do
		// not trust" and "tampered" look the same.
		problems = append(problems, &SignatureError{Index: i, Err: fmt.Errorf("%w: no trusted key (of %d) verifies it", ErrBadSignature, len(usable))})
	}
	return &VerifyError{Scheme: "ed25519", Problems: problems}
}

// SignEd25519 returns the 64-byte signature over data that goes into
// "ostree.sign.ed25519". Ed25519 is deterministic, so the same key and data
// always give the same bytes. Like ed25519.Sign, it panics if key is not
// ed25519.PrivateKeySize bytes; ParseEd25519Secret never returns such a key.
func SignEd25519(key ed25519.PrivateKey, data []byte) []byte {
	return ed25519.Sign(key, data)
}
