package zran

import (
	"bytes"
	"compress/flate"
	"io"
	"testing"
)

const fuzzLimit = 256 << 10

// FuzzZran inflates arbitrary bytes as raw deflate: it must never panic,
// must agree with compress/flate on what is valid and on the output, and
// every point must reproduce the rest of the output.
func FuzzZran(f *testing.F) {
	for _, in := range inputs(3000) {
		for _, e := range encoders() {
			if c := e.enc(in.data); len(c) < 4096 {
				f.Add(c)
			}
		}
	}
	for _, comp := range filezPayloads(f) {
		if len(comp) < 16<<10 {
			f.Add(comp)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		var pts []Point
		_, err := Scan(bytes.NewReader(data), Options{Span: 2048, Limit: fuzzLimit, Output: &out}, func(p Point) error {
			if len(pts) < 8 {
				pts = append(pts, p)
			}
			return nil
		})
		want, ferr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), fuzzLimit+1))
		if len(want) > fuzzLimit {
			return
		}
		switch {
		case ferr == nil && err != nil:
			t.Fatalf("compress/flate accepts what zran rejects: %v", err)
		case ferr != nil && err == nil:
			t.Fatalf("zran accepts what compress/flate rejects: %v", ferr)
		case err != nil:
			return
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("inflated %d bytes, compress/flate %d", out.Len(), len(want))
		}
		for _, p := range pts {
			r, err := NewReader(bytes.NewReader(data[p.In:]), p)
			if err != nil {
				t.Fatalf("point %+v: %v", p.Out, err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want[p.Out:]) {
				t.Fatalf("point at %d: %d bytes, want %d: %v", p.Out, len(got), len(want)-int(p.Out), err)
			}
		}
	})
}
