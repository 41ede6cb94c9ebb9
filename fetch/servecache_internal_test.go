package fetch

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

// TestLingerOneSlotPerObject: an encoding released again and again takes
// one of the lingerMax slots, not one per release, so it does not evict
// the other objects' encodings; one more object evicts the oldest.
func TestLingerOneSlotPerObject(t *testing.T) {
	b := &CacheBackend{encoding: map[ostree.Checksum]*encoding{}}
	dir := t.TempDir()
	add := func(i int) (ostree.Checksum, *encoding) {
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		c := ostree.Checksum{byte(i + 1)}
		e := &encoding{file: f}
		b.encoding[c] = e
		return c, e
	}
	var sums []ostree.Checksum
	var encs []*encoding
	for i := 0; i < lingerMax; i++ {
		c, e := add(i)
		sums, encs = append(sums, c), append(encs, e)
		b.mu.Lock()
		b.lingerLocked(c, e)
		// The first object is read span by span: released again.
		b.lingerLocked(sums[0], encs[0])
		b.lingerLocked(sums[0], encs[0])
		b.mu.Unlock()
	}
	for i, c := range sums {
		if b.encoding[c] != encs[i] || encs[i].file == nil {
			t.Fatalf("object %d's encoding was dropped with %d kept: %+v", i, lingerMax, b.lingering)
		}
	}
	if len(b.lingering) != lingerMax {
		t.Fatalf("%d lingering entries for %d objects", len(b.lingering), lingerMax)
	}
	// One more: the least recently released (object 1, since object 0
	// was released last of all) is dropped and its file closed.
	c, e := add(lingerMax)
	b.mu.Lock()
	b.lingerLocked(c, e)
	b.mu.Unlock()
	if _, ok := b.encoding[sums[1]]; ok || encs[1].file != nil {
		t.Fatal("the oldest encoding was kept past the limit")
	}
	if b.encoding[sums[0]] != encs[0] || b.encoding[c] != e {
		t.Fatal("a recent encoding was dropped")
	}
}
