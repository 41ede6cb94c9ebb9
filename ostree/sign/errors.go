package sign

import (
	"errors"
	"fmt"
	"strings"
)

// Keys of the detached-metadata and summary.sig dictionaries that hold
// signatures. Both map to an aay whose elements are single signatures.
const (
	// KeyGPG holds binary OpenPGP detached signatures.
	KeyGPG = "ostree.gpgsigs"
	// KeyEd25519 holds 64-byte Ed25519 signatures.
	KeyEd25519 = "ostree.sign.ed25519"
)

// Sentinel errors. A *VerifyError matches ErrNoValidSignature and, through
// its per-signature problems, the more specific sentinels below, so callers
// can tell "unsigned" from "signed by someone we do not trust" from
// "tampered".
var (
	// ErrNoValidSignature is matched by every verification failure.
	ErrNoValidSignature = errors.New("sign: no valid signature")
	// ErrNoSignatures means the signature list was empty: the data is unsigned.
	ErrNoSignatures = errors.New("sign: no signatures")
	// ErrNoKeys means there is no trusted key to verify with, or no key in
	// the key material that was loaded.
	ErrNoKeys = errors.New("sign: no keys")
	// ErrUnknownKey means a signature was made by a key that is not trusted.
	ErrUnknownKey = errors.New("sign: unknown key")
	// ErrBadSignature means a signature does not match the data: the data or
	// the signature was changed, or a different key made it.
	ErrBadSignature = errors.New("sign: bad signature")
	// ErrKeyExpired means the signature is correct but its key has expired.
	ErrKeyExpired = errors.New("sign: key expired")
	// ErrKeyRevoked means the signature is correct but its key was revoked.
	ErrKeyRevoked = errors.New("sign: key revoked")
	// ErrSignatureExpired means the signature is correct but past its own
	// expiry time.
	ErrSignatureExpired = errors.New("sign: signature expired")
	// ErrMalformed means a signature or key could not be parsed.
	ErrMalformed = errors.New("sign: malformed")
	// ErrUnsupported means a signature or key uses a version, algorithm or
	// digest this package does not accept.
	ErrUnsupported = errors.New("sign: unsupported")
	// ErrEncryptedKey means a secret key is protected by a passphrase; this
	// package only signs with unprotected keys.
	ErrEncryptedKey = errors.New("sign: secret key is passphrase-protected")
)

// VerifyError is returned when no signature was accepted. It matches
// ErrNoValidSignature, and errors.Is also reaches every problem in Problems
// (for example ErrUnknownKey or ErrBadSignature).
type VerifyError struct {
	// Scheme is "gpg" or "ed25519".
	Scheme string
	// Problems holds one error per signature examined, in order (usually a
	// *SignatureError), or a single ErrNoSignatures or ErrNoKeys.
	Problems []error
}

// Error lists every problem, so a log line is enough to see why a pull
// failed.
func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verify %s signatures: no valid signature", e.Scheme)
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Is makes every VerifyError match ErrNoValidSignature.
func (e *VerifyError) Is(target error) bool { return target == ErrNoValidSignature }

// Unwrap exposes the per-signature problems to errors.Is and errors.As.
func (e *VerifyError) Unwrap() []error { return e.Problems }

// SignatureError says why one signature was not accepted.
type SignatureError struct {
	// Index is the position of the signature in the list handed to Verify.
	Index int
	// KeyID names the key that made the signature, when the scheme records
	// it (the 16-hex-digit OpenPGP issuer key ID); empty for Ed25519.
	KeyID string
	// Err is the cause; it wraps one of the package sentinels.
	Err error
}

// Error reads like "signature 0 by key D56FA59BFCDC770D: sign: bad signature".
func (e *SignatureError) Error() string {
	if e.KeyID != "" {
		return fmt.Sprintf("signature %d by key %s: %v", e.Index, e.KeyID, e.Err)
	}
	return fmt.Sprintf("signature %d: %v", e.Index, e.Err)
}

// Unwrap returns the cause.
func (e *SignatureError) Unwrap() error { return e.Err }
