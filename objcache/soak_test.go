package objcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lazytree/lazytree/index"
)

// TestSoak writes ten times the quota through the cache from several
// writers while readers hold objects open, and checks after every write
// that the cache is within one object of the quota, that pinned objects
// stay, and that open handles keep reading the right bytes.
func TestSoak(t *testing.T) {
	const (
		quota   = 2 << 20
		maxObj  = 64 << 10
		writers = 4
		readers = 3
		pinned  = 16
	)
	ctx := context.Background()
	home := t.TempDir()
	s := openStore(t, home, Options{MaxBytes: quota})

	// Objects to write: 10x the quota in total, 1 byte to 64 KiB each.
	r := rand.New(rand.NewPCG(1, 2))
	var objs []obj
	var total int64
	for total < 10*quota {
		o := makeObj(uint64(len(objs)), 1+r.IntN(maxObj))
		objs = append(objs, o)
		total += int64(len(o.content))
	}
	// The first few are pinned (before they are stored: the pin applies
	// when they arrive).
	var pins []index.ObjectID
	for _, o := range objs[:pinned] {
		pins = append(pins, o.id())
	}
	commit := index.Sum(sha256.Sum256([]byte("soak")))
	if err := s.PinRef(ctx, "soak", "app/x", commit, pins); err != nil {
		t.Fatal(err)
	}

	var next, written atomic.Int64
	var peak atomic.Int64
	var heldReads atomic.Int64
	stop := make(chan struct{})
	var wg, rg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(objs)) {
					return
				}
				o := objs[i]
				if err := s.PutContent(ctx, o.sum, o.hdr, bytes.NewReader(o.content), "soak"); err != nil {
					t.Error(err)
					return
				}
				written.Store(max(written.Load(), i))
				used, _ := s.Usage()
				for p := peak.Load(); used > p && !peak.CompareAndSwap(p, used); p = peak.Load() {
				}
				if used > quota+maxObj {
					t.Errorf("after writing object %d the cache holds %d bytes, quota %d", i, used, quota)
				}
			}
		}()
	}
	for g := range readers {
		rg.Add(1)
		go func() {
			defer rg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := written.Load()
				if w < 1 {
					time.Sleep(time.Millisecond)
					continue
				}
				// Recent objects, which are likely present.
				i := max(0, w-int64(r.IntN(8)))
				o := objs[i]
				h, err := s.Open(ctx, o.sum)
				if errors.Is(err, ErrNotPresent) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				// Hold it while the writers push the cache through
				// eviction passes (the quota churns in well under 100 ms),
				// reading all along.
				deadline := time.Now().Add(time.Duration(50+r.IntN(150)) * time.Millisecond)
				for time.Now().Before(deadline) {
					got, err := readAll(h)
					if err != nil || !bytes.Equal(got, o.content) {
						t.Errorf("open handle on object %d read %d bytes, %v", i, len(got), err)
						h.Close()
						return
					}
					heldReads.Add(1)
					if ok, _ := s.Has(index.TypeFile, o.sum); !ok {
						t.Errorf("object %d evicted while open", i)
					}
					time.Sleep(2 * time.Millisecond)
				}
				h.Close()
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	if t.Failed() {
		return
	}

	for i, o := range objs[:pinned] {
		if ok, _ := s.Has(index.TypeFile, o.sum); !ok {
			t.Errorf("pinned object %d missing", i)
			continue
		}
		expectContent(t, s, o)
	}
	used, n := s.Usage()
	if disk := diskBytes(t, home); disk != used {
		t.Errorf("files in objects/ hold %d bytes, the store counts %d", disk, used)
	}
	if got := len(dirFiles(t, filepath.Join(home, "objects"))); int64(got) != n {
		t.Errorf("%d files in objects/, the store counts %d objects", got, n)
	}
	if s.skippedOpen.Load() == 0 {
		t.Error("no eviction pass met an open object: the test did not test that")
	}
	fsckClean(t, s)
	t.Logf("wrote %d objects, %d bytes through a %d-byte cache; peak %d bytes; %d reads of held handles; eviction skipped open objects %d times",
		len(objs), total, quota, peak.Load(), heldReads.Load(), s.skippedOpen.Load())
}
