package gvariant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// ErrNotNormal is matched by every decoding error: the bytes are not a
// value of the type in GLib normal form.
var ErrNotNormal = errors.New("gvariant: not in normal form")

// ErrNotFound is returned by LookupTyped when the key is absent.
var ErrNotFound = errors.New("gvariant: key not found")

// DecodeError says where in the input decoding failed.
type DecodeError struct {
	Type   string
	Offset int
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("gvariant: decode %s at byte %d: %s", e.Type, e.Offset, e.Reason)
}

// Is makes every DecodeError match ErrNotNormal.
func (e *DecodeError) Is(target error) bool { return target == ErrNotNormal }

// Decode parses data as a value of type t. It accepts only GLib normal form
// (zero padding, minimal framing offsets, valid UTF-8 strings, booleans 0 or
// 1, definite variant types, no trailing bytes), so Encode of the result
// gives back exactly data. Nesting is limited to MaxDepth; allocations are
// proportional to len(data).
func Decode(t *Type, data []byte) (any, error) {
	d := decoder{data: data}
	return d.value(t, 0, len(data), 0)
}

type decoder struct {
	data []byte
}

func (d *decoder) fail(t *Type, off int, format string, args ...any) error {
	return &DecodeError{Type: t.str, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// zeros checks that data[from:to] is all zero padding.
func (d *decoder) zeros(t *Type, from, to int) error {
	for i := from; i < to; i++ {
		if d.data[i] != 0 {
			return d.fail(t, i, "non-zero padding byte")
		}
	}
	return nil
}

func readOffset(b []byte, w int) int {
	switch w {
	case 1:
		return int(b[0])
	case 2:
		return int(binary.LittleEndian.Uint16(b))
	case 4:
		return int(binary.LittleEndian.Uint32(b))
	}
	v := binary.LittleEndian.Uint64(b)
	if v > math.MaxInt32 {
		return math.MaxInt32 // out of range for any input we accept
	}
	return int(v)
}

// readWidth is the framing offset width for a container of the given size.
func readWidth(size int) int {
	switch {
	case size == 0:
		return 0
	case size <= 0xff:
		return 1
	case size <= 0xffff:
		return 2
	case uint64(size) <= 0xffffffff:
		return 4
	}
	return 8
}

// value decodes data[start:end] as t. Alignment is relative to the start of
// the input, which is valid because every container starts at a multiple of
// its own alignment.
func (d *decoder) value(t *Type, start, end, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, d.fail(t, start, "nested deeper than %d", MaxDepth)
	}
	size := end - start
	if t.fixed != 0 && size != t.fixed {
		return nil, d.fail(t, start, "size %d, want %d", size, t.fixed)
	}
	b := d.data[start:end]
	switch t.kind {
	case 'b':
		if b[0] > 1 {
			return nil, d.fail(t, start, "boolean byte %d", b[0])
		}
		return b[0] == 1, nil
	case 'y':
		return b[0], nil
	case 'n':
		return int16(binary.LittleEndian.Uint16(b)), nil
	case 'q':
		return binary.LittleEndian.Uint16(b), nil
	case 'i', 'h':
		return int32(binary.LittleEndian.Uint32(b)), nil
	case 'u':
		return binary.LittleEndian.Uint32(b), nil
	case 'x':
		return int64(binary.LittleEndian.Uint64(b)), nil
	case 't':
		return binary.LittleEndian.Uint64(b), nil
	case 'd':
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	case 's', 'o', 'g':
		if size == 0 || b[size-1] != 0 {
			return nil, d.fail(t, start, "string without terminating NUL")
		}
		s := b[:size-1]
		for i, c := range s {
			if c == 0 {
				return nil, d.fail(t, start+i, "NUL inside string")
			}
		}
		if !utf8.Valid(s) {
			return nil, d.fail(t, start, "string is not valid UTF-8")
		}
		return string(s), nil
	case 'v':
		return d.variant(t, start, end, depth)
	case 'm':
		if size == 0 {
			return Maybe{}, nil
		}
		if t.elem.fixed != 0 {
			v, err := d.value(t.elem, start, end, depth+1)
			return Maybe{Valid: true, Value: v}, err
		}
		if b[size-1] != 0 {
			return nil, d.fail(t, end-1, "maybe without trailing zero byte")
		}
		v, err := d.value(t.elem, start, end-1, depth+1)
		return Maybe{Valid: true, Value: v}, err
	case 'a':
		return d.array(t, start, end, depth)
	case '(', '{':
		return d.tuple(t, start, end, depth)
	}
	return nil, d.fail(t, start, "unsupported type")
}

func (d *decoder) variant(t *Type, start, end, depth int) (any, error) {
	sep := -1
	for i := end - 1; i >= start; i-- {
		if d.data[i] == 0 {
			sep = i
			break
		}
	}
	if sep < 0 {
		return nil, d.fail(t, start, "variant without type string")
	}
	ts := string(d.data[sep+1 : end])
	ct, err := ParseType(ts)
	if err != nil {
		return nil, d.fail(t, sep+1, "variant type: %v", err)
	}
	if depth+typeDepth(ct) > MaxDepth {
		return nil, d.fail(t, start, "nested deeper than %d", MaxDepth)
	}
	v, err := d.value(ct, start, sep, depth+1)
	if err != nil {
		return nil, err
	}
	return Variant{Type: ct, Value: v}, nil
}

func typeDepth(t *Type) int {
	n := 0
	if t.elem != nil {
		n = typeDepth(t.elem)
	}
	for _, f := range t.fields {
		if m := typeDepth(f); m > n {
			n = m
		}
	}
	return n + 1
}

func (d *decoder) array(t *Type, start, end, depth int) (any, error) {
	size := end - start
	el := t.elem
	if el.kind == 'y' {
		return d.data[start:end:end], nil
	}
	if el.fixed != 0 {
		if size%el.fixed != 0 {
			return nil, d.fail(t, start, "size %d is not a multiple of element size %d", size, el.fixed)
		}
		n := size / el.fixed
		items := make([]any, n)
		for i := range items {
			v, err := d.value(el, start+i*el.fixed, start+(i+1)*el.fixed, depth+1)
			if err != nil {
				return nil, err
			}
			items[i] = v
		}
		return items, nil
	}
	if size == 0 {
		return []any{}, nil
	}
	w := readWidth(size)
	if size < w {
		return nil, d.fail(t, start, "array smaller than its framing offset")
	}
	last := readOffset(d.data[end-w:end], w)
	if last > size-w {
		return nil, d.fail(t, end-w, "last framing offset %d out of range", last)
	}
	tableSize := size - last
	if tableSize%w != 0 || tableSize == 0 {
		return nil, d.fail(t, start+last, "framing table size %d not a multiple of %d", tableSize, w)
	}
	n := tableSize / w
	if w*n != tableSize || offsetWidth(last, n) != w {
		return nil, d.fail(t, start, "framing offsets not of minimal width")
	}
	table := start + last
	items := make([]any, n)
	prev := 0
	for i := 0; i < n; i++ {
		o := readOffset(d.data[table+i*w:], w)
		s := alignUp(prev, el.align)
		if o < s || o > last {
			return nil, d.fail(t, table+i*w, "framing offset %d out of order or range", o)
		}
		if err := d.zeros(t, start+prev, start+s); err != nil {
			return nil, err
		}
		v, err := d.value(el, start+s, start+o, depth+1)
		if err != nil {
			return nil, err
		}
		items[i] = v
		prev = o
	}
	if prev != last {
		return nil, d.fail(t, table, "elements do not end at the framing table")
	}
	return items, nil
}

func (d *decoder) tuple(t *Type, start, end, depth int) (any, error) {
	size := end - start
	nOff := 0
	for i, f := range t.fields {
		if f.fixed == 0 && i != len(t.fields)-1 {
			nOff++
		}
	}
	w := readWidth(size)
	if t.fixed != 0 {
		w = 0
		nOff = 0
	}
	limit := size - nOff*w
	if limit < 0 {
		return nil, d.fail(t, start, "too small for its framing offsets")
	}
	if nOff > 0 && offsetWidth(limit, nOff) != w {
		return nil, d.fail(t, start, "framing offsets not of minimal width")
	}
	items := make([]any, len(t.fields))
	pos := 0
	offIdx := 0
	for i, f := range t.fields {
		s := alignUp(pos, f.align)
		if s > limit {
			return nil, d.fail(t, start+pos, "member %d starts past the end", i)
		}
		if err := d.zeros(t, start+pos, start+s); err != nil {
			return nil, err
		}
		var e int
		switch {
		case f.fixed != 0:
			e = s + f.fixed
		case i == len(t.fields)-1:
			e = limit
		default:
			offIdx++
			e = readOffset(d.data[end-offIdx*w:], w)
		}
		if e < s || e > limit {
			return nil, d.fail(t, start+s, "member %d ends at %d, outside %d..%d", i, e, s, limit)
		}
		v, err := d.value(f, start+s, start+e, depth+1)
		if err != nil {
			return nil, err
		}
		items[i] = v
		pos = e
	}
	if t.fixed != 0 {
		if len(t.fields) == 0 {
			if d.data[start] != 0 {
				return nil, d.fail(t, start, "unit tuple byte is not zero")
			}
			pos = 1
		}
		if err := d.zeros(t, start+pos, end); err != nil {
			return nil, err
		}
		pos = size
	}
	if pos != limit {
		return nil, d.fail(t, start+pos, "%d unexpected bytes after the last member", limit-pos)
	}
	if t.kind == '{' {
		return DictEntry{Key: items[0], Value: items[1]}, nil
	}
	return items, nil
}
