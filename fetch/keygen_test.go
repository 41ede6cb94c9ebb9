package fetch_test

import (
	"bytes"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// generateKey returns a fresh unencrypted secret key, binary.
func generateKey(t *testing.T) []byte {
	t.Helper()
	e, err := openpgp.NewEntity("Other", "", "other@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := e.SerializePrivate(&b, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
