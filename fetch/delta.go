package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
)

// deltaDigests returns the static deltas to commit to that the remote
// lists with their superblock digests: from the verified summary, else
// from the (unsigned) delta index. A delta without a digest is never
// used; the digest is what makes a superblock trustworthy.
func (f *Fetcher) deltaDigests(ctx context.Context, rs *remoteState, to ostree.Checksum) map[string]ostree.Checksum {
	out := map[string]ostree.Checksum{}
	rs.mu.Lock()
	s := rs.summary
	rs.mu.Unlock()
	if s != nil {
		if m, err := ostree.StaticDeltas(s.Metadata); err == nil {
			for k, v := range m {
				out[k] = v
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	data, err := f.getBounded(ctx, rs, ostree.DeltaIndexPath(to), 1<<20, nil)
	if err != nil {
		return out
	}
	dict, err := ostree.DecodeVarDict("delta index", data)
	if err != nil {
		return out
	}
	if m, err := ostree.StaticDeltas(dict); err == nil {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// pullDelta brings a verified commit's objects in through a static delta
// when one helps: one from prev, the ref's previous commit, if cached, or
// one from scratch when nothing of the commit's tree is cached yet. Every
// object a delta produces is verified before it is stored; whatever a
// delta does not provide (fallbacks, skipped parts) the normal walk
// fetches afterwards. It returns whether a delta was applied; a remote
// without a usable delta is not an error.
//
// With stream (a mount's delta prefetch), a from-scratch delta is used
// even when part of the tree is cached: parts whose objects are all
// cached are skipped, and the rest beats fetching thousands of objects
// one by one.
func (f *Fetcher) pullDelta(ctx context.Context, remote string, prev *ostree.Checksum, to ostree.Checksum, cm *ostree.Commit, p *Progress, stream bool) (bool, error) {
	if f.opts.NoDeltas {
		return false, nil
	}
	rs, err := f.remote(remote)
	if err != nil {
		return false, err
	}
	digests := f.deltaDigests(ctx, rs, to)
	if len(digests) == 0 {
		return false, nil
	}
	// From the ref's previous commit (the caller's, verified for this
	// remote) when the remote lists that delta and the old tree is
	// wholly cached.
	var from *ostree.Checksum
	if prev != nil && *prev != to {
		if _, listed := digests[ostree.DeltaName(prev, to)]; listed && f.treeComplete(ctx, *prev) {
			from = prev
		}
	}
	if from == nil {
		if ok, _ := f.store.Has(index.TypeDirTree, cm.RootTree); ok && !stream {
			return false, nil // the tree is (partly) here: loose objects fetch only what is missing
		}
		if _, listed := digests[ostree.DeltaName(nil, to)]; !listed {
			return false, nil
		}
	}
	name := ostree.DeltaName(from, to)
	want := digests[name]
	dir := ostree.DeltaPath(from, to)
	// Hashed while it streams: the digest (from the signed summary, or
	// the unsigned delta index) is what makes the superblock trusted.
	data, err := f.getBounded(ctx, rs, dir+"/superblock", MaxSuperblockSize, &want)
	if err != nil {
		var ce *ostree.ChecksumError
		if errors.As(err, &ce) {
			return false, &VerifyError{remote, "delta " + name, "checksum", err}
		}
		return false, fmt.Errorf("remote %s: delta %s: %w", remote, name, err)
	}
	sb, err := delta.ParseSuperblock(data)
	if err != nil {
		return false, fmt.Errorf("remote %s: delta %s: %w", remote, name, err)
	}
	if sb.To != to || (from == nil) != (sb.From == nil) || (from != nil && *sb.From != *from) {
		return false, &VerifyError{remote, "delta " + name, "checksum", errors.New("superblock is for other commits")}
	}
	f.stats.BytesFetched.Add(int64(len(data)))
	added := &deltaAdded{}
	// Whatever happens, objects the delta added that the verified commit
	// does not reach are dropped: an injected delta (the delta index is
	// not signed) can fill the cache with nothing but what the commit
	// names.
	defer func() {
		// Even when the pull was cancelled.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		f.dropUnreached(ctx, cm, added)
	}()
	var todo []int
	for i, hdr := range sb.Parts {
		if !f.havePart(hdr) {
			todo = append(todo, i)
			if p != nil {
				p.DeltaBytes.Add(int64(hdr.Size))
			}
		}
	}
	if p != nil {
		p.DeltaParts.Store(int64(len(todo)))
	}
	// Fallbacks (objects the delta leaves out, usually the largest
	// files) come in loose beside the parts rather than after them. They
	// are noted with what the delta adds: an unsigned superblock may list
	// anything.
	var fallbacks []delta.Fallback
	for _, o := range sb.Fallbacks {
		if o.Object.Type != ostree.ObjFile {
			continue
		}
		if ok, _ := f.store.Has(index.TypeFile, o.Object.Checksum); ok {
			continue
		}
		fallbacks = append(fallbacks, o)
		if p != nil {
			// In the progress beside the parts: a delta of large files
			// is mostly fallbacks, and "1/1 parts" would be all it said.
			p.DeltaLoose.Add(1)
			p.DeltaBytes.Add(int64(min(o.Size, MaxContentSize)))
		}
	}
	var fb errgroup.Group
	fb.SetLimit(deltaFallbacks)
	fbDone := make(chan struct{})
	go func() {
		defer close(fbDone)
		for _, o := range fallbacks {
			if ctx.Err() != nil {
				break
			}
			fb.Go(func() error {
				// Its bytes count in the progress as they arrive; when it
				// is done (or failed) the count is set right.
				var got atomic.Int64
				fctx := ctx
				if p != nil {
					fctx = withOnRead(ctx, func(n int64) {
						got.Add(n)
						p.DeltaBytesDone.Add(n)
						p.BytesFetched.Add(n)
					})
				}
				err := f.FetchContent(fctx, remote, o.Object.Checksum)
				if err == nil {
					added.note(o.Object)
				}
				if p != nil {
					size := int64(min(o.Size, MaxContentSize))
					p.DeltaBytesDone.Add(-got.Load())
					if err == nil {
						p.DeltaLooseDone.Add(1)
						p.DeltaBytesDone.Add(size)
					} else {
						// The walk after the delta fetches it: not the
						// delta's any more.
						p.DeltaLoose.Add(-1)
						p.DeltaBytes.Add(-size)
					}
				}
				return nil // the walk after the delta fetches what failed
			})
		}
		fb.Wait()
	}()
	err = f.applyParts(ctx, rs, remote, name, dir, sb, todo, added, p)
	<-fbDone
	if err != nil {
		return false, err
	}
	return true, nil
}

// deltaFallbacks is how many of a delta's fallback objects are fetched
// at once beside its parts.
const deltaFallbacks = 2

// treeComplete reports whether every object of commit c's tree is
// cached: a delta from c reads its files, and one missing fails a part.
func (f *Fetcher) treeComplete(ctx context.Context, c ostree.Checksum) bool {
	data, err := f.store.ReadMeta(ctx, index.TypeCommit, c)
	if err != nil {
		return false
	}
	cm, err := ostree.DecodeCommit(data)
	if err != nil {
		return false
	}
	missing := errors.New("missing")
	complete, err := f.Walk(ctx, cm.RootTree, cm.RootMeta, WalkOptions{CachedOnly: true, Unique: true}, func(ctx context.Context, d Dir) error {
		for _, e := range d.DirTree.Files {
			if ok, _ := f.store.Has(index.TypeFile, e.Checksum); !ok {
				return missing
			}
		}
		return nil
	})
	return err == nil && complete
}

// Delta parts in flight: downloads run deltaDownloads at a time, in part
// order, so that on a slow link each part arrives at the link's full rate
// and its decoding starts early; decoding and applying run on up to
// deltaWorkers parts at once (parts are independent), following their
// downloads as the bytes arrive. Each part in flight holds an xz
// dictionary (up to 64 MiB; ostree writes 32 MiB for its 32 MB parts) and a scratch file.
const deltaDownloads = 2

func deltaWorkers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// deltaDecoders is how many parts decode at once. Each xz decoder holds
// its dictionary (32 MiB in ostree's parts, resident as far as the part
// fills it), and a second one is what a pull's memory is mostly made of.
// Measured on a 157 MB runtime (4 parts of ostree's, 2 cores, unshaped):
// with the Go decoder, two took the pull from 3.5 s to 2.6 s and its
// peak RSS from 74 MB to 108 MB, where ostree, which applies one part at
// a time, peaked at 77-125 MB in the same runs; with liblzma (delta's
// liblzma), one decoder takes 2.9 s and 70 MB. One, then: a pull stays
// within ostree's memory, and the other cores apply decoded parts
// meanwhile.
const deltaDecoders = 1

// applyParts brings in the parts of sb numbered in todo: each one
// streamed from the remote into a spool while it decodes (or taken from
// the superblock when inline), verified, applied, and its objects stored
// with one durability flush for the part.
func (f *Fetcher) applyParts(ctx context.Context, rs *remoteState, remote, name, dir string, sb *delta.Superblock, todo []int, added *deltaAdded, p *Progress) error {
	g, ctx := errgroup.WithContext(ctx)
	downloads := semaphore.NewWeighted(deltaDownloads)
	// Parts decode one at a time (deltaDecoders) while up to
	// deltaWorkers() decoded parts are applied.
	nworkers := deltaWorkers() + deltaDecoders
	workers := semaphore.NewWeighted(int64(nworkers))
	// A part waits for a download slot in part order; at most this many
	// parts are past that point and not yet applied.
	g.SetLimit(deltaDownloads + nworkers)
	decoders := delta.NewDecoders(deltaDecoders)
	for _, i := range todo {
		hdr := sb.Parts[i]
		what := fmt.Sprintf("delta %s part %d", name, i)
		fail := func(err error) error {
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) || errors.Is(err, ostree.ErrCorrupt) {
				return &VerifyError{remote, what, "checksum", err}
			}
			return fmt.Errorf("remote %s: %s: %w", remote, what, err)
		}
		if err := downloads.Acquire(ctx, 1); err != nil {
			break // g's context: a part failed
		}
		pf := f.startPartFlight(remote, hdr)
		g.Go(func() error {
			defer f.endPartFlight(remote, hdr, pf)
			var live *atomic.Int64
			if p != nil {
				live = &p.DeltaBytesDone
			}
			pt, release, n, err := f.openPart(ctx, rs, fmt.Sprintf("%s/%d", dir, i), hdr, downloads, workers, live, pf, decoders)
			if err != nil {
				return fail(err)
			}
			defer workers.Release(1)
			defer release()
			sink := &deltaSink{store: f.store, batch: f.store.NewBatch(remote), added: added}
			err = pt.Apply(ctx, hdr.Objects, deltaSource{f.store, sink.batch}, sink)
			pt.Close()
			// What was verified before a failure is kept: one flush.
			if ferr := sink.batch.Flush(context.WithoutCancel(ctx)); err == nil {
				err = ferr
			}
			if err != nil {
				return fmt.Errorf("remote %s: %s: %w", remote, what, err)
			}
			f.stats.ObjectsFetched.Add(int64(len(hdr.Objects)))
			if p != nil {
				p.DeltaPartsDone.Add(1)
				p.BytesFetched.Add(n)
			}
			return nil
		})
	}
	return g.Wait()
}

// openPart opens one part: an inline one from the superblock, any other
// streamed from the remote into a spool that the decoder follows, which
// writes the decompressed body to a scratch file in the cache's tmp/,
// never whole on the heap. The caller holds a slot of downloads, which
// openPart gives back when the download ends; openPart takes a slot of
// workers for the decoding, which it returns held on success (the caller
// gives it back after applying). release gives back the part's scratch
// reservation: call it after the part is closed. n is the bytes fetched.
func (f *Fetcher) openPart(ctx context.Context, rs *remoteState, path string, hdr delta.PartHeader, downloads, workers *semaphore.Weighted, live *atomic.Int64, pf *partFlight, decoders *delta.Decoders) (pt *delta.Part, release func(), n int64, err error) {
	if hdr.Inline != nil {
		pf.downloaded.Store(true)
		downloads.Release(1)
		if err := workers.Acquire(ctx, 1); err != nil {
			return nil, nil, 0, err
		}
		pt, err := delta.OpenPart(hdr.Inline, hdr, true)
		if err != nil {
			workers.Release(1)
		}
		return pt, func() {}, 0, err
	}
	// The scratch files may grow to the part's size and body limit
	// before its digest is known: they count against the cache quota
	// meanwhile.
	scratch := int64(min(hdr.BodyLimit(), math.MaxInt64/2)) + int64(min(hdr.Size, math.MaxInt64/2))
	release, err = f.store.ReserveScratch(ctx, scratch)
	if err != nil {
		downloads.Release(1)
		return nil, nil, 0, err
	}
	sp, err := newSpool(f.store.TmpDir())
	if err != nil {
		downloads.Release(1)
		release()
		return nil, nil, 0, err
	}
	defer sp.Close() // the decoder's output is a file of its own
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fetched atomic.Int64
	dlDone := make(chan struct{})
	go func() {
		defer close(dlDone)
		defer downloads.Release(1)
		defer pf.downloaded.Store(true)
		err := rs.c.fetch(dctx, path, int64(hdr.Size), func(r io.Reader) error {
			if err := sp.start(); err != nil {
				return err
			}
			cr := &countingReader{r: r, live: live}
			_, err := io.Copy(sp, io.TeeReader(cr, pf))
			fetched.Add(cr.n)
			if err != nil {
				if live != nil {
					live.Add(-cr.n) // a retry fetches them again
				}
				pf.got.Add(-cr.n)
			}
			return err
		})
		sp.finish(err)
	}()
	fail := func(err error) (*delta.Part, func(), int64, error) {
		cancel()
		<-dlDone
		release()
		return nil, nil, fetched.Load(), err
	}
	if err := workers.Acquire(ctx, 1); err != nil {
		return fail(err)
	}
	for attempt := 0; ; attempt++ {
		pt, err = decoders.OpenPartStream(dctx, sp.reader(dctx), hdr, f.store.TmpDir())
		if errors.Is(err, errSpoolRestarted) && attempt < 16 {
			continue // a retried download: decode from its start
		}
		break
	}
	if err != nil {
		workers.Release(1)
		return fail(err)
	}
	<-dlDone
	n = fetched.Load()
	f.stats.BytesFetched.Add(n)
	return pt, release, n, nil
}

// partFlight is a delta part on its way in, for on-demand readers of
// the content it will produce (fetchContent): waiting for the part beats
// a request of their own once the part is nearly here.
type partFlight struct {
	size       int64        // the part file's bytes
	got        atomic.Int64 // bytes arrived
	downloaded atomic.Bool  // all arrived: decoding or applying
	done       chan struct{}
}

func (pf *partFlight) Write(b []byte) (int, error) {
	pf.got.Add(int64(len(b)))
	return len(b), nil
}

// partWaitBytes is how close a part must be for a reader to wait for it:
// what a fast mirror sends in a few round trips.
const partWaitBytes = 2 << 20

// soon reports whether the part is close enough to wait for.
func (pf *partFlight) soon() bool {
	return pf.downloaded.Load() || pf.size-pf.got.Load() <= partWaitBytes
}

// partKey names content in a part of one remote's delta: a reader waits
// only for its own remote's parts (another remote could name any
// checksum in a part it never sends).
type partKey struct {
	remote string
	sum    ostree.Checksum
}

// startPartFlight registers the content objects of hdr, a part of
// remote's, as on their way.
func (f *Fetcher) startPartFlight(remote string, hdr delta.PartHeader) *partFlight {
	pf := &partFlight{size: int64(min(hdr.Size, math.MaxInt64)), done: make(chan struct{})}
	for _, o := range hdr.Objects {
		if o.Type == ostree.ObjFile {
			f.parts.LoadOrStore(partKey{remote, o.Checksum}, pf)
		}
	}
	return pf
}

// endPartFlight unregisters hdr's objects: the part's objects are stored
// (or it failed).
func (f *Fetcher) endPartFlight(remote string, hdr delta.PartHeader, pf *partFlight) {
	for _, o := range hdr.Objects {
		if o.Type == ostree.ObjFile {
			f.parts.CompareAndDelete(partKey{remote, o.Checksum}, pf)
		}
	}
	close(pf.done)
}

// partWaitMax bounds a reader's wait for a part: past it, the reader
// fetches the object itself.
const partWaitMax = 10 * time.Second

// waitForPart waits, when content c is in a part of remote's delta that
// is nearly here, until that part is applied (at most partWaitMax, or
// ctx), and reports whether c is cached then.
func (f *Fetcher) waitForPart(ctx context.Context, remote string, c ostree.Checksum) bool {
	v, ok := f.parts.Load(partKey{remote, c})
	if !ok || !v.(*partFlight).soon() {
		return false
	}
	t := time.NewTimer(partWaitMax)
	defer t.Stop()
	select {
	case <-v.(*partFlight).done:
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
	if ok, _ := f.store.Has(index.TypeFile, c); ok {
		f.stats.DeltaWaits.Add(1)
		return true
	}
	return false
}

// dropUnreached removes the objects sink added that cm does not reach
// through the dirtrees in the cache. Every ancestor of an object a delta
// adds is new too, so it came with the delta and is cached.
func (f *Fetcher) dropUnreached(ctx context.Context, cm *ostree.Commit, a *deltaAdded) {
	added := a.take()
	if len(added) == 0 {
		return
	}
	var mu sync.Mutex
	reached := map[ostree.Checksum]bool{cm.RootTree: true, cm.RootMeta: true}
	_, err := f.Walk(ctx, cm.RootTree, cm.RootMeta, WalkOptions{CachedOnly: true, Unique: true}, func(ctx context.Context, d Dir) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range d.DirTree.Files {
			reached[e.Checksum] = true
		}
		for _, sub := range d.DirTree.Dirs {
			reached[sub.Meta], reached[sub.Tree] = true, true
		}
		return nil
	})
	if err != nil {
		return // without the whole reach known, drop nothing
	}
	dropped := 0
	for _, o := range added {
		if reached[o.Checksum] {
			continue
		}
		if err := f.store.Remove(ctx, index.ObjectID{Sum: o.Checksum, Type: o.Type}); err == nil {
			dropped++
		}
	}
	if dropped > 0 {
		f.opts.Logger.Warn("dropped objects a static delta added that its commit does not reach", "commit", cm.RootTree, "objects", dropped)
	}
}

func (f *Fetcher) havePart(hdr delta.PartHeader) bool {
	for _, o := range hdr.Objects {
		if ok, _ := f.store.Has(o.Type, o.Checksum); !ok {
			return false
		}
	}
	return true
}

// deltaSource reads the from-commit's files out of the cache for one
// part. Before each read it flushes the part's own batch: the part may
// name as a source an object it produced itself (whose busy entry its
// batch holds until the flush), and a part that holds no entries while
// it waits for another part's object can never wait in a cycle.
type deltaSource struct {
	store *objcache.Store
	batch *objcache.Batch
}

func (s deltaSource) OpenContent(ctx context.Context, c ostree.Checksum) (delta.Blob, error) {
	if s.batch.Len() > 0 {
		if err := s.batch.Flush(ctx); err != nil {
			return nil, err
		}
	}
	return s.store.Open(ctx, c)
}

// deltaAdded notes the objects the parts of one delta added (objects not
// cached before), for dropUnreached.
type deltaAdded struct {
	mu   sync.Mutex
	objs []delta.ObjRef
}

func (a *deltaAdded) note(o delta.ObjRef) {
	a.mu.Lock()
	a.objs = append(a.objs, o)
	a.mu.Unlock()
}

func (a *deltaAdded) take() []delta.ObjRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.objs
	a.objs = nil
	return o
}

// deltaSink stores what one part produces, verified by Apply, in a
// batch that the part flushes once, and notes what it adds.
type deltaSink struct {
	store *objcache.Store
	batch *objcache.Batch
	added *deltaAdded
}

func (s *deltaSink) PutMetadata(ctx context.Context, obj delta.ObjRef, data []byte) error {
	typ := obj.Type
	if ok, _ := s.store.Has(typ, obj.Checksum); ok {
		return nil
	}
	if err := s.batch.PutMeta(ctx, typ, obj.Checksum, data); err != nil {
		return err
	}
	s.added.note(obj)
	return nil
}

func (s *deltaSink) CreateContent(ctx context.Context, c ostree.Checksum, h *ostree.FileHeader) (delta.ContentWriter, error) {
	if ok, _ := s.store.Has(index.TypeFile, c); ok {
		return nil, nil
	}
	// The declared size is hostile until the object's hash matches:
	// nothing larger than the cache could hold is started, and no more
	// than it declares is written.
	if h.Size > uint64(min(s.store.MaxBytes(), MaxContentSize)) {
		return nil, fmt.Errorf("%s: %w: declares %d bytes, more than the cache holds", ostree.ObjectName(c, ostree.ObjFile), ostree.ErrCorrupt, h.Size)
	}
	f, err := s.store.CreateTemp()
	if err != nil {
		return nil, err
	}
	return &deltaWriter{File: f, ctx: ctx, s: s, c: c, h: h}, nil
}

// Write refuses bytes past the declared size.
func (w *deltaWriter) Write(p []byte) (int, error) {
	if w.n+uint64(len(p)) > w.h.Size {
		return 0, fmt.Errorf("%s: %w: more content than the %d bytes it declares", ostree.ObjectName(w.c, ostree.ObjFile), ostree.ErrCorrupt, w.h.Size)
	}
	n, err := w.File.Write(p)
	w.n += uint64(n)
	return n, err
}

type deltaWriter struct {
	*os.File
	ctx context.Context
	s   *deltaSink
	c   ostree.Checksum
	h   *ostree.FileHeader
	n   uint64 // bytes written
}

func (w *deltaWriter) Commit() error {
	hdr := index.FileHeader{UID: w.h.UID, GID: w.h.GID, Mode: w.h.Mode, Size: w.h.Size, Symlink: w.h.Target, Raw: w.h.StreamHeader()}
	if err := w.s.batch.PutFile(w.ctx, w.c, hdr, w.File); err != nil {
		return err
	}
	w.s.added.note(delta.ObjRef{Type: ostree.ObjFile, Checksum: w.c})
	return nil
}

func (w *deltaWriter) Abort() {
	name := w.File.Name()
	w.File.Close()
	os.Remove(name)
}
