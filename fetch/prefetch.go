package fetch

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/ostree"
)

// Prefetch modes (DESIGN.md, "Fetch strategies").
const (
	// PrefetchNone fetches on demand only (plus the speculation every
	// mode has: a listed directory's entries, an opened ELF file's
	// libraries).
	PrefetchNone = "none"
	// PrefetchMetadata walks every dirtree and dirmeta of a commit in the
	// background, breadth first, right after the commit.
	PrefetchMetadata = "metadata"
	// PrefetchProfile replays the files earlier runs of the commit opened
	// (speculatively, in parallel), then walks the metadata.
	PrefetchProfile = "profile"
	// PrefetchDelta walks the metadata as PrefetchMetadata does and
	// streams the commit's static delta in the background (from a cached
	// older commit when the remote has one, else from scratch); objects
	// become readable as their part is applied, and whatever the delta
	// does not carry is then fetched loose. Without a usable delta it
	// fetches everything loose, as PrefetchFull.
	PrefetchDelta = "delta"
	// PrefetchFull (or PrefetchAll) fetches everything in the background.
	PrefetchFull = "full"
	PrefetchAll  = "all"
)

// PrefetchModes lists the modes --prefetch and the prefetch= config key
// take.
var PrefetchModes = []string{PrefetchNone, PrefetchMetadata, PrefetchProfile, PrefetchDelta, PrefetchFull, PrefetchAll}

// ValidPrefetch reports whether mode is a known prefetch mode.
func ValidPrefetch(mode string) bool { return slices.Contains(PrefetchModes, mode) }

// PrefetchStatus is one commit's background work, for status.json.
type PrefetchStatus struct {
	Commit string `json:"commit"`
	Remote string `json:"remote"`
	Mode   string `json:"mode"`
	// State is running, done, failed or stopped (the mount went away).
	State        string  `json:"state"`
	Note         string  `json:"note,omitempty"`
	Dirs         int64   `json:"dirs"`
	Files        int64   `json:"files"`
	ProfileFiles int64   `json:"profile_files,omitempty"`
	Errors       int64   `json:"errors"`
	Seconds      float64 `json:"seconds"`
	Error        string  `json:"error,omitempty"`
	// A delta being streamed (mode delta): parts and compressed bytes.
	DeltaParts     int64 `json:"delta_parts,omitempty"`
	DeltaPartsDone int64 `json:"delta_parts_done,omitempty"`
	DeltaBytes     int64 `json:"delta_bytes,omitempty"`
	DeltaBytesDone int64 `json:"delta_bytes_done,omitempty"`
}

type prefetchJob struct {
	commit  ostree.Checksum
	remote  string
	mode    string
	note    string
	started time.Time

	dirs, files, profile, errs atomic.Int64
	delta                      Progress // mode delta

	mu    sync.Mutex
	state string
	took  time.Duration
	err   string
}

func (j *prefetchJob) status() PrefetchStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	took := j.took
	if j.state == "running" {
		took = time.Since(j.started)
	}
	return PrefetchStatus{Commit: j.commit.String(), Remote: j.remote, Mode: j.mode, State: j.state, Note: j.note,
		Dirs: j.dirs.Load(), Files: j.files.Load(), ProfileFiles: j.profile.Load(), Errors: j.errs.Load(),
		Seconds: took.Seconds(), Error: j.err,
		DeltaParts: j.delta.DeltaParts.Load(), DeltaPartsDone: j.delta.DeltaPartsDone.Load(),
		DeltaBytes: j.delta.DeltaBytes.Load(), DeltaBytesDone: j.delta.DeltaBytesDone.Load()}
}

func (j *prefetchJob) setNote(n string) {
	j.mu.Lock()
	j.note = n
	j.mu.Unlock()
}

func (j *prefetchJob) finish(ctx context.Context, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.took = time.Since(j.started)
	switch {
	case ctx.Err() != nil:
		j.state = "stopped"
	case err != nil:
		j.state, j.err = "failed", err.Error()
	default:
		j.state = "done"
	}
}

// modeFor is the prefetch mode for a commit verified for remote: the
// remote's prefetch= key, else the mount's.
func (s *MountSource) modeFor(remote string) string {
	if r, err := s.f.Remote(remote); err == nil && r.Prefetch != "" {
		return r.Prefetch
	}
	return s.opts.Prefetch
}

// startPrefetch begins background fetching of a commit once, per mode.
func (s *MountSource) startPrefetch(c ostree.Checksum, cm *ostree.Commit, remote string) {
	s.mu.Lock()
	if _, ok := s.commitRemote[c]; !ok && remote != "" {
		s.commitRemote[c] = remote
	}
	mode := s.modeFor(remote)
	if mode == PrefetchNone || s.prefetched[c] || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.prefetched[c] = true
	job := &prefetchJob{commit: c, remote: remote, mode: mode, started: time.Now(), state: "running"}
	if st, ok := s.indexState[c]; ok && st == "loaded" {
		job.note = strings.TrimPrefix(job.note+"; tree index loaded", "; ")
	}
	s.jobs = append(s.jobs, job)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx := WithPriority(s.ctx, Background)
		var err error
		switch mode {
		case PrefetchMetadata:
			err = s.prefetchTree(ctx, job, cm, remote, false)
		case PrefetchDelta:
			err = s.prefetchDelta(ctx, job, c, cm, remote)
		case PrefetchFull, PrefetchAll:
			err = s.prefetchTree(ctx, job, cm, remote, true)
		case PrefetchProfile:
			err = s.prefetchProfile(WithPriority(s.ctx, Speculative), job, c, cm, remote)
			if err == nil {
				err = s.prefetchTree(ctx, job, cm, remote, false)
			}
		}
		job.finish(s.ctx, err)
		if err != nil && s.ctx.Err() == nil {
			s.f.RecordError(remote, "prefetch "+c.String(), err)
		}
	}()
}

// prefetchDelta is mode delta: the metadata walk and the delta stream
// at once, then a walk that fetches what is still missing.
func (s *MountSource) prefetchDelta(ctx context.Context, job *prefetchJob, c ostree.Checksum, cm *ostree.Commit, remote string) error {
	meta := make(chan error, 1)
	go func() { meta <- s.prefetchTree(ctx, job, cm, remote, false) }()
	// The parts go at the background class: they pause while a reader's
	// requests or their guesses are in flight. Measured (BenchmarkDeltaPull
	// mount-delta-shaped, one run each): at the speculative class, sharing
	// the link, a Python start took 2.2-3.1x its idle time (its guesses
	// fetch the import graph in parallel, so it is no longer a chain that
	// leaves the link idle), the delta job 1.25x a plain pull; paused, the
	// start 0.96x, the delta job 1.15x.
	s.mu.Lock()
	prev, hasPrev := s.prevCommit[c]
	s.mu.Unlock()
	var from *ostree.Checksum
	if hasPrev {
		from = &prev
	}
	used, err := s.f.pullDelta(ctx, remote, from, c, cm, &job.delta, true)
	switch {
	case err != nil && ctx.Err() == nil:
		job.errs.Add(1)
		s.f.RecordError(remote, "delta to "+c.String(), err)
		job.setNote("static delta failed, fetching loose objects: " + err.Error())
	case !used:
		job.setNote("no usable static delta: fetching loose objects")
	}
	if err := <-meta; err != nil || ctx.Err() != nil {
		return err
	}
	job.dirs.Store(0) // the last walk counts them again
	return s.prefetchTree(ctx, job, cm, remote, true)
}

// prefetchTree fetches every dirtree and dirmeta of the commit (and with
// content every file) with up to BackgroundWorkers fetches at once:
// directories breadth first and ahead of files, not one level at a time.
// A failed object is counted and skipped (the reader who needs it gets
// the error on demand); the walk goes on.
func (s *MountSource) prefetchTree(ctx context.Context, job *prefetchJob, cm *ostree.Commit, remote string, content bool) error {
	q := newWorkQueue(ctx, s.opts.BackgroundWorkers)
	// Directories are small and every lookup needs them: they go at the
	// speculative class; content at the background one.
	metaCtx := WithPriority(ctx, Speculative)
	var seen sync.Map
	first := func(c ostree.Checksum, t ostree.ObjectType) bool {
		_, dup := seen.LoadOrStore(index.ObjectID{Sum: c, Type: t}, true)
		return !dup
	}
	meta := func(c ostree.Checksum) {
		if !first(c, ostree.ObjDirMeta) {
			return
		}
		q.add(true, func(context.Context) {
			s.held(metaCtx, job, func(ctx context.Context) error { _, err := s.f.DirMeta(ctx, remote, c); return err })
		})
	}
	var dir func(c ostree.Checksum)
	dir = func(c ostree.Checksum) {
		if !first(c, ostree.ObjDirTree) {
			return
		}
		q.add(true, func(context.Context) {
			var t *ostree.DirTree
			ok := s.held(metaCtx, job, func(ctx context.Context) (err error) { t, err = s.f.DirTree(ctx, remote, c); return err })
			if !ok {
				return
			}
			job.dirs.Add(1)
			for _, d := range t.Dirs {
				meta(d.Meta)
				dir(d.Tree)
			}
			if !content {
				return
			}
			for _, e := range t.Files {
				if !first(e.Checksum, ostree.ObjFile) {
					continue
				}
				// After a delta nearly all is cached: an index lookup
				// says so without a queued fetch and a file open each.
				if ok, _ := s.f.Store().Has(index.TypeFile, e.Checksum); ok {
					job.files.Add(1)
					continue
				}
				q.add(false, func(ctx context.Context) {
					if s.held(ctx, job, func(ctx context.Context) error { return s.f.FetchContent(ctx, remote, e.Checksum) }) {
						job.files.Add(1)
					}
				})
			}
		})
	}
	meta(cm.RootMeta)
	dir(cm.RootTree)
	q.run()
	return ctx.Err()
}

// held runs one background fetch under the mount's background bound,
// counting a failure against the job.
func (s *MountSource) held(ctx context.Context, job *prefetchJob, fn func(ctx context.Context) error) bool {
	if err := s.bg.Acquire(ctx, 1); err != nil {
		return false
	}
	err := fn(ctx)
	s.bg.Release(1)
	if err != nil && ctx.Err() == nil {
		job.errs.Add(1)
	}
	return err == nil
}

// workQueue runs tasks on a fixed number of workers; tasks may add more.
// Urgent tasks (directories) run before the others (files).
type workQueue struct {
	ctx     context.Context
	mu      sync.Mutex
	cond    *sync.Cond
	urgent  []func(context.Context)
	rest    []func(context.Context)
	pending int // queued or running
	workers int
	wg      sync.WaitGroup
}

func newWorkQueue(ctx context.Context, workers int) *workQueue {
	q := &workQueue{ctx: ctx, workers: max(1, workers)}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// run starts the workers on the tasks added so far (and those they add)
// and returns when every task has run, or the context ended.
func (q *workQueue) run() {
	// Wake the workers when the context ends.
	stop := context.AfterFunc(q.ctx, func() { q.mu.Lock(); q.cond.Broadcast(); q.mu.Unlock() })
	defer stop()
	for range q.workers {
		q.wg.Add(1)
		go q.work()
	}
	q.wg.Wait()
}

func (q *workQueue) add(urgent bool, fn func(context.Context)) {
	q.mu.Lock()
	if urgent {
		q.urgent = append(q.urgent, fn)
	} else {
		q.rest = append(q.rest, fn)
	}
	q.pending++
	q.cond.Signal()
	q.mu.Unlock()
}

func (q *workQueue) work() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		for len(q.urgent) == 0 && len(q.rest) == 0 && q.pending > 0 && q.ctx.Err() == nil {
			q.cond.Wait()
		}
		if q.pending == 0 || q.ctx.Err() != nil {
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		}
		var fn func(context.Context)
		if len(q.urgent) > 0 {
			fn, q.urgent = q.urgent[0], q.urgent[1:]
		} else {
			fn, q.rest = q.rest[0], q.rest[1:]
		}
		q.mu.Unlock()
		fn(q.ctx)
		q.mu.Lock()
		q.pending--
		if q.pending == 0 {
			q.cond.Broadcast()
		}
		q.mu.Unlock()
	}
}

// prefetchProfile replays, in parallel and in their order, the files that
// earlier runs of this commit opened (recorded by the mount, or imported
// with lazytree profile import).
func (s *MountSource) prefetchProfile(ctx context.Context, job *prefetchJob, c ostree.Checksum, cm *ostree.Commit, remote string) error {
	paths, err := s.f.Profile(c)
	if errors.Is(err, index.ErrNotFound) {
		// None recorded here: the one the publisher signed, if any.
		p, perr := s.f.PublishedProfile(ctx, remote, c)
		switch {
		case perr == nil:
			paths, err = p.Paths, nil
			job.setNote("replaying the profile the remote publishes")
		case errors.Is(perr, errNoTreeIndex):
			job.setNote("no profile recorded or published for this commit yet")
			return nil
		default:
			return perr
		}
	}
	if err != nil {
		return err
	}
	// A profile is what the reader will ask for next: replayed at the
	// speculative bound, not the background one.
	q := newWorkQueue(ctx, s.f.opts.SpeculativeConcurrency)
	for _, p := range paths {
		q.add(false, func(ctx context.Context) {
			sum, err := s.resolve(ctx, cm, remote, p)
			if err != nil {
				return // the profile may name files of another layout
			}
			if err := s.f.FetchContent(ctx, remote, sum); err != nil {
				if ctx.Err() == nil {
					job.errs.Add(1)
				}
				return
			}
			job.profile.Add(1)
		})
	}
	q.run()
	return ctx.Err()
}

// resolve finds the content checksum of a path inside a commit, fetching
// the dirtrees on the way.
func (s *MountSource) resolve(ctx context.Context, cm *ostree.Commit, remote, p string) (ostree.Checksum, error) {
	dir, name := path.Split(path.Clean(p))
	_, t, err := s.resolveDir(ctx, cm, remote, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return ostree.Checksum{}, err
	}
	if f, ok := t.LookupFile(name); ok {
		return f.Checksum, nil
	}
	return ostree.Checksum{}, fmt.Errorf("%s: no such file in the commit", p)
}
