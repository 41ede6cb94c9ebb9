package gvariant

import (
	"errors"
	"fmt"
)

// VarArray is a GVariant array of variable-sized, 1-aligned elements (aay,
// aa(ayay), ...) whose framing was checked as Decode checks it, but whose
// elements were not decoded: Elem slices them out of the data in constant
// time and without allocating. It is for large tables read an entry at a
// time (the mode and xattr tables of a static-delta part).
type VarArray struct {
	data  []byte
	w     int // framing offset width
	n     int // elements
	table int // start of the framing offsets
}

// ParseVarArray checks the framing of b as an array of variable-sized,
// 1-aligned elements in normal form (minimal offset width, offsets in
// order and in range, elements ending at the framing table). The elements
// themselves are the caller's to decode.
func ParseVarArray(b []byte) (VarArray, error) {
	size := len(b)
	if size == 0 {
		return VarArray{data: b}, nil
	}
	w := readWidth(size)
	if size < w {
		return VarArray{}, errors.New("array smaller than its framing offset")
	}
	last := readOffset(b[size-w:], w)
	if last > size-w {
		return VarArray{}, fmt.Errorf("last framing offset %d out of range", last)
	}
	tableSize := size - last
	if tableSize%w != 0 {
		return VarArray{}, fmt.Errorf("framing table size %d not a multiple of %d", tableSize, w)
	}
	a := VarArray{data: b, w: w, n: tableSize / w, table: last}
	if offsetWidth(last, a.n) != w {
		return VarArray{}, errors.New("framing offsets not of minimal width")
	}
	prev := 0
	for i := range a.n {
		o := a.offset(i)
		if o < prev || o > last {
			return VarArray{}, fmt.Errorf("framing offset %d out of order or range", o)
		}
		prev = o
	}
	if prev != last {
		return VarArray{}, errors.New("elements do not end at the framing table")
	}
	return a, nil
}

// Bytes returns the serialised array as parsed.
func (a VarArray) Bytes() []byte { return a.data }

// Len is the number of elements.
func (a VarArray) Len() int { return a.n }

func (a VarArray) offset(i int) int { return readOffset(a.data[a.table+i*a.w:], a.w) }

// Elem returns element i (0 <= i < Len()), a slice of the parsed bytes.
func (a VarArray) Elem(i int) []byte {
	start := 0
	if i > 0 {
		start = a.offset(i - 1)
	}
	end := a.offset(i)
	return a.data[start:end:end]
}
