package fetch

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lazytree/lazytree/fetch/serve"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// CacheBackend serves the cache as an archive repository of one upstream
// remote (`lazytree serve --cache`): what the cache holds at once, what
// it lacks fetched from the upstream first, verified and stored exactly
// as for the mount (one fetch per object however many clients ask).
//
// The summary and its signature are the upstream's bytes, passed through
// once the node has verified them, so that clients check the publisher's
// keys, never the node's. Commits and their detached metadata, dirtrees
// and dirmetas are the stored bytes, which are the publisher's. Content
// is kept uncompressed, so a .filez is re-created: the archive header,
// then the raw deflate of the content at flate's default level, the
// encoder `lazytree commit` uses. It is byte-identical to the origin's
// where lazytree published it, and a different (equally valid) stream
// where ostree did: clients verify the uncompressed object either way,
// and allow for the size difference (fetchContent). Such a response says
// so (serve.RecreatedHeader): a tree index's access points describe the
// origin's stream, so a client reading chunks by Range reads this one
// from its start instead (partialObj.spanRecreated). Static deltas and
// summary.idx are not offered (404): clients fall back to objects and to
// the summary.
type CacheBackend struct {
	f      *Fetcher
	remote string

	recent *byteLRU

	mu        sync.Mutex
	encoding  map[ostree.Checksum]*encoding
	lingering []lingering // oldest first
	// tooBig maps content found larger than a guess's limit to that
	// limit (bounded by speculationMemory entries, then forgotten).
	tooBig  sync.Map
	tooBigN atomic.Int64
	// encoders bounds the encodings running at once (CPU, and up to
	// smallFilez of memory each), however many clients ask.
	encoders chan struct{}

	served, recreated, passed, fetchedUpstream, failures atomic.Int64
}

var _ serve.Backend = (*CacheBackend)(nil)

// CacheBackend returns the backend that serves the cache as remote.
func (f *Fetcher) CacheBackend(remote string) (*CacheBackend, error) {
	if _, err := f.remote(remote); err != nil {
		return nil, err
	}
	return &CacheBackend{f: f, remote: remote, recent: newByteLRU(64 << 20), encoding: map[ostree.Checksum]*encoding{},
		encoders: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}, nil
}

// Remote is the upstream remote's name.
func (b *CacheBackend) Remote() string { return b.remote }

// ServeStats are a cache backend's counters, for status.json.
type ServeStats struct {
	Remote string `json:"remote"`
	// Served counts answered requests; Recreated the .filez encoded from
	// the cache; PassedThrough the summaries, signatures and tree indexes
	// sent as the upstream wrote them.
	Served        int64 `json:"served"`
	Recreated     int64 `json:"filez_recreated"`
	PassedThrough int64 `json:"passed_through"`
	Failures      int64 `json:"failures"`
}

// Stats returns the backend's counters.
func (b *CacheBackend) Stats() ServeStats {
	return ServeStats{Remote: b.remote, Served: b.served.Load(), Recreated: b.recreated.Load(), PassedThrough: b.passed.Load(), Failures: b.failures.Load()}
}

// smallFilez is the largest content encoded in memory; larger objects
// are encoded to a temporary file of the cache's tmp/.
const smallFilez = 4 << 20

// Open implements serve.Backend.
func (b *CacheBackend) Open(ctx context.Context, name string) (*serve.File, error) {
	ctx = WithPriority(ctx, OnDemand)
	f, err := b.open(ctx, name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.failures.Add(1)
		}
		return nil, err
	}
	b.served.Add(1)
	return f, nil
}

func (b *CacheBackend) open(ctx context.Context, name string) (*serve.File, error) {
	switch {
	case name == "config":
		return b.config()
	case name == "summary" || name == "summary.sig":
		return b.summary(ctx, name)
	case strings.HasPrefix(name, "refs/heads/"):
		return b.ref(ctx, strings.TrimPrefix(name, "refs/heads/"))
	case strings.HasPrefix(name, "objects/"):
		return b.object(ctx, name)
	case strings.HasPrefix(name, "lazytree/"):
		return b.lazytreeFile(ctx, name)
	}
	return nil, fmt.Errorf("%s: %w (not offered by a cache node)", name, fs.ErrNotExist)
}

func memFile(data []byte) *serve.File {
	sum := sha256.Sum256(data)
	return &serve.File{Content: bytes.NewReader(data), ETag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// upstreamErr classifies a fetch failure for serve: a file the upstream
// does not have is not found, everything else (unreachable, failed
// verification) is the upstream's failure.
func upstreamErr(err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoRef) || errors.Is(err, ErrNoCommit) {
		return fmt.Errorf("%w: %v", fs.ErrNotExist, err)
	}
	return fmt.Errorf("%w: %v", serve.ErrUpstream, err)
}

func (b *CacheBackend) config() (*serve.File, error) {
	r, err := b.f.Remote(b.remote)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.WriteString("[core]\nrepo_version=1\nmode=archive-z2\n")
	if r.CollectionID != "" {
		sb.WriteString("collection-id=" + r.CollectionID + "\n")
	}
	return memFile([]byte(sb.String())), nil
}

// summary passes the upstream's verified summary bytes through.
func (b *CacheBackend) summary(ctx context.Context, name string) (*serve.File, error) {
	data, sig, err := b.f.RawSummary(ctx, b.remote)
	if err != nil {
		return nil, upstreamErr(err)
	}
	if name == "summary.sig" {
		data = sig
	}
	if data == nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	b.passed.Add(1)
	return memFile(data), nil
}

func (b *CacheBackend) ref(ctx context.Context, ref string) (*serve.File, error) {
	c, err := b.f.ResolveRef(ctx, b.remote, ref)
	if err != nil {
		if errors.Is(err, ErrNoRef) {
			return nil, fmt.Errorf("%w: %v", fs.ErrNotExist, err)
		}
		return nil, upstreamErr(err)
	}
	return memFile([]byte(c.String() + "\n")), nil
}

// parseObjectPath reads objects/xx/rest.ext.
func parseObjectPath(name string) (ostree.Checksum, string, error) {
	rest := strings.TrimPrefix(name, "objects/")
	dir, file, ok := strings.Cut(rest, "/")
	base, ext, ok2 := strings.Cut(file, ".")
	if !ok || !ok2 || len(dir) != 2 {
		return ostree.Checksum{}, "", fmt.Errorf("%s: %w (not an object path)", name, fs.ErrNotExist)
	}
	c, err := ostree.ParseChecksum(dir + base)
	if err != nil {
		return ostree.Checksum{}, "", fmt.Errorf("%s: %w (%v)", name, fs.ErrNotExist, err)
	}
	return c, ext, nil
}

func (b *CacheBackend) object(ctx context.Context, name string) (*serve.File, error) {
	c, ext, err := parseObjectPath(name)
	if err != nil {
		return nil, err
	}
	switch ext {
	case "commit", "commitmeta":
		// Checked for the upstream's keys, from the cache or fetched.
		if _, err := b.f.Commit(ctx, b.remote, "", c); err != nil {
			return nil, upstreamErr(err)
		}
		t := index.TypeCommit
		if ext == "commitmeta" {
			t = index.TypeCommitMeta
		}
		data, err := b.f.store.ReadMeta(ctx, t, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		return b.immutable(data, c, ext), nil
	case "dirtree", "dirmeta":
		t := ostree.ObjDirTree
		if ext == "dirmeta" {
			t = ostree.ObjDirMeta
		}
		data, err := b.f.meta(ctx, b.remote, t, c)
		if err != nil {
			return nil, upstreamErr(err)
		}
		return b.immutable(data, c, ext), nil
	case "filez":
		return b.filez(ctx, c)
	}
	return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}

// immutable serves stored object bytes; they are named by what they
// hash to, so the name is a strong ETag.
func (b *CacheBackend) immutable(data []byte, c ostree.Checksum, ext string) *serve.File {
	return &serve.File{Content: bytes.NewReader(data), ETag: `"` + c.String() + "." + ext + `"`}
}

// filezTag names the encoding of a re-created .filez: the same content
// encoded by another lazytree version may differ, and an ETag must
// change with the bytes.
const filezTag = "lz1"

// encoding is a re-created .filez, shared by the requests that want it
// while it is being made and read: in memory (also kept in recent), or in
// an unlinked file of the cache's tmp/ that the last reader closes.
type encoding struct {
	done chan struct{}
	err  error
	data []byte
	file *os.File
	size int64
	refs int // guarded by CacheBackend.mu
	gen  int // counts lingerLocked calls, telling its entries apart; guarded by CacheBackend.mu
}

func (b *CacheBackend) filez(ctx context.Context, c ostree.Checksum) (*serve.File, error) {
	tag := `"` + c.String() + "." + filezTag + `"`
	if data, ok := b.recent.get(recentKey{"filez", c}); ok {
		return &serve.File{Content: bytes.NewReader(data), ETag: tag, Recreated: true}, nil
	}
	if lim, ok := serve.GuessLimit(ctx); ok && !b.have(c) {
		// A client's guess: fetched within its limit, at its priority,
		// and refused at once where an earlier guess found the object
		// larger (every client guesses the same files).
		tooBig := fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjFile), serve.ErrTooLarge)
		if v, ok := b.tooBig.Load(c); ok && lim <= v.(int64) {
			return nil, tooBig
		}
		gctx := context.WithValue(WithPriority(ctx, Speculative), specCapKey{}, lim)
		if err := b.f.FetchContent(gctx, b.remote, c); err != nil {
			if errors.Is(err, errTooBigToGuess) {
				if b.tooBigN.Add(1) > speculationMemory {
					b.tooBig.Clear()
					b.tooBigN.Store(0)
				}
				b.tooBig.Store(c, lim)
				return nil, tooBig
			}
			return nil, upstreamErr(err)
		}
	}
	b.mu.Lock()
	e := b.encoding[c]
	first := e == nil
	if first {
		e = &encoding{done: make(chan struct{})}
		b.encoding[c] = e
	}
	e.refs++
	b.mu.Unlock()
	release := func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if e.refs--; e.refs > 0 {
			return nil
		}
		if e.file != nil && e.err == nil && b.encoding[c] == e {
			// A large object is asked for again soon (a client reading
			// it by Range asks once per span): keep its encoding a while.
			b.lingerLocked(c, e)
			return nil
		}
		return b.dropLocked(c, e)
	}
	if first {
		// Local work on a verified object: it finishes for the others
		// even if this request goes away.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.f.opts.FetchTimeout)
		e.err = b.encodeFilez(ectx, c, e)
		cancel()
		if e.err == nil && e.data != nil {
			b.recent.put(recentKey{"filez", c}, e.data)
		}
		close(e.done)
	} else {
		select {
		case <-e.done:
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
	}
	if e.err != nil {
		release()
		return nil, e.err
	}
	if e.data != nil {
		release()
		return &serve.File{Content: bytes.NewReader(e.data), ETag: tag, Recreated: true}, nil
	}
	return &serve.File{Content: io.NewSectionReader(e.file, 0, e.size), ETag: tag, Close: release, Recreated: true}, nil
}

// Encodings of large objects kept after their last reader (lingerLocked):
// at most lingerMax of them, each for lingerFor.
const (
	lingerMax = 4
	lingerFor = 30 * time.Second
)

// lingerLocked keeps the unused encoding e of c for lingerFor, dropping
// the oldest kept one when lingerMax are; b.mu is held.
func (b *CacheBackend) lingerLocked(c ostree.Checksum, e *encoding) {
	// One slot per object: an encoding released again replaces its
	// older entry.
	b.lingering = slices.DeleteFunc(b.lingering, func(l lingering) bool { return l.e == e })
	if len(b.lingering) >= lingerMax {
		old := b.lingering[0]
		b.lingering = b.lingering[1:]
		if old.e.refs == 0 {
			b.dropLocked(old.c, old.e)
		}
	}
	e.gen++
	l := lingering{c: c, e: e, gen: e.gen}
	b.lingering = append(b.lingering, l)
	time.AfterFunc(lingerFor, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if i := slices.Index(b.lingering, l); i >= 0 {
			b.lingering = slices.Delete(b.lingering, i, i+1)
			if e.refs == 0 {
				b.dropLocked(c, e)
			}
		}
	})
}

// dropLocked forgets the encoding e of c and closes its file; b.mu is
// held.
func (b *CacheBackend) dropLocked(c ostree.Checksum, e *encoding) error {
	if b.encoding[c] == e {
		delete(b.encoding, c)
	}
	if e.file != nil {
		f := e.file
		e.file = nil
		return f.Close()
	}
	return nil
}

// lingering is an encoding kept after its last reader.
type lingering struct {
	c   ostree.Checksum
	e   *encoding
	gen int
}

// have reports whether content c is in the cache.
func (b *CacheBackend) have(c ostree.Checksum) bool {
	ok, err := b.f.store.Has(index.TypeFile, c)
	return ok && err == nil
}

// encodeFilez writes the archive form of a cached (or freshly fetched)
// content object into e.
func (b *CacheBackend) encodeFilez(ctx context.Context, c ostree.Checksum, e *encoding) error {
	h, err := b.f.Content(ctx, b.remote, c)
	if err != nil {
		return upstreamErr(err)
	}
	defer h.Close()
	hdr, ok := b.f.cachedHeader(c)
	if !ok {
		return fmt.Errorf("%s: header missing from the index", ostree.ObjectName(c, ostree.ObjFile))
	}
	select {
	case b.encoders <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.encoders }()
	content := io.NewSectionReader(h, 0, h.Size())
	b.recreated.Add(1)
	var w io.Writer
	var buf bytes.Buffer
	var tmp *os.File
	if h.Size() <= smallFilez {
		w = &buf
	} else {
		if tmp, err = b.f.store.CreateTemp(); err != nil {
			return err
		}
		os.Remove(tmp.Name())
		w = tmp
	}
	got, err := ostree.WriteArchive(w, hdr, content, 0)
	if err == nil && got != c {
		// The cache verified it: a mismatch is a disk fault or a bug,
		// never something to send.
		err = &ostree.ChecksumError{Object: ostree.ObjectName(c, ostree.ObjFile), Got: got, Want: c}
	}
	if tmp == nil {
		e.data, e.size = buf.Bytes(), int64(buf.Len())
		return err
	}
	if err == nil {
		e.size, err = tmp.Seek(0, io.SeekCurrent)
	}
	if err != nil {
		tmp.Close()
		return err
	}
	e.file = tmp
	return nil
}

// lazytreeFile passes a tree index or published profile through from the
// upstream, checked against the checksum it is named by.
func (b *CacheBackend) lazytreeFile(ctx context.Context, name string) (*serve.File, error) {
	var limit int64
	var hexSum string
	switch {
	case strings.HasPrefix(name, "lazytree/tree-index/"):
		limit, hexSum = MaxTreeIndexSize, strings.TrimPrefix(name, "lazytree/tree-index/")
	case strings.HasPrefix(name, "lazytree/profile/"):
		limit, hexSum = treeindex.MaxProfileSize, strings.TrimPrefix(name, "lazytree/profile/")
	default:
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	c, err := ostree.ParseChecksum(hexSum)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if data, ok := b.recent.get(recentKey{name, c}); ok {
		return b.immutable(data, c, "lazytree"), nil
	}
	rs, err := b.f.remote(b.remote)
	if err != nil {
		return nil, err
	}
	v, err := b.f.detached(ctx, b.remote+"/"+name, func(ctx context.Context) (any, error) {
		return b.f.getBounded(ctx, rs, name, limit, &c)
	})
	if err != nil {
		return nil, upstreamErr(err)
	}
	data := v.([]byte)
	b.recent.put(recentKey{name, c}, data)
	b.passed.Add(1)
	return b.immutable(data, c, "lazytree"), nil
}

// recentKey names a body in recent: what it is (a .filez, or the
// repository name of a passed-through file) and the checksum it was
// verified against, so that no name is ever answered with another's bytes.
type recentKey struct {
	kind string
	sum  ostree.Checksum
}

// byteLRU keeps recently served small bodies, bounded in bytes, so that
// clients starting together cost one encoding.
type byteLRU struct {
	mu    sync.Mutex
	max   int64
	used  int64
	order *list.List // front: most recent; values are *lruEntry
	by    map[recentKey]*list.Element
}

type lruEntry struct {
	key  recentKey
	data []byte
}

func newByteLRU(max int64) *byteLRU {
	return &byteLRU{max: max, order: list.New(), by: map[recentKey]*list.Element{}}
}

func (l *byteLRU) get(k recentKey) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.by[k]; ok {
		l.order.MoveToFront(e)
		return e.Value.(*lruEntry).data, true
	}
	return nil, false
}

func (l *byteLRU) put(k recentKey, data []byte) {
	if int64(len(data)) > l.max/8 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.by[k]; ok {
		return
	}
	l.by[k] = l.order.PushFront(&lruEntry{k, data})
	l.used += int64(len(data))
	for l.used > l.max {
		e := l.order.Back()
		ent := e.Value.(*lruEntry)
		l.order.Remove(e)
		delete(l.by, ent.key)
		l.used -= int64(len(ent.data))
	}
}
