package objcache

// Lock order: quotaMu, then mu. Nothing that holds mu blocks: it guards
// maps only. An object's busy entry (a per-object lock taken through mu)
// is held while its file is renamed in, opened for the first time,
// evicted or dropped; eviction only ever try-locks it, so a writer that
// waits for quotaMu never holds one.

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/lazytree/lazytree/index"
)

// DefaultMaxBytes is the default quota, 10 GiB.
const DefaultMaxBytes int64 = 10 << 30

// DefaultLowWater is the default fraction of the quota an eviction pass
// frees down to (see doc.go for why not CVMFS's half).
const DefaultLowWater = 0.9

// Options configure a Store. The zero value is a good default.
type Options struct {
	// MaxBytes is the quota: the total size of stored objects (content
	// files and metadata bytes). Default DefaultMaxBytes.
	MaxBytes int64
	// LowWater is the fraction of MaxBytes that eviction frees down to,
	// in (0, 1]. Default DefaultLowWater.
	LowWater float64
	// Logger receives what the store and the index do on their own
	// (start-up repairs, Badger's messages). Nil discards.
	Logger *slog.Logger
	// NoSync skips making files durable before they are recorded. A
	// process crash stays harmless without it (the page cache survives);
	// a power cut may then cost objects, which the first open after
	// restart finds corrupt and drops. Tests and benchmarks only.
	NoSync bool
	// IdleFiles is how many content files stay open after their last
	// handle closed, so that opening them again costs an fstat instead of
	// an index lookup, open(2) and close(2) (a warm mount opens the same
	// small files over and over). Least recently used ones are closed
	// first; eviction, Remove and Close close them. Default
	// DefaultIdleFiles (at most a quarter of RLIMIT_NOFILE); negative
	// keeps none.
	IdleFiles int
	// Index passes options to the index (Logger is filled in).
	Index index.Options
}

// DefaultIdleFiles is the default Options.IdleFiles, the number of small
// files a runtime's start or a build opens again and again; it is capped
// at a quarter of the process's descriptor limit.
const DefaultIdleFiles = 8192

func defaultIdleFiles() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 256
	}
	return int(min(uint64(DefaultIdleFiles), lim.Cur/4))
}

// Store is the object cache in one lazytree home directory. It is safe
// for concurrent use.
type Store struct {
	home, objDir, tmpDir string
	db                   *index.DB
	log                  *slog.Logger
	max, low             int64
	sync                 *syncer // nil with NoSync

	used, count  atomic.Int64
	hits, misses atomic.Uint64
	baseHits     uint64
	baseMiss     uint64
	startup      StartupReport
	quotaMu      sync.Mutex
	mu           sync.Mutex
	open         map[index.ObjectID]*openObj // open and idle objects
	idle         *list.List                  // of *openObj with no handle, most recent first
	idleMax      int
	busy         map[index.ObjectID]chan struct{}
	pending      map[index.ObjectID]int64 // batch objects not yet recorded: their reservations
	// verified holds the objects checked in this session; a content
	// object in it has a present record (set after the record is
	// written, deleted before or with its removal, under its busy entry).
	verified       map[index.ObjectID]fileID // fileID{} for metadata
	partMu         sync.Mutex
	partials       map[index.Sum]*Partial // open partial files (partial.go)
	partUsed       atomic.Int64           // of used, what partial files hold
	lifeMu         sync.RWMutex
	closed         bool
	ops            sync.WaitGroup
	wrapTempWriter func(f *os.File) io.Writer // tests: inject write failures
	skippedOpen    atomic.Int64               // tests: evictions that met an open object
	rehashes       atomic.Int64               // tests: files Open rehashed
}

// StartupReport says what Open had to clean up.
type StartupReport struct {
	// Clean: the previous session ended with Close, so only tmp/ was
	// cleaned; otherwise files and records were reconciled.
	Clean bool
	// TempRemoved is how many unfinished writes were removed from tmp/.
	TempRemoved int
	// RecordsDropped names objects whose records had no file. Objects are
	// recorded only after their file is in place and removed from the
	// index before their file, so this stays empty after a process crash;
	// a power cut or a hand in objects/ can fill it.
	RecordsDropped []string
	// OrphansRemoved is how many files without a record were deleted (a
	// crash between a rename and its index commit, or an eviction between
	// its commit and the unlink).
	OrphansRemoved int
}

const (
	metaUsage    = "objcache.usage"
	metaCounters = "objcache.counters"
	metaState    = "objcache.state"
)

// Open opens the cache in home (creating home/index, home/objects and
// home/tmp as needed), removes unfinished writes and, after a crash,
// reconciles files with records. Only one process may have a home open;
// another gets an error matching index.ErrLocked.
func Open(ctx context.Context, home string, opts Options) (*Store, error) {
	s := &Store{
		home:     home,
		objDir:   filepath.Join(home, "objects"),
		tmpDir:   filepath.Join(home, "tmp"),
		log:      opts.Logger,
		max:      opts.MaxBytes,
		open:     make(map[index.ObjectID]*openObj),
		busy:     make(map[index.ObjectID]chan struct{}),
		pending:  make(map[index.ObjectID]int64),
		verified: make(map[index.ObjectID]fileID),
		idle:     list.New(),
		idleMax:  opts.IdleFiles,
	}
	if s.idleMax == 0 {
		s.idleMax = defaultIdleFiles()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.max <= 0 {
		s.max = DefaultMaxBytes
	}
	low := opts.LowWater
	if low <= 0 || low > 1 {
		low = DefaultLowWater
	}
	s.low = int64(float64(s.max) * low)
	if err := s.mkdirs(); err != nil {
		return nil, fmt.Errorf("open cache %s: %w", home, err)
	}
	iopts := opts.Index
	if iopts.Logger == nil {
		iopts.Logger = s.log
	}
	db, err := index.Open(filepath.Join(home, "index"), iopts)
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", home, err)
	}
	s.db = db
	if err := s.start(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open cache %s: %w", home, err)
	}
	if !opts.NoSync {
		y, err := newSyncer(s.tmpDir)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open cache %s: %w", home, err)
		}
		s.sync = y
	}
	return s, nil
}

func (s *Store) mkdirs() error {
	for _, d := range []string{s.home, s.objDir, s.tmpDir, filepath.Join(s.home, partialDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for i := range 256 {
		d := filepath.Join(s.objDir, fmt.Sprintf("%02x", i))
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func (s *Store) start(ctx context.Context) error {
	n, err := s.cleanTmp()
	if err != nil {
		return err
	}
	// Both flags must say clean: the index's is durable before anything
	// changes (a power cut cannot lose it), ours is not set back to clean
	// when an Open fails half-way through reconciling.
	state, _ := s.db.Meta(metaState)
	s.startup = StartupReport{Clean: s.db.WasClean() && string(state) == "clean", TempRemoved: n}
	if err := s.db.SetMeta(metaState, []byte("running")); err != nil {
		return err
	}
	if v, err := s.db.Meta(metaCounters); err == nil && len(v) == 16 {
		s.baseHits = binary.BigEndian.Uint64(v)
		s.baseMiss = binary.BigEndian.Uint64(v[8:])
	}
	if s.startup.Clean {
		if v, err := s.db.Meta(metaUsage); err == nil && len(v) == 16 {
			s.used.Store(int64(binary.BigEndian.Uint64(v)))
			s.count.Store(int64(binary.BigEndian.Uint64(v[8:])))
			s.partUsed.Store(s.countPartials())
			return nil
		}
	} else if err := s.reconcile(ctx); err != nil {
		return err
	}
	return s.recount(ctx)
}

func (s *Store) cleanTmp() (int, error) {
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.tmpDir, e.Name())); err != nil {
			return 0, err
		}
	}
	return len(ents), nil
}

// reconcile makes files and records agree, one objects/xx directory at a
// time so that memory stays bounded: records without a file are dropped,
// files without a record are deleted.
func (s *Store) reconcile(ctx context.Context) error {
	for b := range 256 {
		dir := filepath.Join(s.objDir, fmt.Sprintf("%02x", b))
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		files := make(map[index.Sum]string, len(ents))
		for _, e := range ents {
			if sum, ok := sumFromName(dir, e.Name()); ok {
				files[sum] = e.Name()
			}
		}
		var missing []index.ObjectID
		err = s.db.ScanObjects(ctx, index.TypeFile, []byte{byte(b)}, func(o index.Object) error {
			if o.State != index.StatePresent {
				return nil
			}
			if _, ok := files[o.ID.Sum]; ok {
				delete(files, o.ID.Sum)
			} else {
				missing = append(missing, o.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range missing {
			if _, err := s.db.Drop(id); err != nil && !errors.Is(err, index.ErrNotFound) {
				return err
			}
			s.startup.RecordsDropped = append(s.startup.RecordsDropped, id.String())
			s.log.Warn("objcache: dropped record without a file", "object", id.String())
		}
		for _, name := range files {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			s.startup.OrphansRemoved++
		}
	}
	if s.startup.OrphansRemoved > 0 {
		s.log.Info("objcache: removed files without a record", "count", s.startup.OrphansRemoved)
	}
	return nil
}

// sumFromName parses "<62 hex>.file" in objects/<2 hex>.
func sumFromName(dir, name string) (index.Sum, bool) {
	rest, ok := strings.CutSuffix(name, ".file")
	if !ok || len(rest) != 62 {
		return index.Sum{}, false
	}
	sum, err := index.ParseSum(filepath.Base(dir) + rest)
	return sum, err == nil
}

// recount sums the present records.
func (s *Store) recount(ctx context.Context) error {
	var used, count int64
	err := s.db.ScanObjects(ctx, 0, nil, func(o index.Object) error {
		if o.State == index.StatePresent {
			used += o.Size
			count++
		}
		return nil
	})
	part := s.countPartials()
	s.partUsed.Store(part)
	s.used.Store(used + part)
	s.count.Store(count)
	return err
}

// Startup reports what Open cleaned up.
func (s *Store) Startup() StartupReport { return s.startup }

// Index returns the store's index, for what the store does not wrap:
// refs, summaries, headers, profiles. It is closed with the store.
func (s *Store) Index() *index.DB { return s.db }

// Usage returns the bytes and number of objects stored now (including
// space reserved by writes about to commit).
func (s *Store) Usage() (bytes, objects int64) { return s.used.Load(), s.count.Load() }

// MaxBytes returns the quota.
func (s *Store) MaxBytes() int64 { return s.max }

// Close waits for writes, opens and evictions in progress, then closes
// the index, marking the cache clean. Handles stay readable after Close
// until they are closed themselves.
func (s *Store) Close() error {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return nil
	}
	s.closed = true
	s.lifeMu.Unlock()
	s.ops.Wait()
	s.dropPending()
	s.mu.Lock()
	s.idleMax = 0 // handles closed from now on close their files
	var idle []*os.File
	for s.idle.Len() > 0 {
		idle = append(idle, s.unidleLocked(s.idle.Back().Value.(*openObj)))
	}
	s.mu.Unlock()
	closeFiles(idle)
	if s.sync != nil {
		s.sync.close()
	}
	err := s.saveCounters()
	usage := binary.BigEndian.AppendUint64(nil, uint64(s.used.Load()))
	usage = binary.BigEndian.AppendUint64(usage, uint64(s.count.Load()))
	err = errors.Join(err, s.db.SetMeta(metaUsage, usage))
	if err == nil {
		err = s.db.SetMeta(metaState, []byte("clean"))
	}
	err = errors.Join(err, s.db.Close())
	if err != nil {
		return fmt.Errorf("close cache %s: %w", s.home, err)
	}
	return nil
}

func (s *Store) saveCounters() error {
	v := binary.BigEndian.AppendUint64(nil, s.baseHits+s.hits.Load())
	v = binary.BigEndian.AppendUint64(v, s.baseMiss+s.misses.Load())
	return s.db.SetMeta(metaCounters, v)
}

// begin registers an operation that Close must wait for.
func (s *Store) begin() error {
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) path(sum index.Sum) string {
	h := sum.String()
	return filepath.Join(s.objDir, h[:2], h[2:]+".file")
}

// lock takes id's busy entry, waiting while another goroutine holds it.
func (s *Store) lock(ctx context.Context, id index.ObjectID) (func(), error) {
	for {
		s.mu.Lock()
		ch := s.busy[id]
		if ch == nil {
			ch = make(chan struct{})
			s.busy[id] = ch
			s.mu.Unlock()
			return func() { s.unlock(id, ch) }, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *Store) unlock(id index.ObjectID, ch chan struct{}) {
	s.mu.Lock()
	delete(s.busy, id)
	s.mu.Unlock()
	close(ch)
}

// tryLockIdle takes id's busy entry if nobody holds it and the object is
// not open: what eviction needs. An idle file kept for reopening is
// closed: that does not count as open.
func (s *Store) tryLockIdle(id index.ObjectID) (chan struct{}, bool) {
	s.mu.Lock()
	if s.busy[id] != nil {
		s.mu.Unlock()
		return nil, false
	}
	idle := s.closeIdleLocked(id)
	if s.open[id] != nil {
		s.mu.Unlock()
		s.skippedOpen.Add(1)
		return nil, false
	}
	ch := make(chan struct{})
	s.busy[id] = ch
	s.mu.Unlock()
	closeFiles(idle)
	return ch, true
}

// drop removes a present object whose bytes are missing or damaged. The
// caller holds id's busy entry.
func (s *Store) drop(id index.ObjectID) {
	was, err := s.db.Drop(id)
	if err == nil {
		s.used.Add(-was.Size)
		s.count.Add(-1)
	}
	if id.Type == index.TypeFile {
		os.Remove(s.path(id.Sum))
	}
	s.mu.Lock()
	delete(s.verified, id)
	idle := s.closeIdleLocked(id)
	if o := s.open[id]; o != nil {
		// Handles already open keep their fd but refuse to read.
		o.corrupt.Store(true)
		delete(s.open, id)
	}
	s.mu.Unlock()
	closeFiles(idle)
}

func (s *Store) isVerified(id index.ObjectID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.verified[id]
	return ok
}

// setVerified notes that id's bytes were checked, and for a content
// object the identity its file had then (see fileID).
func (s *Store) setVerified(id index.ObjectID, fid fileID) {
	s.mu.Lock()
	s.verified[id] = fid
	s.mu.Unlock()
}

// fileID is what stat says of a file's identity and its last change. A
// verification holds while it stays the same: writing to the file in
// place changes its mtime and ctime, replacing it changes the inode, and
// no one but the kernel sets a ctime (changing mtime back with utimensat
// sets ctime to now). A cheap fstat on each open thus replaces a rehash.
type fileID struct {
	dev, ino     uint64
	size         int64
	ctime, mtime int64 // ns since the epoch
}

func statID(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		// Not a Linux stat: nothing to compare, so always rehash.
		return fileID{size: -1}
	}
	return fileID{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  st.Size,
		ctime: st.Ctim.Nano(),
		mtime: st.Mtim.Nano(),
	}
}

// present reports whether id has a present record.
func (s *Store) present(id index.ObjectID) (bool, error) {
	o, err := s.db.Object(id)
	if errors.Is(err, index.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return o.State == index.StatePresent, nil
}

// Has reports whether the object is stored.
func (s *Store) Has(typ index.ObjType, sum index.Sum) (bool, error) {
	return s.present(index.ObjectID{Sum: sum, Type: typ})
}
