package zran

import (
	"errors"
	"fmt"
	"io"
)

var (
	// ErrCorrupt matches every *CorruptError.
	ErrCorrupt = errors.New("zran: corrupt deflate stream")
	// ErrTooLarge is returned by Scan when the stream inflates past
	// Options.Limit.
	ErrTooLarge = errors.New("zran: inflated size over the limit")
	// ErrInvalidPoint is returned by NewReader for a Point Scan cannot
	// have made.
	ErrInvalidPoint = errors.New("zran: invalid point")
)

// CorruptError reports a stream that is not valid deflate. Truncation is
// not corruption: it is io.ErrUnexpectedEOF (wrapped).
type CorruptError struct {
	Offset int64 // input offset of the byte where decoding failed
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("zran: inflate at input byte %d: %s", e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// DefaultSpan is the distance between points when Options.Span is zero.
const DefaultSpan = 1 << 20

// MaxWindow is the most history a Point carries: the farthest a deflate
// distance reaches back.
const MaxWindow = windowSize

// Point is a place in a deflate stream where inflation can start: the
// start of a block, with the history it may refer to.
type Point struct {
	Out int64 // uncompressed offset of the first byte the block produces
	In  int64 // offset of the first compressed byte to read
	// Bits is how many bits (0..7) of the byte at In-1 still belong to
	// the stream here: its top Bits bits, which Prev holds (its other
	// bits are zero).
	Bits uint8
	Prev byte
	// Window is the uncompressed data just before Out: min(Out,
	// MaxWindow) bytes.
	Window []byte
}

// Options tunes Scan. The zero value places a point every DefaultSpan
// bytes, has no limit and discards the output.
type Options struct {
	// Span is the least uncompressed distance between two points; points
	// fall only at block starts, so the gaps are usually somewhat larger.
	Span int64
	// Limit, when positive, is the most Scan inflates: past it, Scan
	// fails with ErrTooLarge, having written at most Limit bytes.
	Limit int64
	// Output, if set, receives the uncompressed stream, so that a caller
	// can hash it in the same pass.
	Output io.Writer
}

// Scan inflates the raw deflate stream r to its end and returns its
// uncompressed size. It calls fn (if not nil) with a point at the start
// and then at the first block start at least opts.Span bytes past the
// previous point; when fn is called, exactly p.Out bytes have been
// written to opts.Output. An error from fn stops Scan and is returned
// as is. Bytes of r past the end of the stream may have been read.
func Scan(r io.Reader, opts Options, fn func(Point) error) (int64, error) {
	span := opts.Span
	if span <= 0 {
		span = DefaultSpan
	}
	f := newInflater(r, 0)
	next := int64(0)
	for {
		if f.state == stateHeader && fn != nil && f.out() >= next {
			if err := flush(f, opts.Output); err != nil {
				return f.out(), err
			}
			if err := fn(f.point()); err != nil {
				return f.out(), err
			}
			next = f.out() + span
		}
		if f.state == stateDone {
			break
		}
		if err := f.step(); err != nil {
			return f.out(), err
		}
		if opts.Limit > 0 && f.out() > opts.Limit {
			return f.out(), fmt.Errorf("inflate past %d bytes: %w", opts.Limit, ErrTooLarge)
		}
		if f.full() {
			if err := flush(f, opts.Output); err != nil {
				return f.out(), err
			}
			f.slide()
		}
	}
	return f.out(), flush(f, opts.Output)
}

func flush(f *inflater, w io.Writer) error {
	if w != nil && f.flushed < f.pos {
		if _, err := w.Write(f.buf[f.flushed:f.pos]); err != nil {
			return fmt.Errorf("zran: write output: %w", err)
		}
	}
	f.flushed = f.pos
	return nil
}

func (f *inflater) point() Point {
	p := Point{
		Out:  f.out(),
		In:   f.nread - int64(f.ie-f.ip) - int64(f.nb/8),
		Bits: uint8(f.nb % 8),
	}
	if p.Bits > 0 {
		p.Prev = byte(f.bits << (8 - p.Bits))
	}
	if w := f.buf[max(0, f.pos-windowSize):f.pos]; len(w) > 0 {
		p.Window = append([]byte(nil), w...)
	}
	return p
}

// Reader inflates a deflate stream from a Point on.
type Reader struct {
	f   *inflater
	err error
}

var _ io.Reader = (*Reader)(nil)

// NewReader returns a Reader of the uncompressed bytes from p.Out to the
// end of the stream, given r, the compressed bytes from p.In on. A point
// whose Window is shorter than Scan made it fails, with ErrCorrupt, only
// if the data refers back past it.
func NewReader(r io.Reader, p Point) (*Reader, error) {
	switch {
	case p.Bits > 7:
		return nil, fmt.Errorf("%w: %d bits", ErrInvalidPoint, p.Bits)
	case p.In < 0 || p.Out < 0 || (p.Bits > 0 && p.In == 0):
		return nil, fmt.Errorf("%w: offsets in %d out %d bits %d", ErrInvalidPoint, p.In, p.Out, p.Bits)
	case len(p.Window) > MaxWindow || int64(len(p.Window)) > p.Out:
		return nil, fmt.Errorf("%w: %d-byte window at %d", ErrInvalidPoint, len(p.Window), p.Out)
	}
	f := newInflater(r, p.In)
	f.pos = copy(f.buf, p.Window)
	f.flushed = f.pos
	f.base = p.Out - int64(f.pos)
	if p.Bits > 0 {
		f.bits = uint64(p.Prev >> (8 - p.Bits))
		f.nb = uint(p.Bits)
	}
	return &Reader{f: f}, nil
}

// Read implements io.Reader. After the final block it returns io.EOF;
// errors are sticky.
func (z *Reader) Read(b []byte) (int, error) {
	f := z.f
	for {
		if f.flushed < f.pos {
			n := copy(b, f.buf[f.flushed:f.pos])
			f.flushed += n
			return n, nil
		}
		if z.err != nil || len(b) == 0 {
			return 0, z.err
		}
		if f.state == stateDone {
			z.err = io.EOF
			continue
		}
		if f.full() {
			f.slide()
		}
		z.err = f.step()
	}
}
