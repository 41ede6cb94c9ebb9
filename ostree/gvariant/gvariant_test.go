package gvariant

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	testvectors "github.com/lazytree/lazytree/internal/vectors"
)

// vectors is the test-vector directory (internal/vectors).
func vectors(t testing.TB) string { return testvectors.Dir(t) }

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWorkedExamples(t *testing.T) {
	sum := make([]byte, 32)
	for i := range sum {
		sum[i] = byte(i)
	}
	tests := []struct {
		name string
		typ  string
		v    any
		want string
	}{
		{"empty dirtree", "(a(say)a(sayay))", []any{[]any{}, []any{}}, "00"},
		{"dirmeta", "(uuua(ayay))", []any{uint32(0), uint32(0), uint32(0xed410000), []any{}}, "00000000 00000000 000041ed"},
		{"string in variant", "v", NewVariant("s", "2.0"), "322e3000 0073"},
		{"unit", "()", []any{}, "00"},
		{"dirtree file entry", "a(say)", []any{[]any{"README", sum}},
			"524541444d4500" + hex.EncodeToString(sum) + "07" + "28"},
		{"maybe nothing", "ms", Maybe{}, ""},
		{"maybe string", "ms", Maybe{Valid: true, Value: "a"}, "610000"},
		{"maybe fixed", "mu", Maybe{Valid: true, Value: uint32(1)}, "01000000"},
		{"fixed tuple padding", "(ty)", []any{uint64(1), uint8(2)}, "0100000000000000 02 00000000000000"},
		{"dict", "a{sv}", []any{DictEntry{"k", NewVariant("b", true)}}, "6b00 000000000000 01 00 62 02 0c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := MustType(tt.typ)
			got, err := Encode(typ, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			want := mustHex(t, tt.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("Encode = %x, want %x", got, want)
			}
			back, err := Decode(typ, got)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			again, err := Encode(typ, back)
			if err != nil || !bytes.Equal(again, want) {
				t.Fatalf("re-encode = %x, %v", again, err)
			}
		})
	}
}

func TestParseType(t *testing.T) {
	good := []string{"a{sv}", "(a{sv}aya(say)sstayay)", "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))", "()", "mmv", "a{s(tts)}", "(a{s(ayaaya{sv})}a{sv})"}
	for _, s := range good {
		typ, err := ParseType(s)
		if err != nil || typ.String() != s {
			t.Errorf("ParseType(%q) = %v, %v", s, typ, err)
		}
	}
	bad := []string{"", "a", "(", "{sv", "{vs}", "{s}", "{svv}", "z", "ss", "a{sv}x", strings.Repeat("a", 200) + "y"}
	for _, s := range bad {
		if _, err := ParseType(s); err == nil {
			t.Errorf("ParseType(%q) succeeded", s)
		}
	}
}

func TestFixedSizes(t *testing.T) {
	for s, want := range map[string]int{"(uuu)": 12, "(ty)": 16, "(yt)": 16, "()": 1, "(y())": 2, "{yu}": 8, "(s)": 0, "ay": 0} {
		if got := MustType(s).FixedSize(); got != want {
			t.Errorf("FixedSize(%s) = %d, want %d", s, got, want)
		}
	}
}

func TestRejectsNonNormal(t *testing.T) {
	tests := []struct {
		typ, hex, why string
	}{
		{"s", "61", "no NUL"},
		{"s", "610062 00", "NUL inside"},
		{"s", "ff00", "bad UTF-8"},
		{"b", "02", "boolean 2"},
		{"(ty)", "0100000000000000 02 01000000000000", "non-zero padding"},
		{"u", "010000", "short fixed"},
		{"as", "6100 05", "offset out of range"},
		{"as", "6100 6200 04 02", "offsets decreasing"},
		{"a(us)", "01000000 6100 ff00 02000000 6200 06 0e", "non-zero padding between elements"},
		{"(ss)", "6100 6200 05", "offset past end"},
		{"v", "01000000", "variant without type"},
		{"v", "01 00 7a", "bad variant type"},
		{"v", "01 00 75", "fixed child of wrong size"},
		{"v", "61 00 7373", "two types in variant"},
		{"(a(say)a(sayay))", "", "empty tuple bytes"},
		{"ms", "6101", "maybe trailer not zero"},
		{"()", "01", "unit not zero"},
		{"as", "00 0100", "2-byte offsets where 1 suffices"},
	}
	for _, tt := range tests {
		_, err := Decode(MustType(tt.typ), mustHex(t, tt.hex))
		if err == nil {
			t.Errorf("%s: Decode(%s, %s) succeeded", tt.why, tt.typ, tt.hex)
			continue
		}
		if !errors.Is(err, ErrNotNormal) {
			t.Errorf("%s: error %v does not match ErrNotNormal", tt.why, err)
		}
	}
}

func TestDeepNestingBounded(t *testing.T) {
	// A variant containing a variant ... each level adds 2 bytes.
	b := []byte{0x01, 0x00, 'y'}
	for i := 0; i < 200; i++ {
		b = append(append(b, 0), 'v')
	}
	if _, err := Decode(MustType("v"), b); err == nil {
		t.Fatal("decoded a variant nested 200 deep")
	}
}

func TestOffsetWidths(t *testing.T) {
	// Arrays big enough for 2- and 4-byte framing offsets round trip.
	for _, n := range []int{10, 300, 70000} {
		items := make([]any, n)
		for i := range items {
			items[i] = strings.Repeat("x", i%3)
		}
		typ := MustType("as")
		b, err := Encode(typ, items)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(typ, b)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(back.([]any)) != n {
			t.Fatalf("n=%d: got %d items", n, len(back.([]any)))
		}
	}
}

// objectTypes maps testvector file name suffixes to their GVariant types.
var objectTypes = map[string]string{
	".commit":     "(a{sv}aya(say)sstayay)",
	".dirtree":    "(a(say)a(sayay))",
	".dirmeta":    "(uuua(ayay))",
	".commitmeta": "a{sv}",
	"summary":     "(a(s(taya{sv}))a{sv})",
	"summary.sig": "a{sv}",
	".idx.sig":    "a{sv}",
	"summary.idx": "(a{s(ayaaya{sv})}a{sv})",
	"superblock":  "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))",
	".index":      "a{sv}",
}

func typeFor(path string) string {
	base := filepath.Base(path)
	if typ, ok := objectTypes[base]; ok {
		return typ
	}
	for suf, typ := range objectTypes {
		if strings.HasPrefix(suf, ".") && strings.HasSuffix(base, suf) {
			return typ
		}
	}
	return ""
}

// TestVectorsRoundTrip decodes every GVariant file the real ostree and
// flatpak wrote and re-encodes it to identical bytes.
func TestVectorsRoundTrip(t *testing.T) {
	dir := vectors(t)
	n := 0
	for _, repo := range []string{"repo", "flatpak-repo"} {
		err := filepath.Walk(filepath.Join(dir, repo), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			typ := typeFor(p)
			if typ == "" {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			ty := MustType(typ)
			v, err := Decode(ty, data)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				return nil
			}
			again, err := Encode(ty, v)
			if err != nil {
				t.Errorf("%s: re-encode: %v", p, err)
				return nil
			}
			if !bytes.Equal(again, data) {
				t.Errorf("%s: re-encoded bytes differ", p)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 40 {
		t.Fatalf("only %d GVariant files checked", n)
	}
	t.Logf("%d GVariant files round-tripped", n)
}
