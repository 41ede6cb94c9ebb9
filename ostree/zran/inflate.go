package zran

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	windowSize = 1 << 15 // the farthest a deflate distance reaches
	maxMatch   = 258     // the longest a length/distance pair writes
	// reserve is the room huffman needs to decode one more symbol: a
	// match, and the 8-byte words its copy may write past its end.
	reserve = maxMatch + 8
	outSize = 1 << 17 // output decoded between two flushes
	inSize  = 1 << 15
)

type state uint8

const (
	stateHeader  state = iota // before a block header: where points are
	stateStored               // inside a stored block
	stateHuffman              // inside a fixed or dynamic Huffman block
	stateDone                 // after the final block
)

// inflater is a resumable raw deflate decoder. Output goes to buf, whose
// first bytes are history: buf[:flushed] has been handed on,
// buf[flushed:pos] not yet, and buf[0] is uncompressed offset base. The
// decoder stops between symbols whenever fewer than reserve bytes of buf
// are free (full), so that nothing but the block state needs saving.
type inflater struct {
	r     io.Reader
	rerr  error // sticky error of r, io.EOF included
	in    []byte
	ip    int   // in[ip:ie] is read from r but not yet in the bit buffer
	ie    int   //
	nread int64 // input offset of in[ie]

	// bits holds the unread bits, first bit lowest. The bits above nb are
	// zero, or copies of the next input bytes, which the refill ORs in
	// again at the same place.
	bits uint64
	nb   uint

	buf     []byte
	pos     int
	flushed int
	base    int64

	state     state
	final     bool
	stored    int // bytes left in the current stored block
	lit, dist []uint32
	litDyn    []uint32
	distDyn   []uint32
	clTab     []uint32
	lens      [maxLit + maxDist]uint8
}

func newInflater(r io.Reader, in int64) *inflater {
	return &inflater{
		r:       r,
		in:      make([]byte, inSize),
		nread:   in,
		buf:     make([]byte, windowSize+outSize),
		litDyn:  make([]uint32, 0, 2048),
		distDyn: make([]uint32, 0, 1024),
		clTab:   make([]uint32, 0, 1<<clRoot),
	}
}

// out is the uncompressed offset of the next byte decoded.
func (f *inflater) out() int64 { return f.base + int64(f.pos) }

// offset is the input offset of the byte holding the next unread bit.
func (f *inflater) offset() int64 {
	return f.nread - int64(f.ie-f.ip) - int64((f.nb+7)/8)
}

func (f *inflater) corrupt(reason string) error {
	return &CorruptError{Offset: f.offset(), Reason: reason}
}

// truncated is the error for a stream that needs more bits than r gave.
func (f *inflater) truncated() error {
	if f.rerr != nil && f.rerr != io.EOF {
		return fmt.Errorf("zran: read compressed input: %w", f.rerr)
	}
	return fmt.Errorf("zran: inflate at input byte %d: %w", f.offset(), io.ErrUnexpectedEOF)
}

// fill reads from r until at least 8 bytes are buffered or r fails.
func (f *inflater) fill() {
	if f.ip > 0 {
		f.ie = copy(f.in, f.in[f.ip:f.ie])
		f.ip = 0
	}
	for empty := 0; f.ie < 8 && f.rerr == nil; {
		n, err := f.r.Read(f.in[f.ie:])
		f.ie += n
		f.nread += int64(n)
		f.rerr = err
		if n == 0 && err == nil {
			if empty++; empty >= 100 {
				f.rerr = io.ErrNoProgress
			}
		}
	}
}

// more tops the bit buffer up to at least 56 bits, or to all that is left.
func (f *inflater) more() {
	if f.ie-f.ip < 8 && f.rerr == nil {
		f.fill()
	}
	if f.ie-f.ip >= 8 {
		f.bits |= binary.LittleEndian.Uint64(f.in[f.ip:]) << f.nb
		f.ip += int((63 - f.nb) >> 3)
		f.nb |= 56
		return
	}
	for f.nb <= 56 && f.ip < f.ie {
		f.bits |= uint64(f.in[f.ip]) << f.nb
		f.ip++
		f.nb += 8
	}
}

func (f *inflater) need(n uint) error {
	if f.nb < n {
		f.more()
		if f.nb < n {
			return f.truncated()
		}
	}
	return nil
}

func (f *inflater) take(n uint) uint32 {
	v := uint32(f.bits & (1<<n - 1))
	f.bits >>= n
	f.nb -= n
	return v
}

// atEnd reports whether every input bit is in the bit buffer.
func (f *inflater) atEnd() bool { return f.rerr != nil && f.ip == f.ie }

func (f *inflater) endBlock() {
	if f.final {
		f.state = stateDone
	} else {
		f.state = stateHeader
	}
}

// step decodes until the current block (or header) ends, fewer than
// reserve bytes of buf are free, or the stream fails.
func (f *inflater) step() error {
	switch f.state {
	case stateHeader:
		return f.header()
	case stateStored:
		return f.copyStored()
	case stateHuffman:
		return f.huffman()
	}
	return nil
}

func (f *inflater) header() error {
	if err := f.need(3); err != nil {
		return err
	}
	f.final = f.take(1) == 1
	switch f.take(2) {
	case 0:
		f.take(f.nb % 8)
		if err := f.need(32); err != nil {
			return err
		}
		n, nn := f.take(16), f.take(16)
		if n != ^nn&0xffff {
			return f.corrupt("stored block length does not match its complement")
		}
		f.stored = int(n)
		f.state = stateStored
	case 1:
		f.lit, f.dist = fixedLit, fixedDist
		f.state = stateHuffman
	case 2:
		if err := f.dynamic(); err != nil {
			return err
		}
		f.state = stateHuffman
	default:
		return f.corrupt("reserved block type")
	}
	return nil
}

func (f *inflater) copyStored() error {
	for f.stored > 0 && f.pos < len(f.buf) {
		if f.nb >= 8 {
			f.buf[f.pos] = byte(f.take(8))
			f.pos++
			f.stored--
			continue
		}
		// The bit buffer is empty (nb is a multiple of 8 here), but a
		// refill leaves copies of the bytes after it above nb: drop them
		// before reading those bytes directly.
		f.bits = 0
		if f.ip == f.ie {
			f.fill()
			if f.ip == f.ie {
				return f.truncated()
			}
		}
		n := copy(f.buf[f.pos:min(len(f.buf), f.pos+f.stored)], f.in[f.ip:f.ie])
		f.ip += n
		f.pos += n
		f.stored -= n
	}
	if f.stored == 0 {
		f.endBlock()
	}
	return nil
}

// clOrder is the order in which code length code lengths are sent.
var clOrder = [numCL]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (f *inflater) dynamic() error {
	if err := f.need(14); err != nil {
		return err
	}
	nlit := int(f.take(5)) + 257
	ndist := int(f.take(5)) + 1
	nclen := int(f.take(4)) + 4
	if nlit > maxLit {
		return f.corrupt("too many literal/length codes")
	}
	if ndist > maxDist {
		return f.corrupt("too many distance codes")
	}
	var cl [numCL]uint8
	for _, sym := range clOrder[:nclen] {
		if err := f.need(3); err != nil {
			return err
		}
		cl[sym] = uint8(f.take(3))
	}
	var reason string
	if f.clTab, reason = build(f.clTab, cl[:], clInfo[:], clRoot); reason != "" {
		return f.corrupt("code length code: " + reason)
	}

	lens := f.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if f.nb < 14 {
			f.more()
		}
		e := f.clTab[f.bits&clMask]
		n := uint(e & 15)
		if n == 0 || n > f.nb {
			if f.atEnd() {
				return f.truncated()
			}
			return f.corrupt("invalid code length code")
		}
		f.take(n)
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return f.corrupt("repeated code length with no previous length")
			}
			if err := f.need(2); err != nil {
				return err
			}
			rep, val = 3+int(f.take(2)), lens[i-1]
		case 17:
			if err := f.need(3); err != nil {
				return err
			}
			rep = 3 + int(f.take(3))
		default:
			if err := f.need(7); err != nil {
				return err
			}
			rep = 11 + int(f.take(7))
		}
		if i+rep > len(lens) {
			return f.corrupt("code lengths repeat past the end")
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		return f.corrupt("no end-of-block code")
	}
	if f.litDyn, reason = build(f.litDyn, lens[:nlit], litInfo[:], litRoot); reason != "" {
		return f.corrupt("literal/length code: " + reason)
	}
	if f.distDyn, reason = build(f.distDyn, lens[nlit:], distInfo[:], distRoot); reason != "" {
		return f.corrupt("distance code: " + reason)
	}
	f.lit, f.dist = f.litDyn, f.distDyn
	return nil
}

var errTruncated = errors.New("truncated")

// huffman decodes symbols of the current block until it ends or buf is
// nearly full. It keeps the bit buffer in locals; every exit goes through
// the label that stores them back.
//
// One refill gives at least 48 bits unless the input is at its end, which
// covers the longest symbol: a 15-bit length code with 5 extra bits and a
// 15-bit distance code with 13. So the checks of the bit count below only
// fail at the end of the input.
func (f *inflater) huffman() error {
	bits, nb := f.bits, f.nb
	in, ip, ie := f.in, f.ip, f.ie
	buf, pos := f.buf, f.pos
	lit, dist := f.lit, f.dist
	limit := len(buf) - reserve
	var reason string
	var err error

	for pos <= limit {
		if nb < 48 {
			if ie-ip >= 8 {
				bits |= binary.LittleEndian.Uint64(in[ip:]) << nb
				ip += int((63 - nb) >> 3)
				nb |= 56
			} else {
				f.bits, f.nb, f.ip = bits, nb, ip
				f.more()
				bits, nb, ip, ie = f.bits, f.nb, f.ip, f.ie
			}
		}

		e := lit[bits&litMask]
		if e>>8&7 == kindLink {
			if nb < litRoot {
				err = errTruncated
				goto out
			}
			bits >>= litRoot
			nb -= litRoot
			e = lit[e>>16+uint32(bits)&(1<<(e>>4&15)-1)]
		}
		n := uint(e & 15)
		if n > nb {
			err = errTruncated
			goto out
		}
		bits >>= n
		nb -= n
		// An entry with no bits is an unused slot of a one-code code
		// (one bit long): a bad code, or padding past the input's end.
		switch e >> 8 & 7 {
		case kindLit:
			buf[pos] = byte(e >> 16)
			pos++
			continue
		case kindEOB:
			f.endBlock()
			goto out
		case kindBad:
			if n == 0 && nb == 0 && f.atEnd() {
				err = errTruncated
			} else {
				reason = "invalid literal/length code"
			}
			goto out
		}
		x := uint(e >> 4 & 15)
		if x > nb {
			err = errTruncated
			goto out
		}
		length := int(e>>16) + int(bits&(1<<x-1))
		bits >>= x
		nb -= x

		e = dist[bits&distMask]
		if e>>8&7 == kindLink {
			if nb < distRoot {
				err = errTruncated
				goto out
			}
			bits >>= distRoot
			nb -= distRoot
			e = dist[e>>16+uint32(bits)&(1<<(e>>4&15)-1)]
		}
		n = uint(e & 15)
		if n > nb {
			err = errTruncated
			goto out
		}
		bits >>= n
		nb -= n
		if e>>8&7 != kindBase {
			if n == 0 && nb == 0 && f.atEnd() {
				err = errTruncated
			} else {
				reason = "invalid distance code"
			}
			goto out
		}
		x = uint(e >> 4 & 15)
		if x > nb {
			err = errTruncated
			goto out
		}
		d := int(e>>16) + int(bits&(1<<x-1))
		bits >>= x
		nb -= x
		if d > pos {
			reason = "distance too far back"
			goto out
		}

		src := pos - d
		switch {
		case d >= 8 && length <= 64:
			// Short copies dominate text; eight bytes at a time beats
			// memmove, and is right for overlaps of 8 or more. It may
			// write 7 bytes past the end: the slack below limit.
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(buf[pos+i:], binary.LittleEndian.Uint64(buf[src+i:]))
			}
			pos += length
		case d >= length:
			pos += copy(buf[pos:pos+length], buf[src:src+length])
		default:
			// An overlap repeats the last d bytes: copy what is there,
			// doubling each time.
			for end := pos + length; pos < end; {
				pos += copy(buf[pos:end], buf[src:pos])
			}
		}
	}

out:
	f.bits, f.nb, f.ip, f.pos = bits, nb, ip, pos
	switch {
	case err == errTruncated:
		return f.truncated()
	case reason != "":
		return f.corrupt(reason)
	}
	return nil
}

// full reports whether buf needs a slide before decoding goes on.
func (f *inflater) full() bool { return len(f.buf)-f.pos < reserve }

// slide keeps the last windowSize bytes of output as history and frees
// the rest of buf. Everything before pos must have been flushed.
func (f *inflater) slide() {
	if f.pos > windowSize {
		n := copy(f.buf, f.buf[f.pos-windowSize:f.pos])
		f.base += int64(f.pos - n)
		f.pos, f.flushed = n, n
	}
}
