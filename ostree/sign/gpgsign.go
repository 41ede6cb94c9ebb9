package sign

import (
	"bytes"
	"crypto"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// GPGSigner makes OpenPGP detached signatures the way `ostree gpg-sign`
// does: binary, v4, SHA-512, over the exact bytes given. It is safe for
// concurrent use.
type GPGSigner struct {
	entity *openpgp.Entity
	keyID  uint64
	public []byte // binary export of the public key, made once
	// salt says whether go-crypto adds its random salt notation. It does by
	// default, to protect (EdDSA) keys against fault attacks; RSA PKCS#1 v1.5
	// does not need it, and leaving it out keeps signatures byte-for-byte
	// like gpg's.
	salt bool
	// now is the signature clock; nil means time.Now. Only tests set it.
	now func() time.Time
}

// LoadGPGSigner reads one secret key, binary (`gpg --export-secret-keys`)
// or armored. The key must not be passphrase-protected (ErrEncryptedKey),
// and the input must hold exactly one secret key so that the signer is never
// a guess.
func LoadGPGSigner(data []byte) (*GPGSigner, error) {
	el, err := readEntities(data)
	if err != nil {
		return nil, fmt.Errorf("load gpg signer: %w", err)
	}
	var secret []*openpgp.Entity
	for _, e := range el {
		if hasSecret(e) {
			secret = append(secret, e)
		}
	}
	switch len(secret) {
	case 0:
		return nil, fmt.Errorf("load gpg signer: %w: no secret key in the input", ErrNoKeys)
	case 1:
	default:
		return nil, fmt.Errorf("load gpg signer: %d secret keys in the input, want one", len(secret))
	}
	e := secret[0]
	key, ok := e.SigningKey(time.Now())
	if !ok {
		return nil, fmt.Errorf("load gpg signer: key %s: %w: no usable signing key (expired, revoked or not flagged for signing)", fingerprint(e.PrimaryKey), ErrNoKeys)
	}
	switch {
	case key.PrivateKey == nil:
		return nil, fmt.Errorf("load gpg signer: key %016X: %w: secret part missing", key.PublicKey.KeyId, ErrNoKeys)
	case key.PrivateKey.Dummy():
		return nil, fmt.Errorf("load gpg signer: key %016X: %w: secret part is a stub (on a smartcard or removed)", key.PublicKey.KeyId, ErrNoKeys)
	case key.PrivateKey.Encrypted:
		return nil, fmt.Errorf("load gpg signer: key %016X: %w", key.PublicKey.KeyId, ErrEncryptedKey)
	}
	// Made once: go-crypto keeps user IDs in a map, so serialising again
	// could order them differently.
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		return nil, fmt.Errorf("load gpg signer: export public key: %w", err)
	}
	algo := key.PublicKey.PubKeyAlgo
	return &GPGSigner{
		entity: e,
		keyID:  key.PublicKey.KeyId,
		public: pub.Bytes(),
		salt:   algo != packet.PubKeyAlgoRSA && algo != packet.PubKeyAlgoRSASignOnly,
	}, nil
}

func hasSecret(e *openpgp.Entity) bool {
	if e.PrivateKey != nil {
		return true
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil {
			return true
		}
	}
	return false
}

// Sign returns a binary OpenPGP detached signature over data, one element
// of "ostree.gpgsigs". gpg, gpgme and so ostree accept it.
func (s *GPGSigner) Sign(data []byte) ([]byte, error) {
	salt := s.salt
	cfg := &packet.Config{
		DefaultHash:                           crypto.SHA512,
		Time:                                  s.now,
		SigningKeyId:                          s.keyID,
		NonDeterministicSignaturesViaNotation: &salt,
	}
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, s.entity, bytes.NewReader(data), cfg); err != nil {
		return nil, fmt.Errorf("gpg sign with key %016X: %w", s.keyID, err)
	}
	return buf.Bytes(), nil
}

// Fingerprint is the primary-key fingerprint in uppercase hex, as gpg and
// ostree print it (`--gpg-sign=` accepts it).
func (s *GPGSigner) Fingerprint() string {
	return fingerprint(s.entity.PrimaryKey)
}

// PublicKey returns the public part of the key as a binary export, ready for
// LoadGPGKeyring or `ostree remote gpg-import`.
func (s *GPGSigner) PublicKey() []byte {
	return bytes.Clone(s.public)
}
