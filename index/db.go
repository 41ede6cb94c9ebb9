package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Options configure a DB. The zero value is a good default.
type Options struct {
	// Logger receives Badger's messages (its info and debug at Debug
	// level) and this package's own. Nil discards them.
	Logger *slog.Logger
	// FlushInterval is how often batched access times are written
	// (default 10 s). They are also written on Close and by FlushAccess.
	FlushInterval time.Duration
	// GCInterval is how often the value log is garbage-collected
	// (default 5 min).
	GCInterval time.Duration
	// Now returns the time; tests set it. Default time.Now.
	Now func() time.Time
	// HeaderCache is how many file headers to keep in memory (default
	// 65536, about 15 MB with typical headers; negative: none).
	HeaderCache int
}

// DB is the index. It is safe for concurrent use.
type DB struct {
	bdb      *badger.DB
	log      *slog.Logger
	now      func() time.Time
	wasClean bool

	accessMu sync.Mutex
	access   map[ObjectID]int64 // pending access times (unix ns)

	pinMu sync.Mutex // serializes pin and unpin operations

	headers *headerCache // nil when disabled

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
	closeErr  error
}

// Badger's own limits: a transaction that grows past about 15 % of the
// memtable fails with ErrTxnTooBig. Chunked writers below stay well under.
//
// The memtable is an arena allocated whole and resident from the start:
// at 32 MiB it was 42 MB of a 157 MB runtime's pull, whose index writes
// are a few MB; at 8 MiB the pull's peak RSS fell from 109 to 74 MB
// (one xz decoder), with no change in its time.
const (
	memTableSize   = 8 << 20
	valueThreshold = 4 << 10
	chunkSize      = 2000
	updateRetries  = 50
)

// Open opens (creating if needed) the index in dir. Only one process may
// have it open: a second gets ErrLocked. Pins left half-added or
// half-removed by a crash are rolled back before Open returns.
func Open(dir string, opts Options) (*DB, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	if err := checkLock(dir); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := removeEmptyLogs(dir, log); err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2).
		WithBlockCacheSize(32 << 20).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(256 << 20)
	bdb, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	db := &DB{
		bdb:    bdb,
		log:    log,
		now:    opts.Now,
		access: make(map[ObjectID]int64),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if db.now == nil {
		db.now = time.Now
	}
	switch {
	case opts.HeaderCache == 0:
		db.headers = newHeaderCache(65536)
	case opts.HeaderCache > 0:
		db.headers = newHeaderCache(opts.HeaderCache)
	}
	if err := db.start(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	flush, gc := opts.FlushInterval, opts.GCInterval
	if flush <= 0 {
		flush = 10 * time.Second
	}
	if gc <= 0 {
		gc = 5 * time.Minute
	}
	go db.background(flush, gc)
	return db, nil
}

// checkLock tries Badger's directory lock first, so that "another process
// has it" is a sentinel rather than a message to parse. Badger takes the
// same lock right after; the window between is harmless (Badger then
// fails with its own message).
func checkLock(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open index %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("open index %s: %w", dir, ErrLocked)
		}
		return fmt.Errorf("open index %s: lock: %w", dir, err)
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

// removeEmptyLogs works around a Badger v4 start-up failure. A process
// killed between Badger creating a value-log (.vlog) or memtable WAL
// (.mem) file and sizing it leaves a zero-length file, and the next
// badger.Open fails with "... Create a new file": valueLog.open and
// openMemTables treat the z.NewFile their file open reports for an empty
// file as an error. An empty file holds no entries, so removing it loses
// nothing. objcache's TestKill found both.
func removeEmptyLogs(dir string, log *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); !e.Type().IsRegular() || ext != ".vlog" && ext != ".mem" {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() != 0 {
			continue
		}
		log.Warn("index: removing an empty log file left by a crash", "file", e.Name())
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// start records whether the last session closed cleanly, marks this one
// as running (durably, before anything else changes), and rolls back
// interrupted pins.
func (db *DB) start() error {
	v, err := db.getMeta(metaState)
	switch {
	case err == nil:
		db.wasClean = string(v) == "clean"
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if err := db.setMeta(metaState, []byte("open")); err != nil {
		return err
	}
	if err := db.bdb.Sync(); err != nil {
		return err
	}
	return db.recoverPins()
}

// WasClean reports whether the previous session ended with Close. When it
// did not (a crash, a kill, a new index), the caller should reconcile its
// files with the records.
func (db *DB) WasClean() bool { return db.wasClean }

// Close writes pending access times, marks the index clean, and closes
// it. It stops the background goroutine first.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.stop)
		<-db.done
		err := db.FlushAccess()
		if err == nil {
			err = db.setMeta(metaState, []byte("clean"))
		}
		db.closeErr = errors.Join(err, db.bdb.Close())
	})
	return db.closeErr
}

// background flushes access times and runs value-log GC until Close.
func (db *DB) background(flush, gc time.Duration) {
	defer close(db.done)
	ft := time.NewTicker(flush)
	defer ft.Stop()
	gt := time.NewTicker(gc)
	defer gt.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-ft.C:
			if err := db.FlushAccess(); err != nil {
				db.log.Warn("index: flush access times", "err", err)
			}
		case <-gt.C:
			db.runValueLogGC()
		}
	}
}

// runValueLogGC rewrites value-log files while Badger finds one worth
// rewriting, stopping early when Close is called.
func (db *DB) runValueLogGC() {
	for i := 0; i < 16; i++ {
		select {
		case <-db.stop:
			return
		default:
		}
		err := db.bdb.RunValueLogGC(0.5)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				db.log.Warn("index: value log gc", "err", err)
			}
			return
		}
	}
}

// update runs fn in a read-write transaction, retrying on conflict.
// fn must be safe to run more than once.
func (db *DB) update(fn func(txn *badger.Txn) error) error {
	for i := 0; ; i++ {
		err := db.bdb.Update(fn)
		if errors.Is(err, badger.ErrConflict) && i < updateRetries {
			continue
		}
		if errors.Is(err, badger.ErrDBClosed) {
			return ErrClosed
		}
		return err
	}
}

func (db *DB) view(fn func(txn *badger.Txn) error) error {
	err := db.bdb.View(fn)
	if errors.Is(err, badger.ErrDBClosed) {
		return ErrClosed
	}
	return err
}

func (db *DB) getMeta(name string) ([]byte, error) {
	var out []byte
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(metaKey(name))
		if err != nil {
			return err
		}
		out, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	return out, err
}

func (db *DB) setMeta(name string, v []byte) error {
	return db.update(func(txn *badger.Txn) error { return txn.Set(metaKey(name), v) })
}

// Meta returns a small value stored with SetMeta, or ErrNotFound. Names
// starting with "index." are reserved for this package.
func (db *DB) Meta(name string) ([]byte, error) {
	v, err := db.getMeta(name)
	if err != nil {
		return nil, fmt.Errorf("read meta %q: %w", name, err)
	}
	return v, nil
}

// SetMeta stores a small value under name, for the packages above (the
// object cache keeps its usage totals and hit counters here).
func (db *DB) SetMeta(name string, v []byte) error {
	if name == metaState || name == metaPinSeq {
		return fmt.Errorf("set meta %q: reserved name", name)
	}
	if err := db.setMeta(name, v); err != nil {
		return fmt.Errorf("set meta %q: %w", name, err)
	}
	return nil
}

// Sync makes every committed write durable. Writes are otherwise durable
// against a process crash at once and against a power cut within
// Badger's own flush interval.
func (db *DB) Sync() error { return db.bdb.Sync() }

// badgerLogger sends Badger's messages to slog. Badger reports routine
// work (compactions, replay) at info, so that goes to Debug.
type badgerLogger struct{ l *slog.Logger }

var _ badger.Logger = badgerLogger{}

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug("badger: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug("badger: " + trimNL(fmt.Sprintf(f, a...)))
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

// stopped reports whether ctx is done, as an error to return.
func stopped(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}
