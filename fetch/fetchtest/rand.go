package fetchtest

import (
	"encoding/binary"
	"hash/fnv"
)

// draw returns 64 seeded pseudo-random bits for one decision. Hashing
// (seed, kind, path, attempt) instead of consuming a shared generator keeps
// each decision independent of how requests for other paths interleave.
func (c *config) draw(kind, path string, attempt int) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(c.Seed))
	h.Write(b[:])
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(b[:], uint64(attempt))
	h.Write(b[:])
	return mix(h.Sum64())
}

// mix is the splitmix64 finalizer: FNV alone leaves the low bits of
// similar inputs correlated, and the draws are used modulo small numbers.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps 64 random bits to [0, 1).
func unit(x uint64) float64 {
	return float64(x>>11) / (1 << 53)
}
