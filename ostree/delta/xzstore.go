package delta

import (
	"encoding/binary"
	"hash/crc32"
	"hash/crc64"
)

// storedXZ wraps data in a valid xz stream without compressing it: one
// block whose LZMA2 data is only uncompressed chunks. Generate uses it for
// parts of incompressible files. ostree needs the 'x' part type for these:
// 2022.7 fails to open uncompressed part files larger than a page ("mmap:
// Invalid argument", it maps them at offset 1), and the pure-Go LZMA
// encoder is slowest exactly on data it cannot compress.
func storedXZ(data []byte) []byte {
	const chunk = 1 << 16
	out := make([]byte, 0, len(data)+len(data)/chunk*3+64)

	// Stream header: magic, flags (CRC64 check), CRC32 of the flags.
	flags := []byte{0, 0x04}
	out = append(out, xzMagic...)
	out = append(out, flags...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(flags))

	// Block header: size 12 bytes, one filter (LZMA2, dictionary 64 KiB,
	// enough to hold a whole chunk), padding, CRC32.
	hdr := []byte{12/4 - 1, 0, 0x21, 0x01, 8, 0, 0, 0}
	out = append(out, hdr...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(hdr))

	start := len(out)
	for i := 0; i < len(data); i += chunk {
		c := data[i:min(i+chunk, len(data))]
		ctrl := byte(0x02) // uncompressed, no dictionary reset
		if i == 0 {
			ctrl = 0x01 // uncompressed, dictionary reset
		}
		out = append(out, ctrl)
		out = binary.BigEndian.AppendUint16(out, uint16(len(c)-1))
		out = append(out, c...)
	}
	out = append(out, 0) // end of LZMA2 data
	compressed := len(out) - start
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	out = binary.LittleEndian.AppendUint64(out, crc64.Checksum(data, crc64.MakeTable(crc64.ECMA)))

	// Index: one record (unpadded block size, uncompressed size).
	index := []byte{0, 1}
	index = appendXZVarint(index, uint64(12+compressed+8))
	index = appendXZVarint(index, uint64(len(data)))
	for len(index)%4 != 0 {
		index = append(index, 0)
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	out = append(out, index...)

	// Footer: CRC32, backward size, flags, magic.
	footer := binary.LittleEndian.AppendUint32(nil, uint32(len(index)/4-1))
	footer = append(footer, flags...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(footer))
	out = append(out, footer...)
	return append(out, 'Y', 'Z')
}

func appendXZVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
