package gvariant

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

var fuzzTypes = []string{
	"(a{sv}aya(say)sstayay)", "(a(say)a(sayay))", "(uuua(ayay))", "a{sv}",
	"(a(s(taya{sv}))a{sv})", "(a{s(ayaaya{sv})}a{sv})",
	"(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))",
	"(a(uuu)aa(ayay)ayay)", "(tuuuusa(ayay))", "v", "mv", "a{s(tts)}", "aay",
}

// FuzzDecode checks that decoding never panics and that everything accepted
// is in normal form: re-encoding gives back the input bytes.
func FuzzDecode(f *testing.F) {
	dir := vectors(f)
	for _, repo := range []string{"repo", "flatpak-repo"} {
		filepath.Walk(filepath.Join(dir, repo), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || typeFor(p) == "" || info.Size() > 64<<10 {
				return nil
			}
			data, _ := os.ReadFile(p)
			for i, ts := range fuzzTypes {
				if ts == typeFor(p) {
					f.Add(uint8(i), data)
				}
			}
			return nil
		})
	}
	f.Add(uint8(9), []byte{1, 0, 'y'})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		typ := MustType(fuzzTypes[int(which)%len(fuzzTypes)])
		v, err := Decode(typ, data)
		if err != nil {
			return
		}
		again, err := Encode(typ, v)
		if err != nil {
			t.Fatalf("re-encode of accepted %s input: %v", typ, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted non-normal %s input:\n in  %x\n out %x", typ, data, again)
		}
	})
}

// FuzzParseType checks that type parsing never panics and round-trips.
func FuzzParseType(f *testing.F) {
	for _, s := range fuzzTypes {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, err := ParseType(s)
		if err == nil && typ.String() != s {
			t.Fatalf("ParseType(%q).String() = %q", s, typ.String())
		}
	})
}
