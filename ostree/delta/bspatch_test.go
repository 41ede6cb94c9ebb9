package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

// ctrl is one bsdiff control block with its data.
type ctrl struct {
	seek        int64
	diff, extra []byte
}

func offtout(v int64) []byte {
	var b [8]byte
	m := uint64(v)
	if v < 0 {
		m = uint64(-v) | 1<<63
	}
	binary.LittleEndian.PutUint64(b[:], m)
	return b[:]
}

func makePatch(blocks ...ctrl) []byte {
	var out []byte
	for _, c := range blocks {
		out = append(out, offtout(int64(len(c.diff)))...)
		out = append(out, offtout(int64(len(c.extra)))...)
		out = append(out, offtout(c.seek)...)
		out = append(out, c.diff...)
		out = append(out, c.extra...)
	}
	return out
}

// refBspatch is the textbook in-memory bspatch, to compare with the
// streaming one.
func refBspatch(old, patch []byte, newSize int) ([]byte, bool) {
	out := make([]byte, newSize)
	oldPos, newPos, p := int64(0), 0, 0
	for newPos < newSize {
		if len(patch)-p < 24 {
			return nil, false
		}
		x, y, z := offtin(patch[p:]), offtin(patch[p+8:]), offtin(patch[p+16:])
		p += 24
		if x < 0 || y < 0 || x > int64(newSize-newPos) || x > int64(len(patch)-p) {
			return nil, false
		}
		for i := int64(0); i < x; i++ {
			b := patch[p+int(i)]
			if o := oldPos + i; o >= 0 && o < int64(len(old)) {
				b += old[o]
			}
			out[newPos+int(i)] = b
		}
		p += int(x)
		newPos += int(x)
		var ok bool
		if oldPos, ok = addInt64(oldPos, x); !ok {
			return nil, false
		}
		if y > int64(newSize-newPos) || y > int64(len(patch)-p) {
			return nil, false
		}
		copy(out[newPos:], patch[p:p+int(y)])
		p += int(y)
		newPos += int(y)
		if oldPos, ok = addInt64(oldPos, z); !ok {
			return nil, false
		}
	}
	return out, p == len(patch)
}

func runBspatch(old, patch []byte, newSize uint64, bufSize int) ([]byte, error) {
	var out []byte
	err := bspatch(context.Background(), bytes.NewReader(old), patch, newSize, func(b []byte) error {
		out = append(out, b...)
		return nil
	}, make([]byte, bufSize))
	return out, err
}

func TestBspatch(t *testing.T) {
	old := []byte("the quick brown fox jumps over the lazy dog")
	sub := func(a, b []byte) []byte { // diff bytes that turn old a into b
		d := make([]byte, len(b))
		for i := range b {
			var o byte
			if i < len(a) {
				o = a[i]
			}
			d[i] = b[i] - o
		}
		return d
	}
	tests := []struct {
		name   string
		patch  []byte
		newLen int
		want   string
	}{
		{"copy", makePatch(ctrl{diff: make([]byte, len(old))}), len(old), string(old)},
		{"edit and extra", makePatch(ctrl{diff: sub(old[:9], []byte("the QUICK")), extra: []byte("!!")}), 11, "the QUICK!!"},
		{"seek forward", makePatch(ctrl{seek: 7, diff: make([]byte, 3)}, ctrl{diff: make([]byte, 5)}), 8, "thebrown"},
		{"seek backward", makePatch(ctrl{seek: -3, diff: make([]byte, 3)}, ctrl{diff: make([]byte, 3)}), 6, "thethe"},
		{"old past its end reads zero", makePatch(ctrl{seek: 100, extra: nil}, ctrl{diff: []byte("abc")}), 3, "abc"},
		{"old before its start reads zero", makePatch(ctrl{seek: -50}, ctrl{diff: []byte("xyz")}), 3, "xyz"},
		{"straddles the start", makePatch(ctrl{seek: -2}, ctrl{diff: []byte{'a', 'b', 0, 0}}), 4, "abth"},
		{"empty output", nil, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, bs := range []int{1, 2, 7, chunkSize} {
				got, err := runBspatch(old, tc.patch, uint64(tc.newLen), bs)
				if err != nil {
					t.Fatalf("buf %d: %v", bs, err)
				}
				if string(got) != tc.want {
					t.Fatalf("buf %d: got %q, want %q", bs, got, tc.want)
				}
			}
			ref, ok := refBspatch(old, tc.patch, tc.newLen)
			if !ok || string(ref) != tc.want {
				t.Fatalf("reference: %q %v", ref, ok)
			}
		})
	}
}

func TestBspatchHostile(t *testing.T) {
	raw := func(x, y, z int64, rest ...byte) []byte {
		return append(append(append(offtout(x), offtout(y)...), offtout(z)...), rest...)
	}
	negZero := binary.LittleEndian.AppendUint64(nil, 1<<63)
	tests := []struct {
		name  string
		patch []byte
		size  uint64
	}{
		{"no control block", nil, 4},
		{"truncated control block", raw(1, 0, 0)[:20], 1},
		{"negative diff length", raw(-1, 0, 0), 1},
		{"negative extra length", raw(0, -1, 0), 1},
		{"diff longer than output", raw(5, 0, 0, 1, 2, 3, 4, 5), 4},
		{"extra longer than output", raw(0, 5, 0, 1, 2, 3, 4, 5), 4},
		{"huge diff length", raw(math.MaxInt64, 0, 0), 4},
		{"truncated diff", raw(4, 0, 0, 1, 2), 4},
		{"truncated extra", raw(0, 4, 0, 1, 2), 4},
		{"trailing bytes", raw(0, 1, 0, 'a', 'b'), 1},
		{"no progress until the patch ends", append(raw(0, 0, 0), raw(0, 0, 0)...), 1},
		{"seek overflow", append(append(raw(0, 0, math.MaxInt64), raw(0, 0, math.MaxInt64)...), raw(1, 0, 0, 0)...), 1},
		{"seek underflow", append(append(raw(0, 0, -math.MaxInt64), raw(0, 0, -math.MaxInt64)...), raw(1, 0, 0, 0)...), 1},
		{"negative zero is zero, then too short", append(append(bytes.Clone(negZero), negZero...), negZero...), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runBspatch([]byte("old data"), tc.patch, tc.size, 3)
			if !errors.Is(err, ostree.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
		})
	}
}
