package treeindex

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"

	"github.com/lazytree/lazytree/ostree"
)

// Defaults of BuildOptions.
const (
	// DefaultThreshold: content larger than this is chunked. Smaller
	// content is fetched whole in one request anyway.
	DefaultThreshold = 1 << 20
	// DefaultChunkSize matches the threshold, so that the unit a client
	// verifies is never smaller than the smallest object it fetches
	// whole, and a 300 MB runtime needs only ~10 KB of digests.
	DefaultChunkSize = 1 << 20
	// DefaultSpan puts an access point about every chunk: a read of one
	// chunk then inflates at most two chunks' worth, while the windows
	// (32 KiB per point, before zstd) stay near 3 % of large content.
	DefaultSpan = 1 << 20
)

// ScanFunc finds deflate access points. r is the raw deflate stream of
// one .filez (the bytes after its header); fn is called for each point in
// stream order, with In counted from the start of r (Build adds the
// header size). span is the least uncompressed distance wanted between
// points. zran.Scan fits once its Point is converted to AccessPoint.
type ScanFunc func(r io.Reader, span int64, fn func(AccessPoint) error) error

// Source gives Build the objects of a repository. Build verifies what it
// reads, so Source need not; Build calls it from several goroutines at
// once.
type Source interface {
	// ReadMetadata returns a commit, dirtree or dirmeta object.
	ReadMetadata(ctx context.Context, t ostree.ObjectType, c ostree.Checksum) ([]byte, error)
	// OpenArchive returns the .filez bytes of a content object. Build
	// may open one object twice (once to hash, once to scan).
	OpenArchive(ctx context.Context, c ostree.Checksum) (io.ReadCloser, error)
}

// BuildOptions tune Build; the zero value gives the defaults above, no
// access points, and GOMAXPROCS workers.
type BuildOptions struct {
	Threshold   int64
	ChunkSize   uint32
	Span        int64
	Scan        ScanFunc
	Concurrency int
}

// Build makes the index of commit from src: it walks the tree from the
// commit, checks every object it reads against its checksum (content is
// inflated and hashed whole, so chunk digests are those of the content
// the name promises), and for content over the threshold records chunk
// digests and, with a Scan function, access points. It starts
// opts.Concurrency goroutines that end before it returns.
func Build(ctx context.Context, src Source, commit ostree.Checksum, opts BuildOptions) (*Index, error) {
	if opts.Threshold <= 0 {
		opts.Threshold = DefaultThreshold
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize < MinChunkSize || opts.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("build tree index: chunk size %d outside %d..%d", opts.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if opts.Span <= 0 {
		opts.Span = DefaultSpan
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.GOMAXPROCS(0)
	}
	cb, err := readVerified(ctx, src, ostree.ObjCommit, commit)
	if err != nil {
		return nil, err
	}
	cm, err := ostree.DecodeCommit(cb)
	if err != nil {
		return nil, fmt.Errorf("build tree index: %s: %w", ostree.ObjectName(commit, ostree.ObjCommit), err)
	}
	x := &Index{Commit: commit}
	files, err := walk(ctx, src, cm, x)
	if err != nil {
		return nil, err
	}
	x.Files = make([]File, len(files))
	if err := forEach(ctx, opts.Concurrency, len(files), func(i int) error {
		f, err := buildFile(ctx, src, files[i], opts)
		var ce *ostree.ChecksumError
		if errors.As(err, &ce) {
			return fmt.Errorf("build tree index: %w", err) // names the object already
		}
		if err != nil {
			return fmt.Errorf("build tree index: %s: %w", ostree.ObjectName(files[i], ostree.ObjFile), err)
		}
		x.Files[i] = f
		return nil
	}); err != nil {
		return nil, err
	}
	return x, nil
}

func readVerified(ctx context.Context, src Source, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	b, err := src.ReadMetadata(ctx, t, c)
	if err != nil {
		return nil, fmt.Errorf("build tree index: %w", err)
	}
	if got := ostree.Sum(b); got != c {
		return nil, fmt.Errorf("build tree index: %w", &ostree.ChecksumError{Object: ostree.ObjectName(c, t), Got: got, Want: c})
	}
	return b, nil
}

// walk fills x.Trees and x.Metas (sorted) and returns the content
// checksums, sorted and unique.
func walk(ctx context.Context, src Source, cm *ostree.Commit, x *Index) ([]ostree.Checksum, error) {
	trees := map[ostree.Checksum][]byte{}
	metas := map[ostree.Checksum][]byte{}
	files := map[ostree.Checksum]bool{}
	var visit func(tree, meta ostree.Checksum, depth int) error
	visit = func(tree, meta ostree.Checksum, depth int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if depth > maxDepth {
			return fmt.Errorf("build tree index: tree deeper than %d", maxDepth)
		}
		if _, ok := metas[meta]; !ok {
			b, err := readVerified(ctx, src, ostree.ObjDirMeta, meta)
			if err != nil {
				return err
			}
			if _, err := ostree.DecodeDirMeta(b); err != nil {
				return fmt.Errorf("build tree index: %s: %w", ostree.ObjectName(meta, ostree.ObjDirMeta), err)
			}
			metas[meta] = b
		}
		if _, ok := trees[tree]; ok {
			return nil
		}
		b, err := readVerified(ctx, src, ostree.ObjDirTree, tree)
		if err != nil {
			return err
		}
		dt, err := ostree.DecodeDirTree(b)
		if err != nil {
			return fmt.Errorf("build tree index: %s: %w", ostree.ObjectName(tree, ostree.ObjDirTree), err)
		}
		trees[tree] = b
		for _, f := range dt.Files {
			files[f.Checksum] = true
		}
		for _, d := range dt.Dirs {
			if err := visit(d.Tree, d.Meta, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(cm.RootTree, cm.RootMeta, 0); err != nil {
		return nil, err
	}
	x.Trees, x.Metas = sortedObjects(trees), sortedObjects(metas)
	out := make([]ostree.Checksum, 0, len(files))
	for c := range files {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out, nil
}

func sortedObjects(m map[ostree.Checksum][]byte) []Object {
	out := make([]Object, 0, len(m))
	for c, b := range m {
		out = append(out, Object{Checksum: c, Data: b})
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Checksum[:], out[j].Checksum[:]) < 0 })
	return out
}

// forEach runs fn(0..n-1) on up to workers goroutines and returns the
// first error; after one, the remaining indexes are skipped.
func forEach(ctx context.Context, workers, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

func buildFile(ctx context.Context, src Source, c ostree.Checksum, opts BuildOptions) (File, error) {
	rc, err := src.OpenArchive(ctx, c)
	if err != nil {
		return File{}, err
	}
	defer rc.Close()
	cnt := &countingReader{r: rc}
	cr, err := ostree.NewContentReader(cnt)
	if err != nil {
		return File{}, err
	}
	h := cr.Header
	if len(h.Target) > MaxSymlinkTarget {
		return File{}, fmt.Errorf("symlink target of %d bytes, more than %d", len(h.Target), MaxSymlinkTarget)
	}
	hdr := h.ArchiveHeader()
	f := File{Checksum: c, Header: *h, HeaderSize: uint32(len(hdr))}
	chunked := !h.IsSymlink() && h.Size > uint64(opts.Threshold)
	if chunked {
		f.ChunkSize = opts.ChunkSize
		hs := sha256.New()
		for left := h.Size; left > 0; {
			n := min(left, uint64(opts.ChunkSize))
			hs.Reset()
			if _, err := io.CopyN(hs, cr, int64(n)); err != nil {
				return File{}, err
			}
			f.Digests = hs.Sum(f.Digests)
			left -= n
		}
	}
	if err := cr.Verify(c); err != nil {
		return File{}, err
	}
	if _, err := io.Copy(io.Discard, cnt); err != nil {
		return File{}, err
	}
	f.ArchivedSize = cnt.n
	if chunked && opts.Scan != nil {
		if f.Points, err = scan(ctx, src, &f, opts); err != nil {
			return File{}, fmt.Errorf("scan access points: %w", err)
		}
	}
	if err := f.check(hdr); err != nil {
		return File{}, err
	}
	return f, nil
}

func scan(ctx context.Context, src Source, f *File, opts BuildOptions) ([]AccessPoint, error) {
	rc, err := src.OpenArchive(ctx, f.Checksum)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, int64(f.HeaderSize)); err != nil {
		return nil, err
	}
	var points []AccessPoint
	err = opts.Scan(rc, opts.Span, func(p AccessPoint) error {
		if len(points) >= MaxPoints {
			return fmt.Errorf("more than %d access points", MaxPoints)
		}
		if p.Out <= 0 || p.Out >= int64(f.Header.Size) {
			// The stream start needs no point, and one at the end (an
			// empty final block, which Go's and klauspost's deflate
			// write) starts nothing.
			return nil
		}
		// Keep the last min(Out, WindowSize) bytes: a scanner may pad
		// the window of an early point or hand it a longer buffer.
		w := p.Window
		if keep := min(int64(WindowSize), p.Out); int64(len(w)) > keep {
			w = w[int64(len(w))-keep:]
		}
		p.Window = append([]byte(nil), w...)
		p.In += int64(f.HeaderSize)
		points = append(points, p)
		return nil
	})
	return points, err
}
