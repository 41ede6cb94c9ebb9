package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

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
func (f *Fetcher) pullDelta(ctx context.Context, remote string, prev *ostree.Checksum, to ostree.Checksum, cm *ostree.Commit, p *Progress) (bool, error) {
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
	var from *ostree.Checksum
	if prev != nil {
		if ok, _ := f.store.Has(index.TypeCommit, *prev); ok {
			if _, listed := digests[ostree.DeltaName(prev, to)]; listed {
				from = prev
			}
		}
	}
	if from == nil {
		if ok, _ := f.store.Has(index.TypeDirTree, cm.RootTree); ok {
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
	src := deltaSource{f.store}
	sink := &deltaSink{store: f.store, remote: remote}
	// Whatever happens, objects the delta added that the verified commit
	// does not reach are dropped: an injected delta (the delta index is
	// not signed) can fill the cache with nothing but what the commit
	// names.
	defer func() {
		// Even when the pull was cancelled.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		f.dropUnreached(ctx, cm, sink)
	}()
	for i, hdr := range sb.Parts {
		if f.havePart(hdr) {
			continue
		}
		what := fmt.Sprintf("delta %s part %d", name, i)
		pt, release, n, err := f.openPart(ctx, rs, fmt.Sprintf("%s/%d", dir, i), hdr)
		if err != nil {
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) || errors.Is(err, ostree.ErrCorrupt) {
				return false, &VerifyError{remote, what, "checksum", err}
			}
			return false, fmt.Errorf("remote %s: %s: %w", remote, what, err)
		}
		err = pt.Apply(ctx, hdr.Objects, src, sink)
		pt.Close()
		release()
		if err != nil {
			return false, fmt.Errorf("remote %s: %s: %w", remote, what, err)
		}
		f.stats.ObjectsFetched.Add(int64(len(hdr.Objects)))
		if p != nil {
			p.BytesFetched.Add(n)
		}
	}
	return true, nil
}

// openPart opens one part: an inline one from the superblock, any other
// streamed from the remote through the decoder into a scratch file in the
// cache's tmp/, never whole on the heap. It returns the bytes fetched and
// release, which gives back the part's scratch reservation: call it after
// the part is closed.
func (f *Fetcher) openPart(ctx context.Context, rs *remoteState, path string, hdr delta.PartHeader) (pt *delta.Part, release func(), n int64, err error) {
	if hdr.Inline != nil {
		pt, err := delta.OpenPart(hdr.Inline, hdr, true)
		return pt, func() {}, 0, err
	}
	// The scratch file may grow to the part's body limit before its
	// digest is known: it counts against the cache quota meanwhile.
	release, err = f.store.ReserveScratch(ctx, int64(min(hdr.BodyLimit(), math.MaxInt64)))
	if err != nil {
		return nil, nil, 0, err
	}
	err = rs.c.fetch(ctx, path, int64(hdr.Size), 0, func(r io.Reader) error {
		cr := &countingReader{r: r}
		p, err := delta.OpenPartStream(ctx, cr, hdr, f.store.TmpDir())
		n = cr.n
		pt = p
		return err
	})
	if err != nil {
		release()
		return nil, nil, n, err
	}
	f.stats.BytesFetched.Add(n)
	return pt, release, n, nil
}

// dropUnreached removes the objects sink added that cm does not reach
// through the dirtrees in the cache. Every ancestor of an object a delta
// adds is new too, so it came with the delta and is cached.
func (f *Fetcher) dropUnreached(ctx context.Context, cm *ostree.Commit, sink *deltaSink) {
	added := sink.takeAdded()
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

// deltaSource reads the from-commit's files out of the cache.
type deltaSource struct{ store *objcache.Store }

func (s deltaSource) OpenContent(ctx context.Context, c ostree.Checksum) (delta.Blob, error) {
	return s.store.Open(ctx, c)
}

// deltaSink stores what a part produces, verified by Apply, and notes
// what it added (objects not cached before).
type deltaSink struct {
	store  *objcache.Store
	remote string

	mu    sync.Mutex
	added []delta.ObjRef
}

func (s *deltaSink) note(o delta.ObjRef) {
	s.mu.Lock()
	s.added = append(s.added, o)
	s.mu.Unlock()
}

func (s *deltaSink) takeAdded() []delta.ObjRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.added
	s.added = nil
	return a
}

func (s *deltaSink) PutMetadata(ctx context.Context, obj delta.ObjRef, data []byte) error {
	typ := obj.Type
	if ok, _ := s.store.Has(typ, obj.Checksum); ok {
		return nil
	}
	if err := s.store.PutMeta(ctx, typ, obj.Checksum, append([]byte(nil), data...), s.remote); err != nil {
		return err
	}
	s.note(obj)
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
	if err := w.s.store.PutFile(w.ctx, w.c, hdr, w.File, w.s.remote); err != nil {
		return err
	}
	w.s.note(delta.ObjRef{Type: ostree.ObjFile, Checksum: w.c})
	return nil
}

func (w *deltaWriter) Abort() {
	name := w.File.Name()
	w.File.Close()
	os.Remove(name)
}
