package fetch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/lazytree/lazytree/ostree"
)

// Caps on what one response may be, per object type. ostree itself allows
// 128 MiB for any metadata object (ostree.MaxMetadataSize); real objects
// are far smaller (a dirtree of 50,000 entries is about 3 MiB, a dirmeta
// under 1 KiB unless it carries large xattrs), so a hostile server cannot
// make the daemon hold 128 MiB per request.
const (
	MaxDirTreeSize    = 16 << 20
	MaxDirMetaSize    = 1 << 20
	MaxCommitSize     = 16 << 20
	MaxCommitMetaSize = 16 << 20
	// MaxSuperblockSize caps a static-delta superblock with its inline
	// parts (ostree inlines none unless asked to).
	MaxSuperblockSize = 32 << 20
	// MaxContentSize caps a content object whose size no signed commit
	// states (no ostree.sizes): the declared size of a file, and the
	// archived size of its .filez. The cache quota bounds it further:
	// objcache reserves the declared size before it writes a byte.
	MaxContentSize = 64 << 30
	// maxSummarySig caps summary.sig (a few signatures).
	maxSummarySig = 1 << 20
)

// metaCap is the largest body accepted for an object of type t.
func metaCap(t ostree.ObjectType) int64 {
	switch t {
	case ostree.ObjDirTree:
		return MaxDirTreeSize
	case ostree.ObjDirMeta:
		return MaxDirMetaSize
	case ostree.ObjCommit:
		return MaxCommitSize
	case ostree.ObjCommitMeta:
		return MaxCommitMetaSize
	}
	return ostree.MaxMetadataSize
}

// Memory for metadata bodies is bounded as a whole: every request may
// hold up to smallBody bytes, and a body that grows past that must hold
// one of largeBodies tokens while it does. With R requests in flight the
// heap held for bodies is at most R*smallBody + largeBodies*2*cap (a
// body is read into pooled chunks, then copied once into an exact-size
// slice): for one remote at the default concurrency, 32 MiB + 64 MiB,
// against the 1.7 GiB that eight hostile 128 MiB dirtree responses could
// take before. A remote holds at most one of the tokens at a time (its own
// token first), so a hostile remote that trickles a large body cannot keep
// every other remote's large metadata waiting. Holders of a token wait
// for nothing but the network (bounded by the HTTP stall timer and
// minimum throughput), so waiting for one cannot deadlock; the wait
// pauses the waiting request's stall timer, so it is not mistaken for a
// slow server.
const (
	smallBody   = 1 << 20
	largeBodies = 2
)

// budget is the token pool for large bodies, shared by every Fetcher in
// the process (one daemon, one heap).
var largeBudget = semaphore.NewWeighted(largeBodies)

// chunkPool holds the fixed-size buffers bodies are read into, so that
// a body cut at its cap (or refused by its hash) leaves no garbage behind
// for the next one, and growing a body never copies it.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

const chunkSize = 64 << 10

// readBounded reads r to the end, at most limit bytes, taking a large-body
// token if it grows past smallBody. With want set it hashes as it reads
// and refuses a body whose SHA-256 differs. The result is one exact-size
// slice.
func readBounded(ctx context.Context, r io.Reader, own *semaphore.Weighted, limit int64, want *ostree.Checksum, what string) ([]byte, error) {
	h := sha256.New()
	var chunks []*[]byte
	large := false
	defer func() {
		for _, c := range chunks {
			chunkPool.Put(c)
		}
		if large {
			largeBudget.Release(1)
			own.Release(1)
		}
	}()
	var total int64
	fill := chunkSize // bytes used in the last chunk
	for {
		if fill == chunkSize {
			if !large && total >= smallBody {
				if err := acquireLarge(ctx, r, own); err != nil {
					return nil, fmt.Errorf("%s: waiting for memory: %w", what, err)
				}
				large = true
			}
			chunks = append(chunks, chunkPool.Get().(*[]byte))
			fill = 0
		}
		last := *chunks[len(chunks)-1]
		n, err := r.Read(last[fill:])
		if total+int64(n) > limit {
			return nil, fmt.Errorf("%s: more than the %d bytes allowed for it", what, limit)
		}
		h.Write(last[fill : fill+n])
		fill += n
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if want != nil {
		var got ostree.Checksum
		h.Sum(got[:0])
		if got != *want {
			return nil, &ostree.ChecksumError{Object: what, Got: got, Want: *want}
		}
	}
	out := make([]byte, 0, total)
	for i, c := range chunks {
		if i == len(chunks)-1 {
			out = append(out, (*c)[:fill]...)
		} else {
			out = append(out, *c...)
		}
	}
	return out, nil
}

// acquireLarge takes the remote's own large-body token, then one of the
// shared ones, with r's stall timer paused meanwhile (when r can pause).
func acquireLarge(ctx context.Context, r io.Reader, own *semaphore.Weighted) error {
	if p, ok := r.(interface{ Pause() func() }); ok {
		defer p.Pause()()
	}
	if err := own.Acquire(ctx, 1); err != nil {
		return err
	}
	if err := largeBudget.Acquire(ctx, 1); err != nil {
		own.Release(1)
		return err
	}
	return nil
}

// getMeta fetches one metadata file of type t, bounded by its type's cap
// and the shared memory budget. The body is not hashed: callers check
// what they can (a commit's checksum, a commitmeta's signatures).
func (f *Fetcher) getMeta(ctx context.Context, rs *remoteState, path string, t ostree.ObjectType) ([]byte, error) {
	return f.getBounded(ctx, rs, path, metaCap(t), nil)
}

// getBounded fetches path completely, at most limit bytes, under the
// shared memory budget; with want set the body must hash to it.
func (f *Fetcher) getBounded(ctx context.Context, rs *remoteState, path string, limit int64, want *ostree.Checksum) ([]byte, error) {
	return f.getChecked(ctx, rs, path, limit, want, nil)
}

// getChecked is getBounded that also hands the body to check (when not
// nil) inside the client: a body that check refuses is the failure of
// the URL that served it, and the client asks the next one (a mirror's
// damaged copy, then the origin's).
func (f *Fetcher) getChecked(ctx context.Context, rs *remoteState, path string, limit int64, want *ostree.Checksum, check func([]byte) error) ([]byte, error) {
	// A body that may hold a large-body token must not pause for urgent
	// work: urgent work may be waiting for that token.
	ctx = context.WithValue(ctx, unpausableKey{}, true)
	var data []byte
	err := rs.c.fetch(ctx, path, limit, func(r io.Reader) error {
		b, err := readBounded(ctx, r, rs.large, limit, want, path)
		if err == nil && check != nil {
			err = check(b)
		}
		if err != nil {
			return err
		}
		data = b
		return nil
	})
	return data, err
}

// detached runs fn once per key for every caller that asks at the same
// time, on a context detached from the first caller and bounded by
// Options.FetchTimeout (a shared fetch must not fail because one caller
// gave up); each caller stops waiting when its own ctx ends.
//
// The fetch runs at the priority of the most urgent caller waiting for it
// (see Priority).
func (f *Fetcher) detached(ctx context.Context, key string, fn func(ctx context.Context) (any, error)) (any, error) {
	p, _ := requestPriority(ctx)
	fl, leave := f.sched.join(key, p)
	defer leave()
	// Work that must stop with its owner (a mount's prefetch and
	// guesses) counts the fetch it starts in the owner's group, so the
	// owner's Close waits for it too.
	var claimed atomic.Bool
	if wg, ok := ctx.Value(flightGroupKey{}).(*sync.WaitGroup); ok {
		wg.Add(1)
		defer func() {
			if claimed.CompareAndSwap(false, true) {
				wg.Done() // it ran another caller's fetch, or none yet
			}
		}()
	}
	ch := f.sf.DoChan(key, func() (any, error) {
		if wg, ok := ctx.Value(flightGroupKey{}).(*sync.WaitGroup); ok && claimed.CompareAndSwap(false, true) {
			defer wg.Done()
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.FetchTimeout)
		defer cancel()
		if p != OnDemand {
			// A guess or a prefetch ends with the work that wanted it
			// (the mount closing), unless a reader is waiting for it.
			stop := context.AfterFunc(ctx, func() {
				if fl.waiting[OnDemand].Load() == 0 {
					cancel()
				}
			})
			defer stop()
		}
		return fn(context.WithValue(fctx, flightKey{}, fl))
	})
	select {
	case res := <-ch:
		return res.Val, res.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", key, ctx.Err())
	}
}

// flightGroupKey carries the *sync.WaitGroup of the work a context
// belongs to (see detached).
type flightGroupKey struct{}

// sizeInfo is what a verified commit's ostree.sizes says of an object.
type sizeInfo struct{ archived, unpacked uint64 }

type sizeKey struct {
	remote string
	c      ostree.Checksum
}

// learnSizes records the sizes a commit verified for r states for its
// content objects, so that fetches of them from r are bounded by them.
// They are kept per remote (a commit of one remote cannot set the limits
// another remote's objects are held to) and only from remotes that check
// signatures (an unverified commit's sizes prove nothing).
func (f *Fetcher) learnSizes(r *Remote, cm *ostree.Commit) {
	if !r.GPGVerify && !r.SignVerify {
		return
	}
	entries, err := ostree.DecodeSizes(cm.Metadata)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type == ostree.ObjFile {
			f.sizes.LoadOrStore(sizeKey{r.Name, e.Checksum}, sizeInfo{e.Archived, e.Unpacked})
		}
	}
}

// knownSize returns the sizes a commit verified for remote stated for
// content c.
func (f *Fetcher) knownSize(remote string, c ostree.Checksum) (sizeInfo, bool) {
	v, ok := f.sizes.Load(sizeKey{remote, c})
	if !ok {
		return sizeInfo{}, false
	}
	return v.(sizeInfo), true
}
