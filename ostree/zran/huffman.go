package zran

import (
	"math/bits"
)

// A table entry is a uint32 that says how to decode the bits it was looked
// up with:
//
//	bits  0..3   code bits to consume at this level
//	bits  4..7   extra bits that follow the code (length or distance), or
//	             the index width of the subtable a link points to
//	bits  8..10  kind (kindBad, kindLit, kindBase, kindEOB, kindLink)
//	bits 16..31  literal byte, length or distance base, or subtable offset
//
// The zero entry is kindBad with no bits: what an unused slot of an
// incomplete (or empty) code decodes to.
const (
	kindBad = iota
	kindLit
	kindBase
	kindEOB
	kindLink
)

const (
	maxCodeLen = 15
	numLit     = 288 // literal/length alphabet of the fixed code
	numDist    = 32  // distance alphabet of the fixed code
	maxLit     = 286 // largest HLIT a dynamic header may declare
	maxDist    = 30  // largest HDIST
	numCL      = 19  // code length alphabet

	litRoot  = 10 // index bits of the first-level literal/length table
	distRoot = 8
	clRoot   = 7 // code length codes are at most 7 bits: one level

	litMask  = 1<<litRoot - 1
	distMask = 1<<distRoot - 1
	clMask   = 1<<clRoot - 1
)

func entry(n, extra, kind, val uint32) uint32 {
	return n | extra<<4 | kind<<8 | val<<16
}

// Per-symbol templates (everything but the code length) for each alphabet.
var (
	litInfo  [numLit]uint32
	distInfo [numDist]uint32
	clInfo   [numCL]uint32

	fixedLit, fixedDist []uint32
)

func init() {
	for i := range 256 {
		litInfo[i] = entry(0, 0, kindLit, uint32(i))
	}
	litInfo[256] = entry(0, 0, kindEOB, 0)
	// Length codes 257..284: four codes per extra-bit count after the
	// first eight; 285 is 258 with no extra bits (RFC 1951 3.2.5).
	base := uint32(3)
	for i := range 28 {
		extra := uint32(0)
		if i >= 8 {
			extra = uint32(i-4) / 4
		}
		litInfo[257+i] = entry(0, extra, kindBase, base)
		base += 1 << extra
	}
	litInfo[285] = entry(0, 0, kindBase, 258)
	// 286 and 287 take part in the fixed code but never occur.
	base = 1
	for i := range 30 {
		extra := uint32(0)
		if i >= 4 {
			extra = uint32(i-2) / 2
		}
		distInfo[i] = entry(0, extra, kindBase, base)
		base += 1 << extra
	}
	for i := range numCL {
		clInfo[i] = entry(0, 0, kindLit, uint32(i))
	}

	var lens [numLit]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	var err string
	if fixedLit, err = build(nil, lens[:], litInfo[:], litRoot); err != "" {
		panic("zran: fixed literal code: " + err)
	}
	for i := range numDist {
		lens[i] = 5
	}
	if fixedDist, err = build(nil, lens[:numDist], distInfo[:], distRoot); err != "" {
		panic("zran: fixed distance code: " + err)
	}
}

// build makes the decoding table of the canonical Huffman code with the
// given code lengths (RFC 1951 3.2.2) in dst, reusing its storage. It
// returns a reason when the lengths do not form a code compress/flate and
// zlib accept: over-subscribed, or incomplete other than the single
// one-bit code zlib allows. An empty code builds a table of bad entries,
// so that using it fails.
func build(dst []uint32, lens []uint8, info []uint32, root uint) ([]uint32, string) {
	var count [maxCodeLen + 1]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	maxLen := maxCodeLen
	for maxLen > 0 && count[maxLen] == 0 {
		maxLen--
	}
	dst = grow(dst[:0], 1<<root)
	if maxLen == 0 {
		return dst, ""
	}
	left := 1
	for l := 1; l <= maxLen; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return nil, "over-subscribed code lengths"
		}
	}
	if left > 0 && !(maxLen == 1 && count[1] == 1) {
		return nil, "incomplete code lengths"
	}

	var next [maxCodeLen + 1]uint32
	code := uint32(0)
	for l := 1; l <= maxCodeLen; l++ {
		code = (code + uint32(count[l-1])) << 1
		next[l] = code
	}
	// Codes are sent most significant bit first, and the bit buffer holds
	// the first bit lowest: index tables by the reversed code.
	var codes [numLit]uint16
	var subLen [1 << litRoot]uint8 // longest code under each first-level slot
	mask := uint32(1)<<root - 1
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		rev := uint32(bits.Reverse16(uint16(next[l]))) >> (16 - l)
		next[l]++
		codes[sym] = uint16(rev)
		if uint(l) > root && l > subLen[rev&mask] {
			subLen[rev&mask] = l
		}
	}
	for p := uint32(0); p <= mask; p++ {
		if subLen[p] == 0 {
			continue
		}
		sub := uint32(subLen[p]) - uint32(root)
		off := len(dst)
		dst = grow(dst, 1<<sub)
		dst[p] = entry(uint32(root), sub, kindLink, uint32(off))
	}
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		rev := uint32(codes[sym])
		if uint(l) <= root {
			e := info[sym] | uint32(l)
			for i := rev; i <= mask; i += 1 << l {
				dst[i] = e
			}
			continue
		}
		link := dst[rev&mask]
		off, sub := link>>16, link>>4&15
		n := uint32(l) - uint32(root)
		e := info[sym] | n
		for i := rev >> root; i < 1<<sub; i += 1 << n {
			dst[off+i] = e
		}
	}
	return dst, ""
}

// grow extends s by n zero entries.
func grow(s []uint32, n int) []uint32 {
	l := len(s)
	if cap(s)-l < n {
		t := make([]uint32, l, 2*cap(s)+n)
		copy(t, s)
		s = t
	}
	s = s[:l+n]
	clear(s[l:])
	return s
}
