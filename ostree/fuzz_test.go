package ostree

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/ostree/gvariant"
)

func seedObjects(f *testing.F, typ string) {
	for _, o := range vectorObjects(f) {
		if o.typ == typ {
			data, _ := os.ReadFile(o.path)
			if len(data) < 16<<10 {
				f.Add(data)
			}
		}
	}
}

func FuzzDecodeCommit(f *testing.F) {
	seedObjects(f, "commit")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommit(data)
		if err != nil {
			return
		}
		again, err := c.Encode()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted commit does not re-encode: %v", err)
		}
		DecodeSizes(c.Metadata)
	})
}

func FuzzDecodeDirTree(f *testing.F) {
	seedObjects(f, "dirtree")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDirTree(data)
		if err != nil {
			return
		}
		for _, e := range d.Files {
			if ValidateFileName(e.Name) != nil {
				t.Fatalf("accepted hostile name %q", e.Name)
			}
		}
		if !bytes.Equal(d.Encode(), data) {
			t.Fatal("accepted dirtree does not re-encode")
		}
	})
}

func FuzzDecodeDirMeta(f *testing.F) {
	seedObjects(f, "dirmeta")
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeDirMeta(data)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Encode(), data) {
			t.Fatal("accepted dirmeta does not re-encode")
		}
	})
}

// FuzzDecodeVarDict feeds hostile detached metadata (and summary.sig):
// whatever is accepted is in normal form, so it re-encodes to exactly the
// input, and the signature lists read from it survive that round trip.
func FuzzDecodeVarDict(f *testing.F) {
	seedObjects(f, "commitmeta")
	for _, p := range []string{"ed25519/summary.sig-ed25519-only", "repo/summary.sig",
		"ed25519/" + "c27dc3c08eac29fffc6a2b4fdfe5cda3dd50ef3866b7c14e5eb9a2e999835c4c.commitmeta-with-ed25519"} {
		data, err := os.ReadFile(filepath.Join(vectors(f), p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeVarDict("commitmeta", data)
		if err != nil {
			return
		}
		again, err := gvariant.Encode(TypeVarDict, d)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a{sv} does not re-encode to its input: %v", err)
		}
		d2, err := DecodeVarDict("commitmeta", again)
		if err != nil {
			t.Fatalf("re-encoded a{sv} does not decode: %v", err)
		}
		for _, key := range []string{"ostree.gpgsigs", "ostree.sign.ed25519"} {
			a, b := Signatures(d, key), Signatures(d2, key)
			if len(a) != len(b) {
				t.Fatalf("%s: %d signatures, %d after a round trip", key, len(a), len(b))
			}
			for i := range a {
				if !bytes.Equal(a[i], b[i]) {
					t.Fatalf("%s: signature %d changed in a round trip", key, i)
				}
			}
		}
	})
}

// FuzzContentReader feeds hostile .filez streams; reading must end in an
// error or exactly the declared size, never more.
func FuzzContentReader(f *testing.F) {
	seedObjects(f, "filez")
	f.Fuzz(func(t *testing.T, data []byte) {
		cr, err := NewContentReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		n, err := io.Copy(io.Discard, io.LimitReader(cr, 64<<20))
		if err == nil && uint64(n) != cr.Header.Size {
			t.Fatalf("read %d bytes, header says %d", n, cr.Header.Size)
		}
	})
}

func FuzzDecodeSummary(f *testing.F) {
	for _, p := range []string{"repo/summary", "flatpak-repo/summary"} {
		data, _ := os.ReadFile(filepath.Join(vectors(f), p))
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSummary(data)
		if err != nil {
			return
		}
		again, err := s.Encode()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted summary does not re-encode: %v", err)
		}
		StaticDeltas(s.Metadata)
	})
}

func FuzzParseKeyFile(f *testing.F) {
	for _, p := range []string{"repo/config", "flatpak-repo/config", "flatpak/example.flatpakrepo.in", "flatpak/example.flatpakref.in"} {
		data, _ := os.ReadFile(filepath.Join(vectors(f), p))
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, s string) {
		kf, err := ParseKeyFile(strings.NewReader(s))
		if err != nil {
			return
		}
		again, err := ParseKeyFile(bytes.NewReader(kf.Marshal()))
		if err != nil {
			t.Fatalf("marshalled keyfile does not parse: %v", err)
		}
		if !bytes.Equal(again.Marshal(), kf.Marshal()) {
			t.Fatal("keyfile does not round trip")
		}
	})
}
