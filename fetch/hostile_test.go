package fetch_test

import (
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
)

// peak samples a measurement every few milliseconds until stop is called
// and returns the largest value seen.
func peak(measure func() int64) (stop func() int64) {
	var max atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if v := measure(); v > max.Load() {
				max.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return max.Load()
	}
}

func heapInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// endless is an io.Reader of junk that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

// TestHostileMetadataBoundsHeap reproduces part of hole 3 of issue 8: 8
// concurrent hostile dirtree responses took the heap to 1.7 GiB, because
// bodies were read whole (up to 128 MiB each) before they were hashed.
// 32 endless dirtree bodies at once must leave the heap bounded: each is
// cut at its type's cap, and only largeBodies of them may grow past 1 MiB
// at a time.
func TestHostileMetadataBoundsHeap(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".dirtree") {
			http.NotFound(w, r)
			return
		}
		n, _ := io.Copy(w, io.LimitReader(endless{}, 128<<20))
		served.Add(n)
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t, srv.URL, fetch.AddOptions{NoGPGVerify: true}, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	runtime.GC()
	base := heapInUse()
	stop := peak(heapInUse)
	var wg sync.WaitGroup
	const n = 32
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			var c ostree.Checksum
			rand.Read(c[:])
			_, errs[i] = e.fetcher.DirTree(ctxT(t), "r", c)
		})
	}
	wg.Wait()
	top := stop()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "allowed") {
			t.Fatalf("hostile dirtree %d: err = %v, want the size cap", i, err)
		}
	}
	grew := top - base
	t.Logf("32 endless dirtree bodies: heap grew by %d MiB at most (%d MiB served)", grew>>20, served.Load()>>20)
	// 32 requests x 1 MiB + 2 large bodies x 2 x 16 MiB, plus slack for
	// HTTP buffers and the test's own allocations.
	if limit := int64(160 << 20); grew > limit {
		t.Fatalf("heap grew by %d MiB, more than %d MiB", grew>>20, limit>>20)
	}
}

// TestHostileContentBoundsDisk reproduces part of hole 3 of issue 8: a
// .filez declaring 2 GiB was written whole into tmp/ against a 10 MiB
// quota before its checksum failed.
func TestHostileContentBoundsDisk(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".filez") {
			http.NotFound(w, r)
			return
		}
		h := &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Size: 2 << 30}
		cw := &countingWriter{w: w, n: &sent}
		ostree.WriteArchive(cw, h, io.LimitReader(endless{}, 2<<30), 1)
	}))
	t.Cleanup(srv.Close)
	home := t.TempDir()
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Add("r", fetch.AddOptions{URL: srv.URL, NoGPGVerify: true}); err != nil {
		t.Fatal(err)
	}
	store, err := objcache.Open(context.Background(), home, objcache.Options{NoSync: true, MaxBytes: 10 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := fetch.New(store, cfg, fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
	tmp := filepath.Join(home, "tmp")
	stop := peak(func() int64 { return dirBytes(tmp) })
	var c ostree.Checksum
	rand.Read(c[:])
	start := time.Now()
	err = f.FetchContent(ctxT(t), "r", c)
	top := stop()
	if err == nil {
		t.Fatal("a .filez declaring 2 GiB was accepted into a 10 MiB cache")
	}
	t.Logf("2 GiB .filez into a 10 MiB quota: %v after %s; tmp/ peaked at %d bytes; %d compressed bytes sent", err, time.Since(start).Round(time.Millisecond), top, sent.Load())
	if top > 0 {
		t.Fatalf("tmp/ reached %d bytes: the write started before the quota was reserved", top)
	}
	if left := dirBytes(tmp); left != 0 {
		t.Fatalf("tmp/ holds %d bytes after the refusal", left)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal(err)
	}
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
