package sign

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxGPGSignatures bounds the signature packets one Verify examines. Each
// one with a trusted issuer costs a pass over the signed data, and the list
// comes from the remote, so without a bound a hostile summary.sig could make
// a client hash a large summary thousands of times.
const maxGPGSignatures = 64

// GPGKeyring is a set of trusted OpenPGP public keys, the Go counterpart of
// a remote's `<remote>.trustedkeys.gpg`. It is read-only after
// LoadGPGKeyring and safe for concurrent use.
type GPGKeyring struct {
	entities openpgp.EntityList
	// hadSecret is set when the key data held secret key material, which
	// LoadGPGKeyring dropped.
	hadSecret bool
	// now is the clock that expiry and revocation are judged against; nil
	// means time.Now. Only tests set it.
	now func() time.Time
}

// LoadGPGKeyring parses public keys, as written by `gpg --export` (binary)
// or `gpg --export --armor`. Each element may hold several keys, and
// armored input may hold several concatenated blocks, so the contents of a
// trusted.gpg.d directory can be passed file by file. Keys that use
// algorithms go-crypto does not support are skipped as long as another key
// loads. It fails with ErrNoKeys when no key at all was found.
func LoadGPGKeyring(data ...[]byte) (*GPGKeyring, error) {
	var all openpgp.EntityList
	hadSecret := false
	for i, d := range data {
		el, err := readEntities(d)
		if err != nil {
			return nil, fmt.Errorf("load gpg keyring: key data %d: %w", i, err)
		}
		for _, e := range el {
			// A keyring only verifies; do not keep secret material
			// around when someone hands in a secret-key export.
			hadSecret = hadSecret || e.PrivateKey != nil
			e.PrivateKey = nil
			for j := range e.Subkeys {
				hadSecret = hadSecret || e.Subkeys[j].PrivateKey != nil
				e.Subkeys[j].PrivateKey = nil
			}
		}
		all = append(all, el...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("load gpg keyring: %w", ErrNoKeys)
	}
	return &GPGKeyring{entities: all, hadSecret: hadSecret}, nil
}

// HadSecret reports whether the key data held secret key material (a
// secret-key export given where a public key was meant). The keyring
// never keeps it.
func (k *GPGKeyring) HadSecret() bool { return k.hadSecret }

// PublicKeys serialises the keyring's public keys, in binary, as `gpg
// --export` writes them: primary keys, user ids, subkeys and their
// signatures, never secret key material.
func (k *GPGKeyring) PublicKeys() ([]byte, error) {
	var buf bytes.Buffer
	for _, e := range k.entities {
		if err := e.Serialize(&buf); err != nil {
			return nil, fmt.Errorf("export public key %s: %w", fingerprint(e.PrimaryKey), err)
		}
	}
	return buf.Bytes(), nil
}

// Fingerprints returns the primary-key fingerprints of the loaded keys, in
// uppercase hex as gpg prints them, so a caller can show what it trusts.
func (k *GPGKeyring) Fingerprints() []string {
	fps := make([]string, 0, len(k.entities))
	for _, e := range k.entities {
		fps = append(fps, fingerprint(e.PrimaryKey))
	}
	return fps
}

// GPGResult describes every signature Verify looked at. Verify returns it
// even when verification fails, so callers can show what was there.
type GPGResult struct {
	// Good lists the primary-key fingerprints (uppercase hex) of the trusted
	// keys that made a valid signature, once each, in signature order.
	Good []string
	// Signatures has one entry per signature packet examined.
	Signatures []GPGSignature
}

// GPGSignature is the outcome for one OpenPGP signature packet.
type GPGSignature struct {
	// Index is the position of the aay element the packet came from.
	Index int
	// KeyID is the issuer key ID (16 uppercase hex digits), or empty when
	// the packet could not be parsed far enough to know it.
	KeyID string
	// Fingerprint is the primary-key fingerprint of the trusted key that
	// made the signature, or empty when the key is not in the keyring.
	Fingerprint string
	// Created is the signature creation time.
	Created time.Time
	// Hash is the digest algorithm the signature uses.
	Hash crypto.Hash
	// Err is nil for a good signature, else the reason it was rejected; it
	// wraps one of the package sentinels.
	Err error
}

// Verify checks OpenPGP detached signatures over signed. Each element of
// sigs is one binary signature as ostree stores it in "ostree.gpgsigs"; an
// element holding several concatenated signature packets is also accepted.
// Verification passes when at least one signature is valid and made by an
// unexpired, unrevoked signing key of the keyring, which is ostree's rule.
// A signature packet split across two elements is not recognised (ostree
// never writes one). At most 64 signature packets are examined.
//
// The error, when there is one, is a *VerifyError listing every problem.
func (k *GPGKeyring) Verify(signed []byte, sigs [][]byte) (*GPGResult, error) {
	res := &GPGResult{}
	if len(sigs) == 0 {
		return res, &VerifyError{Scheme: "gpg", Problems: []error{ErrNoSignatures}}
	}
	cfg := &packet.Config{Time: k.now}
	var problems []error
	examined := 0
elements:
	for i, rest := range sigs {
		if len(rest) == 0 {
			problems = append(problems, &SignatureError{Index: i, Err: fmt.Errorf("%w: empty signature", ErrMalformed)})
			continue
		}
		for len(rest) > 0 {
			if examined == maxGPGSignatures {
				problems = append(problems, &SignatureError{Index: i, Err: fmt.Errorf("%w: more than %d signatures, rest ignored", ErrUnsupported, maxGPGSignatures)})
				break elements
			}
			examined++
			s, n := k.verifyPacket(cfg, signed, rest)
			s.Index = i
			res.Signatures = append(res.Signatures, s)
			if s.Err == nil {
				if !slices.Contains(res.Good, s.Fingerprint) {
					res.Good = append(res.Good, s.Fingerprint)
				}
			} else {
				problems = append(problems, &SignatureError{Index: i, KeyID: s.KeyID, Err: s.Err})
			}
			rest = rest[n:]
		}
	}
	if len(res.Good) > 0 {
		return res, nil
	}
	return res, &VerifyError{Scheme: "gpg", Problems: problems}
}

// verifyPacket checks the first packet of data and returns how many bytes
// it used; it returns len(data) when the rest cannot be split into packets.
func (k *GPGKeyring) verifyPacket(cfg *packet.Config, signed, data []byte) (s GPGSignature, n int) {
	defer func() {
		// go-crypto parses hostile bytes here; a bug in it must reject the
		// signature, not crash the mount.
		if r := recover(); r != nil {
			s.Err = fmt.Errorf("%w: openpgp panicked: %v", ErrMalformed, r)
			n = len(data)
		}
	}()
	// Cut the packet by its header first: go-crypto stops reading a
	// signature after the last field it needs, so it would accept a header
	// that claims more bytes than there are, or trailing bytes inside the
	// packet. gpg rejects the first; neither is covered by the signature.
	n, err := packetExtent(data)
	if err != nil {
		s.Err = fmt.Errorf("%w: %v", ErrMalformed, err)
		return s, len(data)
	}
	r := bytes.NewReader(data[:n])
	p, err := packet.Read(r)
	if err != nil {
		s.Err = classifyPGPError(err)
		return s, n
	}
	if r.Len() != 0 {
		s.Err = fmt.Errorf("%w: %d stray bytes at the end of a %d-byte packet", ErrMalformed, r.Len(), n)
		return s, n
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		s.Err = fmt.Errorf("%w: %T where a signature packet was expected", ErrMalformed, p)
		return s, n
	}
	s.Created = sig.CreationTime
	s.Hash = sig.Hash
	if sig.IssuerKeyId == nil {
		s.Err = fmt.Errorf("%w: signature names no issuer key", ErrMalformed)
		return s, n
	}
	s.KeyID = fmt.Sprintf("%016X", *sig.IssuerKeyId)
	if sig.SigType != packet.SigTypeBinary && sig.SigType != packet.SigTypeText {
		s.Err = fmt.Errorf("%w: signature type %#02x is not a data signature", ErrUnsupported, uint8(sig.SigType))
		return s, n
	}
	if len(k.entities.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign)) == 0 {
		if len(k.entities.KeysById(*sig.IssuerKeyId)) > 0 {
			s.Err = fmt.Errorf("%w: trusted key is not flagged for signing", ErrUnknownKey)
		} else {
			s.Err = ErrUnknownKey
		}
		return s, n
	}
	// Verify the single packet, so that one bad signature cannot hide a
	// good one after it (go-crypto stops at the first known issuer).
	_, signer, err := openpgp.VerifyDetachedSignature(k.entities, bytes.NewReader(signed), bytes.NewReader(data[:n]), cfg)
	if signer != nil {
		// Set even for expired or revoked keys: the math was right, and
		// the fingerprint tells the user which key to renew.
		s.Fingerprint = fingerprint(signer.PrimaryKey)
	}
	if err == nil && sig.Version == 4 {
		err = checkHashTag(sig, signed)
	}
	if err != nil {
		s.Err = classifyPGPError(err)
		// go-crypto calls a key created after "now" expired; say so, since
		// the fix is the clock, not the key.
		if errors.Is(err, pgperrors.ErrKeyExpired) {
			now := cfg.Now()
			for _, key := range k.entities.KeysById(*sig.IssuerKeyId) {
				if key.PublicKey.CreationTime.Unix() > now.Unix() {
					s.Err = fmt.Errorf("%w: key created at %s, after the current time %s (clock skew?)",
						ErrKeyExpired, key.PublicKey.CreationTime.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
				}
			}
		}
	}
	return s, n
}

// packetExtent returns the size, header included, of the first OpenPGP
// packet in data as its header declares it (RFC 4880 section 4.2). Partial
// body lengths are refused: they are only allowed for data packets.
func packetExtent(data []byte) (int, error) {
	if len(data) == 0 {
		return 0, errors.New("empty packet")
	}
	ctb := data[0]
	if ctb&0x80 == 0 {
		return 0, fmt.Errorf("packet tag byte %#02x lacks its top bit", ctb)
	}
	var hdr int
	var body uint64
	if ctb&0x40 == 0 {
		// Old format: the low two bits give the size of the length field.
		switch ctb & 3 {
		case 0:
			hdr = 2
		case 1:
			hdr = 3
		case 2:
			hdr = 5
		case 3:
			// Indeterminate length: the packet runs to the end.
			return len(data), nil
		}
		if len(data) < hdr {
			return 0, errors.New("truncated packet header")
		}
		for _, b := range data[1:hdr] {
			body = body<<8 | uint64(b)
		}
	} else {
		if len(data) < 2 {
			return 0, errors.New("truncated packet header")
		}
		switch l := data[1]; {
		case l < 192:
			hdr, body = 2, uint64(l)
		case l < 224:
			if len(data) < 3 {
				return 0, errors.New("truncated packet header")
			}
			hdr, body = 3, (uint64(l)-192)<<8+uint64(data[2])+192
		case l == 255:
			if len(data) < 6 {
				return 0, errors.New("truncated packet header")
			}
			hdr, body = 6, uint64(binary.BigEndian.Uint32(data[2:6]))
		default:
			return 0, errors.New("partial body length in a non-data packet")
		}
	}
	if body > uint64(len(data)-hdr) {
		return 0, fmt.Errorf("packet header declares %d bytes, only %d present", body, len(data)-hdr)
	}
	return hdr + int(body), nil
}

// checkHashTag compares the two digest bytes a v4 signature stores in
// clear with the real digest. go-crypto skips this for v4, since the
// signature itself covers the digest; gpg rejects a mismatch as a bad
// signature, and so do we, so that no byte outside the unhashed subpackets
// can change without breaking the signature.
func checkHashTag(sig *packet.Signature, signed []byte) error {
	h, err := sig.PrepareVerify()
	if err != nil {
		return err
	}
	var w io.Writer = h
	if sig.SigType == packet.SigTypeText {
		w = openpgp.NewCanonicalTextHash(h)
	}
	w.Write(signed)
	h.Write(sig.HashSuffix)
	sum := h.Sum(nil)
	if sum[0] != sig.HashTag[0] || sum[1] != sig.HashTag[1] {
		return pgperrors.SignatureError(fmt.Sprintf("digest prefix %02x%02x in the signature, digest starts %02x%02x",
			sig.HashTag[0], sig.HashTag[1], sum[0], sum[1]))
	}
	return nil
}

// classifyPGPError maps a go-crypto error onto the package sentinels and
// keeps go-crypto's text as detail.
func classifyPGPError(err error) error {
	var (
		sigErr      pgperrors.SignatureError
		invalidArg  pgperrors.InvalidArgumentError
		unsupported pgperrors.UnsupportedError
		keyInvalid  pgperrors.KeyInvalidError
	)
	switch {
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return ErrKeyExpired
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return ErrSignatureExpired
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return ErrKeyRevoked
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return ErrUnknownKey
	case errors.As(err, &sigErr), errors.As(err, &invalidArg), errors.As(err, &keyInvalid):
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	case errors.As(err, &unsupported):
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	default:
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
}

// readEntities parses one blob of binary or armored key material.
func readEntities(data []byte) (el openpgp.EntityList, err error) {
	defer func() {
		if r := recover(); r != nil {
			el, err = nil, fmt.Errorf("%w: openpgp panicked: %v", ErrMalformed, r)
		}
	}()
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil
	}
	// Every OpenPGP packet header has its top bit set, and armor is ASCII,
	// so the first byte tells the two apart.
	if trimmed[0]&0x80 != 0 {
		el, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, classifyKeyError(err)
		}
		return el, nil
	}
	blocks := splitArmor(trimmed)
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%w: neither an OpenPGP packet nor an armored block", ErrMalformed)
	}
	for i, b := range blocks {
		block, err := armor.Decode(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("armored block %d: %w", i, classifyKeyError(err))
		}
		if block.Type != openpgp.PublicKeyType && block.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("armored block %d: %w: %q is not a key block", i, ErrUnsupported, block.Type)
		}
		keys, err := openpgp.ReadKeyRing(block.Body)
		if err != nil {
			return nil, fmt.Errorf("armored block %d: %w", i, classifyKeyError(err))
		}
		el = append(el, keys...)
	}
	return el, nil
}

// classifyKeyError maps a key-parsing error onto ErrUnsupported or
// ErrMalformed.
func classifyKeyError(err error) error {
	var unsupported pgperrors.UnsupportedError
	if errors.As(err, &unsupported) {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// splitArmor cuts text at every "-----BEGIN PGP" line, because go-crypto's
// armor decoder reads one block and buffers past its end.
func splitArmor(text []byte) [][]byte {
	marker := []byte("-----BEGIN PGP")
	var starts []int
	for i := 0; i < len(text); {
		j := bytes.Index(text[i:], marker)
		if j < 0 {
			break
		}
		at := i + j
		if at == 0 || text[at-1] == '\n' {
			starts = append(starts, at)
		}
		i = at + len(marker)
	}
	blocks := make([][]byte, 0, len(starts))
	for i, s := range starts {
		end := len(text)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		blocks = append(blocks, text[s:end])
	}
	return blocks
}

// fingerprint formats a key fingerprint the way gpg prints it.
func fingerprint(pk *packet.PublicKey) string {
	return fmt.Sprintf("%X", pk.Fingerprint)
}
