package zran

import (
	"bytes"
	"compress/flate"
	"io"
	"testing"

	kflate "github.com/klauspost/compress/flate"
)

// BenchmarkInflate compares Scan (with and without points), NewReader and
// two other inflaters on 8 MiB inputs deflated at the default level.
// The reported MB/s are of uncompressed output.
func BenchmarkInflate(b *testing.B) {
	const size = 8 << 20
	for _, in := range []input{
		{"text", textData(size, 21)},
		{"mixed", mixedData(size, 22)},
		{"random", randomData(size, 23)},
		{"zeros", make([]byte, size)},
	} {
		comp := flateEnc(flate.DefaultCompression)(in.data)
		run := func(name string, fn func() (int64, error)) {
			b.Run(in.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(in.data)))
				b.ReportAllocs()
				for b.Loop() {
					n, err := fn()
					if err != nil || n != int64(len(in.data)) {
						b.Fatalf("%d bytes, %v", n, err)
					}
				}
			})
		}
		run("zran", func() (int64, error) {
			return Scan(bytes.NewReader(comp), Options{}, nil)
		})
		run("zran-points", func() (int64, error) {
			return Scan(bytes.NewReader(comp), Options{Span: 1 << 20, Output: io.Discard}, func(Point) error { return nil })
		})
		run("zran-reader", func() (int64, error) {
			r, err := NewReader(bytes.NewReader(comp), Point{})
			if err != nil {
				return 0, err
			}
			return io.Copy(io.Discard, r)
		})
		run("compress-flate", func() (int64, error) {
			return io.Copy(io.Discard, flate.NewReader(bytes.NewReader(comp)))
		})
		run("klauspost", func() (int64, error) {
			return io.Copy(io.Discard, kflate.NewReader(bytes.NewReader(comp)))
		})
	}
}
