package delta

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lazytree/lazytree/ostree"
)

// bspatch applies a bsdiff patch in the format ostree uses (Colin
// Percival's algorithm as packaged by mendsley's bsdiff 4.x stream API:
// no header, no bzip2) to old, and passes exactly newSize bytes of output
// to emit, in pieces of at most len(buf) bytes. The patch is a series of
// blocks, each three sign-magnitude little-endian int64 (diff length x,
// extra length y, seek z), x diff bytes added to old bytes (old bytes
// outside old count as 0), and y extra bytes copied. Memory use is buf
// only: the output is never held whole.
func bspatch(ctx context.Context, old Blob, patch []byte, newSize uint64, emit func([]byte) error, buf []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: bspatch: %s", ostree.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	oldSize := old.Size()
	var oldPos int64
	var newPos uint64
	p := 0
	for newPos < newSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(patch)-p < 24 {
			return bad("truncated control block at byte %d", p)
		}
		x, y, z := offtin(patch[p:]), offtin(patch[p+8:]), offtin(patch[p+16:])
		p += 24
		if x < 0 || y < 0 {
			return bad("negative length in control block (%d, %d)", x, y)
		}
		if uint64(x) > newSize-newPos {
			return bad("diff of %d bytes at %d overflows the %d-byte output", x, newPos, newSize)
		}
		if int64(len(patch)-p) < x {
			return bad("truncated diff data")
		}
		for done := int64(0); done < x; {
			n := min(int64(len(buf)), x-done)
			chunk := buf[:n]
			if err := readOld(old, oldSize, oldPos+done, chunk); err != nil {
				return fmt.Errorf("bspatch: read source: %w", err)
			}
			diff := patch[p+int(done):]
			for i := range chunk {
				chunk[i] += diff[i]
			}
			if err := emit(chunk); err != nil {
				return err
			}
			done += n
		}
		p += int(x)
		newPos += uint64(x)
		var ok bool
		if oldPos, ok = addInt64(oldPos, x); !ok {
			return bad("old position overflows")
		}
		if uint64(y) > newSize-newPos {
			return bad("extra of %d bytes at %d overflows the %d-byte output", y, newPos, newSize)
		}
		if int64(len(patch)-p) < y {
			return bad("truncated extra data")
		}
		if y > 0 {
			if err := emit(patch[p : p+int(y)]); err != nil {
				return err
			}
		}
		p += int(y)
		newPos += uint64(y)
		if oldPos, ok = addInt64(oldPos, z); !ok {
			return bad("old position overflows")
		}
	}
	if p != len(patch) {
		return bad("%d bytes after the output is complete", len(patch)-p)
	}
	return nil
}

// offtin decodes a sign-magnitude little-endian int64.
func offtin(b []byte) int64 {
	v := binary.LittleEndian.Uint64(b)
	m := int64(v &^ (1 << 63))
	if v>>63 != 0 {
		return -m
	}
	return m
}

func addInt64(a, b int64) (int64, bool) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, false
	}
	return a + b, true
}

// readOld fills b with old[pos:pos+len(b)], with zeros where that range is
// outside old.
func readOld(old Blob, oldSize, pos int64, b []byte) error {
	clear(b)
	if pos >= oldSize || pos <= -int64(len(b)) {
		return nil
	}
	lo, hi := pos, pos+int64(len(b))
	if lo < 0 {
		lo = 0
	}
	if hi > oldSize {
		hi = oldSize
	}
	return readFull(old, b[lo-pos:hi-pos], lo)
}
