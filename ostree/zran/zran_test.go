package zran

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// scanAll scans comp with a point every span bytes and returns the output
// and the points, checking on the way that Output has exactly p.Out bytes
// whenever fn runs.
func scanAll(t *testing.T, comp []byte, span int64) ([]byte, []Point) {
	t.Helper()
	var out bytes.Buffer
	var pts []Point
	n, err := Scan(bytes.NewReader(comp), Options{Span: span, Output: &out}, func(p Point) error {
		if int64(out.Len()) != p.Out {
			t.Fatalf("point at %d with %d bytes written", p.Out, out.Len())
		}
		pts = append(pts, p)
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if n != int64(out.Len()) {
		t.Fatalf("scan returned %d, wrote %d", n, out.Len())
	}
	return out.Bytes(), pts
}

func TestScanMatchesFlate(t *testing.T) {
	for _, s := range samples() {
		got, _ := scanAll(t, s.comp, 0)
		if !bytes.Equal(got, s.data) {
			t.Errorf("%s: inflated %d bytes, want %d (equal prefix %d)", s.name, len(got), len(s.data), commonPrefix(got, s.data))
		}
		n, err := Scan(bytes.NewReader(s.comp), Options{}, nil)
		if err != nil || n != int64(len(s.data)) {
			t.Errorf("%s: scan without output: %d, %v", s.name, n, err)
		}
	}
}

func TestFilezVectors(t *testing.T) {
	for name, comp := range filezPayloads(t) {
		want, err := flateInflate(comp)
		if err != nil {
			// A payload ostree left empty (not even a final block).
			if _, zerr := Scan(bytes.NewReader(comp), Options{}, nil); zerr == nil || len(comp) > 0 {
				t.Fatalf("%s: compress/flate: %v; zran: %v", name, err, zerr)
			}
			continue
		}
		got, pts := scanAll(t, comp, 4096)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: inflated %d bytes, compress/flate %d", name, len(got), len(want))
		}
		checkPoints(t, name, comp, want, pts, 4096)
	}
}

func commonPrefix(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// checkPoints checks that each point is where it says and that inflating
// from it gives the rest of data.
func checkPoints(t *testing.T, name string, comp, data []byte, pts []Point, span int64) (aligned, unaligned int) {
	t.Helper()
	if len(pts) == 0 || pts[0].Out != 0 || pts[0].In != 0 || pts[0].Bits != 0 || pts[0].Window != nil {
		t.Fatalf("%s: first point %+v", name, pts[:min(1, len(pts))])
	}
	for i, p := range pts {
		if i > 0 && p.Out-pts[i-1].Out < span {
			t.Fatalf("%s: point %d at %d, previous at %d: closer than %d", name, i, p.Out, pts[i-1].Out, span)
		}
		if p.Out > int64(len(data)) || p.In > int64(len(comp)) {
			t.Fatalf("%s: point %d out of range: %+v", name, i, p)
		}
		w := min(p.Out, MaxWindow)
		if !bytes.Equal(p.Window, data[p.Out-w:p.Out]) {
			t.Fatalf("%s: point %d: window of %d bytes, want the %d before %d", name, i, len(p.Window), w, p.Out)
		}
		if p.Bits > 0 {
			unaligned++
			if p.Prev != comp[p.In-1]&^(0xff>>p.Bits) {
				t.Fatalf("%s: point %d: prev %08b, byte %08b, %d bits", name, i, p.Prev, comp[p.In-1], p.Bits)
			}
		} else {
			aligned++
		}
		r, err := NewReader(bytes.NewReader(comp[p.In:]), p)
		if err != nil {
			t.Fatalf("%s: point %d: %v", name, i, err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: point %d (%+v): read: %v", name, i, p.Out, err)
		}
		if !bytes.Equal(got, data[p.Out:]) {
			t.Fatalf("%s: point %d at %d: %d bytes, want %d (equal prefix %d)", name, i, p.Out, len(got), len(data)-int(p.Out), commonPrefix(got, data[p.Out:]))
		}
	}
	return aligned, unaligned
}

func TestPoints(t *testing.T) {
	var aligned, unaligned, total int
	for _, s := range samples() {
		span := int64(16 << 10)
		if strings.Contains(s.name, "flush") {
			span = 4 << 10 // a point at many bit offsets
		}
		data, pts := scanAll(t, s.comp, span)
		a, u := checkPoints(t, s.name, s.comp, data, pts, span)
		aligned += a
		unaligned += u
		total += len(pts)
	}
	t.Logf("%d points, %d at a byte boundary, %d within a byte", total, aligned, unaligned)
	if unaligned == 0 || aligned < 2*len(samples()) {
		t.Fatalf("points do not cover both kinds: %d aligned, %d unaligned", aligned, unaligned)
	}
}

func TestPointsEveryBlock(t *testing.T) {
	// Span 1 asks for a point at every block start.
	for _, s := range samples() {
		if !strings.HasPrefix(s.name, "mixed/") {
			continue
		}
		data, pts := scanAll(t, s.comp, 1)
		checkPoints(t, s.name, s.comp, data, pts, 1)
	}
}

func TestReaderShapes(t *testing.T) {
	data := mixedData(200<<10, 5)
	comp := flateEnc(6)(data)
	_, pts := scanAll(t, comp, 64<<10)
	p := pts[len(pts)/2]
	shapes := map[string]func(io.Reader) io.Reader{
		"onebyte":  iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"dataerr":  iotest.DataErrReader,
		"plain":    func(r io.Reader) io.Reader { return r },
		"trailing": func(r io.Reader) io.Reader { return io.MultiReader(r, strings.NewReader("trailing garbage")) },
	}
	for name, shape := range shapes {
		var out bytes.Buffer
		n, err := Scan(shape(bytes.NewReader(comp)), Options{Output: &out}, nil)
		if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s: scan: %d bytes, %v", name, n, err)
		}
		r, err := NewReader(shape(bytes.NewReader(comp[p.In:])), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := iotest.TestReader(r, data[p.Out:]); err != nil {
			t.Errorf("%s: reader: %v", name, err)
		}
	}
}

func TestTruncated(t *testing.T) {
	for _, s := range samples() {
		if !strings.HasPrefix(s.name, "short/") && !strings.HasPrefix(s.name, "mixed/flush1") && !strings.HasPrefix(s.name, "text/gzip6") {
			continue
		}
		step := max(1, len(s.comp)/300)
		for n := 0; n < len(s.comp); n += step {
			_, err := Scan(bytes.NewReader(s.comp[:n]), Options{}, nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s cut at %d of %d: %v, want unexpected EOF", s.name, n, len(s.comp), err)
			}
		}
	}
}

type failReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failReader) Read(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	b = b[:min(len(b), f.n)]
	n, err := f.r.Read(b)
	f.n -= n
	return n, err
}

func TestErrorsPassThrough(t *testing.T) {
	data := textData(300<<10, 4)
	comp := flateEnc(6)(data)
	boom := errors.New("boom")

	_, err := Scan(&failReader{bytes.NewReader(comp), len(comp) / 2, boom}, Options{}, nil)
	if !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	calls := 0
	_, err = Scan(bytes.NewReader(comp), Options{Span: 1000}, func(Point) error {
		if calls++; calls == 3 {
			return boom
		}
		return nil
	})
	if err != boom || calls != 3 {
		t.Errorf("callback error: %v after %d calls", err, calls)
	}
	_, err = Scan(bytes.NewReader(comp), Options{Output: &failWriter{100 << 10, boom}}, nil)
	if !errors.Is(err, boom) {
		t.Errorf("write error: %v", err)
	}
}

type failWriter struct {
	n   int
	err error
}

func (w *failWriter) Write(b []byte) (int, error) {
	if len(b) > w.n {
		return 0, w.err
	}
	w.n -= len(b)
	return len(b), nil
}

func TestLimit(t *testing.T) {
	data := make([]byte, 10<<20) // a 10 MiB bomb in 10 KiB
	comp := flateEnc(9)(data)
	for _, limit := range []int64{1, 1000, 1 << 20, int64(len(data)) - 1} {
		var out bytes.Buffer
		_, err := Scan(bytes.NewReader(comp), Options{Limit: limit, Output: &out}, nil)
		if !errors.Is(err, ErrTooLarge) || int64(out.Len()) > limit {
			t.Errorf("limit %d: %v with %d bytes written", limit, err, out.Len())
		}
	}
	n, err := Scan(bytes.NewReader(comp), Options{Limit: int64(len(data))}, nil)
	if err != nil || n != int64(len(data)) {
		t.Errorf("limit of exactly the size: %d, %v", n, err)
	}
}

func TestNewReaderInvalid(t *testing.T) {
	data := textData(200<<10, 8)
	comp := flateEnc(9)(data)
	_, pts := scanAll(t, comp, 50<<10)
	p := pts[len(pts)-1]
	for name, q := range map[string]Point{
		"bits":         {Out: 10, In: 10, Bits: 8},
		"bits at 0":    {Bits: 3},
		"negative":     {Out: -1},
		"big window":   {Out: 1 << 20, Window: make([]byte, MaxWindow+1)},
		"window > out": {Out: 3, Window: make([]byte, 4)},
	} {
		if _, err := NewReader(bytes.NewReader(comp), q); !errors.Is(err, ErrInvalidPoint) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Without its window, text refers back into what is missing.
	short := p
	short.Window = short.Window[len(short.Window)-10:]
	r, _ := NewReader(bytes.NewReader(comp[p.In:]), short)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short window: %v", err)
	}
}

// validDynamic is a dynamic block for "a"×n: literal/length code a=1,
// EOB=2, 257=2 bits; a single one-bit distance code.
func validDynamic(lens func(l []clSym) []clSym, body func(w *bitWriter)) []byte {
	cl := [19]uint8{1: 2, 2: 2, 17: 2, 18: 2}
	syms := []clSym{{18, 97 - 11}, {1, 0}, {18, 138 - 11}, {18, 20 - 11}, {2, 0}, {2, 0}, {1, 0}}
	if lens != nil {
		syms = lens(syms)
	}
	w := (&bitWriter{}).dynamic(true, 258, 1, cl, syms)
	body(w)
	return w.bytes()
}

func TestHostile(t *testing.T) {
	fixed := func(final uint64) *bitWriter { return (&bitWriter{}).bits(final, 1).bits(1, 2) }
	aaa := func(w *bitWriter) { w.code(0, 1).code(0, 1).code(3, 2).code(0, 1).code(0, 1).code(2, 2) }
	tests := []struct {
		name    string
		in      []byte
		corrupt bool // else truncated
	}{
		{"empty", nil, false},
		{"header only", fixed(1).bytes()[:0], false},
		{"reserved type", (&bitWriter{}).bits(1, 1).bits(3, 2).bytes(), true},
		{"stored nlen", (&bitWriter{}).bits(1, 1).bits(0, 2).align().bits(5, 16).bits(0, 16).bytes(), true},
		{"stored short", append((&bitWriter{}).bits(1, 1).bits(0, 2).align().bits(5, 16).bits(0xfffa, 16).bytes(), "abc"...), false},
		{"not final", (&bitWriter{}).bits(0, 1).bits(0, 2).align().bits(0, 16).bits(0xffff, 16).bytes(), false},
		{"distance at start", fixed(1).fixedLitCode(257).code(0, 5).fixedLitCode(256).bytes(), true},
		{"distance too far", fixed(1).fixedLitCode('a').fixedLitCode(257).code(1, 5).fixedLitCode(256).bytes(), true},
		{"distance code 30", fixed(1).fixedLitCode('a').fixedLitCode(257).code(30, 5).fixedLitCode(256).bytes(), true},
		{"distance code 31", fixed(1).fixedLitCode('a').fixedLitCode(257).code(31, 5).fixedLitCode(256).bytes(), true},
		{"length code 286", fixed(1).fixedLitCode(286).bytes(), true},
		{"length code 287", fixed(1).fixedLitCode(287).fixedLitCode(256).bytes(), true},
		{"HLIT 287", (&bitWriter{}).bits(1, 1).bits(2, 2).bits(30, 5).bits(0, 5).bits(0, 4).bits(0, 60).bytes(), true},
		{"HDIST 31", (&bitWriter{}).bits(1, 1).bits(2, 2).bits(0, 5).bits(30, 5).bits(0, 4).bits(0, 60).bytes(), true},
		{"cl oversubscribed", (&bitWriter{}).dynamic(true, 257, 1, [19]uint8{0: 1, 1: 1, 2: 1}, nil).bits(0, 60).bytes(), true},
		{"cl incomplete", (&bitWriter{}).dynamic(true, 257, 1, [19]uint8{0: 2, 1: 2}, nil).bits(0, 60).bytes(), true},
		{"cl empty", (&bitWriter{}).dynamic(true, 257, 1, [19]uint8{}, nil).bits(0, 60).bytes(), true},
		{"repeat first", validDynamic(func(s []clSym) []clSym {
			return append([]clSym{{17, 0}}, s...)[:1]
		}, aaa), false},
		{"repeat past end", validDynamic(func(s []clSym) []clSym {
			return []clSym{{18, 127}, {18, 127}, {18, 127}}
		}, aaa), true},
		{"no end of block", validDynamic(func(s []clSym) []clSym {
			s[4] = clSym{17, 0} // 256 and 257 and the distance: zero
			return s[:5]
		}, aaa), true},
		{"lit oversubscribed", validDynamic(func(s []clSym) []clSym {
			s[1] = clSym{2, 0}
			s[4] = clSym{1, 0}
			s[5] = clSym{1, 0}
			return s
		}, aaa), true},
		{"lit incomplete", validDynamic(func(s []clSym) []clSym {
			s[1] = clSym{2, 0}
			return s
		}, aaa), true},
		{"dist incomplete", validDynamic(func(s []clSym) []clSym {
			s[6] = clSym{2, 0}
			return s
		}, aaa), true},
		{"unused distance code", validDynamic(nil, func(w *bitWriter) {
			w.code(0, 1).code(3, 2).code(1, 1).code(2, 2)
		}), true},
		{"unused distance code at end", validDynamic(nil, func(w *bitWriter) {
			w.code(0, 1).code(3, 2).code(1, 1)
		}), true},
		{"truncated dynamic", validDynamic(nil, aaa)[:9], false},
	}
	// The repeat-first case needs the 16 symbol, which the code above
	// does not have: give it one.
	tests = append(tests, struct {
		name    string
		in      []byte
		corrupt bool
	}{"repeat with no previous", (&bitWriter{}).dynamic(true, 257, 1, [19]uint8{16: 1, 0: 1}, []clSym{{16, 0}}).bits(0, 60).bytes(), true})

	for _, tt := range tests {
		_, err := Scan(bytes.NewReader(tt.in), Options{}, nil)
		_, ferr := flateInflate(tt.in)
		if ferr == nil {
			t.Errorf("%s: compress/flate accepts it: a bad test", tt.name)
		}
		switch {
		case err == nil:
			t.Errorf("%s: no error", tt.name)
		case tt.corrupt && !errors.Is(err, ErrCorrupt):
			t.Errorf("%s: %v, want corrupt", tt.name, err)
		case !tt.corrupt && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("%s: %v, want unexpected EOF", tt.name, err)
		}
		t.Logf("%s: %v", tt.name, err)
	}
}

func TestHandMadeValid(t *testing.T) {
	aaa := func(w *bitWriter) { w.code(0, 1).code(0, 1).code(3, 2).code(0, 1).code(0, 1).code(2, 2) }
	tests := map[string][]byte{
		"dynamic": validDynamic(nil, aaa),
		"empty distance code": validDynamic(func(s []clSym) []clSym {
			s[6] = clSym{17, 0}
			return append(s[:6], clSym{0, 0})
		}, func(w *bitWriter) { w.code(0, 1).code(0, 1).code(2, 2) }),
		"single literal code": (&bitWriter{}).dynamic(true, 257, 1, [19]uint8{0: 1, 1: 1, 18: 0}, append(
			make([]clSym, 256), clSym{1, 0}, clSym{0, 0})).code(0, 1).bytes(),
		"empty stored": (&bitWriter{}).bits(1, 1).bits(0, 2).align().bits(0, 16).bits(0xffff, 16).bytes(),
		"fixed":        (&bitWriter{}).bits(1, 1).bits(1, 2).fixedLitCode('z').fixedLitCode(285).code(0, 5).fixedLitCode(256).bytes(),
	}
	for name, in := range tests {
		want, ferr := flateInflate(in)
		if ferr != nil {
			t.Fatalf("%s: compress/flate: %v", name, ferr)
		}
		got, _ := scanAll(t, in, 1)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
