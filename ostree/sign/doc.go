// Package sign verifies and makes the signatures that OSTree stores next to
// commits (in the detached metadata, `.commitmeta`) and summaries
// (`summary.sig`, and Flatpak's `summary.idx.sig`).
//
// It owns two schemes, each selected by a key of the a{sv} dictionary:
//
//   - KeyGPG ("ostree.gpgsigs"): binary OpenPGP detached signatures, one per
//     element of an aay. Verification passes when at least one signature is
//     valid and made by a key in the trusted GPGKeyring, which is what
//     ostree (through gpgme) requires.
//   - KeyEd25519 ("ostree.sign.ed25519"): raw 64-byte RFC 8032 signatures.
//     Verification passes when any signature verifies with any trusted key.
//
// Signatures always cover the exact bytes of the object file (the serialised
// commit or summary), so callers pass those bytes unchanged.
//
// The package is pure: it parses key material and signatures and does the
// cryptography, nothing else. It must never know about GVariant (callers
// extract the aay lists from the dictionaries), touch the network or the
// filesystem, or decide which keys a remote trusts; callers hand in the keys.
// Input from a remote (signatures) is untrusted: it is bounded, and no input
// makes it panic. It starts no goroutines, and every exported type is safe
// for concurrent use once constructed.
//
// Every verification failure is a *VerifyError that matches
// ErrNoValidSignature and lists, per signature, why it was not accepted.
package sign
