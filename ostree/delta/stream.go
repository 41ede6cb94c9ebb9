package delta

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/ostree"
	"github.com/therootcompany/xz"
)

// OpenPartStream verifies and decodes one part file read from r (an HTTP
// body, say), keeping the decompressed body off the heap.
//
// It reads r once, up to hdr.Size bytes and one more to see that it ends
// there, hashing what it reads. As it reads, it decompresses (none or xz)
// into a temporary file in tmpDir, unlinked as soon as it is created, and
// refuses the part as soon as the output would pass hdr.BodyLimit() (a
// multiple of hdr.USize, at most MaxPartSize): no more than that is ever
// written.
// Only once r has ended, has hdr.Size bytes and hashes to hdr.Checksum is
// the body mapped read-only and decoded; the returned part's Payload and
// Ops are slices of that mapping. The heap used does not grow with the
// part: the xz dictionary (at most 64 MiB, declared by the stream; 8 MiB
// for Generate's parts, 32 MiB for ostree's) and a few 64 KiB buffers.
//
// Errors: a part that is not what hdr describes gives an
// *ostree.ChecksumError (wrong digest) or an error matching
// ostree.ErrCorrupt (wrong length, malformed, too large); a part version
// or compression this package lacks gives ErrUnsupported; an error from r
// or ctx is returned wrapped, matching with errors.Is, so that the caller
// can tell a failed transfer from a bad part. Nothing is left in tmpDir
// whatever happens.
//
// r is not closed. The caller must Close the part, which unmaps it (see
// Close); until then the unlinked file takes up to hdr.BodyLimit() bytes
// of disk in tmpDir.
func OpenPartStream(ctx context.Context, r io.Reader, hdr PartHeader, tmpDir string) (*Part, error) {
	return (*Decoders)(nil).OpenPartStream(ctx, r, hdr, tmpDir)
}

// Decoders keeps up to a fixed number of xz decoders, each with its
// dictionary (32 MiB in ostree's parts), for the parts of one delta: a
// dictionary is allocated once per decoding goroutine rather than once
// per part, so that the parts of a pull do not pile up dictionaries as
// garbage. Drop it when the delta is done; a nil *Decoders keeps none.
type Decoders struct {
	free  chan *xz.Reader
	slots chan struct{} // one per decoder in use
}

// NewDecoders returns a Decoders of n decoders: at most n parts decode
// at once, the others wait for a decoder.
func NewDecoders(n int) *Decoders {
	n = max(n, 1)
	return &Decoders{free: make(chan *xz.Reader, n), slots: make(chan struct{}, n)}
}

// OpenPartStream is the package's OpenPartStream, decoding with one of
// d's decoders.
func (d *Decoders) OpenPartStream(ctx context.Context, r io.Reader, hdr PartHeader, tmpDir string) (*Part, error) {
	what := "delta part " + hdr.Checksum.String()
	if hdr.Version != 0 {
		return nil, unsupported(what, "version %d", hdr.Version)
	}
	if hdr.Size == 0 {
		return nil, corrupt(what, "empty")
	}
	if hdr.Size > MaxPartSize {
		return nil, corrupt(what, "%d bytes, more than %d", hdr.Size, MaxPartSize)
	}
	f, err := os.CreateTemp(tmpDir, "delta-part-*")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	defer f.Close() // the mapping outlives the descriptor
	if err := os.Remove(f.Name()); err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	in := &hashReader{ctx: ctx, r: r, h: sha256.New(), left: hdr.Size}
	n, err := spool(ctx, in, f, int64(hdr.BodyLimit()), d)
	if err != nil {
		if in.err != nil {
			return nil, fmt.Errorf("read %s: %w", what, in.err)
		}
		// A part that fails to decode is most likely not the part the
		// header names: say so if it is, reading no more than the
		// header promised. An oversized output is refused at once.
		if !errors.Is(err, errTooLarge) {
			if cerr := in.finish(what, hdr); cerr != nil {
				var ce *ostree.ChecksumError
				if errors.As(cerr, &ce) || in.err != nil {
					return nil, cerr
				}
			}
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := in.finish(what, hdr); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, corrupt(what, "empty body")
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("open %s: mmap: %w", what, err)
	}
	p, err := decodePart(m)
	if err != nil {
		unix.Munmap(m)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p.usize, p.mapping = hdr.USize, m
	return p, nil
}

// errTooLarge is matched by the error for output past the part's limit.
var errTooLarge = errors.New("decompresses to more than the part may")

// spoolBuf is the size of the copy and file buffers.
const spoolBuf = 64 << 10

// spool decompresses the part file in into w, writing at most limit bytes,
// and returns how many it wrote.
func spool(ctx context.Context, in io.Reader, w io.Writer, limit int64, d *Decoders) (int64, error) {
	var kind [1]byte
	if _, err := io.ReadFull(in, kind[:]); err != nil {
		return 0, fmt.Errorf("%w: %v", ostree.ErrCorrupt, err)
	}
	bw := bufio.NewWriterSize(w, spoolBuf)
	lw := &limitWriter{w: bw, left: limit}
	buf := make([]byte, spoolBuf)
	switch kind[0] {
	case CompressionNone:
		if _, err := io.CopyBuffer(lw, onlyReader{in}, buf); err != nil {
			return 0, err
		}
	case CompressionXZ:
		g := newXZGuard(bufio.NewReaderSize(in, spoolBuf), limit)
		xr, done, err := d.newXZReader(ctx, g)
		if err != nil {
			return 0, g.cause(fmt.Errorf("%w: xz: %v", ostree.ErrCorrupt, err))
		}
		defer done()
		if _, err := io.CopyBuffer(lw, onlyReader{xr}, buf); err != nil {
			if errors.Is(err, errTooLarge) {
				return 0, err
			}
			return 0, g.cause(fmt.Errorf("%w: xz: %v", ostree.ErrCorrupt, err))
		}
		if !g.done() {
			return 0, fmt.Errorf("%w: xz: stream ends before its index", ostree.ErrCorrupt)
		}
		if lw.n != g.total {
			return 0, fmt.Errorf("%w: xz: %d bytes out, chunk headers declare %d", ostree.ErrCorrupt, lw.n, g.total)
		}
	default:
		return 0, fmt.Errorf("%w: compression type %q", ErrUnsupported, kind[0])
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return lw.n, nil
}

// onlyReader hides WriterTo/ReaderFrom so that io.CopyBuffer uses the
// buffer given and the limitWriter sees every write.
type onlyReader struct{ io.Reader }

// limitWriter refuses a write that would take it past left bytes, before
// writing any of it.
type limitWriter struct {
	w    io.Writer
	n    int64
	left int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > l.left {
		return 0, fmt.Errorf("%w: %w (%d bytes)", ostree.ErrCorrupt, errTooLarge, l.n+l.left)
	}
	n, err := l.w.Write(b)
	l.n += int64(n)
	l.left -= int64(n)
	return n, err
}

// hashReader reads at most left bytes of r, hashing them. It records an
// error of r or ctx in err, so that it is not taken for a bad part.
type hashReader struct {
	ctx  context.Context
	r    io.Reader
	h    hash.Hash
	n    uint64
	left uint64
	err  error
}

func (h *hashReader) Read(b []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	if err := h.ctx.Err(); err != nil {
		h.err = err
		return 0, err
	}
	if h.left == 0 {
		return 0, io.EOF
	}
	if uint64(len(b)) > h.left {
		b = b[:h.left]
	}
	n, err := h.r.Read(b)
	h.h.Write(b[:n])
	h.n += uint64(n)
	h.left -= uint64(n)
	if err != nil && err != io.EOF {
		h.err = err
	}
	return n, err
}

// finish reads what is left of the part, checks that r ends after
// hdr.Size bytes, and compares the digest.
func (h *hashReader) finish(what string, hdr PartHeader) error {
	if _, err := io.Copy(io.Discard, onlyReader{h}); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	if h.n != hdr.Size {
		return corrupt(what, "%d bytes, header says %d", h.n, hdr.Size)
	}
	var one [1]byte
	switch n, err := io.ReadFull(h.r, one[:]); {
	case n > 0:
		return corrupt(what, "longer than the %d bytes the header says", hdr.Size)
	case err != io.EOF && err != io.ErrUnexpectedEOF:
		h.err = err
		return fmt.Errorf("read %s: %w", what, err)
	}
	if got := ostree.Checksum(h.h.Sum(nil)); got != hdr.Checksum {
		return &ostree.ChecksumError{Object: what, Got: got, Want: hdr.Checksum}
	}
	return nil
}

// maxXZBlocks caps the blocks of a part's xz stream. The decoder
// allocates a dictionary per block; ostree (liblzma's single-threaded
// encoder) and Generate write one.
const maxXZBlocks = 64

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// xzGuard passes an xz stream through while walking its framing (stream
// header, block headers, LZMA2 chunk headers), so that a header is checked
// before the decoder behind it sees it: a dictionary over maxXZDict, more
// than maxXZBlocks blocks, or chunks declaring more than limit bytes in
// all are refused before the decoder allocates or writes for them.
// Integrity (CRCs, index, footer) is left to the decoder.
type xzGuard struct {
	r         *bufio.Reader
	limit     int64
	total     int64 // uncompressed bytes the chunks declare
	state     int
	pass      int // bytes to pass before the next header
	blockData int // bytes of LZMA2 data in the current block
	checkSize int
	blocks    int
	err       error // the framing error, kept for cause
}

const (
	xzStreamHeader = iota
	xzBlockOrIndex
	xzChunk
	xzBlockEnd
	xzIndex // the rest: index and footer
)

func newXZGuard(r *bufio.Reader, limit int64) *xzGuard { return &xzGuard{r: r, limit: limit} }

// done reports whether the walk reached the index.
func (g *xzGuard) done() bool { return g.state == xzIndex }

// cause returns the framing error if the guard stopped the decoder, else
// err: the decoder wraps what its reader returns in its own words.
func (g *xzGuard) cause(err error) error {
	if g.err != nil {
		return g.err
	}
	return err
}

func (g *xzGuard) Read(b []byte) (int, error) {
	for g.pass == 0 && g.state != xzIndex {
		if g.err = g.next(); g.err != nil {
			return 0, g.err
		}
	}
	if g.state != xzIndex && len(b) > g.pass {
		b = b[:g.pass]
	}
	n, err := g.r.Read(b)
	if g.state != xzIndex {
		g.pass -= n
		if err == io.EOF {
			g.err = g.bad("truncated")
			err = g.err
		}
	}
	return n, err
}

// skipAll walks the framing up to the index without decoding: scanXZ.
func (g *xzGuard) skipAll() error {
	for g.state != xzIndex {
		if g.pass > 0 {
			n, err := g.r.Discard(g.pass)
			g.pass -= n
			if err != nil {
				return g.bad("truncated")
			}
			continue
		}
		if err := g.next(); err != nil {
			return err
		}
	}
	return nil
}

func (g *xzGuard) bad(format string, args ...any) error {
	return fmt.Errorf("%w: xz: %s", ostree.ErrCorrupt, fmt.Sprintf(format, args...))
}

func (g *xzGuard) peek(n int) ([]byte, error) {
	b, err := g.r.Peek(n)
	if err != nil {
		return nil, g.bad("truncated")
	}
	return b, nil
}

// next checks the header at the current position and sets pass to its
// length plus whatever data follows it up to the next header.
func (g *xzGuard) next() error {
	switch g.state {
	case xzStreamHeader:
		b, err := g.r.Peek(12)
		if err != nil || !bytes6Equal(b, xzMagic) {
			return g.bad("not an xz stream")
		}
		if b[6] != 0 || b[7]&0xf0 != 0 {
			return g.bad("bad stream flags")
		}
		switch b[7] {
		case 0x0:
		case 0x1:
			g.checkSize = 4
		case 0x4:
			g.checkSize = 8
		case 0xa:
			g.checkSize = 32
		default:
			return fmt.Errorf("%w: xz: check type %d", ErrUnsupported, b[7])
		}
		g.pass, g.state = 12, xzBlockOrIndex
	case xzBlockOrIndex:
		b, err := g.peek(1)
		if err != nil {
			return err
		}
		if b[0] == 0 {
			g.state = xzIndex
			return nil
		}
		if g.blocks++; g.blocks > maxXZBlocks {
			return fmt.Errorf("%w: xz: more than %d blocks", ErrUnsupported, maxXZBlocks)
		}
		hsize := (int(b[0]) + 1) * 4
		if b, err = g.r.Peek(hsize); err != nil {
			return g.bad("truncated block header")
		}
		if err := checkBlockHeader(b[1 : hsize-4]); err != nil {
			return err
		}
		g.pass, g.state, g.blockData = hsize, xzChunk, 0
	case xzChunk:
		b, err := g.peek(1)
		if err != nil {
			return g.bad("truncated LZMA2 data")
		}
		switch c := b[0]; {
		case c == 0:
			g.pass, g.state = 1, xzBlockEnd
		case c == 1 || c == 2:
			if b, err = g.r.Peek(3); err != nil {
				return g.bad("truncated LZMA2 chunk")
			}
			n := int(binary.BigEndian.Uint16(b[1:])) + 1
			g.total += int64(n)
			g.pass = 3 + n
		case c >= 0x80:
			hl := 5
			if c >= 0xc0 {
				hl = 6
			}
			if b, err = g.r.Peek(hl); err != nil {
				return g.bad("truncated LZMA2 chunk")
			}
			u := int(c&0x1f)<<16 | int(binary.BigEndian.Uint16(b[1:]))
			p := int(binary.BigEndian.Uint16(b[3:]))
			g.total += int64(u) + 1
			g.pass = hl + p + 1
		default:
			return g.bad("invalid LZMA2 control byte %#x", c)
		}
		g.blockData += g.pass
		if g.total > g.limit {
			return fmt.Errorf("%w: xz: %w (%d bytes)", ostree.ErrCorrupt, errTooLarge, g.limit)
		}
	case xzBlockEnd:
		g.pass, g.state = (4-g.blockData%4)%4+g.checkSize, xzBlockOrIndex
	}
	return nil
}

func bytes6Equal(b, magic []byte) bool { return len(b) >= 6 && string(b[:6]) == string(magic) }

// checkBlockHeader checks an xz block header (without its size byte and
// CRC32): one filter, LZMA2, with a dictionary of at most maxXZDict.
func checkBlockHeader(h []byte) error {
	flags := h[0]
	if flags&0x3c != 0 {
		return fmt.Errorf("%w: xz: reserved block flags", ostree.ErrCorrupt)
	}
	if flags&3 != 0 {
		return fmt.Errorf("%w: xz: more than one filter", ErrUnsupported)
	}
	var vals [4]uint64
	nv, q := 0, 1
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0, true, true} {
		if !present {
			continue
		}
		v, n := xzVarint(h[q:])
		if n == 0 {
			return fmt.Errorf("%w: xz: bad block header", ostree.ErrCorrupt)
		}
		vals[nv], nv, q = v, nv+1, q+n
	}
	// The last two are the filter id and the size of its properties.
	if vals[nv-2] != 0x21 || vals[nv-1] != 1 || q >= len(h) {
		return fmt.Errorf("%w: xz: only LZMA2 is supported", ErrUnsupported)
	}
	if dc := h[q]; dc > 40 || xzDictSize(dc) > maxXZDict {
		return fmt.Errorf("%w: xz: dictionary larger than %d bytes", ErrUnsupported, maxXZDict)
	}
	return nil
}
