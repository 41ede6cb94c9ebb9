package gvariant

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// Encode serialises v as a value of type t in GLib normal form
// (little-endian encoding byte order).
func Encode(t *Type, v any) ([]byte, error) {
	return AppendEncode(nil, t, v)
}

// AppendEncode appends the serialisation of v to buf. buf's length must be a
// multiple of t's alignment (any length works for the top level when buf is
// empty).
func AppendEncode(buf []byte, t *Type, v any) ([]byte, error) {
	e := encoder{buf: buf}
	if err := e.value(t, v, 0); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// MustEncode is Encode for values built by the program itself, where a type
// mismatch is a programming error.
func MustEncode(t *Type, v any) []byte {
	b, err := Encode(t, v)
	if err != nil {
		panic(err)
	}
	return b
}

type encoder struct {
	buf []byte
}

func (e *encoder) pad(start, align int) {
	for (len(e.buf)-start)%align != 0 {
		e.buf = append(e.buf, 0)
	}
}

func mismatch(t *Type, v any) error {
	return fmt.Errorf("gvariant: encode %s: unexpected Go value %T", t, v)
}

// offsetWidth returns the framing offset width a writer uses for a container
// with body size body and n offsets.
func offsetWidth(body, n int) int {
	if n == 0 {
		return 0
	}
	switch {
	case body+n <= 0xff:
		return 1
	case body+2*n <= 0xffff:
		return 2
	case uint64(body)+4*uint64(n) <= 0xffffffff:
		return 4
	}
	return 8
}

func (e *encoder) appendOffsets(offs []int, w int) {
	for _, o := range offs {
		switch w {
		case 1:
			e.buf = append(e.buf, byte(o))
		case 2:
			e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(o))
		case 4:
			e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(o))
		case 8:
			e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(o))
		}
	}
}

func (e *encoder) value(t *Type, v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("gvariant: encode: nested deeper than %d", MaxDepth)
	}
	switch t.kind {
	case 'b':
		b, ok := v.(bool)
		if !ok {
			return mismatch(t, v)
		}
		if b {
			e.buf = append(e.buf, 1)
		} else {
			e.buf = append(e.buf, 0)
		}
	case 'y':
		b, ok := v.(uint8)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = append(e.buf, b)
	case 'n':
		n, ok := v.(int16)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(n))
	case 'q':
		n, ok := v.(uint16)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint16(e.buf, n)
	case 'i', 'h':
		n, ok := v.(int32)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(n))
	case 'u':
		n, ok := v.(uint32)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint32(e.buf, n)
	case 'x':
		n, ok := v.(int64)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(n))
	case 't':
		n, ok := v.(uint64)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint64(e.buf, n)
	case 'd':
		f, ok := v.(float64)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(f))
	case 's', 'o', 'g':
		s, ok := v.(string)
		if !ok {
			return mismatch(t, v)
		}
		if !validString(s) {
			return fmt.Errorf("gvariant: encode %s: string %q is not valid UTF-8 without NUL", t, s)
		}
		e.buf = append(e.buf, s...)
		e.buf = append(e.buf, 0)
	case 'v':
		vv, ok := v.(Variant)
		if !ok || vv.Type == nil {
			return mismatch(t, v)
		}
		if err := e.value(vv.Type, vv.Value, depth+1); err != nil {
			return err
		}
		e.buf = append(e.buf, 0)
		e.buf = append(e.buf, vv.Type.str...)
	case 'm':
		m, ok := v.(Maybe)
		if !ok {
			return mismatch(t, v)
		}
		if !m.Valid {
			return nil
		}
		if err := e.value(t.elem, m.Value, depth+1); err != nil {
			return err
		}
		if t.elem.fixed == 0 {
			e.buf = append(e.buf, 0)
		}
	case 'a':
		return e.array(t, v, depth)
	case '(', '{':
		return e.tuple(t, v, depth)
	default:
		return fmt.Errorf("gvariant: encode: unsupported type %s", t)
	}
	return nil
}

func (e *encoder) array(t *Type, v any, depth int) error {
	if t.elem.kind == 'y' {
		b, ok := v.([]byte)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = append(e.buf, b...)
		return nil
	}
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case VarDict:
		items = x
	default:
		return mismatch(t, v)
	}
	start := len(e.buf)
	if t.elem.fixed != 0 {
		for _, it := range items {
			if err := e.value(t.elem, it, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if len(items) == 0 {
		return nil
	}
	ends := make([]int, len(items))
	for i, it := range items {
		e.pad(start, t.elem.align)
		if err := e.value(t.elem, it, depth+1); err != nil {
			return err
		}
		ends[i] = len(e.buf) - start
	}
	e.appendOffsets(ends, offsetWidth(len(e.buf)-start, len(ends)))
	return nil
}

func (e *encoder) tuple(t *Type, v any, depth int) error {
	var items []any
	if t.kind == '{' {
		de, ok := v.(DictEntry)
		if !ok {
			return mismatch(t, v)
		}
		items = []any{de.Key, de.Value}
	} else {
		x, ok := v.([]any)
		if !ok {
			return mismatch(t, v)
		}
		items = x
	}
	if len(items) != len(t.fields) {
		return fmt.Errorf("gvariant: encode %s: %d members, want %d", t, len(items), len(t.fields))
	}
	start := len(e.buf)
	var ends []int
	for i, f := range t.fields {
		e.pad(start, f.align)
		if err := e.value(f, items[i], depth+1); err != nil {
			return err
		}
		if f.fixed == 0 && i != len(t.fields)-1 {
			ends = append(ends, len(e.buf)-start)
		}
	}
	if t.fixed != 0 {
		if len(e.buf) == start { // unit tuple
			e.buf = append(e.buf, 0)
		}
		e.pad(start, t.align)
		return nil
	}
	// Offsets are stored in reverse order.
	for i, j := 0, len(ends)-1; i < j; i, j = i+1, j-1 {
		ends[i], ends[j] = ends[j], ends[i]
	}
	e.appendOffsets(ends, offsetWidth(len(e.buf)-start, len(ends)))
	return nil
}

func validString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return false
		}
	}
	return utf8.ValidString(s)
}
