package sign

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

const testEd25519Pub = "9ILSnLFSgqLuiUpCa7a7Gra3KVLuouL29InX9L9P04w="

func testEd25519Keys(t *testing.T) []ed25519.PublicKey {
	t.Helper()
	keys, err := ParseEd25519PublicKeys(vector(t, "keys/test-ed25519.pub.b64"))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func testEd25519Secret(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	key, err := ParseEd25519Secret(vector(t, "keys/test-ed25519.secret.b64"))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestParseEd25519PublicKeys(t *testing.T) {
	pub, err := base64.StdEncoding.DecodeString(testEd25519Pub)
	if err != nil {
		t.Fatal(err)
	}
	other := make([]byte, 32)
	other[0] = 1
	otherB64 := base64.StdEncoding.EncodeToString(other)

	tests := []struct {
		name    string
		text    string
		want    [][]byte
		wantErr string // substring; empty = no error
	}{
		{"vector file", string(vector(t, "keys/test-ed25519.pub.b64")), [][]byte{pub}, ""},
		{"no trailing newline", testEd25519Pub, [][]byte{pub}, ""},
		{"comments, blanks and CRLF", "# trusted keys\r\n\r\n  " + testEd25519Pub + "  \r\n#" + otherB64 + "\n", [][]byte{pub}, ""},
		{"two keys", testEd25519Pub + "\n" + otherB64 + "\n", [][]byte{pub, other}, ""},
		{"unpadded base64", strings.TrimRight(testEd25519Pub, "="), [][]byte{pub}, ""},
		{"empty", "", nil, ""},
		{"only comments", "# nothing\n\n", nil, ""},
		{"not base64", testEd25519Pub + "\n!!!\n", nil, "line 2"},
		{"31 bytes", base64.StdEncoding.EncodeToString(pub[:31]), nil, "31 bytes"},
		{"64-byte secret where a public key belongs", string(vector(t, "keys/test-ed25519.secret.b64")), nil, "64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseEd25519PublicKeys([]byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want ErrMalformed mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(keys), len(tt.want))
			}
			for i := range keys {
				if !bytes.Equal(keys[i], tt.want[i]) {
					t.Errorf("key %d = %x, want %x", i, keys[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseEd25519Secret(t *testing.T) {
	seed, err := hex.DecodeString(strings.TrimSpace(string(vector(t, "keys/test-ed25519.seed.hex"))))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := base64.StdEncoding.DecodeString(testEd25519Pub)
	if err != nil {
		t.Fatal(err)
	}
	full, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(vector(t, "keys/test-ed25519.secret.b64"))))
	if err != nil {
		t.Fatal(err)
	}
	mismatched := bytes.Clone(full)
	mismatched[63] ^= 1

	tests := []struct {
		name    string
		text    string
		wantErr bool
	}{
		{"vector secret (seed and public key)", string(vector(t, "keys/test-ed25519.secret.b64")), false},
		{"seed only", base64.StdEncoding.EncodeToString(seed), false},
		{"surrounding whitespace", "\n  " + base64.StdEncoding.EncodeToString(full) + " \n", false},
		{"public half does not match", base64.StdEncoding.EncodeToString(mismatched), true},
		{"31 bytes", base64.StdEncoding.EncodeToString(seed[:31]), true},
		{"not base64", "%%%", true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParseEd25519Secret([]byte(tt.text))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error = %v, want ErrMalformed", err)
				}
				// The error must not leak the key.
				if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(seed)[:8]) {
					t.Errorf("error %q contains key material", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key.Seed(), seed) {
				t.Errorf("seed = %x, want %x", key.Seed(), seed)
			}
			if got := key.Public().(ed25519.PublicKey); !bytes.Equal(got, pub) {
				t.Errorf("public key = %x, want %x", got, pub)
			}
		})
	}
}

// ed25519Vector is one signature container and the bytes it signs.
type ed25519Vector struct {
	name   string
	signed string
	sigs   func(t *testing.T) [][]byte
}

func ed25519Vectors() []ed25519Vector {
	raw := func(rel string) func(t *testing.T) [][]byte {
		return func(t *testing.T) [][]byte { return [][]byte{vector(t, rel)} }
	}
	meta := func(rel string) func(t *testing.T) [][]byte {
		return func(t *testing.T) [][]byte { return metaSigs(t, rel, KeyEd25519) }
	}
	var vs []ed25519Vector
	for _, c := range []string{c1, c2} {
		commit := objectPath("repo", c, "commit")
		vs = append(vs,
			ed25519Vector{c[:8] + " raw", commit, raw("ed25519/" + c + ".commit.ed25519sig")},
			ed25519Vector{c[:8] + " commitmeta-with-ed25519", commit, meta("ed25519/" + c + ".commitmeta-with-ed25519")},
			ed25519Vector{c[:8] + " commitmeta-ed25519-only", commit, meta("ed25519/" + c + ".commitmeta-ed25519-only")},
		)
	}
	return append(vs, ed25519Vector{"summary.sig-ed25519-only", "repo/summary", meta("ed25519/summary.sig-ed25519-only")})
}

func TestVerifyEd25519Vectors(t *testing.T) {
	keys := testEd25519Keys(t)
	for _, v := range ed25519Vectors() {
		t.Run(v.name, func(t *testing.T) {
			sigs := v.sigs(t)
			if len(sigs) != 1 {
				t.Fatalf("got %d signatures, want 1", len(sigs))
			}
			signed := vector(t, v.signed)
			if err := VerifyEd25519(keys, signed, sigs); err != nil {
				t.Fatalf("VerifyEd25519: %v", err)
			}
			err := VerifyEd25519(keys, flip(signed, len(signed)/2), sigs)
			wantVerifyError(t, err, ErrBadSignature)
		})
	}
}

// TestSignEd25519Vectors checks that our signatures are the vector bytes:
// Ed25519 is deterministic, so equal bytes prove the same key, message and
// algorithm.
func TestSignEd25519Vectors(t *testing.T) {
	key := testEd25519Secret(t)
	for _, c := range []string{c1, c2} {
		t.Run(c[:8], func(t *testing.T) {
			got := SignEd25519(key, vector(t, objectPath("repo", c, "commit")))
			want := vector(t, "ed25519/"+c+".commit.ed25519sig")
			if !bytes.Equal(got, want) {
				t.Errorf("signature = %x, want %x", got, want)
			}
			meta := metaSigs(t, "ed25519/"+c+".commitmeta-ed25519-only", KeyEd25519)
			if len(meta) != 1 || !bytes.Equal(got, meta[0]) {
				t.Errorf("commitmeta-ed25519-only holds %x, want %x", meta, got)
			}
		})
	}
	if got, want := hex.EncodeToString(SignEd25519(key, vector(t, objectPath("repo", c1, "commit"))))[:16], "411183298b2a5d89"; got != want {
		t.Errorf("C1 signature starts %s, want %s (README)", got, want)
	}
	got := SignEd25519(key, vector(t, "repo/summary"))
	if want := metaSigs(t, "ed25519/summary.sig-ed25519-only", KeyEd25519); len(want) != 1 || !bytes.Equal(got, want[0]) {
		t.Errorf("summary signature = %x, want %x", got, want)
	}
}

func TestVerifyEd25519Rejects(t *testing.T) {
	keys := testEd25519Keys(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := vector(t, "ed25519/"+c1+".commit.ed25519sig")
	_, stranger, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	strangerPub := stranger.Public().(ed25519.PublicKey)

	tests := []struct {
		name   string
		keys   []ed25519.PublicKey
		signed []byte
		sigs   [][]byte
		want   error
	}{
		{"no signatures", keys, commit, nil, ErrNoSignatures},
		{"no keys", nil, commit, [][]byte{good}, ErrNoKeys},
		{"only malformed keys", []ed25519.PublicKey{keys[0][:31]}, commit, [][]byte{good}, ErrNoKeys},
		{"flipped data", keys, flip(commit, 0), [][]byte{good}, ErrBadSignature},
		{"flipped signature", keys, commit, [][]byte{flip(good, 0)}, ErrBadSignature},
		{"short signature", keys, commit, [][]byte{good[:63]}, ErrMalformed},
		{"long signature", keys, commit, [][]byte{append(bytes.Clone(good), 0)}, ErrMalformed},
		{"signature of the other commit", keys, commit, [][]byte{vector(t, "ed25519/"+c2+".commit.ed25519sig")}, ErrBadSignature},
		{"summary signature over the flatpak summary", keys, vector(t, "flatpak-repo/summary"), metaSigs(t, "ed25519/summary.sig-ed25519-only", KeyEd25519), ErrBadSignature},
		{"fresh key signed", keys, commit, [][]byte{SignEd25519(stranger, commit)}, ErrBadSignature},
		{"fresh key trusted", []ed25519.PublicKey{strangerPub}, commit, [][]byte{good}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantVerifyError(t, VerifyEd25519(tt.keys, tt.signed, tt.sigs), tt.want)
		})
	}
}

func TestVerifyEd25519EveryByteFlipped(t *testing.T) {
	keys := testEd25519Keys(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := vector(t, "ed25519/"+c1+".commit.ed25519sig")
	for i := range good {
		if err := VerifyEd25519(keys, commit, [][]byte{flip(good, i)}); err == nil {
			t.Errorf("byte %d flipped: verified", i)
		}
	}
}

// TestVerifyEd25519AnyGood checks ostree's rule: any signature with any key.
func TestVerifyEd25519AnyGood(t *testing.T) {
	keys := testEd25519Keys(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := vector(t, "ed25519/"+c1+".commit.ed25519sig")
	_, stranger, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	strangerPub := stranger.Public().(ed25519.PublicKey)
	tests := []struct {
		name string
		keys []ed25519.PublicKey
		sigs [][]byte
	}{
		{"good after bad", keys, [][]byte{flip(good, 5), []byte("short"), good}},
		{"second key matches", []ed25519.PublicKey{strangerPub, keys[0]}, [][]byte{good}},
		{"malformed key skipped", []ed25519.PublicKey{keys[0][:5], keys[0]}, [][]byte{good}},
		{"stranger's signature then ours", []ed25519.PublicKey{keys[0]}, [][]byte{SignEd25519(stranger, commit), good}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifyEd25519(tt.keys, commit, tt.sigs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEd25519RoundTrip(t *testing.T) {
	key := testEd25519Secret(t)
	keys := testEd25519Keys(t)
	data := []byte("any bytes at all")
	sig := SignEd25519(key, data)
	if len(sig) != ed25519.SignatureSize {
		t.Fatalf("signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	if err := VerifyEd25519(keys, data, [][]byte{sig}); err != nil {
		t.Fatal(err)
	}
	if again := SignEd25519(key, data); !bytes.Equal(again, sig) {
		t.Errorf("second signature %x differs from first %x", again, sig)
	}
}

func TestVerifyEd25519Bounded(t *testing.T) {
	keys := testEd25519Keys(t)
	commit := vector(t, objectPath("repo", c1, "commit"))
	good := vector(t, "ed25519/"+c1+".commit.ed25519sig")
	sigs := make([][]byte, 0, maxEd25519Signatures+1)
	for range maxEd25519Signatures {
		sigs = append(sigs, flip(good, 0))
	}
	sigs = append(sigs, good)
	wantVerifyError(t, VerifyEd25519(keys, commit, sigs), ErrUnsupported)
}
