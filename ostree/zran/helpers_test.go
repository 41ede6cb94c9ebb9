package zran

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	kflate "github.com/klauspost/compress/flate"

	"github.com/lazytree/lazytree/internal/vectors"
)

// textData is pseudo-English: Zipf-distributed words from a made-up
// vocabulary, with punctuation and lines, which deflates about as well as
// prose does.
func textData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	vocab := make([]string, 5000)
	for i := range vocab {
		var b strings.Builder
		for range 1 + r.IntN(4) + r.IntN(5) {
			b.WriteByte("etaoinshrdlucmfwypvbgkqjxz"[min(r.IntN(26), r.IntN(26))])
		}
		vocab[i] = b.String()
	}
	z := rand.NewZipf(r, 1.1, 2, uint64(len(vocab)-1))
	var out bytes.Buffer
	for out.Len() < n {
		out.WriteString(vocab[z.Uint64()])
		switch r.IntN(20) {
		case 0:
			out.WriteString(".\n")
		case 1:
			out.WriteString(", ")
		default:
			out.WriteByte(' ')
		}
	}
	return out.Bytes()[:n]
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mixedData alternates text, random bytes, zeros and short repeats, so
// that encoders switch between stored, fixed and dynamic blocks.
func mixedData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	var out []byte
	for len(out) < n {
		k := 1 + r.IntN(40000)
		switch r.IntN(4) {
		case 0:
			out = append(out, textData(k, r.Uint64())...)
		case 1:
			out = append(out, randomData(k, r.Uint64())...)
		case 2:
			out = append(out, make([]byte, k)...)
		default:
			pat := randomData(1+r.IntN(300), r.Uint64())
			for range k / len(pat) {
				out = append(out, pat...)
			}
		}
	}
	return out[:n]
}

type input struct {
	name string
	data []byte
}

func inputs(size int) []input {
	rep := bytes.Repeat([]byte("abcdefg"), size/7)
	return []input{
		{"empty", nil},
		{"one", []byte{'x'}},
		{"short", []byte("hello, hello, hello world\n")},
		{"zeros", make([]byte, size)},
		{"text", textData(size, 1)},
		{"random", randomData(size, 2)},
		{"repeat7", rep},
		{"mixed", mixedData(size, 3)},
	}
}

type encoder struct {
	name string
	enc  func(data []byte) []byte
}

func flateEnc(level int) func([]byte) []byte {
	return func(data []byte) []byte {
		var b bytes.Buffer
		w, err := flate.NewWriter(&b, level)
		if err != nil {
			panic(err)
		}
		w.Write(data)
		w.Close()
		return b.Bytes()
	}
}

func kflateEnc(level int) func([]byte) []byte {
	return func(data []byte) []byte {
		var b bytes.Buffer
		w, err := kflate.NewWriter(&b, level)
		if err != nil {
			panic(err)
		}
		w.Write(data)
		w.Close()
		return b.Bytes()
	}
}

// flushEnc writes in pieces with a sync flush after each: empty stored
// blocks and blocks that start at every bit of a byte.
func flushEnc(level, piece int) func([]byte) []byte {
	return func(data []byte) []byte {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, level)
		for len(data) > 0 {
			k := min(piece, len(data))
			w.Write(data[:k])
			w.Flush()
			data = data[k:]
		}
		w.Close()
		return b.Bytes()
	}
}

// gzipEnc runs the real gzip and strips the 10-byte header (no name: it
// reads stdin) and the 8-byte trailer, leaving raw deflate from an
// encoder that is not Go's.
func gzipEnc(level int) func([]byte) []byte {
	return func(data []byte) []byte {
		cmd := exec.Command("gzip", "-c", "-n", fmt.Sprintf("-%d", level))
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			panic(fmt.Sprintf("gzip: %v", err))
		}
		if len(out) < 18 || out[0] != 0x1f || out[1] != 0x8b || out[3] != 0 {
			panic(fmt.Sprintf("gzip: unexpected header % x", out[:min(len(out), 10)]))
		}
		return out[10 : len(out)-8]
	}
}

func encoders() []encoder {
	var encs []encoder
	for l := -2; l <= 9; l++ {
		encs = append(encs, encoder{fmt.Sprintf("flate%d", l), flateEnc(l)})
	}
	for l := -2; l <= 9; l++ {
		encs = append(encs, encoder{fmt.Sprintf("klauspost%d", l), kflateEnc(l)})
	}
	encs = append(encs,
		encoder{"flush1-777", flushEnc(1, 777)},
		encoder{"flush6-5000", flushEnc(6, 5000)},
		encoder{"flush0-3000", flushEnc(0, 3000)},
	)
	if _, err := exec.LookPath("gzip"); err == nil {
		for _, l := range []int{1, 6, 9} {
			encs = append(encs, encoder{fmt.Sprintf("gzip%d", l), gzipEnc(l)})
		}
	}
	return encs
}

type sample struct {
	name       string
	data, comp []byte
}

// samples is every input under every encoder, compressed once.
var samples = sync.OnceValue(func() []sample {
	var s []sample
	for _, in := range inputs(96 << 10) {
		for _, e := range encoders() {
			s = append(s, sample{in.name + "/" + e.name, in.data, e.enc(in.data)})
		}
	}
	return s
})

// filezPayloads returns the raw deflate streams of the real ostree's
// .filez objects in the test vectors: [u32 BE n][4 bytes][n-byte header].
func filezPayloads(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vectors.Dir(t), "repo", "objects", "*", "*.filez"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .filez vectors: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n := int(binary.BigEndian.Uint32(b))
		if 8+n > len(b) {
			t.Fatalf("%s: header length %d", p, n)
		}
		out[filepath.Base(p)] = b[8+n:]
	}
	return out
}

func flateInflate(comp []byte) ([]byte, error) {
	return io.ReadAll(flate.NewReader(bytes.NewReader(comp)))
}

// bitWriter writes a deflate bit stream by hand, for hostile inputs.
type bitWriter struct {
	out []byte
	acc uint64
	n   uint
}

// bits writes the n low bits of v, least significant first (header
// fields and extra bits).
func (w *bitWriter) bits(v uint64, n uint) *bitWriter {
	w.acc |= v << w.n
	w.n += n
	for w.n >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
	return w
}

// code writes an n-bit Huffman code, most significant bit first.
func (w *bitWriter) code(c uint64, n uint) *bitWriter {
	return w.bits(uint64(bits.Reverse16(uint16(c)))>>(16-n), n)
}

func (w *bitWriter) align() *bitWriter {
	if w.n%8 != 0 {
		w.bits(0, 8-w.n%8)
	}
	return w
}

func (w *bitWriter) bytes() []byte {
	out := w.out
	if w.n > 0 {
		out = append(out, byte(w.acc))
	}
	return out
}

// fixedLitCode writes a symbol of the fixed literal/length code.
func (w *bitWriter) fixedLitCode(sym int) *bitWriter {
	switch {
	case sym < 144:
		return w.code(uint64(0x30+sym), 8)
	case sym < 256:
		return w.code(uint64(0x190+sym-144), 9)
	case sym < 280:
		return w.code(uint64(sym-256), 7)
	default:
		return w.code(uint64(0xc0+sym-280), 8)
	}
}

// canonical returns the canonical Huffman codes of lengths.
func canonical(lens []uint8) []uint64 {
	var count, next [16]uint64
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	for l := 1; l < 16; l++ {
		next[l] = (next[l-1] + count[l-1]) << 1
	}
	codes := make([]uint64, len(lens))
	for i, l := range lens {
		if l > 0 {
			codes[i] = next[l]
			next[l]++
		}
	}
	return codes
}

// clSym is a symbol of the code length alphabet with its extra bits.
type clSym struct {
	sym   int
	extra uint64
}

var clExtraBits = map[int]uint{16: 2, 17: 3, 18: 7}

// dynamic writes a dynamic block header: HLIT, HDIST, the code length
// code lengths (all 19, in the sent order) and the code length symbols.
func (w *bitWriter) dynamic(final bool, nlit, ndist int, cl [19]uint8, syms []clSym) *bitWriter {
	f := uint64(0)
	if final {
		f = 1
	}
	w.bits(f, 1).bits(2, 2)
	w.bits(uint64(nlit-257), 5).bits(uint64(ndist-1), 5).bits(19-4, 4)
	for _, s := range clOrder {
		w.bits(uint64(cl[s]), 3)
	}
	codes := canonical(cl[:])
	for _, s := range syms {
		w.code(codes[s.sym], uint(cl[s.sym]))
		if x := clExtraBits[s.sym]; x > 0 {
			w.bits(s.extra, x)
		}
	}
	return w
}
