package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
)

// originOf returns the remote to fetch an object from: the one whose tree
// named it, else the first remote (objects are content-addressed, so any
// remote that has it serves the same verified bytes).
func (f *Fetcher) originOf(c ostree.Checksum, hint string) (string, error) {
	if hint != "" {
		return hint, nil
	}
	if v, ok := f.origin.Load(c); ok {
		return v.(string), nil
	}
	names := f.Remotes()
	if len(names) == 0 {
		return "", fmt.Errorf("object %s: no remote configured", c)
	}
	return names[0], nil
}

// DirTree returns a verified dirtree, from the cache or the remote.
func (f *Fetcher) DirTree(ctx context.Context, remote string, c ostree.Checksum) (*ostree.DirTree, error) {
	data, err := f.meta(ctx, remote, ostree.ObjDirTree, c)
	if err != nil {
		return nil, err
	}
	t, err := ostree.DecodeDirTree(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjDirTree), err)
	}
	if origin, ok := f.origin.Load(c); ok {
		for _, e := range t.Files {
			f.origin.LoadOrStore(e.Checksum, origin)
		}
		for _, d := range t.Dirs {
			f.origin.LoadOrStore(d.Tree, origin)
			f.origin.LoadOrStore(d.Meta, origin)
		}
	}
	return t, nil
}

// DirMeta returns a verified dirmeta.
func (f *Fetcher) DirMeta(ctx context.Context, remote string, c ostree.Checksum) (*ostree.DirMeta, error) {
	data, err := f.meta(ctx, remote, ostree.ObjDirMeta, c)
	if err != nil {
		return nil, err
	}
	m, err := ostree.DecodeDirMeta(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjDirMeta), err)
	}
	return m, nil
}

func (f *Fetcher) meta(ctx context.Context, remote string, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	if data, err := f.store.ReadMeta(ctx, t, c); err == nil {
		f.stats.CacheHits.Add(1)
		return data, nil
	}
	remote, err := f.originOf(c, remote)
	if err != nil {
		return nil, err
	}
	if data, ok := f.indexMeta(remote, t, c); ok {
		if err := f.store.PutMeta(ctx, t, c, data, remote); err != nil {
			return nil, err
		}
		f.stats.IndexHits.Add(1)
		return data, nil
	}
	name := ostree.ObjectName(c, t)
	// Keyed by remote too: a reader of one remote never waits on a fetch
	// that another (possibly hostile) remote is stalling.
	v, err := f.detached(ctx, remote+"/"+name, func(ctx context.Context) (any, error) {
		f.stats.InFlight.Add(1)
		defer f.stats.InFlight.Add(-1)
		if data, err := f.store.ReadMeta(ctx, t, c); err == nil {
			return data, nil
		}
		rs, err := f.remote(remote)
		if err != nil {
			return nil, err
		}
		// Hashed while it streams, within its type's cap and the shared
		// memory budget.
		data, err := f.getBounded(ctx, rs, ostree.ObjectPath(c, t, true), metaCap(t), &c)
		if err != nil {
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) {
				err = &VerifyError{remote, name, "checksum", err}
			}
			err = objectError(remote, name, err)
			f.stats.record(remote, name, err)
			return nil, err
		}
		if err := f.store.PutMeta(ctx, t, c, data, remote); err != nil {
			return nil, err
		}
		f.stats.ObjectsFetched.Add(1)
		f.stats.BytesFetched.Add(int64(len(data)))
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// Content returns an open handle on a verified content object, fetching
// it first when it is not cached. The handle must be closed.
func (f *Fetcher) Content(ctx context.Context, remote string, c ostree.Checksum) (*objcache.Handle, error) {
	if h, err := f.store.Open(ctx, c); err == nil {
		f.stats.CacheHits.Add(1)
		return h, nil
	} else if !errors.Is(err, objcache.ErrNotPresent) && !errors.Is(err, objcache.ErrCorrupt) {
		return nil, err
	}
	if err := f.FetchContent(ctx, remote, c); err != nil {
		return nil, err
	}
	return f.store.Open(ctx, c)
}

// FetchContent makes sure a content object is in the cache.
//
// A speculative caller (see speculate.go) sets a size cap: the fetch it
// starts fails with errTooBigToGuess past it, before the body is read
// where the server states its length. A caller without the cap that
// joined such a fetch starts its own.
func (f *Fetcher) FetchContent(ctx context.Context, remote string, c ostree.Checksum) error {
	remote, err := f.originOf(c, remote)
	if err != nil {
		return err
	}
	_, guessing := speculativeCap(ctx)
	for attempt := 0; ; attempt++ {
		err = f.fetchContent(ctx, remote, c)
		// Another guess may have started a capped fetch again meanwhile.
		if guessing || attempt >= 8 || !errors.Is(err, errTooBigToGuess) || ctx.Err() != nil {
			return err
		}
	}
}

func (f *Fetcher) fetchContent(ctx context.Context, remote string, c ostree.Checksum) error {
	if f.waitForPart(ctx, remote, c) {
		return nil
	}
	name := ostree.ObjectName(c, ostree.ObjFile)
	_, err := f.detached(ctx, remote+"/"+name, func(ctx context.Context) (any, error) {
		f.stats.InFlight.Add(1)
		defer f.stats.InFlight.Add(-1)
		if h, err := f.store.Open(ctx, c); err == nil {
			h.Close()
			return nil, nil
		}
		rs, err := f.remote(remote)
		if err != nil {
			return nil, err
		}
		// Bounded by what a signed commit says of it, or by the cap.
		maxArchived, maxSize := int64(MaxContentSize), uint64(MaxContentSize)
		known, haveSize := f.knownSize(remote, c)
		if haveSize {
			maxArchived = int64(min(known.archived+recodeSlack(known.unpacked), MaxContentSize))
			maxSize = known.unpacked
		}
		guessCap, guessing := speculativeCap(ctx)
		if guessing {
			if haveSize && int64(known.archived) > guessCap {
				return nil, errTooBigToGuess
			}
			if !haveSize {
				maxArchived = guessCap
			}
		}
		var received int64
		err = rs.c.fetch(ctx, ostree.ObjectPath(c, ostree.ObjFile, true), maxArchived, func(r io.Reader) error {
			cr := &countingReader{r: r, onRead: onReadOf(ctx)}
			content, err := ostree.NewContentReader(cr)
			if err != nil {
				return &VerifyError{remote, name, "checksum", err}
			}
			h := content.Header
			// (ostree.sizes gives a symlink the length of its target.)
			if (haveSize && !h.IsSymlink() && h.Size != maxSize) || h.Size > maxSize {
				return &VerifyError{remote, name, "size", fmt.Errorf("header declares %d bytes, %s", h.Size, sizeBound(haveSize, maxSize))}
			}
			hdr := index.FileHeader{UID: h.UID, GID: h.GID, Mode: h.Mode, Size: h.Size, Symlink: h.Target, Raw: h.StreamHeader()}
			err = f.store.PutContent(ctx, c, hdr, content, remote)
			received = cr.n
			if errors.Is(err, ostree.ErrCorrupt) { // objcache's CorruptError included
				return &VerifyError{remote, name, "checksum", err}
			}
			return err
		})
		if err != nil {
			if guessing && guessRefused(err) {
				// 413: a cache node that would have had to fetch more
				// than the guess allows (serve.GuessLimitHeader).
				return nil, errTooBigToGuess
			}
			err = objectError(remote, name, err)
			f.stats.record(remote, name, err)
			return nil, err
		}
		f.stats.ObjectsFetched.Add(1)
		f.stats.BytesFetched.Add(received)
		return nil, nil
	})
	return err
}

// recodeSlack is how much larger than the publisher's a .filez may be:
// a cache node (serve --cache) keeps content uncompressed and deflates it
// again with its own encoder, which can cost more than the publisher's
// zlib did, up to deflate's stored-block bound (5 bytes per 64 KiB block,
// plus the end). The content is still bounded by its signed size and
// verified by its checksum.
func recodeSlack(unpacked uint64) uint64 { return unpacked + 5*(unpacked/65535+1) + 64 }

func sizeBound(signed bool, n uint64) string {
	if signed {
		return fmt.Sprintf("the signed commit's ostree.sizes says %d", n)
	}
	return fmt.Sprintf("more than the %d allowed", n)
}

type countingReader struct {
	r      io.Reader
	n      int64
	live   *atomic.Int64 // also counts here as bytes arrive, if not nil
	onRead func(int64)   // also told of every read, if not nil
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.live != nil {
		c.live.Add(int64(n))
	}
	if c.onRead != nil && n > 0 {
		c.onRead(int64(n))
	}
	return n, err
}

type onReadKey struct{}

// withOnRead makes a content fetch started under ctx report the bytes
// of its .filez as they arrive (for progress; retries report again). A
// caller that joins a fetch already running learns nothing from it.
func withOnRead(ctx context.Context, fn func(int64)) context.Context {
	return context.WithValue(ctx, onReadKey{}, fn)
}

func onReadOf(ctx context.Context) func(int64) {
	fn, _ := ctx.Value(onReadKey{}).(func(int64))
	return fn
}

// FileHeader returns the verified header of a content object. It comes
// from the index when the object was fetched before; otherwise the whole
// object is fetched and verified first (a header from an unverified
// prefix is never trusted).
//
// A header from remote's tree index (tindex.go) answers too: the
// publisher's signed word for that remote's paths.
func (f *Fetcher) FileHeader(ctx context.Context, remote string, c ostree.Checksum) (*ostree.FileHeader, error) {
	if fh, ok := f.PeekHeaderVia(remote, c); ok {
		return fh, nil
	}
	if err := f.FetchContent(ctx, remote, c); err != nil {
		return nil, err
	}
	if fh, ok := f.cachedHeader(c); ok {
		return fh, nil
	}
	return nil, fmt.Errorf("%s: header missing from the index after the fetch", ostree.ObjectName(c, ostree.ObjFile))
}

// cachedHeader returns a header from the index, without network I/O.
func (f *Fetcher) cachedHeader(c ostree.Checksum) (*ostree.FileHeader, bool) {
	h, err := f.db.Header(c)
	if err != nil {
		return nil, false
	}
	fh, err := ostree.ParseStreamHeader(h.Raw)
	if err != nil {
		return nil, false
	}
	fh.Size = h.Size
	return fh, true
}

// Refetch fetches one object again (after fsck dropped it), trying each
// remote until one serves it verified. Commits are refetched without a ref
// (their signatures are still checked); detached metadata comes with its
// commit.
func (f *Fetcher) Refetch(ctx context.Context, c ostree.Checksum, t ostree.ObjectType) error {
	var last error = fmt.Errorf("%s: no remote configured", ostree.ObjectName(c, t))
	for _, r := range f.Remotes() {
		var err error
		switch t {
		case ostree.ObjFile:
			err = f.FetchContent(ctx, r, c)
		case ostree.ObjDirTree, ostree.ObjDirMeta:
			_, err = f.meta(ctx, r, t, c)
		case ostree.ObjCommit, ostree.ObjCommitMeta:
			var rs *remoteState
			if rs, err = f.remote(r); err == nil {
				_, err = f.fetchCommit(ctx, rs, "", c)
			}
		default:
			return fmt.Errorf("%s: cannot refetch this type", ostree.ObjectName(c, t))
		}
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}

// PeekHeader returns a verified content header from the index, without
// network I/O.
func (f *Fetcher) PeekHeader(c ostree.Checksum) (*ostree.FileHeader, bool) { return f.cachedHeader(c) }

// PeekHeaderVia is PeekHeader for a reader that came through remote
// (empty: the remote whose tree named c): the cache's verified headers,
// then that remote's tree indexes.
func (f *Fetcher) PeekHeaderVia(remote string, c ostree.Checksum) (*ostree.FileHeader, bool) {
	if fh, ok := f.cachedHeader(c); ok {
		return fh, true
	}
	if remote == "" {
		// A tree index is one remote's word: a reader that came by
		// checksum alone gets verified headers only.
		return nil, false
	}
	if fh, ok := f.indexHeader(remote, c); ok {
		f.stats.IndexHits.Add(1)
		return fh, true
	}
	return nil, false
}

// Repair fetches again, verified like any fetch, the objects fsck dropped
// (by "checksum.type" name), each from the first remote that has it. It
// returns the names fetched and, for the others, why not.
func (f *Fetcher) Repair(ctx context.Context, names []string) (repaired, failed []string) {
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		id, err := index.ParseObjectName(name)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if err := f.Refetch(ctx, id.Sum, id.Type); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		repaired = append(repaired, name)
	}
	return repaired, failed
}
