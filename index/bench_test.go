package index

import (
	"sync"
	"testing"
)

const benchObjects = 20000

// benchDB is an index with benchObjects content objects and headers.
func benchDB(b *testing.B) *DB {
	b.Helper()
	db := openTest(b, b.TempDir())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < benchObjects; i += 8 {
				h := testHeader(i)
				h.Raw = make([]byte, 120) // a typical GVariant header with an SELinux xattr
				if _, err := db.AddObject(Object{ID: fileID(i), Size: int64(i), Origin: "flathub"}, &h, nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return db
}

// bigDB is an index with n objects written through a Badger write batch
// (far faster than one transaction each), reopened so that lookups go
// through SSTables and the block cache rather than the memtable.
func bigDB(b *testing.B, n int, opts Options) *DB {
	b.Helper()
	dir := b.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	wb := db.bdb.NewWriteBatch()
	for i := range n {
		id := fileID(i)
		o := Object{ID: id, State: StatePresent, Size: int64(i), Origin: "flathub"}
		h := testHeader(i)
		h.Raw = make([]byte, 120)
		if err := wb.Set(objectKey(id), encodeObject(&o)); err != nil {
			b.Fatal(err)
		}
		if err := wb.Set(headerKey(id.Sum), encodeHeader(&h)); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	db, err = Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func benchLookups(b *testing.B, db *DB, n int, header bool) {
	ids := make([]ObjectID, 4096)
	for i := range ids {
		ids[i] = fileID(i * 7919 % n)
	}
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)]
		var err error
		if header {
			_, err = db.Header(id.Sum)
		} else {
			_, err = db.Object(id)
		}
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkObjectLookup(b *testing.B) { benchLookups(b, benchDB(b), benchObjects, false) }

func BenchmarkHeaderLookup(b *testing.B) { benchLookups(b, benchDB(b), benchObjects, true) }

// 500,000 objects: a large runtime collection, in SSTables.
func BenchmarkObjectLookup500k(b *testing.B) {
	benchLookups(b, bigDB(b, 500000, Options{}), 500000, false)
}

// The 4096 headers looked up fit the in-memory header cache.
func BenchmarkHeaderLookup500k(b *testing.B) {
	benchLookups(b, bigDB(b, 500000, Options{}), 500000, true)
}

// Without the cache: every lookup goes through Badger's tables.
func BenchmarkHeaderLookup500kUncached(b *testing.B) {
	benchLookups(b, bigDB(b, 500000, Options{HeaderCache: -1}), 500000, true)
}

func BenchmarkHeaderLookupParallel(b *testing.B) {
	db := benchDB(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := db.Header(sumOf(i * 19 % benchObjects)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkTouch(b *testing.B) {
	db := benchDB(b)
	i := 0
	for b.Loop() {
		db.Touch(fileID(i % benchObjects))
		i++
	}
}
