package gvariant

import "fmt"

// Go representation of GVariant values, used by both Decode and Encode:
//
//	b bool, y uint8, n int16, q uint16, i and h int32, u uint32,
//	x int64, t uint64, d float64, s o g string,
//	ay []byte (the one array that is not []any),
//	other arrays and tuples []any,
//	dict entries DictEntry, variants Variant, maybes Maybe.
//
// Integers are in the encoding's byte order (little-endian). OSTree stores
// some fields big-endian; the ostree package swaps those itself.

// DictEntry is one {KV} element.
type DictEntry struct {
	Key   any
	Value any
}

// Variant is a value of type v: a value together with its own type.
type Variant struct {
	Type  *Type
	Value any
}

// Maybe is a value of an m type. Valid is false for Nothing.
type Maybe struct {
	Valid bool
	Value any
}

// NewVariant wraps a value whose type is given as a type string constant.
func NewVariant(typ string, v any) Variant { return Variant{Type: MustType(typ), Value: v} }

// VarDict is an ordered a{sv} under construction; order is kept because
// OSTree checksums the serialised bytes.
type VarDict []any

// Set appends key with a value of the given type string.
func (d *VarDict) Set(key, typ string, v any) {
	*d = append(*d, DictEntry{Key: key, Value: NewVariant(typ, v)})
}

// Lookup finds key in a decoded a{sv} value. It returns the first match.
func Lookup(dict any, key string) (Variant, bool) {
	entries, ok := dict.([]any)
	if !ok {
		if vd, ok2 := dict.(VarDict); ok2 {
			entries = vd
		} else {
			return Variant{}, false
		}
	}
	for _, e := range entries {
		de, ok := e.(DictEntry)
		if !ok {
			continue
		}
		if k, ok := de.Key.(string); ok && k == key {
			v, ok := de.Value.(Variant)
			return v, ok
		}
	}
	return Variant{}, false
}

// LookupTyped finds key in a decoded a{sv} and checks that its value has
// the given type string.
func LookupTyped(dict any, key, typ string) (any, error) {
	v, ok := Lookup(dict, key)
	if !ok {
		return nil, ErrNotFound
	}
	if v.Type.String() != typ {
		return nil, fmt.Errorf("gvariant: key %q has type %s, want %s", key, v.Type, typ)
	}
	return v.Value, nil
}
