package fusefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazytree/lazytree/ostree"
)

// fsys is the state one mount shares between its nodes.
type fsys struct {
	src        Source
	peek       HeaderPeeker // nil when src has none
	hint       DirHinter    // nil when src has none
	opts       Options
	log        *slog.Logger
	st         *stats
	mountpoint string
	root       *rootNode
	recent     *recentCommits

	// passthroughKernel is set once the kernel's INIT has been seen.
	passthroughKernel atomic.Bool
}

func newFS(src Source, opts Options, mountpoint string) *fsys {
	f := &fsys{
		src:        src,
		opts:       opts,
		log:        opts.Logger,
		st:         newStats(opts.MaxErrors),
		mountpoint: mountpoint,
		recent:     &recentCommits{max: 64},
	}
	f.peek, _ = src.(HeaderPeeker)
	f.hint, _ = src.(DirHinter)
	f.root = &rootNode{f: f}
	return f
}

// request bounds the Source calls made for one FUSE request, together, by
// Options.RequestTimeout; ctx (go-fuse's) is cancelled by a kernel
// INTERRUPT. The result is a requestCtx: pass it to call.
func (f *fsys) request(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.(requestCtx); ok {
		return ctx, func() {}
	}
	dl, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.RequestTimeout)
	return requestCtx{Context: dl, interrupt: ctx.Done()}, cancel
}

// requestCtx carries a request's deadline (Context, which an interrupt
// does not cancel) and the kernel's INTERRUPT (go-fuse's Done channel)
// separately. A context derived from go-fuse's own would cost a goroutine
// per request to forward the cancel (the context package can only link
// its own types without one), and every open of a warm file is a
// request. call watches both and cancels the Source's context when
// either fires, so the Source sees an interrupt all the same.
type requestCtx struct {
	context.Context
	interrupt <-chan struct{}
}

// call runs one Source call under the request's deadline (and never
// longer than RequestTimeout, for callers outside a request). It returns when
// the call returns, the deadline passes, or the kernel interrupts the
// request, whichever comes first; a call that outlives its request is
// left to finish on its own and its result (an open File) is discarded.
// That way a Source that ignores its context still cannot hang a request.
func call[T any](f *fsys, ctx context.Context, fn func(context.Context) (T, error), discard func(T)) (T, error) {
	var interrupt <-chan struct{}
	if r, ok := ctx.(requestCtx); ok {
		ctx, interrupt = r.Context, r.interrupt
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.RequestTimeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	var (
		mu        sync.Mutex
		abandoned bool
		ch        = make(chan result, 1)
	)
	f.st.inflight.Add(1)
	go func() {
		v, err := fn(ctx)
		f.st.inflight.Add(-1)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if err == nil && discard != nil {
				discard(v)
			}
			return
		}
		ch <- result{v, err}
	}()
	interrupted := false
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
	case <-interrupt:
		interrupted = true
	}
	mu.Lock()
	abandoned = true
	mu.Unlock()
	select {
	case r := <-ch: // it finished while we were giving up
		return r.v, r.err
	default:
	}
	var zero T
	if !interrupted && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return zero, fmt.Errorf("no answer from the object source within %v: %w", f.opts.RequestTimeout, context.DeadlineExceeded)
	}
	return zero, fmt.Errorf("interrupted: %w", context.Canceled)
}

// failure turns err into the errno for a request and records it for
// status.json (except a plain "no such name").
func (f *fsys) failure(o op, where, object string, err error) syscall.Errno {
	errno := toErrno(err)
	if errno == syscall.ENOENT && !errors.Is(err, errMissing) {
		return errno
	}
	f.st.fail(o, where, object, errno, err)
	f.log.Debug("request failed", "op", o.String(), "path", where, "object", object, "errno", errnoName(errno), "err", err)
	return errno
}

func (f *fsys) status() Status {
	st := f.st.snapshot()
	st.PassthroughKernel = f.passthroughKernel.Load()
	return Status{
		Time:       time.Now().UTC(),
		Mountpoint: f.mountpoint,
		FS:         st,
		Source:     f.src.Status(),
	}
}

// statusDoc is status.json.
func (f *fsys) statusDoc() []byte { return marshalStatus(f.status()) }

// CachedRefser is what a Source may also offer: the refs it has loaded,
// without a request (refs.json never waits for the network then).
type CachedRefser interface {
	CachedRefs(remote string) (map[string]ostree.Checksum, bool)
}

// refsDoc is refs.json: the commit of every ref the mount shows, by
// remote, as the mount resolved it last (a ref that moves changes here
// when its directory does). With a CachedRefser only the remotes whose
// refs are loaded are listed (any looked-up ref is), so rendering it
// never asks the network; otherwise remotes that cannot list their refs
// now are left out.
func (f *fsys) refsDoc() []byte {
	ctx, cancel := f.request(context.Background())
	defer cancel()
	doc := map[string]map[string]string{}
	cached, _ := f.src.(CachedRefser)
	for _, r := range f.src.Remotes() {
		var refs map[string]ostree.Checksum
		var err error
		if cached != nil {
			var ok bool
			if refs, ok = cached.CachedRefs(r); !ok {
				continue
			}
		} else if refs, err = f.src.Refs(ctx, r); err != nil {
			continue
		}
		m := make(map[string]string, len(refs))
		for ref, c := range refs {
			m[ref] = c.String()
		}
		doc[r] = m
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}

// treeEntry sets the kernel cache timeouts for something inside a commit.
func (f *fsys) treeEntry(out *fuse.EntryOut) {
	out.SetEntryTimeout(f.opts.TreeTimeout)
	out.SetAttrTimeout(f.opts.TreeTimeout)
}

// refEntry sets the kernel cache timeouts for the root, remote and ref
// directories, which change when refs move.
func (f *fsys) refEntry(out *fuse.EntryOut) {
	out.SetEntryTimeout(f.opts.RefTimeout)
	out.SetAttrTimeout(f.opts.RefTimeout)
}

// noNegativeEntry makes go-fuse answer a failed lookup with a plain
// ENOENT instead of a cached negative entry: a remote, ref or commit that
// does not exist now may exist a moment later. (go-fuse only turns ENOENT
// into a negative entry when the reply has no timeout of its own.)
func noNegativeEntry(out *fuse.EntryOut) { out.SetEntryTimeout(time.Nanosecond) }

// refresh invalidates kernel entries for refs that changed.
func (f *fsys) refresh(ctx context.Context) error {
	root := f.root.EmbeddedInode()
	remotes := f.src.Remotes()
	var errs []error
	for name, child := range root.Children() {
		rd, ok := child.Operations().(*refDirNode)
		if !ok {
			continue
		}
		if _, found := slices.BinarySearch(remotes, name); !found {
			root.NotifyEntry(name)
			continue
		}
		refs, err := f.src.Refs(ctx, rd.remote)
		if err != nil {
			errs = append(errs, fmt.Errorf("refresh %s: %w", rd.remote, err))
			continue
		}
		rd.invalidateChanged(refs)
	}
	return errors.Join(errs...)
}

// recentCommits remembers the commits most recently resolved (through a
// ref or by checksum) for listing .commits.
type recentCommits struct {
	mu   sync.Mutex
	max  int
	list []ostree.Checksum // most recent last
}

func (r *recentCommits) add(c ostree.Checksum) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.list, c); i >= 0 {
		r.list = slices.Delete(r.list, i, i+1)
	}
	r.list = append(r.list, c)
	if len(r.list) > r.max {
		r.list = slices.Delete(r.list, 0, len(r.list)-r.max)
	}
}

func (r *recentCommits) snapshot() []ostree.Checksum {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// Compile-time checks that the nodes implement what go-fuse calls.
var (
	_ fs.NodeLookuper       = (*rootNode)(nil)
	_ fs.NodeReaddirer      = (*rootNode)(nil)
	_ fs.NodeGetattrer      = (*rootNode)(nil)
	_ fs.NodeLookuper       = (*refDirNode)(nil)
	_ fs.NodeReaddirer      = (*refDirNode)(nil)
	_ fs.NodeGetattrer      = (*refDirNode)(nil)
	_ fs.NodeLookuper       = (*commitsNode)(nil)
	_ fs.NodeReaddirer      = (*commitsNode)(nil)
	_ fs.NodeGetattrer      = (*commitsNode)(nil)
	_ fs.NodeLookuper       = (*dirNode)(nil)
	_ fs.NodeOpendirHandler = (*dirNode)(nil)
	_ fs.NodeGetattrer      = (*dirNode)(nil)
	_ fs.NodeGetxattrer     = (*dirNode)(nil)
	_ fs.NodeListxattrer    = (*dirNode)(nil)
	_ fs.NodeGetattrer      = (*fileNode)(nil)
	_ fs.NodeOpener         = (*fileNode)(nil)
	_ fs.NodeReadlinker     = (*fileNode)(nil)
	_ fs.NodeGetxattrer     = (*fileNode)(nil)
	_ fs.NodeListxattrer    = (*fileNode)(nil)
	_ fs.NodeGetattrer      = (*statusNode)(nil)
	_ fs.NodeOpener         = (*statusNode)(nil)

	_ fs.FileReaddirenter    = (*dirHandle)(nil)
	_ fs.FileLookuper        = (*dirHandle)(nil)
	_ fs.FileSeekdirer       = (*dirHandle)(nil)
	_ fs.FileReader          = (*fileHandle)(nil)
	_ fs.FileReleaser        = (*fileHandle)(nil)
	_ fs.FilePassthroughFder = (*fileHandle)(nil)
	_ fs.FileReader          = (*statusHandle)(nil)
)
