package delta

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
)

// TestLiblzmaMatchesGo decodes the same xz streams with liblzma and with
// the Go port: the same bytes from good streams (ostree's parts in the
// test vectors, and one of ulikunitz's encoder with a trailer after the
// stream), an error from both for a flipped byte, a truncated stream and
// a dictionary over the maximum, and the same part digests through
// OpenPartStream. CI must have liblzma.so.5 (every Debian system does).
func TestLiblzmaMatchesGo(t *testing.T) {
	if !liblzma() {
		if testutil.InCI() {
			t.Fatal("liblzma.so.5 could not be loaded")
		}
		t.Skip("liblzma.so.5 could not be loaded: only the Go port decodes here")
	}
	decode := func(lib bool, data []byte) ([]byte, error) {
		old := useLiblzma
		useLiblzma = func() bool { return lib }
		defer func() { useLiblzma = old }()
		r, done, err := NewDecoders(1).newXZReader(context.Background(), bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		defer done()
		return io.ReadAll(r)
	}
	payload := make([]byte, 3<<20)
	rand.Read(payload[:1<<20]) // incompressible, then runs that match far back
	for i := 1 << 20; i < len(payload); i++ {
		payload[i] = payload[i%(1<<20)] ^ byte(i>>18)
	}
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 8 << 20, CheckSum: xz.CRC64}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(payload)
	w.Close()
	stream := buf.Bytes()
	streams := map[string][]byte{"ulikunitz": stream, "with trailer": append(append([]byte{}, stream...), "trailing bytes"...)}
	for _, p := range vectorXZParts(t) {
		streams["ostree part "+p.hdr.Checksum.String()[:8]] = p.data[1:]
	}
	for name, data := range streams {
		got, err := decode(true, data)
		want, werr := decode(false, data)
		if err != nil || werr != nil || !bytes.Equal(got, want) || len(got) == 0 {
			t.Errorf("%s: liblzma %d bytes, %v; Go %d bytes, %v", name, len(got), err, len(want), werr)
		}
	}
	if got, _ := decode(true, stream); !bytes.Equal(got, payload) {
		t.Errorf("liblzma decoded %d bytes, not the %d encoded", len(got), len(payload))
	}
	bad := map[string][]byte{
		"flipped":   append([]byte{}, stream...),
		"truncated": stream[:len(stream)/2],
		"empty":     nil,
		"not xz":    []byte("this is not an xz stream at all"),
	}
	bad["flipped"][len(stream)/2] ^= 0x20
	// A stream header and an LZMA2 block whose dictionary (props 40:
	// 4 GiB) is over the maximum.
	var huge bytes.Buffer
	hw, _ := xz.WriterConfig{DictCap: 1 << 20}.NewWriter(&huge)
	hw.Write([]byte("x"))
	hw.Close()
	big := append([]byte{}, huge.Bytes()...)
	// The block header follows the 12-byte stream header; its CRC32 is
	// made good again, so that only the dictionary is wrong.
	hs := (int(big[12]) + 1) * 4
	i := bytes.Index(big[12:12+hs], []byte{0x21, 0x01}) // filter LZMA2, 1 property byte
	if i < 0 {
		t.Fatal("no LZMA2 filter flags in the stream")
	}
	big[12+i+2] = 40
	binary.LittleEndian.PutUint32(big[12+hs-4:], crc32.ChecksumIEEE(big[12:12+hs-4]))
	bad["4 GiB dictionary"] = big
	for name, data := range bad {
		got, err := decode(true, data)
		if err == nil {
			t.Errorf("%s: liblzma decoded %d bytes without an error", name, len(got))
		}
		if name == "4 GiB dictionary" && (err == nil || !strings.Contains(err.Error(), "dictionary")) {
			t.Errorf("%s: liblzma said %v, want the dictionary refused", name, err)
		}
		if got, err := decode(false, data); err == nil {
			t.Errorf("%s: the Go port decoded %d bytes without an error", name, len(got))
		}
	}
}

// TestLiblzmaBomb: a small stream of zeros decoding past the part's
// limit is refused by liblzma too, as errTooLarge.
func TestLiblzmaBomb(t *testing.T) {
	if !liblzma() {
		t.Skip("no liblzma")
	}
	var buf bytes.Buffer
	w, _ := xz.WriterConfig{DictCap: 1 << 20}.NewWriter(&buf)
	w.Write(make([]byte, 16<<20))
	w.Close()
	part := append([]byte{CompressionXZ}, buf.Bytes()...)
	_, err := spool(context.Background(), bytes.NewReader(part), io.Discard, 1<<20, NewDecoders(1))
	if !errors.Is(err, errTooLarge) || !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("got %v, want the part's limit refused", err)
	}
}
