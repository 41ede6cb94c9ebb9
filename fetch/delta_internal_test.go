package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// TestDeltaContentBounded: a delta's content object may not declare more
// than the cache holds, nor write more than it declares (an injected delta
// filling tmp/ past the quota before its hash fails; review of issue 8).
func TestDeltaContentBounded(t *testing.T) {
	store, err := objcache.Open(context.Background(), t.TempDir(), objcache.Options{NoSync: true, MaxBytes: 10 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sink := &deltaSink{store: store, batch: store.NewBatch("r"), added: &deltaAdded{}}
	var c ostree.Checksum
	c[0] = 1
	if _, err := sink.CreateContent(context.Background(), c, &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Size: 2 << 30}); !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("2 GiB declared into a 10 MiB cache: err = %v", err)
	}
	w, err := sink.CreateContent(context.Background(), c, &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("e")); !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("a fifth byte of a 4-byte object: err = %v", err)
	}
}

// TestSizesArePerVerifyingRemote: the ostree.sizes of one remote's commit
// bound only that remote's fetches, and an unverified commit's sizes are
// not learnt at all (found in review of issue 8).
func TestSizesArePerVerifyingRemote(t *testing.T) {
	var c ostree.Checksum
	c[0] = 7
	cm := &ostree.Commit{Metadata: []any{gvariant.DictEntry{Key: ostree.MetaSizes,
		Value: gvariant.NewVariant("aay", ostree.EncodeSizes([]ostree.SizeEntry{{Checksum: c, Archived: 3, Unpacked: 1, Type: ostree.ObjFile}}))}}}
	f := &Fetcher{}
	f.learnSizes(&Remote{Name: "b", GPGVerify: true}, cm)
	f.learnSizes(&Remote{Name: "open"}, cm)
	if _, ok := f.knownSize("a", c); ok {
		t.Fatal("remote b's commit set a size limit for remote a")
	}
	if _, ok := f.knownSize("open", c); ok {
		t.Fatal("an unverified commit's sizes were learnt")
	}
	if got, ok := f.knownSize("b", c); !ok || got.archived != 3 || got.unpacked != 1 {
		t.Fatalf("b's own sizes: %+v %v", got, ok)
	}
}

// TestOnDemandWaitsForNearPart: a reader of content that a delta part
// nearly here will produce waits for the part instead of fetching; a
// reader of content in a part far from here does not wait.
func TestOnDemandWaitsForNearPart(t *testing.T) {
	store, err := objcache.Open(context.Background(), t.TempDir(), objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f := &Fetcher{store: store}
	content := []byte("made by a delta part")
	h := &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Size: uint64(len(content))}
	raw := h.StreamHeader()
	c := ostree.Checksum(sha256.Sum256(append(append([]byte{}, raw...), content...)))
	near := delta.PartHeader{Size: 10 << 20, Objects: []delta.ObjRef{{Type: ostree.ObjFile, Checksum: c}}}
	pf := f.startPartFlight("r", near)
	pf.got.Store(9 << 20) // 1 MiB to go
	got := make(chan bool, 1)
	go func() { got <- f.waitForPart(context.Background(), "r", c) }()
	select {
	case v := <-got:
		t.Fatalf("returned %v before the part was applied", v)
	case <-time.After(50 * time.Millisecond):
	}
	if err := store.PutContent(context.Background(), c, index.FileHeader{Mode: h.Mode, Size: h.Size, Raw: raw}, bytes.NewReader(content), "r"); err != nil {
		t.Fatal(err)
	}
	f.endPartFlight("r", near, pf)
	if !<-got {
		t.Fatal("the part stored the object, but the waiting reader was told to fetch it")
	}
	// Another remote's reader never waits for r's parts.
	pf3 := f.startPartFlight("r", near)
	pf3.downloaded.Store(true)
	start0 := time.Now()
	if f.waitForPart(context.Background(), "other", c) || time.Since(start0) > time.Second {
		t.Fatal("a reader of another remote waited for r's part")
	}
	f.endPartFlight("r", near, pf3)
	if f.stats.DeltaWaits.Load() != 1 {
		t.Fatalf("DeltaWaits = %d, want 1", f.stats.DeltaWaits.Load())
	}

	var c2 ostree.Checksum
	c2[0] = 9
	far := delta.PartHeader{Size: 100 << 20, Objects: []delta.ObjRef{{Type: ostree.ObjFile, Checksum: c2}}}
	pf2 := f.startPartFlight("r", far)
	defer f.endPartFlight("r", far, pf2)
	start := time.Now()
	if f.waitForPart(context.Background(), "r", c2) || time.Since(start) > time.Second {
		t.Fatal("a reader waited for a part 100 MiB away")
	}
}

// TestDeltaSourceReadsOwnPending: a part may name as its source an
// object it produced itself, still pending in its batch: the read
// flushes the batch instead of waiting for it forever (review of issue
// 11).
func TestDeltaSourceReadsOwnPending(t *testing.T) {
	store, err := objcache.Open(context.Background(), t.TempDir(), objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	content := []byte("produced, then read as a source")
	h := &ostree.FileHeader{Mode: ostree.ModeReg | 0o644, Size: uint64(len(content))}
	raw := h.StreamHeader()
	c := ostree.Checksum(sha256.Sum256(append(append([]byte{}, raw...), content...)))
	b := store.NewBatch("r")
	tf, err := store.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	tf.Write(content)
	if err := b.PutFile(context.Background(), c, index.FileHeader{Mode: h.Mode, Size: h.Size, Raw: raw}, tf); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	blob, err := deltaSource{store, b}.OpenContent(ctx, c)
	if err != nil {
		t.Fatalf("reading an object pending in the part's own batch: %v", err)
	}
	if blob.Size() != int64(len(content)) {
		t.Fatalf("source of %d bytes, want %d", blob.Size(), len(content))
	}
	blob.(interface{ Close() error }).Close()
}
