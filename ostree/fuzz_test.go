package ostree

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func FuzzDecodeVarDict(f *testing.F) {
	seedObjects(f, "commitmeta")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeVarDict("commitmeta", data)
		if err == nil {
			Signatures(d, "ostree.gpgsigs")
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
