package gvariant

import (
	"fmt"
	"sync"
)

// MaxDepth bounds the nesting of types and values. GLib allows 128 levels of
// type nesting; nothing OSTree or Flatpak writes comes near 16.
const MaxDepth = 64

// Type is a parsed, definite GVariant type. Types are immutable and safe to
// share between goroutines.
type Type struct {
	kind   byte    // one of "bynqiuxthdsogv" or 'a', 'm', '(', '{'
	elem   *Type   // element type of 'a' and 'm'
	fields []*Type // members of '(' and '{'
	str    string
	align  int // alignment in bytes: 1, 2, 4 or 8
	fixed  int // fixed serialised size, 0 when the size varies
}

// String returns the type string, e.g. "a{sv}".
func (t *Type) String() string { return t.str }

// Kind returns the first character of the type string.
func (t *Type) Kind() byte { return t.kind }

// Elem returns the element type of an array or maybe type, or nil.
func (t *Type) Elem() *Type { return t.elem }

// Fields returns the member types of a tuple or dict entry type.
func (t *Type) Fields() []*Type { return t.fields }

// FixedSize returns the serialised size of a fixed-size type, or 0 when
// values of the type vary in size.
func (t *Type) FixedSize() int { return t.fixed }

// Alignment returns the type's alignment in bytes.
func (t *Type) Alignment() int { return t.align }

var typeCache sync.Map // string -> *Type

// ParseType parses one complete, definite type string.
func ParseType(s string) (*Type, error) {
	if t, ok := typeCache.Load(s); ok {
		return t.(*Type), nil
	}
	t, n, err := parseType(s, 0, 0)
	if err != nil {
		return nil, err
	}
	if n != len(s) {
		return nil, fmt.Errorf("gvariant: type %q: trailing characters after %q", s, s[:n])
	}
	if len(s) <= 64 {
		typeCache.Store(s, t)
	}
	return t, nil
}

// MustType is ParseType for type strings that are constants in the program.
func MustType(s string) *Type {
	t, err := ParseType(s)
	if err != nil {
		panic(err)
	}
	return t
}

func parseType(s string, i, depth int) (*Type, int, error) {
	if depth > MaxDepth {
		return nil, 0, fmt.Errorf("gvariant: type %q nested deeper than %d", s, MaxDepth)
	}
	if i >= len(s) {
		return nil, 0, fmt.Errorf("gvariant: type %q: incomplete", s)
	}
	c := s[i]
	switch c {
	case 'b', 'y':
		return &Type{kind: c, str: s[i : i+1], align: 1, fixed: 1}, i + 1, nil
	case 'n', 'q':
		return &Type{kind: c, str: s[i : i+1], align: 2, fixed: 2}, i + 1, nil
	case 'i', 'u', 'h':
		return &Type{kind: c, str: s[i : i+1], align: 4, fixed: 4}, i + 1, nil
	case 'x', 't', 'd':
		return &Type{kind: c, str: s[i : i+1], align: 8, fixed: 8}, i + 1, nil
	case 's', 'o', 'g':
		return &Type{kind: c, str: s[i : i+1], align: 1}, i + 1, nil
	case 'v':
		return &Type{kind: c, str: "v", align: 8}, i + 1, nil
	case 'a', 'm':
		e, j, err := parseType(s, i+1, depth+1)
		if err != nil {
			return nil, 0, err
		}
		return &Type{kind: c, elem: e, str: s[i:j], align: e.align}, j, nil
	case '(':
		t := &Type{kind: c, align: 1}
		j := i + 1
		for {
			if j >= len(s) {
				return nil, 0, fmt.Errorf("gvariant: type %q: unterminated tuple", s)
			}
			if s[j] == ')' {
				j++
				break
			}
			f, k, err := parseType(s, j, depth+1)
			if err != nil {
				return nil, 0, err
			}
			t.fields = append(t.fields, f)
			j = k
		}
		t.str = s[i:j]
		t.finishTuple()
		return t, j, nil
	case '{':
		k, j, err := parseType(s, i+1, depth+1)
		if err != nil {
			return nil, 0, err
		}
		if k.elem != nil || k.fields != nil || k.kind == 'v' {
			return nil, 0, fmt.Errorf("gvariant: type %q: dict key must be a basic type", s)
		}
		v, j, err := parseType(s, j, depth+1)
		if err != nil {
			return nil, 0, err
		}
		if j >= len(s) || s[j] != '}' {
			return nil, 0, fmt.Errorf("gvariant: type %q: dict entry needs exactly two types", s)
		}
		j++
		t := &Type{kind: c, fields: []*Type{k, v}, str: s[i:j], align: 1}
		t.finishTuple()
		return t, j, nil
	}
	return nil, 0, fmt.Errorf("gvariant: type %q: unknown type character %q", s, c)
}

// finishTuple computes alignment and fixed size of a tuple or dict entry.
func (t *Type) finishTuple() {
	allFixed := true
	off := 0
	for _, f := range t.fields {
		if f.align > t.align {
			t.align = f.align
		}
		if f.fixed == 0 {
			allFixed = false
			continue
		}
		off = alignUp(off, f.align) + f.fixed
	}
	if !allFixed {
		return
	}
	off = alignUp(off, t.align)
	if off == 0 {
		off = 1 // the unit tuple "()" is one zero byte
	}
	t.fixed = off
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }
