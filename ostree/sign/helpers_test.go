package sign

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/lazytree/lazytree/internal/vectors"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// Facts about the vectors, from testvectors/README.md and commits.txt.
const (
	c1        = "c27dc3c08eac29fffc6a2b4fdfe5cda3dd50ef3866b7c14e5eb9a2e999835c4c"
	c2        = "9dc65a5c5a498a371f3c63892fdc7c02eec8e9cd7ee426f2cf9c605b554417ab"
	testKeyID = "D56FA59BFCDC770D"
	testFpr   = "DA3B3510087EBC99130DAA96D56FA59BFCDC770D"
)

// vectorDir is the test-vector directory (internal/vectors).
func vectorDir(t testing.TB) string { return vectors.Dir(t) }

// vector reads a file under the vector directory.
func vector(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// objectPath is where an archive repo keeps an object.
func objectPath(repo, checksum, ext string) string {
	return filepath.Join(repo, "objects", checksum[:2], checksum[2:]+"."+ext)
}

// metaSigs extracts the aay stored under key in an a{sv} file
// (.commitmeta, summary.sig). A missing key gives nil.
func metaSigs(t testing.TB, rel, key string) [][]byte {
	t.Helper()
	v, err := gvariant.Decode(gvariant.MustType("a{sv}"), vector(t, rel))
	if err != nil {
		t.Fatalf("decode %s: %v", rel, err)
	}
	entries, ok := v.([]any)
	if !ok {
		t.Fatalf("decode %s: got %T, want []any", rel, v)
	}
	for _, e := range entries {
		de, ok := e.(gvariant.DictEntry)
		if !ok {
			t.Fatalf("decode %s: entry is %T, want DictEntry", rel, e)
		}
		if de.Key != key {
			continue
		}
		vv, ok := de.Value.(gvariant.Variant)
		if !ok {
			t.Fatalf("decode %s: %s value is %T, want Variant", rel, key, de.Value)
		}
		if got := vv.Type.String(); got != "aay" {
			t.Fatalf("decode %s: %s has type %s, want aay", rel, key, got)
		}
		elems, ok := vv.Value.([]any)
		if !ok {
			t.Fatalf("decode %s: %s holds %T, want []any", rel, key, vv.Value)
		}
		sigs := make([][]byte, 0, len(elems))
		for _, el := range elems {
			b, ok := el.([]byte)
			if !ok {
				t.Fatalf("decode %s: %s element is %T, want []byte", rel, key, el)
			}
			sigs = append(sigs, b)
		}
		return sigs
	}
	return nil
}

// testKeyring loads the vectors' trusted public key (binary form).
func testKeyring(t testing.TB) *GPGKeyring {
	t.Helper()
	k, err := LoadGPGKeyring(vector(t, "keys/test-gpg-pubkey.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testSigner loads the vectors' secret key.
func testSigner(t testing.TB) *GPGSigner {
	t.Helper()
	s, err := LoadGPGSigner(vector(t, "keys/test-gpg-SECRET-key.asc"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flip returns a copy of b with byte i inverted.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}

var (
	freshRSAOnce sync.Once
	freshRSA     *openpgp.Entity
	freshRSAErr  error
)

// freshRSAKey is an RSA-2048 key made once per test binary: a stranger
// with the same algorithm as the trusted key.
func freshRSAKey(t testing.TB) *openpgp.Entity {
	t.Helper()
	freshRSAOnce.Do(func() {
		freshRSA, freshRSAErr = openpgp.NewEntity("Stranger", "", "stranger@example.invalid",
			&packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048, DefaultHash: crypto.SHA512})
	})
	if freshRSAErr != nil {
		t.Fatal(freshRSAErr)
	}
	return freshRSA
}

// newEdDSAKey makes a fast v4 EdDSA key created at created, expiring after
// lifetime (0 = never).
func newEdDSAKey(t testing.TB, created time.Time, lifetime time.Duration) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity("Test EdDSA", "", "eddsa@example.invalid", &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Time:            func() time.Time { return created },
		KeyLifetimeSecs: uint32(lifetime / time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// publicExport is what `gpg --export` would give for e.
func publicExport(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// secretExport is what `gpg --export-secret-keys` would give for e.
func secretExport(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wantVerifyError checks that err is a *VerifyError that also matches want.
func wantVerifyError(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", want)
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("got %T (%v), want *VerifyError", err, err)
	}
	if !errors.Is(err, ErrNoValidSignature) {
		t.Errorf("errors.Is(%v, ErrNoValidSignature) = false, want true", err)
	}
	if !errors.Is(err, want) {
		t.Errorf("errors.Is(%v, %v) = false, want true", err, want)
	}
}

// fixedClock returns a clock stuck at tm.
func fixedClock(tm time.Time) func() time.Time {
	return func() time.Time { return tm }
}

// hasLine reports whether gpg's status output has a line starting with prefix.
func hasLine(out, prefix string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
