package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
	"github.com/lazytree/lazytree/ostree/zran"
)

// Large files before they are whole (issue 15).
//
// A content object that the verified tree index of the reader's remote
// chunks (per-chunk SHA-256 digests of the uncompressed content, and
// deflate access points into the .filez) is served chunk by chunk: a
// read waits only for the chunks it covers. Missing chunks are fetched
// as spans: an HTTP Range of the .filez from the access point at or
// before the first chunk to the one after the last, inflated from the
// point's saved window (ostree/zran), each chunk hashed against its
// digest before it is stored in the cache's partial file and before any
// reader sees it. A chunk that fails is never stored or served: the
// reads that wanted it fail (EIO), the error goes to status.json, and a
// later read fetches it again. Sequential reads grow the span to a
// stream to the end, so a whole-file read costs few requests and little
// overlap. When every chunk is there the whole object is hashed against
// its checksum and becomes a normal cache object (passthrough from the
// next open on); a mismatch discards the partial file.
//
// The chunks are trusted on the word of one remote's index (the first
// reader's): another remote's reader shares them only if its own index
// gives the same chunk size and digests; otherwise it gets the whole
// object, verified whole, as without an index. After a restart, chunks
// in the partial file are rehashed against the digests before use.

// A sequential reader's span grows fourfold per chunk it moves on, from
// one chunk (the first byte waits for one chunk only) to maxSpanChunks;
// from openSpanChunks on, a span streams to the end of the file (or the
// next chunk had) in one request: every new span starts at the access
// point before its first chunk, so it re-reads up to one point's spacing
// of what the span before it had.
const (
	maxSpanChunks  = 64
	openSpanChunks = 16
)

// maxPartialChunk is the largest chunk size served chunk by chunk: a
// span holds one chunk in memory to hash it before anyone sees it, and
// at most maxSpans spans run at once per Fetcher, so a hostile index
// cannot make chunks cost more than maxSpans × 4 MiB. Larger chunks get
// the whole-object path.
const maxPartialChunk = 4 << 20

// partialMinArchived is the smallest .filez served chunk by chunk. A
// smaller one costs at most a third of a second at 100 Mbit/s beyond its
// round trip when fetched whole, while its spans would each start at
// one of its few access points (often only the first), re-reading what
// the span before had: a 2 MB libc read chunk by chunk cost 2.7 times
// its .filez in the README's tour. It is also above the size a
// speculative fetch takes whole (SpeculativeMaxObject), so a guess and a
// reader never fetch one object both ways.
const partialMinArchived = 4 << 20

// maxSpans bounds span requests in flight per Fetcher.
const maxSpans = 16

// PartialFile is an open content object served chunk by chunk. It
// implements fusefs.File and fusefs.ContextReaderAt; Fd is not usable
// for passthrough (Partial reports true).
type PartialFile struct {
	p      *partialObj
	closed atomic.Bool
}

// Size is the content length.
func (h *PartialFile) Size() int64 { return h.p.size }

// Fd is the partial file's descriptor; not for passthrough.
func (h *PartialFile) Fd() uintptr { return ^uintptr(0) }

// Partial reports that the file is not whole yet: no passthrough.
func (h *PartialFile) Partial() bool { return true }

// ReadAt reads without a deadline of its own (fusefs uses ReadAtContext).
func (h *PartialFile) ReadAt(b []byte, off int64) (int, error) {
	return h.p.readAt(context.Background(), b, off)
}

// ReadAtContext waits for the chunks that cover [off, off+len(b)) while
// ctx lasts, and reads them.
func (h *PartialFile) ReadAtContext(ctx context.Context, b []byte, off int64) (int, error) {
	return h.p.readAt(ctx, b, off)
}

// Refuted is closed if the whole object fails its checksum after its
// chunks matched their digests: bytes already served came from an index
// that lied, and a cache of them (the kernel's page cache) must go.
func (h *PartialFile) Refuted() <-chan struct{} { return h.p.refuted }

// Close releases the handle.
func (h *PartialFile) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.p.release()
	return nil
}

// partialObj is the shared state of one chunked object while any
// handle is open.
type partialObj struct {
	f      *Fetcher
	remote string
	sum    ostree.Checksum
	name   string
	fl     treeindex.File // the index entry (remote's)
	size   int64
	cs     int64
	n      int // chunks
	store  *objcache.Partial
	ctx    context.Context // span fetches; cancelled when the last handle closes
	cancel context.CancelFunc
	spanWG sync.WaitGroup // span goroutines
	gone   chan struct{}  // closed when the last handle has closed everything
	// refuted is closed when the whole object failed its checksum: the
	// chunks matched an index that lied, and what readers were served
	// must be dropped from caches (PartialFile.Refuted).
	refuted    chan struct{}
	refuteOnce sync.Once

	mu       sync.Mutex
	refs     int
	have     []bool  // verified and stored
	checked  []bool  // a chunk on disk from before was rehashed
	inflight []bool  // a span is fetching it
	failed   []error // the last failure of a chunk, for readers waiting
	changed  chan struct{}
	next     int64 // where a sequential reader reads next
	seqChunk int   // the last chunk a sequential reader reached
	ra       int   // span length in chunks for the next sequential span
	left     int   // chunks not yet had
	done     bool  // promoted to a normal object
	closing  bool  // the last reference is gone; set once
	// recreated: the preferred server re-encodes the object (a cache
	// node's ranges failed their check), so spans read its stream from
	// the start (spanRecreated) while it is preferred; recreatedFailed:
	// such a read failed, and spans go to the origin by Range instead
	// (a prefix too long to stream in time fails the same way each time).
	recreated, recreatedFailed bool
}

// chunkedEntry returns remote's index entry for c when c is served
// chunk by chunk.
func (f *Fetcher) chunkedEntry(remote string, c ostree.Checksum) (*treeindex.File, bool) {
	v, ok := f.tindex.Load(remote)
	if !ok {
		return nil, false
	}
	var out *treeindex.File
	v.(*remoteIndexes).each(func(x *treeindex.Index) bool {
		if fl, ok := x.File(c); ok && fl.ChunkSize > 0 && fl.ChunkSize <= maxPartialChunk && fl.Chunks() > 1 &&
			fl.ArchivedSize >= partialMinArchived && !fl.Header.IsSymlink() && fl.Header.Size <= MaxContentSize {
			out = fl
		}
		return out != nil
	})
	return out, out != nil
}

// OpenContent returns the verified content of c for a reader that came
// through remote: the cached object when it is whole, a PartialFile when
// remote's verified tree index chunks it, and otherwise the object
// fetched and verified whole (Content).
func (f *Fetcher) OpenContent(ctx context.Context, remote string, c ostree.Checksum) (File, error) {
	if h, err := f.store.Open(ctx, c); err == nil {
		f.stats.CacheHits.Add(1)
		return h, nil
	} else if !errors.Is(err, objcache.ErrNotPresent) && !errors.Is(err, objcache.ErrCorrupt) {
		return nil, err
	}
	if remote != "" && !f.opts.NoPartial {
		if _, bad := f.partialBad.Load(badIndex{remote, c}); bad {
			return f.Content(ctx, remote, c)
		}
		if fl, ok := f.chunkedEntry(remote, c); ok {
			if p, err := f.partial(ctx, remote, fl); err == nil {
				return &PartialFile{p: p}, nil
			} else if errors.Is(err, errPromoted) {
				if h, err := f.store.Open(ctx, c); err == nil {
					f.stats.CacheHits.Add(1)
					return h, nil
				}
			} else if !errors.Is(err, errOtherDigests) {
				return nil, err
			}
		}
	}
	return f.Content(ctx, remote, c)
}

// File is what OpenContent returns: a cache handle or a PartialFile.
type File interface {
	io.ReaderAt
	Fd() uintptr
	Size() int64
	Close() error
}

// badIndex names an object whose chunks matched remote's index while
// the whole did not: that remote's index lied about it, and its readers
// get the object whole from then on. Other remotes' indexes are their
// own word.
type badIndex struct {
	remote string
	sum    ostree.Checksum
}

// errOtherDigests: the object is open chunk by chunk on the word of
// another remote's index, which disagrees with this one's.
var errOtherDigests = errors.New("chunked on other digests")

func (f *Fetcher) partial(ctx context.Context, remote string, fl *treeindex.File) (*partialObj, error) {
	for {
		p, closing, err := f.joinPartial(remote, fl)
		if err != nil || !closing {
			return p, err
		}
		// The last handle of the one before is closing: its spans may
		// still write into the file. Wait until they have stopped.
		select {
		case <-p.gone:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// Its last reference may have been the completion's.
		if ok, _ := f.store.Has(index.TypeFile, fl.Checksum); ok {
			return nil, errPromoted
		}
	}
}

// errPromoted: the object became whole while an open waited.
var errPromoted = errors.New("promoted while waiting")

// joinPartial returns the open partialObj of fl's object with one more
// reference, a closing one (closing true, to wait for; no reference
// taken), or a new one.
func (f *Fetcher) joinPartial(remote string, fl *treeindex.File) (*partialObj, bool, error) {
	f.partMu.Lock()
	defer f.partMu.Unlock()
	if p := f.partials[fl.Checksum]; p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closing {
			return p, true, nil
		}
		if p.remote != remote && (p.fl.ChunkSize != fl.ChunkSize || !bytes.Equal(p.fl.Digests, fl.Digests)) {
			return nil, false, errOtherDigests
		}
		p.refs++
		return p, false, nil
	}
	size := int64(fl.Header.Size)
	st, err := f.store.OpenPartial(fl.Checksum, size)
	if err != nil {
		return nil, false, err
	}
	n := fl.Chunks()
	ctx, cancel := context.WithCancel(WithPriority(context.Background(), OnDemand))
	p := &partialObj{
		f: f, remote: remote, sum: fl.Checksum, name: ostree.ObjectName(fl.Checksum, ostree.ObjFile),
		fl: *fl, size: size, cs: int64(fl.ChunkSize), n: n, store: st, ctx: ctx, cancel: cancel,
		gone: make(chan struct{}), refuted: make(chan struct{}),
		refs: 1, have: make([]bool, n), checked: make([]bool, n), inflight: make([]bool, n), failed: make([]error, n),
		changed: make(chan struct{}), ra: 1, left: n,
	}
	if st.Fresh() {
		for i := range p.checked {
			p.checked[i] = true
		}
	}
	if f.partials == nil {
		f.partials = map[ostree.Checksum]*partialObj{}
	}
	f.partials[fl.Checksum] = p
	return p, false, nil
}

// release drops one reference. The last one stops the spans, waits for
// them (none may write into the file after it is closed, or into the
// next owner's), closes the file, and only then leaves the map: an open
// meanwhile waits for p.gone and starts afresh.
func (p *partialObj) release() {
	f := p.f
	p.mu.Lock()
	p.refs--
	last := p.refs == 0
	if last {
		p.closing = true
	}
	p.mu.Unlock()
	if !last {
		return
	}
	p.cancel()
	p.spanWG.Wait()
	p.store.Close()
	f.partMu.Lock()
	if f.partials[p.sum] == p {
		delete(f.partials, p.sum)
	}
	f.partMu.Unlock()
	close(p.gone)
}

// broadcastLocked wakes every waiting reader; p.mu is held.
func (p *partialObj) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *partialObj) readAt(ctx context.Context, b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", p.name)
	}
	if off >= p.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(b)), p.size)
	c0, c1 := int(off/p.cs), int((end-1)/p.cs)
	for {
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			break
		}
		missing := -1
		for i := c0; i <= c1; i++ {
			if !p.have[i] {
				missing = i
				break
			}
		}
		if missing < 0 {
			p.readaheadLocked(off, end, c1)
			p.mu.Unlock()
			break
		}
		if err := p.failed[missing]; err != nil && !p.inflight[missing] {
			p.failed[missing] = nil // a later read tries again
			p.mu.Unlock()
			return 0, err
		}
		if !p.inflight[missing] {
			if !p.checked[missing] {
				p.mu.Unlock()
				p.recheck(missing)
				continue
			}
			span := c1 - missing + 1
			if p.nearLocked(off) {
				span = max(span, p.ra)
			}
			p.startSpanLocked(missing, span)
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: waiting for chunk %d: %w", p.name, missing, ctx.Err())
		}
	}
	n, err := p.store.ReadAt(b[:end-off], off)
	if err == io.EOF && int64(n) == end-off {
		err = nil
	}
	if err == nil && end-off < int64(len(b)) {
		err = io.EOF
	}
	return n, err
}

// readaheadLocked notes a read of [off, end) that was served, grows the
// span of a sequential reader and starts the next span when the reader
// is within half a span of running out; p.mu is held.
func (p *partialObj) readaheadLocked(off, end int64, last int) {
	if p.nearLocked(off) {
		if last > p.seqChunk && p.ra < maxSpanChunks {
			p.ra = min(4*p.ra, maxSpanChunks)
		}
		p.seqChunk = max(p.seqChunk, last)
		p.next = max(p.next, end)
	} else {
		p.ra, p.seqChunk, p.next = 1, last, end
	}
	if p.ra <= 1 {
		return
	}
	for i := last + 1; i < p.n && i <= last+p.ra/2+1; i++ {
		if !p.have[i] && !p.inflight[i] && p.checked[i] && p.failed[i] == nil {
			p.startSpanLocked(i, p.ra)
			return
		}
	}
}

// nearLocked reports whether a read at off continues a sequential one:
// the kernel's readahead sends reads of one stream a little out of
// order, and several at once; p.mu is held.
func (p *partialObj) nearLocked(off int64) bool {
	return off >= p.next-seqSlack && off <= p.next+seqSlack
}

// seqSlack is how far from where the last read ended a read still
// counts as sequential.
const seqSlack = 4 << 20

// recheck rehashes chunk i of a partial file left by an earlier session.
func (p *partialObj) recheck(i int) {
	off, n, digest := p.fl.Chunk(i)
	buf := make([]byte, n)
	ok := false
	if m, err := p.store.ReadAt(buf, off); int64(m) == n && (err == nil || err == io.EOF) {
		ok = sha256.Sum256(buf) == digest
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.checked[i] {
		return
	}
	p.checked[i] = true
	if ok {
		p.gotLocked(i)
	}
}

// gotLocked marks chunk i verified and stored; p.mu is held.
func (p *partialObj) gotLocked(i int) {
	if p.have[i] {
		return
	}
	p.have[i] = true
	p.failed[i] = nil
	p.left--
	p.broadcastLocked()
	if p.left == 0 && p.refs > 0 {
		p.refs++ // held by the completion
		go p.complete()
	}
}

// startSpanLocked starts fetching up to count chunks from first, up to
// the next chunk that is had or in flight; p.mu is held.
//
// A span of openSpanChunks or more (a sequential reader's, grown) is not
// capped: it streams on to the next chunk had or in flight, the end of
// the file at most, in one request, so a whole-file read costs about
// the object once instead of one overlap per span.
func (p *partialObj) startSpanLocked(first, count int) {
	limit := first + count
	if count >= openSpanChunks || p.recreated && !p.recreatedFailed {
		// A recreated stream is read from its start: what it passes on
		// the way is had for the same bytes.
		limit = p.n
	}
	last := first
	for last+1 < p.n && last+1 < limit && !p.have[last+1] && !p.inflight[last+1] && p.checked[last+1] {
		last++
	}
	if p.closing {
		return
	}
	for i := first; i <= last; i++ {
		p.inflight[i] = true
		p.failed[i] = nil
	}
	p.spanWG.Add(1)
	go func() {
		defer p.spanWG.Done()
		p.fetchSpan(first, last)
	}()
}

// fetchSpan fetches, inflates, verifies and stores chunks [first, last],
// which startSpanLocked marked in flight for it.
func (p *partialObj) fetchSpan(first, last int) {
	f := p.f
	var more []int // further chunks the span claimed (claimLocked)
	err := f.spans.Acquire(p.ctx, 1)
	if err == nil {
		f.stats.InFlight.Add(1)
		err = p.span(first, last, &more)
		f.stats.InFlight.Add(-1)
		f.spans.Release(1)
	}
	// Recorded before the waiting readers are woken, so a reader that
	// sees the failure finds it in status too.
	if err != nil && p.ctx.Err() == nil {
		f.stats.record(p.remote, p.name, err)
	}
	p.mu.Lock()
	settle := func(i int) {
		p.inflight[i] = false
		if !p.have[i] && err != nil {
			p.failed[i] = err
		}
	}
	for i := first; i <= last; i++ {
		settle(i)
	}
	// The chunks taken on besides were nobody's request: their readers
	// (if any came) start spans of their own rather than fail with this
	// one (which, after a failed recreated read, go to the origin).
	for _, i := range more {
		p.inflight[i] = false
	}
	p.broadcastLocked()
	p.mu.Unlock()
}

// claimLocked marks every chunk of [from, to] that is neither had nor in
// flight as in flight for the span that owns more; p.mu is held.
func (p *partialObj) claimLocked(from, to int, more *[]int) {
	for i := from; i <= to && i < p.n; i++ {
		if !p.have[i] && !p.inflight[i] && p.checked[i] {
			p.inflight[i] = true
			p.failed[i] = nil
			*more = append(*more, i)
		}
	}
}

// span fetches chunks [first, last] by Range, from the access point
// before them, or from a re-encoding server's stream (spanRecreated);
// chunks it takes on besides are added to more.
func (p *partialObj) span(first, last int, more *[]int) error {
	f := p.f
	rs, err := f.remote(p.remote)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, f.opts.FetchTimeout)
	defer cancel()
	p.mu.Lock()
	recreated, failed := p.recreated, p.recreatedFailed
	if recreated && !failed {
		// The stream is read from its start: every chunk on the way is
		// this span's, and so is the rest of the file, up to the next
		// chunk had or in flight.
		p.claimLocked(0, first-1, more)
		end := last
		for end+1 < p.n && !p.have[end+1] && !p.inflight[end+1] && p.checked[end+1] {
			end++
		}
		p.claimLocked(last+1, end, more)
		p.mu.Unlock()
		return p.spanRecreated(ctx, end)
	}
	p.mu.Unlock()
	if failed {
		ctx = fromOrigin(ctx)
	}
	from := int64(first) * p.cs
	to := min(int64(last+1)*p.cs, p.size)
	pt := p.fl.PointBefore(from)
	start := pt.In
	if pt.Bits > 0 {
		start--
	}
	end := int64(p.fl.ArchivedSize)
	for _, q := range p.fl.Points {
		if q.Out >= to {
			// The stream before q ends in byte q.In-1; a little more
			// lets the inflater look ahead without running dry.
			end = min(q.In+64, end)
			break
		}
	}
	if start < int64(p.fl.HeaderSize)-1 || start >= end {
		return &VerifyError{p.remote, p.name, "tree index", fmt.Errorf("access point at %d outside the object", start)}
	}
	var received int64
	err = rs.c.fetchRange(ctx, ostree.ObjectPath(p.sum, ostree.ObjFile, true), start, end, func(r io.Reader) error {
		cr := &countingReader{r: r}
		defer func() { received = cr.n }()
		zp := zran.Point{Out: pt.Out, In: pt.In, Bits: pt.Bits, Window: pt.Window}
		if pt.Bits > 0 {
			var one [1]byte
			if _, err := io.ReadFull(cr, one[:]); err != nil {
				return err
			}
			zp.Prev = one[0]
		}
		zr, err := zran.NewReader(cr, zp)
		if err != nil {
			return &VerifyError{p.remote, p.name, "tree index", err}
		}
		if _, err := io.CopyN(io.Discard, zr, from-pt.Out); err != nil {
			return p.inflateError(err)
		}
		buf := make([]byte, p.cs)
		for i := first; i <= last; i++ {
			_, n, _ := p.fl.Chunk(i)
			if _, err := io.ReadFull(zr, buf[:n]); err != nil {
				return p.inflateError(err)
			}
			if err := p.keepChunk(ctx, i, buf[:n]); err != nil {
				return err
			}
		}
		// The range ends a little past the last chunk's bytes (at the
		// next access point, plus slack): the rest is not needed.
		return errEnough
	})
	f.stats.BytesFetched.Add(received)
	if errors.Is(err, errRecreated) && !recreated {
		// The server re-encodes the object: from now on spans read its
		// own stream, this one first.
		p.mu.Lock()
		p.recreated = true
		p.mu.Unlock()
		return p.span(first, last, more)
	}
	if err != nil {
		return objectError(p.remote, p.name, err)
	}
	return nil
}

// spanRecreated fetches the chunks up to last from a server whose .filez
// is its own encoding of the content (a cache node's re-creation, see
// serve.RecreatedHeader), where the index's access points, which are
// offsets into the publisher's stream, do not apply. The chunk digests
// are of the content, so they still do: the stream is read from its
// start and inflated, and every chunk not had on the way to last is
// checked against its digest and stored (a node is near, and its bytes
// are the object once, not a span's overlap).
func (p *partialObj) spanRecreated(ctx context.Context, last int) error {
	f := p.f
	rs, err := f.remote(p.remote)
	if err != nil {
		return err
	}
	limit := int64(min(uint64(p.fl.ArchivedSize)+recodeSlack(uint64(p.size)), MaxContentSize))
	var received int64
	err = rs.c.fetch(ctx, ostree.ObjectPath(p.sum, ostree.ObjFile, true), limit, func(r io.Reader) error {
		cr := &countingReader{r: r}
		defer func() { received = cr.n }()
		content, err := ostree.NewContentReader(cr)
		if err != nil {
			return &VerifyError{p.remote, p.name, "checksum", err}
		}
		if content.Header.IsSymlink() || content.Header.Size != uint64(p.size) {
			return &VerifyError{p.remote, p.name, "size", fmt.Errorf("header declares %d bytes, the tree index %d", content.Header.Size, p.size)}
		}
		buf := make([]byte, p.cs)
		for i := 0; i <= last; i++ {
			off, n, _ := p.fl.Chunk(i)
			if _, err := io.ReadFull(content, buf[:n]); err != nil {
				if ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
					return &VerifyError{p.remote, p.name, "chunk", fmt.Errorf("inflate before byte %d: %w", off+n, err)}
				}
				return err
			}
			if err := p.keepChunk(ctx, i, buf[:n]); err != nil {
				return err
			}
		}
		return errEnough
	})
	f.stats.BytesFetched.Add(received)
	if err != nil {
		if p.ctx.Err() == nil {
			// However it failed (a prefix too long to stream in time, a
			// node that stalls or lies), the next spans ask the origin.
			p.mu.Lock()
			p.recreatedFailed = true
			p.mu.Unlock()
		}
		return objectError(p.remote, p.name, err)
	}
	return nil
}

// keepChunk checks chunk i's bytes b against its digest in the index and
// stores them, unless another span stored the chunk meanwhile. errEnough:
// another span completed the object meanwhile.
func (p *partialObj) keepChunk(ctx context.Context, i int, b []byte) error {
	off, n, digest := p.fl.Chunk(i)
	if sha256.Sum256(b) != digest {
		return &VerifyError{p.remote, p.name, "chunk", fmt.Errorf("chunk %d (bytes %d-%d) does not match its digest in the tree index", i, off, off+n-1)}
	}
	p.mu.Lock()
	had := p.have[i]
	p.mu.Unlock()
	if had {
		return nil
	}
	if err := p.store.WriteAt(ctx, b, off); err != nil {
		p.mu.Lock()
		had, done := p.have[i], p.done
		p.mu.Unlock()
		if done {
			return errEnough
		}
		if had {
			return nil
		}
		return err
	}
	p.mu.Lock()
	p.gotLocked(i)
	p.mu.Unlock()
	return nil
}

func (p *partialObj) inflateError(err error) error {
	if errors.Is(err, zran.ErrCorrupt) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &VerifyError{p.remote, p.name, "chunk", fmt.Errorf("inflate: %w", err)}
	}
	return err
}

// complete hashes the whole object and makes it a normal cache object.
func (p *partialObj) complete() {
	defer p.release()
	h := p.fl.Header
	hdr := index.FileHeader{UID: h.UID, GID: h.GID, Mode: h.Mode, Size: h.Size, Symlink: h.Target, Raw: h.StreamHeader()}
	ctx, cancel := context.WithTimeout(context.Background(), p.f.opts.FetchTimeout)
	defer cancel()
	err := p.store.Complete(ctx, hdr, p.remote)
	var ce *objcache.CorruptError
	if err != nil && !errors.As(err, &ce) {
		// Not the object's fault (a full disk, say). The partial file is
		// gone, but the open handles still read its verified chunks; the
		// next open starts again.
		p.f.stats.record(p.remote, p.name, fmt.Errorf("store the completed object: %w", err))
		return
	}
	if err != nil {
		err = &VerifyError{p.remote, p.name, "checksum", err}
		p.f.stats.record(p.remote, p.name, err)
		// The chunks matched the index but not the object: the index
		// lied. Readers already served chunk-verified bytes; from now on
		// they fail, and new opens fetch the object whole.
		p.mu.Lock()
		for i := range p.have {
			p.have[i] = false
			p.failed[i] = err
		}
		p.left = p.n
		p.broadcastLocked()
		p.mu.Unlock()
		p.refuteOnce.Do(func() { close(p.refuted) })
		p.f.partialBad.Store(badIndex{p.remote, p.sum}, true)
		p.f.partMu.Lock()
		if p.f.partials[p.sum] == p {
			delete(p.f.partials, p.sum)
		}
		p.f.partMu.Unlock()
		return
	}
	p.f.stats.ObjectsFetched.Add(1)
	p.mu.Lock()
	p.done = true
	p.broadcastLocked()
	p.mu.Unlock()
}

// PartialStatus is one large file served before it is whole, for
// status.json.
type PartialStatus struct {
	Object string `json:"object"`
	Remote string `json:"remote"`
	Chunks int    `json:"chunks"`
	Have   int    `json:"chunks_verified"`
	// Fetching counts chunks in span requests now.
	Fetching int  `json:"chunks_fetching"`
	Readers  int  `json:"open_handles"`
	Whole    bool `json:"whole"`
}

func (f *Fetcher) partialStatus() []PartialStatus {
	f.partMu.Lock()
	ps := make([]*partialObj, 0, len(f.partials))
	for _, p := range f.partials {
		ps = append(ps, p)
	}
	f.partMu.Unlock()
	out := make([]PartialStatus, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		st := PartialStatus{Object: p.name, Remote: p.remote, Chunks: p.n, Have: p.n - p.left, Readers: p.refs, Whole: p.done}
		for _, b := range p.inflight {
			if b {
				st.Fetching++
			}
		}
		p.mu.Unlock()
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PartialStatus) int { return strings.Compare(a.Object, b.Object) })
	return out
}
