package sign

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/lazytree/lazytree/internal/testutil"
)

// gpgVector is one real signature container from the vectors and the
// exact bytes it signs.
type gpgVector struct {
	name   string
	signed string // file whose bytes are signed
	meta   string // a{sv} holding the signatures
}

func gpgVectors(t *testing.T) []gpgVector {
	t.Helper()
	idx := vector(t, "flatpak-repo/summary.idx")
	idxDigest := sha256.Sum256(idx)
	vs := []gpgVector{
		{"C1 commit", objectPath("repo", c1, "commit"), objectPath("repo", c1, "commitmeta")},
		{"C2 commit", objectPath("repo", c2, "commit"), objectPath("repo", c2, "commitmeta")},
		{"C1 commitmeta-with-ed25519", objectPath("repo", c1, "commit"), "ed25519/" + c1 + ".commitmeta-with-ed25519"},
		{"C2 commitmeta-with-ed25519", objectPath("repo", c2, "commit"), "ed25519/" + c2 + ".commitmeta-with-ed25519"},
		{"repo summary", "repo/summary", "repo/summary.sig"},
		{"flatpak summary", "flatpak-repo/summary", "flatpak-repo/summary.sig"},
		{"flatpak summary.idx", "flatpak-repo/summary.idx", "flatpak-repo/summary.idx.sig"},
		{"flatpak summaries/<digest>.idx.sig", "flatpak-repo/summary.idx", "flatpak-repo/summaries/" + hex.EncodeToString(idxDigest[:]) + ".idx.sig"},
	}
	// Commits whose ids change on every generation: take them from the refs.
	for _, ref := range []string{
		"repo/refs/heads/ostree-metadata",
		"flatpak-repo/refs/heads/runtime/org.example.Platform/x86_64/1.0",
		"flatpak-repo/refs/heads/app/org.example.Hello/x86_64/stable",
	} {
		repo := strings.SplitN(ref, "/", 2)[0]
		sum := strings.TrimSpace(string(vector(t, ref)))
		vs = append(vs, gpgVector{ref, objectPath(repo, sum, "commit"), objectPath(repo, sum, "commitmeta")})
	}
	return vs
}

func TestVerifyGPGVectors(t *testing.T) {
	keyrings := []struct {
		name string
		file string
	}{
		{"binary", "keys/test-gpg-pubkey.gpg"},
		{"armored", "keys/test-gpg-pubkey.asc"},
	}
	wantFpr := strings.TrimSpace(string(vector(t, "keys/test-gpg-fingerprint.txt")))
	if wantFpr != testFpr {
		t.Fatalf("test-gpg-fingerprint.txt = %s, want %s", wantFpr, testFpr)
	}
	for _, kr := range keyrings {
		k, err := LoadGPGKeyring(vector(t, kr.file))
		if err != nil {
			t.Fatalf("load %s: %v", kr.file, err)
		}
		for _, v := range gpgVectors(t) {
			t.Run(kr.name+"/"+v.name, func(t *testing.T) {
				sigs := metaSigs(t, v.meta, KeyGPG)
				if len(sigs) != 1 {
					t.Fatalf("got %d signatures in %s, want 1", len(sigs), v.meta)
				}
				res, err := k.Verify(vector(t, v.signed), sigs)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if len(res.Good) != 1 || res.Good[0] != testFpr {
					t.Errorf("Good = %v, want [%s]", res.Good, testFpr)
				}
				if len(res.Signatures) != 1 {
					t.Fatalf("got %d signature results, want 1", len(res.Signatures))
				}
				s := res.Signatures[0]
				if s.KeyID != testKeyID {
					t.Errorf("KeyID = %s, want %s", s.KeyID, testKeyID)
				}
				if s.Fingerprint != testFpr {
					t.Errorf("Fingerprint = %s, want %s", s.Fingerprint, testFpr)
				}
				if s.Hash != crypto.SHA512 {
					t.Errorf("Hash = %v, want SHA-512", s.Hash)
				}
				if s.Created.IsZero() {
					t.Errorf("Created is zero")
				}
			})
		}
	}
}

// TestGPGVectorPacket pins what spec section 5.1 says about the bytes: an
// old-format v4 binary RSA SHA-512 signature packet of 310 bytes.
func TestGPGVectorPacket(t *testing.T) {
	sigs := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)
	if len(sigs) != 1 {
		t.Fatalf("got %d signatures, want 1", len(sigs))
	}
	sig := sigs[0]
	if got, want := len(sig), 310; got != want {
		t.Errorf("len = %d, want %d", got, want)
	}
	if got, want := hex.EncodeToString(sig[:7]), "89013304000"+"10a"; got != want {
		t.Errorf("prefix = %s, want %s", got, want)
	}
}

func TestVerifyGPGRejects(t *testing.T) {
	k := testKeyring(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)[0]
	c2Sig := metaSigs(t, objectPath("repo", c2, "commitmeta"), KeyGPG)[0]
	idx := vector(t, "flatpak-repo/summary.idx")
	idxDigest := sha256.Sum256(idx)
	var oldIdxSig []byte
	entries, err := os.ReadDir(filepath.Join(vectorDir(t), "flatpak-repo/summaries"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".idx.sig") && !strings.HasPrefix(e.Name(), hex.EncodeToString(idxDigest[:])) {
			oldIdxSig = metaSigs(t, "flatpak-repo/summaries/"+e.Name(), KeyGPG)[0]
		}
	}
	if oldIdxSig == nil {
		t.Fatal("no signature of an older summary.idx in flatpak-repo/summaries")
	}

	// The same packet with one stray byte inside it: the 2-byte length of
	// the old-format header grows by one.
	stray := append(bytes.Clone(good), 0)
	binary.BigEndian.PutUint16(stray[1:], binary.BigEndian.Uint16(stray[1:])+1)
	// The same packet with a new-format header using a partial length.
	partial := append([]byte{0xc2, 0xe8}, good[3:]...)

	tests := []struct {
		name   string
		signed []byte
		sigs   [][]byte
		want   error
	}{
		{"no signatures", commit, nil, ErrNoSignatures},
		{"header claims more bytes than present", commit, [][]byte{flip(good, 1)}, ErrMalformed},
		{"stray byte inside the packet", commit, [][]byte{stray}, ErrMalformed},
		{"partial body length", commit, [][]byte{partial}, ErrMalformed},
		{"public key packet instead of signature", commit, [][]byte{vector(t, "keys/test-gpg-pubkey.gpg")}, ErrMalformed},
		{"empty element", commit, [][]byte{{}}, ErrMalformed},
		{"garbage", commit, [][]byte{[]byte("not a signature")}, ErrMalformed},
		{"flipped first byte of data", flip(commit, 0), [][]byte{good}, ErrBadSignature},
		{"flipped last byte of data", flip(commit, len(commit)-1), [][]byte{good}, ErrBadSignature},
		{"truncated data", commit[:len(commit)-1], [][]byte{good}, ErrBadSignature},
		{"flipped last byte of signature", commit, [][]byte{flip(good, len(good)-1)}, ErrBadSignature},
		{"truncated signature", commit, [][]byte{good[:len(good)-10]}, ErrMalformed},
		{"signature of another commit", commit, [][]byte{c2Sig}, ErrBadSignature},
		{"signature of an older summary.idx", idx, [][]byte{oldIdxSig}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := k.Verify(tt.signed, tt.sigs)
			wantVerifyError(t, err, tt.want)
			if res == nil {
				t.Fatal("result is nil, want a result even on failure")
			}
			if len(res.Good) != 0 {
				t.Errorf("Good = %v, want none", res.Good)
			}
		})
	}
}

// TestVerifyGPGEveryByteFlipped inverts each byte of a real signature in
// turn. Every byte outside the unhashed subpacket area is authenticated or
// structural, so every such variant must fail. The unhashed area is by
// design not covered by the signature (gpg accepts changes there too): here
// it holds the issuer key ID, and changing its subpacket type still leaves
// the hashed issuer fingerprint to find the key, so no assertion is made.
func TestVerifyGPGEveryByteFlipped(t *testing.T) {
	k := testKeyring(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)[0]
	// Old-format header (3 bytes), version, type, algorithms (4), then
	// the hashed and unhashed subpacket areas, each after a 2-byte length.
	unhashedStart := 3 + 4
	unhashedStart += 2 + int(binary.BigEndian.Uint16(good[unhashedStart:]))
	unhashedEnd := unhashedStart + 2 + int(binary.BigEndian.Uint16(good[unhashedStart:]))
	unhashedStart += 2
	for i := range good {
		res, err := k.Verify(commit, [][]byte{flip(good, i)})
		if i >= unhashedStart && i < unhashedEnd {
			continue
		}
		if err == nil {
			t.Errorf("byte %d (%#02x) flipped: verified, Good = %v", i, good[i], res.Good)
			continue
		}
		if !errors.Is(err, ErrNoValidSignature) {
			t.Errorf("byte %d flipped: error %v does not match ErrNoValidSignature", i, err)
		}
	}
}

// TestVerifyGPGHashTag checks the two clear digest bytes, which go-crypto
// ignores for v4 signatures but gpg checks.
func TestVerifyGPGHashTag(t *testing.T) {
	k := testKeyring(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)[0]
	sig, err := packet.Read(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	tag := sig.(*packet.Signature).HashTag
	// Old-format header (3 bytes), version, type, algorithms (4), then
	// the hashed and unhashed subpacket areas, each after a 2-byte length.
	at := 3 + 4
	at += 2 + int(binary.BigEndian.Uint16(good[at:]))
	at += 2 + int(binary.BigEndian.Uint16(good[at:]))
	if good[at] != tag[0] || good[at+1] != tag[1] {
		t.Fatalf("hash tag not at offset %d: %x, want %x", at, good[at:at+2], tag)
	}
	for i := at; i < at+2; i++ {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		_, err := k.Verify(commit, [][]byte{bad})
		wantVerifyError(t, err, ErrBadSignature)
	}
}

func TestVerifyGPGUnknownKeys(t *testing.T) {
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)[0]
	stranger := freshRSAKey(t)

	t.Run("keyring without the signer", func(t *testing.T) {
		k, err := LoadGPGKeyring(publicExport(t, stranger))
		if err != nil {
			t.Fatal(err)
		}
		res, err := k.Verify(commit, [][]byte{good})
		wantVerifyError(t, err, ErrUnknownKey)
		if !strings.Contains(err.Error(), testKeyID) {
			t.Errorf("error %q does not name key %s", err, testKeyID)
		}
		if got := res.Signatures[0].Fingerprint; got != "" {
			t.Errorf("Fingerprint = %q, want empty for an unknown key", got)
		}
	})

	t.Run("signature by a stranger", func(t *testing.T) {
		var buf bytes.Buffer
		if err := openpgp.DetachSign(&buf, stranger, bytes.NewReader(commit), nil); err != nil {
			t.Fatal(err)
		}
		_, err := testKeyring(t).Verify(commit, [][]byte{buf.Bytes()})
		wantVerifyError(t, err, ErrUnknownKey)
	})

	t.Run("stranger claiming the trusted key id", func(t *testing.T) {
		// The unhashed issuer subpacket wins in go-crypto, so rewriting its
		// last occurrence makes the trusted key the candidate; the RSA
		// check must then fail.
		var buf bytes.Buffer
		if err := openpgp.DetachSign(&buf, stranger, bytes.NewReader(commit), nil); err != nil {
			t.Fatal(err)
		}
		forged := buf.Bytes()
		var strangerID, trustedID [8]byte
		binary.BigEndian.PutUint64(strangerID[:], stranger.PrimaryKey.KeyId)
		id, _ := hex.DecodeString(testKeyID)
		copy(trustedID[:], id)
		at := bytes.LastIndex(forged, strangerID[:])
		if at < 0 {
			t.Fatal("stranger key id not in its signature")
		}
		copy(forged[at:], trustedID[:])
		res, err := testKeyring(t).Verify(commit, [][]byte{forged})
		wantVerifyError(t, err, ErrBadSignature)
		if got := res.Signatures[0].KeyID; got != testKeyID {
			t.Errorf("KeyID = %s, want the forged %s", got, testKeyID)
		}
	})
}

// TestVerifyGPGAnyGood checks ostree's rule: one good signature from a
// trusted key is enough, wherever it is and whatever else is there.
func TestVerifyGPGAnyGood(t *testing.T) {
	k := testKeyring(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)[0]
	var strangerSig bytes.Buffer
	if err := openpgp.DetachSign(&strangerSig, freshRSAKey(t), bytes.NewReader(commit), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		sigs     [][]byte
		wantSigs int
	}{
		{"good first", [][]byte{good, strangerSig.Bytes()}, 2},
		{"good after stranger", [][]byte{strangerSig.Bytes(), good}, 2},
		{"good after garbage", [][]byte{[]byte("junk"), good}, 2},
		{"good after tampered", [][]byte{flip(good, len(good)-1), good}, 2},
		{"concatenated in one element", [][]byte{append(bytes.Clone(strangerSig.Bytes()), good...)}, 2},
		{"tampered then good concatenated", [][]byte{append(flip(good, len(good)-1), good...)}, 2},
		{"same signature twice", [][]byte{good, good}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := k.Verify(commit, tt.sigs)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if len(res.Good) != 1 || res.Good[0] != testFpr {
				t.Errorf("Good = %v, want [%s]", res.Good, testFpr)
			}
			if len(res.Signatures) != tt.wantSigs {
				t.Errorf("got %d signature results, want %d", len(res.Signatures), tt.wantSigs)
			}
		})
	}
}

func TestVerifyGPGBounded(t *testing.T) {
	k := testKeyring(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)[0]
	bad := flip(good, len(good)-1)
	sigs := make([][]byte, 0, maxGPGSignatures+1)
	for range maxGPGSignatures {
		sigs = append(sigs, bad)
	}
	sigs = append(sigs, good)
	res, err := k.Verify(commit, sigs)
	wantVerifyError(t, err, ErrUnsupported)
	if got := len(res.Signatures); got != maxGPGSignatures {
		t.Errorf("examined %d signatures, want %d", got, maxGPGSignatures)
	}
}

func TestVerifyGPGExpiryAndRevocation(t *testing.T) {
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	data := []byte("signed bytes")

	sign := func(t *testing.T, e *openpgp.Entity, at time.Time, sigLifetime time.Duration) []byte {
		t.Helper()
		var buf bytes.Buffer
		err := openpgp.DetachSign(&buf, e, bytes.NewReader(data), &packet.Config{
			Time:            fixedClock(at),
			DefaultHash:     crypto.SHA512,
			SigLifetimeSecs: uint32(sigLifetime / time.Second),
		})
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}

	expiring := newEdDSAKey(t, created, 24*time.Hour)
	forever := newEdDSAKey(t, created, 0)
	revoked := newEdDSAKey(t, created, 0)
	revokedSig := sign(t, revoked, created.Add(time.Minute), 0)
	if err := revoked.RevokeKey(packet.KeySuperseded, "superseded", &packet.Config{Time: fixedClock(created.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		key  *openpgp.Entity
		sig  []byte
		now  time.Time
		want error // nil = good
	}{
		{"within key lifetime", expiring, sign(t, expiring, created.Add(time.Minute), 0), created.Add(time.Hour), nil},
		{"after key expiry", expiring, sign(t, expiring, created.Add(time.Minute), 0), created.Add(48 * time.Hour), ErrKeyExpired},
		{"within signature lifetime", forever, sign(t, forever, created.Add(time.Minute), time.Hour), created.Add(30 * time.Minute), nil},
		{"after signature expiry", forever, sign(t, forever, created.Add(time.Minute), time.Hour), created.Add(2 * time.Hour), ErrSignatureExpired},
		{"revoked key", revoked, revokedSig, created.Add(2 * time.Hour), ErrKeyRevoked},
		{"key created in the future", forever, sign(t, forever, created.Add(time.Minute), 0), created.Add(-time.Hour), ErrKeyExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadGPGKeyring(publicExport(t, tt.key))
			if err != nil {
				t.Fatal(err)
			}
			k.now = fixedClock(tt.now)
			res, err := k.Verify(data, [][]byte{tt.sig})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantVerifyError(t, err, tt.want)
			// The math was right, so the result still names the key.
			if got, want := res.Signatures[0].Fingerprint, fingerprint(tt.key.PrimaryKey); got != want {
				t.Errorf("Fingerprint = %q, want %q", got, want)
			}
		})
	}

	t.Run("clock skew is named", func(t *testing.T) {
		k, err := LoadGPGKeyring(publicExport(t, forever))
		if err != nil {
			t.Fatal(err)
		}
		k.now = fixedClock(created.Add(-time.Hour))
		_, err = k.Verify(data, [][]byte{sign(t, forever, created, 0)})
		if err == nil || !strings.Contains(err.Error(), "clock skew") {
			t.Errorf("error %v, want one that mentions clock skew", err)
		}
	})
}

func TestLoadGPGKeyring(t *testing.T) {
	bin := vector(t, "keys/test-gpg-pubkey.gpg")
	asc := vector(t, "keys/test-gpg-pubkey.asc")
	secret := vector(t, "keys/test-gpg-SECRET-key.asc")
	stranger := publicExport(t, freshRSAKey(t))
	var strangerAsc bytes.Buffer
	w, err := armor.Encode(&strangerAsc, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(stranger); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		data    [][]byte
		wantFps []string
		wantErr error
	}{
		{"binary", [][]byte{bin}, []string{testFpr}, nil},
		{"armored", [][]byte{asc}, []string{testFpr}, nil},
		{"armored with leading text", [][]byte{append([]byte("\n  \r\n"), asc...)}, []string{testFpr}, nil},
		{"secret key export", [][]byte{secret}, []string{testFpr}, nil},
		{"two binary keys in one blob", [][]byte{append(bytes.Clone(bin), stranger...)}, []string{testFpr, fingerprint(freshRSAKey(t).PrimaryKey)}, nil},
		{"two armored blocks in one blob", [][]byte{append(append(bytes.Clone(asc), '\n'), strangerAsc.Bytes()...)}, []string{testFpr, fingerprint(freshRSAKey(t).PrimaryKey)}, nil},
		{"binary and armored blobs", [][]byte{bin, strangerAsc.Bytes()}, []string{testFpr, fingerprint(freshRSAKey(t).PrimaryKey)}, nil},
		{"nothing", nil, nil, ErrNoKeys},
		{"empty blob", [][]byte{{}}, nil, ErrNoKeys},
		{"text without armor", [][]byte{[]byte("hello")}, nil, ErrMalformed},
		{"binary garbage", [][]byte{{0x99, 0x00, 0x01, 0x02}}, nil, ErrMalformed},
		{"truncated binary", [][]byte{bin[:100]}, nil, ErrMalformed},
		{"truncated armor", [][]byte{asc[:200]}, nil, ErrMalformed},
		{"signature block", [][]byte{[]byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n")}, nil, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadGPGKeyring(tt.data...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := k.Fingerprints()
			if strings.Join(got, ",") != strings.Join(tt.wantFps, ",") {
				t.Errorf("Fingerprints = %v, want %v", got, tt.wantFps)
			}
		})
	}
}

func TestGPGSigner(t *testing.T) {
	s := testSigner(t)
	if got := s.Fingerprint(); got != testFpr {
		t.Errorf("Fingerprint = %s, want %s", got, testFpr)
	}
	// go-crypto writes new-format packet headers where gpg wrote old-format
	// ones; the packet bodies must be the same.
	if got, want := packetBodies(t, s.PublicKey()), packetBodies(t, vector(t, "keys/test-gpg-pubkey.gpg")); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("PublicKey packets differ from keys/test-gpg-pubkey.gpg")
	}
	commit := vector(t, objectPath("repo", c1, "commit"))
	sig, err := s.Sign(commit)
	if err != nil {
		t.Fatal(err)
	}

	p, err := packet.Read(bytes.NewReader(sig))
	if err != nil {
		t.Fatal(err)
	}
	ps, ok := p.(*packet.Signature)
	if !ok {
		t.Fatalf("packet is %T, want *packet.Signature", p)
	}
	if ps.Version != 4 || ps.SigType != packet.SigTypeBinary || ps.Hash != crypto.SHA512 || ps.PubKeyAlgo != packet.PubKeyAlgoRSA {
		t.Errorf("signature v%d type %#x hash %v algo %d, want v4 binary SHA-512 RSA", ps.Version, ps.SigType, ps.Hash, ps.PubKeyAlgo)
	}
	if len(ps.Notations) != 0 {
		t.Errorf("signature has %d notations, want none (like gpg)", len(ps.Notations))
	}

	keyrings := map[string][]byte{
		"vector public key": vector(t, "keys/test-gpg-pubkey.gpg"),
		"signer PublicKey":  s.PublicKey(),
	}
	for name, kr := range keyrings {
		t.Run(name, func(t *testing.T) {
			k, err := LoadGPGKeyring(kr)
			if err != nil {
				t.Fatal(err)
			}
			res, err := k.Verify(commit, [][]byte{sig})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if len(res.Good) != 1 || res.Good[0] != testFpr {
				t.Errorf("Good = %v, want [%s]", res.Good, testFpr)
			}
			_, err = k.Verify(flip(commit, 10), [][]byte{sig})
			wantVerifyError(t, err, ErrBadSignature)
		})
	}

	// Appending our signature to the tool-written one, as `ostree
	// gpg-sign` appends, keeps both valid.
	both := append(metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG), sig)
	res, err := testKeyring(t).Verify(commit, both)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Signatures) != 2 || res.Signatures[0].Err != nil || res.Signatures[1].Err != nil {
		t.Errorf("Signatures = %+v, want two good", res.Signatures)
	}
}

func TestGPGSignerEdDSA(t *testing.T) {
	e := newEdDSAKey(t, time.Now().Add(-time.Hour), 0)
	s, err := LoadGPGSigner(secretExport(t, e))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("summary bytes")
	sig, err := s.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadGPGKeyring(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	res, err := k.Verify(data, [][]byte{sig})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Signatures[0].Hash != crypto.SHA512 {
		t.Errorf("Hash = %v, want SHA-512", res.Signatures[0].Hash)
	}
}

func TestLoadGPGSignerErrors(t *testing.T) {
	pass := newEdDSAKey(t, time.Now().Add(-time.Hour), 0)
	if err := pass.EncryptPrivateKeys([]byte("secret"), nil); err != nil {
		t.Fatal(err)
	}
	a := newEdDSAKey(t, time.Now().Add(-time.Hour), 0)
	b := newEdDSAKey(t, time.Now().Add(-time.Hour), 0)
	expired := newEdDSAKey(t, time.Now().Add(-48*time.Hour), time.Hour)

	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil = any error
	}{
		{"public key only", vector(t, "keys/test-gpg-pubkey.asc"), ErrNoKeys},
		{"passphrase-protected", secretExport(t, pass), ErrEncryptedKey},
		{"two secret keys", append(secretExport(t, a), secretExport(t, b)...), nil},
		{"expired key", secretExport(t, expired), ErrNoKeys},
		{"garbage", []byte("garbage"), ErrMalformed},
		{"empty", nil, ErrNoKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadGPGSigner(tt.data)
			if err == nil {
				t.Fatal("LoadGPGSigner succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestGPGConcurrent runs Verify and Sign from many goroutines for -race.
func TestGPGConcurrent(t *testing.T) {
	k := testKeyring(t)
	s := testSigner(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := metaSigs(t, objectPath("repo", c1, "commitmeta"), KeyGPG)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				if _, err := k.Verify(commit, good); err != nil {
					errs <- err
				}
				return
			}
			sig, err := s.Sign(commit)
			if err != nil {
				errs <- err
				return
			}
			if _, err := k.Verify(commit, [][]byte{sig}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// gpgHome makes a throwaway GNUPGHOME; it is short because gpg-agent's
// socket path must fit in sun_path, and t.TempDir paths can be long.
func gpgHome(t *testing.T) (gpg func(stdin []byte, args ...string) (string, error)) {
	t.Helper()
	bin := testutil.RequireTool(t, "gpg")
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conf, err := exec.LookPath("gpgconf"); err == nil {
			c := exec.Command(conf, "--kill", "all")
			c.Env = append(os.Environ(), "GNUPGHOME="+home)
			c.Run()
		}
		os.RemoveAll(home)
	})
	return func(stdin []byte, args ...string) (string, error) {
		c := exec.Command(bin, append([]string{"--batch", "--no-tty", "--status-fd", "1"}, args...)...)
		c.Env = append(os.Environ(), "GNUPGHOME="+home)
		c.Stdin = bytes.NewReader(stdin)
		out, err := c.CombinedOutput()
		return string(out), err
	}
}

// TestGPGCLIAcceptsOurSignatures checks our signatures against the real
// gpg, the verifier ostree uses through gpgme.
func TestGPGCLIAcceptsOurSignatures(t *testing.T) {
	gpg := gpgHome(t)
	dir := t.TempDir()
	commit := vector(t, objectPath("repo", c1, "commit"))
	dataFile := filepath.Join(dir, "c1.commit")
	if err := os.WriteFile(dataFile, commit, 0o644); err != nil {
		t.Fatal(err)
	}

	eddsa, err := LoadGPGSigner(secretExport(t, newEdDSAKey(t, time.Now().Add(-time.Hour), 0)))
	if err != nil {
		t.Fatal(err)
	}
	signers := []struct {
		name string
		s    *GPGSigner
	}{
		{"vector RSA key", testSigner(t)},
		{"EdDSA key with salt notation", eddsa},
	}
	for _, sg := range signers {
		t.Run(sg.name, func(t *testing.T) {
			if out, err := gpg(sg.s.PublicKey(), "--import"); err != nil {
				t.Fatalf("gpg --import: %v\n%s", err, out)
			}
			sig, err := sg.s.Sign(commit)
			if err != nil {
				t.Fatal(err)
			}
			sigFile := filepath.Join(dir, "sig")
			if err := os.WriteFile(sigFile, sig, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := gpg(nil, "--verify", sigFile, dataFile)
			if err != nil {
				t.Fatalf("gpg --verify: %v\n%s", err, out)
			}
			// VALIDSIG <fpr> <date> <ts> <expire> <ver> <reserved> <pkalgo> <hashalgo> <class> <primary fpr>
			if !hasLine(out, "[GNUPG:] GOODSIG ") || !hasLine(out, "[GNUPG:] VALIDSIG "+sg.s.Fingerprint()) {
				t.Fatalf("gpg --verify did not report a good signature:\n%s", out)
			}
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 10 && f[1] == "VALIDSIG" {
					if f[6] != "4" || f[9] != "10" || f[10] != "00" {
						t.Errorf("VALIDSIG version %s hash %s class %s, want 4, 10 (SHA-512), 00", f[6], f[9], f[10])
					}
				}
			}

			if err := os.WriteFile(dataFile+".bad", flip(commit, 0), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err = gpg(nil, "--verify", sigFile, dataFile+".bad")
			if err == nil || !hasLine(out, "[GNUPG:] BADSIG ") {
				t.Errorf("gpg --verify of tampered data: err %v, want BADSIG:\n%s", err, out)
			}
		})
	}
}

// TestVerifyGPGCLISignatures checks signatures fresh from gpg itself,
// including digests and modes ostree does not use by default.
func TestVerifyGPGCLISignatures(t *testing.T) {
	gpg := gpgHome(t)
	if out, err := gpg(vector(t, "keys/test-gpg-SECRET-key.asc"), "--import"); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	dir := t.TempDir()
	data := []byte("line one\nline two\n")
	dataFile := filepath.Join(dir, "data")
	if err := os.WriteFile(dataFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	k := testKeyring(t)
	tests := []struct {
		name string
		args []string
		hash crypto.Hash
	}{
		{"default (SHA-512 by key preference)", nil, crypto.SHA512},
		{"SHA-256", []string{"--digest-algo", "SHA256"}, crypto.SHA256},
		{"text mode", []string{"--textmode"}, crypto.SHA512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sigFile := filepath.Join(dir, "sig")
			os.Remove(sigFile)
			args := append([]string{"--local-user", testFpr, "--detach-sign", "--output", sigFile}, tt.args...)
			if out, err := gpg(nil, append(args, dataFile)...); err != nil {
				t.Fatalf("gpg --detach-sign: %v\n%s", err, out)
			}
			sig, err := os.ReadFile(sigFile)
			if err != nil {
				t.Fatal(err)
			}
			res, err := k.Verify(data, [][]byte{sig})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got := res.Signatures[0].Hash; got != tt.hash {
				t.Errorf("Hash = %v, want %v", got, tt.hash)
			}
			_, err = k.Verify(flip(data, 3), [][]byte{sig})
			wantVerifyError(t, err, ErrBadSignature)
		})
	}
}

// packetBodies splits binary OpenPGP data into packet bodies, dropping the
// headers, whose format (old or new) is a writer's choice.
func packetBodies(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var bodies [][]byte
	for len(data) > 0 {
		n, err := packetExtent(data)
		if err != nil {
			t.Fatal(err)
		}
		hdr := 2
		switch {
		case data[0]&0x40 == 0:
			hdr = 1 + 1<<(data[0]&3)
		case data[1] >= 255:
			hdr = 6
		case data[1] >= 192:
			hdr = 3
		}
		bodies = append(bodies, data[hdr:n])
		data = data[n:]
	}
	return bodies
}
