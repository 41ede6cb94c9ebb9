package delta

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/lazytree/lazytree/ostree"
)

// Blob is random-access content of a known size. *bytes.Reader and
// *io.SectionReader are Blobs.
type Blob interface {
	io.ReaderAt
	Size() int64
}

// Source gives the content of objects that existed before the delta: the
// files of the from-commit, which the 'r' (set-read-source) op names.
type Source interface {
	// OpenContent returns the uncompressed content of content object c.
	// Apply does not verify it (a wrong source only makes the object
	// built from it fail verification). If the Blob also implements
	// io.Closer, Apply closes it when done with it. Apply calls
	// OpenContent from the goroutine that called Apply, one call at a
	// time.
	OpenContent(ctx context.Context, c ostree.Checksum) (Blob, error)
}

// Sink receives the objects a part produces. Apply calls it from the
// goroutine that called Apply, one call at a time, in the order of the
// part's object list.
type Sink interface {
	// PutMetadata receives a dirtree or dirmeta whose sha256 and
	// structure have been verified (never a commit: Apply refuses to
	// produce one). data aliases the part's payload, which may be a
	// read-only memory mapping that Part.Close unmaps: the sink must not
	// modify it, and must copy what it keeps beyond the call.
	PutMetadata(ctx context.Context, obj ObjRef, data []byte) error
	// CreateContent starts content object c with header h (h.Size is
	// the content size; 0 for symlinks, whose target is in h). Apply
	// then writes exactly h.Size bytes and calls Commit only if the
	// object hashes to c, or Abort otherwise. Bytes written are
	// unverified until Commit: keep them in a temporary place. Returning
	// a nil ContentWriter and nil error skips the object (one the sink
	// already has); Apply still verifies it. h is the sink's to keep: it
	// does not alias the part (objects of a part may share h.Xattrs,
	// which nobody may modify).
	CreateContent(ctx context.Context, c ostree.Checksum, h *ostree.FileHeader) (ContentWriter, error)
}

// ContentWriter receives the content of one object.
type ContentWriter interface {
	io.Writer
	// Commit is called once all content was written and the object's
	// checksum matched. Only now may the sink store it as verified.
	Commit() error
	// Abort discards what was written. It is called at most once, and
	// never after Commit.
	Abort()
}

// Opcodes (ostree-format.md 4.4).
const (
	OpOpenSpliceAndClose byte = 'S'
	OpOpen               byte = 'o'
	OpWrite              byte = 'w'
	OpSetReadSource      byte = 'r'
	OpUnsetReadSource    byte = 'R'
	OpClose              byte = 'c'
	OpBspatch            byte = 'B'
)

// chunkSize is how much content Apply copies at once from a source.
const chunkSize = 64 << 10

// Apply runs the part's ops, producing objects in the order given (the
// part header's Objects), verifying each, and handing it to sink. src may
// be nil for a delta from scratch; a part that needs it then fails.
// Offsets, sizes and indexes are all bounds-checked: a malformed part
// gives an error matching ostree.ErrCorrupt and never a panic, and a
// produced object that does not hash to its name gives an
// *ostree.ChecksumError naming it. Apply writes at most the part header's
// USize bytes of metadata and content in total.
//
// objects may hold only dirtree, dirmeta and content objects (as
// ParseSuperblock enforces for part headers): Apply never produces a
// commit or any other type, whatever it is asked for. The part must not
// have been closed.
func (p *Part) Apply(ctx context.Context, objects []ObjRef, src Source, sink Sink) error {
	if p.closed {
		return errors.New("apply delta part: part is closed")
	}
	for i, o := range objects {
		if !partObjType(o.Type) {
			return corrupt("delta part", "object %d is %s: parts produce only dirtree, dirmeta and content objects", i, o)
		}
	}
	a := &applier{p: p, objs: objects, src: src, sink: sink, budget: p.usize}
	defer a.release()
	lastObj := 0
	for a.pos < len(p.Ops) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if a.next-lastObj >= 64 {
			lastObj = a.next
			p.dropPages()
		}
		at := a.pos
		op := p.Ops[at]
		a.pos++
		if err := a.step(ctx, op); err != nil {
			if ce, ok := err.(*ostree.ChecksumError); ok {
				return ce
			}
			return fmt.Errorf("delta part op %q at byte %d: %w", op, at, err)
		}
	}
	if a.cur != nil {
		return corrupt("delta part", "ops end while %s is open", a.cur.ref)
	}
	if a.next != len(a.objs) {
		return corrupt("delta part", "ops produce %d of its %d objects", a.next, len(a.objs))
	}
	return nil
}

type applier struct {
	p      *Part
	objs   []ObjRef
	src    Source
	sink   Sink
	pos    int    // in p.Ops
	next   int    // index of the next object to open
	budget uint64 // bytes the part may still write
	cur    *openObject

	reading   Blob // active read source, or nil
	cached    Blob // last source opened, kept across 'R' and 'c'
	cachedSum ostree.Checksum
	opens     int // calls to src.OpenContent
	buf       []byte
	xattrs    xattrCache
}

type openObject struct {
	ref     ObjRef
	h       *ostree.FileHeader
	hash    hash.Hash
	w       ContentWriter // nil: the sink skips the object
	written uint64
}

func (a *applier) release() {
	if a.cur != nil && a.cur.w != nil {
		a.cur.w.Abort()
	}
	a.cur = nil
	a.closeCached()
}

func (a *applier) closeCached() {
	if c, ok := a.cached.(io.Closer); ok {
		c.Close()
	}
	a.cached, a.reading = nil, nil
}

func (a *applier) varint() (uint64, error) {
	v, n := binary.Uvarint(a.p.Ops[a.pos:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: truncated or overlong varint", ostree.ErrCorrupt)
	}
	a.pos += n
	return v, nil
}

func (a *applier) varints(vs ...*uint64) error {
	for _, v := range vs {
		var err error
		if *v, err = a.varint(); err != nil {
			return err
		}
	}
	return nil
}

// payload returns payload[off:off+n] after checking the range.
func (a *applier) payload(off, n uint64) ([]byte, error) {
	size := uint64(len(a.p.Payload))
	if off > size || n > size-off {
		return nil, fmt.Errorf("%w: range %d+%d outside the %d-byte payload", ostree.ErrCorrupt, off, n, size)
	}
	return a.p.Payload[off : off+n], nil
}

func (a *applier) nextObject() (ObjRef, error) {
	if a.cur != nil {
		return ObjRef{}, fmt.Errorf("%w: %s is still open", ostree.ErrCorrupt, a.cur.ref)
	}
	if a.next >= len(a.objs) {
		return ObjRef{}, fmt.Errorf("%w: more objects than the %d listed", ostree.ErrCorrupt, len(a.objs))
	}
	o := a.objs[a.next]
	a.next++
	return o, nil
}

func (a *applier) spend(n uint64) error {
	if n > a.budget {
		return fmt.Errorf("%w: objects larger than the part's uncompressed size %d", ostree.ErrCorrupt, a.p.usize)
	}
	a.budget -= n
	return nil
}

func (a *applier) step(ctx context.Context, op byte) error {
	switch op {
	case OpOpenSpliceAndClose:
		return a.splice(ctx)
	case OpOpen:
		return a.open(ctx)
	case OpWrite:
		var size, off uint64
		if err := a.varints(&size, &off); err != nil {
			return err
		}
		return a.write(ctx, size, off)
	case OpSetReadSource:
		off, err := a.varint()
		if err != nil {
			return err
		}
		b, err := a.payload(off, 32)
		if err != nil {
			return err
		}
		c, _ := ostree.ChecksumFromBytes(b)
		return a.setSource(ctx, c)
	case OpUnsetReadSource:
		a.reading = nil
		return nil
	case OpClose:
		return a.close()
	case OpBspatch:
		var off, n uint64
		if err := a.varints(&off, &n); err != nil {
			return err
		}
		return a.bspatch(ctx, off, n)
	}
	return fmt.Errorf("%w: unknown opcode", ostree.ErrCorrupt)
}

// header builds and checks the content header of an 'S' or 'o' op.
func (a *applier) header(ref ObjRef, modeIdx, xattrIdx uint64) (*ostree.FileHeader, error) {
	if ref.Type != ostree.ObjFile {
		return nil, fmt.Errorf("%w: content op for %s", ostree.ErrCorrupt, ref)
	}
	h, err := a.p.header(modeIdx, xattrIdx, &a.xattrs)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ostree.ErrCorrupt, ref, err)
	}
	return h, nil
}

func (a *applier) splice(ctx context.Context) error {
	ref, err := a.nextObject()
	if err != nil {
		return err
	}
	if ref.Type.IsMeta() {
		var size, off uint64
		if err := a.varints(&size, &off); err != nil {
			return err
		}
		data, err := a.payload(off, size)
		if err != nil {
			return err
		}
		if err := a.spend(size); err != nil {
			return err
		}
		if got := ostree.Sum(data); got != ref.Checksum {
			return &ostree.ChecksumError{Object: ref.String(), Got: got, Want: ref.Checksum}
		}
		if err := validateMetadata(ref, data); err != nil {
			return err
		}
		return a.sink.PutMetadata(ctx, ref, data)
	}
	var modeIdx, xattrIdx, size, off uint64
	if err := a.varints(&modeIdx, &xattrIdx, &size, &off); err != nil {
		return err
	}
	h, err := a.header(ref, modeIdx, xattrIdx)
	if err != nil {
		return err
	}
	data, err := a.payload(off, size)
	if err != nil {
		return err
	}
	content := data
	if h.IsSymlink() {
		if !validTarget(data) {
			return fmt.Errorf("%w: %s: invalid symlink target %q", ostree.ErrCorrupt, ref, clip(data))
		}
		h.Target, content = string(data), nil
	} else {
		h.Size = size
		if err := a.spend(size); err != nil {
			return err
		}
	}
	hs := sha256.New()
	hs.Write(h.StreamHeader())
	hs.Write(content)
	if got := ostree.Checksum(hs.Sum(nil)); got != ref.Checksum {
		return &ostree.ChecksumError{Object: ref.String(), Got: got, Want: ref.Checksum}
	}
	w, err := a.sink.CreateContent(ctx, ref.Checksum, h)
	if err != nil || w == nil {
		return err
	}
	if len(content) > 0 {
		if _, err := w.Write(content); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

func (a *applier) open(ctx context.Context) error {
	ref, err := a.nextObject()
	if err != nil {
		return err
	}
	var modeIdx, xattrIdx, size uint64
	if err := a.varints(&modeIdx, &xattrIdx, &size); err != nil {
		return err
	}
	h, err := a.header(ref, modeIdx, xattrIdx)
	if err != nil {
		return err
	}
	if h.IsSymlink() {
		return fmt.Errorf("%w: %s: open op for a symlink", ostree.ErrCorrupt, ref)
	}
	if err := a.spend(size); err != nil {
		return err
	}
	h.Size = size
	o := &openObject{ref: ref, h: h, hash: sha256.New()}
	o.hash.Write(h.StreamHeader())
	if o.w, err = a.sink.CreateContent(ctx, ref.Checksum, h); err != nil {
		return err
	}
	a.cur = o
	return nil
}

// emit appends content to the open object.
func (a *applier) emit(b []byte) error {
	a.cur.hash.Write(b)
	a.cur.written += uint64(len(b))
	if a.cur.w == nil {
		return nil
	}
	_, err := a.cur.w.Write(b)
	return err
}

// room checks that n more bytes fit in the open object.
func (a *applier) room(n uint64) error {
	if a.cur == nil {
		return fmt.Errorf("%w: no object is open", ostree.ErrCorrupt)
	}
	if n > a.cur.h.Size-a.cur.written {
		return fmt.Errorf("%w: %s: writing %d bytes at %d overflows its size %d", ostree.ErrCorrupt, a.cur.ref, n, a.cur.written, a.cur.h.Size)
	}
	return nil
}

func (a *applier) write(ctx context.Context, size, off uint64) error {
	if err := a.room(size); err != nil {
		return err
	}
	if a.reading == nil {
		data, err := a.payload(off, size)
		if err != nil {
			return err
		}
		return a.emit(data)
	}
	src := a.reading
	total := uint64(src.Size())
	if off > total || size > total-off {
		return fmt.Errorf("%w: range %d+%d outside the %d-byte source %s", ostree.ErrCorrupt, off, size, total, a.cachedSum)
	}
	buf := a.scratch()
	for size > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(uint64(len(buf)), size)
		if err := readFull(src, buf[:n], int64(off)); err != nil {
			return fmt.Errorf("read source %s: %w", a.cachedSum, err)
		}
		if err := a.emit(buf[:n]); err != nil {
			return err
		}
		off += n
		size -= n
	}
	return nil
}

func (a *applier) scratch() []byte {
	if a.buf == nil {
		a.buf = make([]byte, chunkSize)
	}
	return a.buf
}

// readFull reads len(b) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (a *applier) setSource(ctx context.Context, c ostree.Checksum) error {
	if a.cached != nil && a.cachedSum == c {
		a.reading = a.cached
		return nil
	}
	a.closeCached()
	// ostree's generator sets one source per object (rollsum re-sets the
	// same one, which the cache absorbs). Bound the opens so that a part
	// alternating between two large sources cannot make us read them
	// over and over.
	if a.opens++; a.opens > len(a.objs) {
		return fmt.Errorf("%w: more read sources than objects", ostree.ErrCorrupt)
	}
	if a.src == nil {
		return fmt.Errorf("set read source %s: the delta needs existing objects and no source was given", c)
	}
	b, err := a.src.OpenContent(ctx, c)
	if err != nil {
		return fmt.Errorf("set read source %s: %w", c, err)
	}
	if b.Size() < 0 {
		if cl, ok := b.(io.Closer); ok {
			cl.Close()
		}
		return fmt.Errorf("set read source %s: negative size", c)
	}
	a.cached, a.cachedSum, a.reading = b, c, b
	return nil
}

func (a *applier) close() error {
	o := a.cur
	if o == nil {
		return fmt.Errorf("%w: close with no object open", ostree.ErrCorrupt)
	}
	a.reading = nil
	if o.written != o.h.Size {
		return fmt.Errorf("%w: %s: closed after %d of %d bytes", ostree.ErrCorrupt, o.ref, o.written, o.h.Size)
	}
	// From here on the object is finished either way; release must not
	// abort it again.
	a.cur = nil
	if got := ostree.Checksum(o.hash.Sum(nil)); got != o.ref.Checksum {
		if o.w != nil {
			o.w.Abort()
		}
		return &ostree.ChecksumError{Object: o.ref.String(), Got: got, Want: o.ref.Checksum}
	}
	if o.w == nil {
		return nil
	}
	return o.w.Commit()
}

func (a *applier) bspatch(ctx context.Context, off, n uint64) error {
	if a.cur == nil {
		return fmt.Errorf("%w: bspatch with no object open", ostree.ErrCorrupt)
	}
	if a.reading == nil {
		return fmt.Errorf("%w: bspatch with no read source", ostree.ErrCorrupt)
	}
	if a.cur.written != 0 {
		return fmt.Errorf("%w: %s: bspatch after %d bytes were written", ostree.ErrCorrupt, a.cur.ref, a.cur.written)
	}
	patch, err := a.payload(off, n)
	if err != nil {
		return err
	}
	return bspatch(ctx, a.reading, patch, a.cur.h.Size, a.emit, a.scratch())
}

// validateMetadata checks what ostree checks when it writes a metadata
// object: that it parses as its type.
func validateMetadata(ref ObjRef, data []byte) error {
	var err error
	switch ref.Type {
	case ostree.ObjDirTree:
		_, err = ostree.DecodeDirTree(data)
	case ostree.ObjDirMeta:
		_, err = ostree.DecodeDirMeta(data)
	default:
		// Apply refuses every other type before it starts.
		err = fmt.Errorf("%w: a part cannot produce this type", ostree.ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	return nil
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
