package cli

import (
	"strings"
	"testing"

	"github.com/lazytree/lazytree/fetch"
)

// The progress line says what a pull is doing: a delta's parts and bytes
// while it comes in, then the walk's objects (issue 11: "0/0 objects"
// for a whole delta pull).
func TestProgressLineTellsTheTruth(t *testing.T) {
	p := &fetch.Progress{}
	if line := progressLine("pull b:x", p); strings.Contains(line, "0/0") || !strings.Contains(line, "finding the commit") {
		t.Errorf("before anything is known: %q", line)
	}
	p.DeltaParts.Store(6)
	p.DeltaPartsDone.Store(2)
	p.DeltaBytes.Store(48 << 20)
	p.DeltaBytesDone.Store(20 << 20)
	line := progressLine("pull b:x", p)
	for _, want := range []string{"delta 2/6 parts", "20.0 MiB", "48.0 MiB"} {
		if !strings.Contains(line, want) {
			t.Errorf("during the delta: %q lacks %q", line, want)
		}
	}
	// A delta whose parts are in while its large files (fallbacks,
	// fetched loose) still come: still the delta, bytes and all.
	p.DeltaPartsDone.Store(6)
	p.DeltaLoose.Store(2)
	p.DeltaLooseDone.Store(1)
	p.DeltaBytes.Store(78 << 20)
	p.DeltaBytesDone.Store(60 << 20)
	line = progressLine("pull b:x", p)
	for _, want := range []string{"delta 6/6 parts and 1/2 large files", "60.0 MiB", "78.0 MiB"} {
		if !strings.Contains(line, want) {
			t.Errorf("during the fallbacks: %q lacks %q", line, want)
		}
	}
	p.DeltaLooseDone.Store(2)
	p.ObjectsKnown.Store(900)
	p.ObjectsDone.Store(400)
	line = progressLine("pull b:x", p)
	if !strings.Contains(line, "400/900+ objects") {
		t.Errorf("during the walk: %q, want 400/900+ objects (still walking)", line)
	}
	p.MetaDone.Store(true)
	if line = progressLine("pull b:x", p); !strings.Contains(line, "400/900 objects") {
		t.Errorf("after the walk listed everything: %q", line)
	}
}
