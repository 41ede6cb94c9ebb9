package gvariant

import (
	"bytes"
	"testing"
)

// FuzzParseVarArray: ParseVarArray accepts exactly what Decode accepts as
// aay, and gives the same elements.
func FuzzParseVarArray(f *testing.F) {
	for _, v := range [][]any{{}, {[]byte{}}, {[]byte("a"), []byte("bc")}, {bytes.Repeat([]byte("x"), 300), []byte("y")}} {
		b, err := Encode(MustType("aay"), v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, aerr := ParseVarArray(b)
		v, derr := Decode(MustType("aay"), b)
		if (aerr == nil) != (derr == nil) {
			t.Fatalf("ParseVarArray err %v, Decode err %v", aerr, derr)
		}
		if derr != nil {
			return
		}
		elems := v.([]any)
		if a.Len() != len(elems) {
			t.Fatalf("%d elements, Decode has %d", a.Len(), len(elems))
		}
		for i, e := range elems {
			if !bytes.Equal(a.Elem(i), e.([]byte)) {
				t.Fatalf("element %d: %x, Decode has %x", i, a.Elem(i), e)
			}
		}
		if !bytes.Equal(a.Bytes(), b) {
			t.Fatal("Bytes is not the input")
		}
	})
}
