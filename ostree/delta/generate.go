package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/ulikunitz/xz"
	"golang.org/x/sync/errgroup"

	"github.com/lazytree/lazytree/ostree"
)

// Generator defaults, ostree's (decimal megabytes, as ostree counts).
const (
	DefaultMaxPartSize  = 32_000_000
	DefaultFallbackSize = 4_000_000
)

// maxSpliceSize is the largest content object Generate puts in a part
// even when fallbacks are disabled: bigger ones always become fallbacks,
// so that every part stays well inside what OpenPart accepts.
const maxSpliceSize = 256 << 20

// xzDictCap is the LZMA2 dictionary Generate compresses with.
const xzDictCap = 8 << 20

// Objects is the repository Generate reads; an adapter over ostree/repo's
// archive repository provides it (the tests have one). Methods may be called from the goroutine that
// called Generate only, one at a time. Generate verifies everything it
// reads, so an implementation need not.
type Objects interface {
	// ReadMetadata returns the bytes of a commit, dirtree or dirmeta.
	ReadMetadata(ctx context.Context, t ostree.ObjectType, c ostree.Checksum) ([]byte, error)
	// ReadCommitMeta returns a commit's detached metadata (an a{sv}), or
	// nil and no error when it has none.
	ReadCommitMeta(ctx context.Context, commit ostree.Checksum) ([]byte, error)
	// OpenContent returns a content object's header and a reader of its
	// uncompressed content (empty for symlinks). Generate closes it.
	OpenContent(ctx context.Context, c ostree.Checksum) (*ostree.FileHeader, io.ReadCloser, error)
	// StoredSize returns the size of the stored .filez object; it is
	// recorded for fallback objects.
	StoredSize(ctx context.Context, c ostree.Checksum) (uint64, error)
}

// PartWriter stores part file index of the delta being generated (as
// <delta path>/<index>). Generate calls it from its own goroutine, in
// index order.
type PartWriter func(ctx context.Context, index int, data []byte) error

// GenerateOptions tune Generate. The zero value gives ostree's defaults.
type GenerateOptions struct {
	// MaxPartSize is the payload size at which a part is closed;
	// 0 means DefaultMaxPartSize.
	MaxPartSize uint64
	// FallbackSize: regular files larger than this are not put in the
	// delta but listed as fallbacks, which clients fetch as loose
	// objects. 0 means DefaultFallbackSize; negative means no fallbacks
	// (files over 256 MiB are fallbacks regardless).
	FallbackSize int64
	// Inline stores the parts in the superblock instead of in files.
	Inline bool
	// AlwaysXZ runs the LZMA2 encoder on every part. By default files
	// that do not compress (a fast deflate probe of their start saves
	// under 5 %) go into parts that are xz streams of uncompressed LZMA2
	// chunks: the pure-Go encoder runs at a few MB/s on such data, and
	// would only make it bigger.
	AlwaysXZ bool
	// Timestamp is the generation time recorded; zero means now.
	Timestamp time.Time
	// Metadata are extra superblock metadata entries
	// (gvariant.DictEntry with a gvariant.Variant value), put first.
	Metadata []any
	// Workers bounds the parts compressed at once; 0 means
	// min(GOMAXPROCS, 4). Each holds up to about 3 × MaxPartSize bytes.
	Workers int
}

// Generate builds a static delta to commit to: from scratch when from is
// nil, otherwise holding only the objects reachable from to that are not
// reachable from from. Every object is carried whole by 'S'
// (open-splice-and-close) ops; no rollsum or bsdiff is attempted. Parts
// are handed to write as they are finished (write may be nil with
// Inline); the superblock, with the to-commit and its detached metadata
// embedded and ostree.endianness 'l', is returned as bytes and parsed.
//
// Generate starts up to Workers goroutines that compress parts, and they
// have all ended when it returns.
func Generate(ctx context.Context, src Objects, from *ostree.Checksum, to ostree.Checksum, write PartWriter, opts GenerateOptions) (*Superblock, []byte, error) {
	if opts.MaxPartSize == 0 {
		opts.MaxPartSize = DefaultMaxPartSize
	}
	opts.MaxPartSize = min(opts.MaxPartSize, maxSpliceSize)
	if opts.FallbackSize == 0 {
		opts.FallbackSize = DefaultFallbackSize
	}
	if opts.FallbackSize < 0 || opts.FallbackSize > maxSpliceSize {
		opts.FallbackSize = maxSpliceSize
	}
	if opts.Workers <= 0 {
		opts.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if write == nil && !opts.Inline {
		return nil, nil, fmt.Errorf("generate delta: no part writer")
	}
	ts := opts.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	gen := &generator{ctx: gctx, src: src, opts: opts, write: write, group: g}
	sb, err := gen.run(from, to, uint64(ts.Unix()))
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate delta %s: %w", ostree.DeltaName(from, to), err)
	}
	data, err := sb.Encode()
	if err != nil {
		return nil, nil, fmt.Errorf("generate delta %s: %w", ostree.DeltaName(from, to), err)
	}
	return sb, data, nil
}

type generator struct {
	ctx   context.Context
	src   Objects
	opts  GenerateOptions
	write PartWriter
	group *errgroup.Group

	sb       *Superblock
	xzPart   *partBuilder
	rawPart  *partBuilder
	pending  []*pendingPart
	probe    *flate.Writer
	probeOut countWriter
}

type pendingPart struct {
	index int
	done  chan struct{}
	file  []byte
	hdr   PartHeader
}

func (g *generator) run(from *ostree.Checksum, to ostree.Checksum, ts uint64) (*Superblock, error) {
	commitData, commit, err := g.readCommit(to)
	if err != nil {
		return nil, err
	}
	g.sb = &Superblock{Metadata: g.opts.Metadata, Timestamp: ts, From: from, To: to, Commit: commit, CommitData: commitData, Endianness: LittleEndian}
	if g.sb.CommitMeta, err = g.src.ReadCommitMeta(g.ctx, to); err != nil {
		return nil, fmt.Errorf("read detached metadata of %s: %w", to, err)
	}
	if g.sb.CommitMeta != nil {
		if _, err := ostree.DecodeVarDict("commitmeta of "+to.String(), g.sb.CommitMeta); err != nil {
			return nil, err
		}
	}
	have := map[ostree.Checksum]bool{}
	if from != nil {
		_, fc, err := g.readCommit(*from)
		if err != nil {
			return nil, err
		}
		err = g.walk(fc.RootTree, fc.RootMeta, have, func(ref ObjRef, data []byte) error { return nil }, func(c ostree.Checksum) {})
		if err != nil {
			return nil, err
		}
	}
	g.xzPart, g.rawPart = newPartBuilder(false), newPartBuilder(true)
	var files []ostree.Checksum
	err = g.walk(commit.RootTree, commit.RootMeta, have, g.addMetadata, func(c ostree.Checksum) { files = append(files, c) })
	if err != nil {
		return nil, err
	}
	var buf []byte
	for _, c := range files {
		if buf, err = g.addContent(c, buf); err != nil {
			return nil, err
		}
	}
	for _, b := range []*partBuilder{g.xzPart, g.rawPart} {
		if err := g.flush(b); err != nil {
			return nil, err
		}
	}
	for len(g.pending) > 0 {
		if err := g.drain(true); err != nil {
			return nil, err
		}
	}
	if g.sb.Fallbacks == nil {
		g.sb.Fallbacks = []Fallback{}
	}
	return g.sb, nil
}

func (g *generator) readCommit(c ostree.Checksum) ([]byte, *ostree.Commit, error) {
	data, err := g.readMeta(ObjRef{ostree.ObjCommit, c})
	if err != nil {
		return nil, nil, err
	}
	cm, err := ostree.DecodeCommit(data)
	if err != nil {
		return nil, nil, fmt.Errorf("commit %s: %w", c, err)
	}
	return data, cm, nil
}

func (g *generator) readMeta(ref ObjRef) ([]byte, error) {
	data, err := g.src.ReadMetadata(g.ctx, ref.Type, ref.Checksum)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	if got := ostree.Sum(data); got != ref.Checksum {
		return nil, &ostree.ChecksumError{Object: ref.String(), Got: got, Want: ref.Checksum}
	}
	return data, nil
}

// walk visits the dirmeta and dirtrees below a root (each once, and none
// in seen, which it extends), then reports content objects to file.
func (g *generator) walk(tree, meta ostree.Checksum, seen map[ostree.Checksum]bool, visit func(ObjRef, []byte) error, file func(ostree.Checksum)) error {
	if !seen[meta] {
		seen[meta] = true
		ref := ObjRef{ostree.ObjDirMeta, meta}
		data, err := g.readMeta(ref)
		if err != nil {
			return err
		}
		if err := validateMetadata(ref, data); err != nil {
			return err
		}
		if err := visit(ref, data); err != nil {
			return err
		}
	}
	if seen[tree] {
		return nil
	}
	seen[tree] = true
	ref := ObjRef{ostree.ObjDirTree, tree}
	data, err := g.readMeta(ref)
	if err != nil {
		return err
	}
	dt, err := ostree.DecodeDirTree(data)
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	if err := visit(ref, data); err != nil {
		return err
	}
	for _, f := range dt.Files {
		if !seen[f.Checksum] {
			seen[f.Checksum] = true
			file(f.Checksum)
		}
	}
	for _, d := range dt.Dirs {
		if err := g.walk(d.Tree, d.Meta, seen, visit, file); err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) addMetadata(ref ObjRef, data []byte) error {
	b := g.xzPart
	if err := g.makeRoom(b, uint64(len(data)), uint64(len(data)), 32); err != nil {
		return err
	}
	b.objects = append(b.objects, ref)
	b.op('S', uint64(len(data)), uint64(len(b.payload)))
	b.payload = append(b.payload, data...)
	b.usize += uint64(len(data))
	return nil
}

// addContent reads one content object, verifies it, and adds it to a part
// or to the fallbacks. buf is scratch space it returns for reuse.
func (g *generator) addContent(c ostree.Checksum, buf []byte) ([]byte, error) {
	if err := g.ctx.Err(); err != nil {
		return buf, err
	}
	ref := ObjRef{ostree.ObjFile, c}
	h, r, err := g.src.OpenContent(g.ctx, c)
	if err != nil {
		return buf, fmt.Errorf("read %s: %w", ref, err)
	}
	defer r.Close()
	if err := h.Validate(); err != nil {
		return buf, fmt.Errorf("%s: %w: %v", ref, ostree.ErrCorrupt, err)
	}
	for i := 1; i < len(h.Xattrs); i++ {
		if h.Xattrs[i-1].Name >= h.Xattrs[i].Name {
			// Parts carry xattr lists sorted, as every ostree writes them.
			return buf, fmt.Errorf("%s: %w: xattrs unsorted or duplicated at %q", ref, ostree.ErrCorrupt, h.Xattrs[i].Name)
		}
	}
	if !h.IsSymlink() && h.Size > uint64(g.opts.FallbackSize) {
		size, err := g.src.StoredSize(g.ctx, c)
		if err != nil {
			return buf, fmt.Errorf("size of %s: %w", ref, err)
		}
		g.sb.Fallbacks = append(g.sb.Fallbacks, Fallback{Object: ref, Size: size, USize: h.Size})
		return buf, nil
	}
	data := []byte(h.Target)
	if !h.IsSymlink() {
		if cap(buf) < int(h.Size) {
			buf = make([]byte, h.Size)
		}
		data = buf[:h.Size]
		if _, err := io.ReadFull(r, data); err != nil {
			return buf, fmt.Errorf("read %s: %w", ref, err)
		}
		var one [1]byte
		if n, _ := r.Read(one[:]); n != 0 {
			return buf, fmt.Errorf("read %s: %w: content longer than its header's %d bytes", ref, ostree.ErrCorrupt, h.Size)
		}
	}
	hs := sha256.New()
	hs.Write(h.StreamHeader())
	if !h.IsSymlink() {
		hs.Write(data)
	}
	if got := ostree.Checksum(hs.Sum(nil)); got != c {
		return buf, &ostree.ChecksumError{Object: ref.String(), Got: got, Want: c}
	}
	b := g.xzPart
	if !g.opts.AlwaysXZ && !h.IsSymlink() && !g.compressible(data) {
		b = g.rawPart
	}
	usize := h.Size
	if h.IsSymlink() {
		usize = 0 // ostree does not count symlink targets
	}
	if err := g.makeRoom(b, uint64(len(data)), usize, 32+modeSize+xattrsSize(h.Xattrs)); err != nil {
		return buf, err
	}
	b.objects = append(b.objects, ref)
	b.op('S', b.mode(Mode{h.UID, h.GID, h.Mode}), b.xattrs(h.Xattrs), uint64(len(data)), uint64(len(b.payload)))
	b.payload = append(b.payload, data...)
	b.usize += usize
	return buf, nil
}

// compressible reports whether a fast deflate of the start of data saves
// at least 5 %.
func (g *generator) compressible(data []byte) bool {
	if len(data) < 1024 {
		return true
	}
	sample := data[:min(len(data), 128<<10)]
	g.probeOut = 0
	if g.probe == nil {
		g.probe, _ = flate.NewWriter(&g.probeOut, flate.BestSpeed)
	} else {
		g.probe.Reset(&g.probeOut)
	}
	g.probe.Write(sample)
	g.probe.Close()
	return int(g.probeOut) < len(sample)*95/100
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// makeRoom closes b's part first if an object with this much payload,
// usize and table and op overhead would overflow it: past MaxPartSize of
// payload, or past what OpenPart accepts for the part's usize.
func (g *generator) makeRoom(b *partBuilder, payload, usize, overhead uint64) error {
	if len(b.objects) == 0 {
		return nil
	}
	body := uint64(len(b.payload)) + uint64(len(b.ops)) + b.tables + payload + overhead + 1024
	if uint64(len(b.payload))+payload > g.opts.MaxPartSize || body > partLimit(b.usize+usize, len(b.objects)+1) {
		return g.flush(b)
	}
	return nil
}

// Encoded sizes (with framing, generously) of table entries.
const modeSize = 12

func xattrsSize(xs []ostree.Xattr) uint64 {
	n := uint64(8)
	for _, x := range xs {
		n += uint64(len(x.Name)+1+len(x.Value)) + 16
	}
	return n
}

// flush turns b into a part: numbered now, compressed by a worker, and
// written in order by drain.
func (g *generator) flush(b *partBuilder) error {
	if len(b.objects) == 0 {
		return nil
	}
	part := &Part{Modes: b.modeList, Xattrs: b.xattrList, Payload: b.payload, Ops: b.ops}
	p := &pendingPart{index: len(g.sb.Parts), done: make(chan struct{})}
	p.hdr = PartHeader{USize: b.usize, Objects: b.objects}
	g.sb.Parts = append(g.sb.Parts, PartHeader{})
	g.pending = append(g.pending, p)
	raw := b.raw
	*b = *newPartBuilder(b.raw)
	g.group.Go(func() error {
		defer close(p.done)
		enc, err := part.Encode()
		if err != nil {
			return err
		}
		if raw {
			p.file = append([]byte{CompressionXZ}, storedXZ(enc)...)
		} else if p.file, err = compressXZ(enc); err != nil {
			return err
		}
		p.hdr.Checksum = ostree.Sum(p.file)
		p.hdr.Size = uint64(len(p.file))
		return nil
	})
	// Bound the parts held in memory.
	for len(g.pending) > g.opts.Workers {
		if err := g.drain(true); err != nil {
			return err
		}
	}
	return g.drain(false)
}

// drain writes finished parts in index order; with wait it waits for the
// first one.
func (g *generator) drain(wait bool) error {
	for len(g.pending) > 0 {
		p := g.pending[0]
		if wait {
			select {
			case <-p.done:
			case <-g.ctx.Done():
				return g.ctx.Err()
			}
			wait = false
		}
		select {
		case <-p.done:
		default:
			return nil
		}
		if p.file == nil {
			// The worker failed; Wait reports its error.
			return fmt.Errorf("compress part %d: %w", p.index, context.Canceled)
		}
		g.pending = g.pending[1:]
		if g.opts.Inline {
			p.hdr.Inline = p.file
		} else if err := g.write(g.ctx, p.index, p.file); err != nil {
			return fmt.Errorf("write part %d: %w", p.index, err)
		}
		g.sb.Parts[p.index] = p.hdr
	}
	return nil
}

func compressXZ(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(data)/2 + 1024)
	buf.WriteByte(CompressionXZ)
	w, err := xz.WriterConfig{DictCap: xzDictCap, CheckSum: xz.CRC64}.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// partBuilder accumulates one part.
type partBuilder struct {
	raw       bool
	modeIdx   map[Mode]uint64
	modeList  []Mode
	xattrIdx  map[string]uint64
	xattrList [][]ostree.Xattr
	payload   []byte
	ops       []byte
	objects   []ObjRef
	usize     uint64
	tables    uint64 // encoded size of the mode and xattr tables
}

func newPartBuilder(raw bool) *partBuilder {
	return &partBuilder{raw: raw, modeIdx: map[Mode]uint64{}, xattrIdx: map[string]uint64{}}
}

func (b *partBuilder) op(op byte, args ...uint64) {
	b.ops = append(b.ops, op)
	for _, a := range args {
		b.ops = binary.AppendUvarint(b.ops, a)
	}
}

func (b *partBuilder) mode(m Mode) uint64 {
	i, ok := b.modeIdx[m]
	if !ok {
		i = uint64(len(b.modeList))
		b.modeIdx[m] = i
		b.modeList = append(b.modeList, m)
		b.tables += modeSize
	}
	return i
}

func (b *partBuilder) xattrs(xs []ostree.Xattr) uint64 {
	var key []byte
	for _, x := range xs {
		key = binary.AppendUvarint(key, uint64(len(x.Name)))
		key = append(key, x.Name...)
		key = binary.AppendUvarint(key, uint64(len(x.Value)))
		key = append(key, x.Value...)
	}
	i, ok := b.xattrIdx[string(key)]
	if !ok {
		i = uint64(len(b.xattrList))
		b.xattrIdx[string(key)] = i
		b.xattrList = append(b.xattrList, xs)
		b.tables += xattrsSize(xs)
	}
	return i
}
