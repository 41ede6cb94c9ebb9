package delta

import (
	"bytes"
	"context"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

func TestParseVectorSuperblocks(t *testing.T) {
	repo := vectorRepo(t)
	for _, v := range vectorDeltas(t) {
		t.Run(v.name, func(t *testing.T) {
			data := readSuperblock(t, repo, v.from, v.to)
			sb, err := ParseSuperblock(data)
			if err != nil {
				t.Fatal(err)
			}
			if (sb.From == nil) != (v.from == nil) || sb.From != nil && *sb.From != *v.from {
				t.Errorf("from = %v, want %v", sb.From, v.from)
			}
			if sb.To != v.to {
				t.Errorf("to = %s, want %s", sb.To, v.to)
			}
			if sb.Endianness != v.endianness || sb.EndiannessGuessed {
				t.Errorf("endianness = %q (guessed %v), want %q", sb.Endianness, sb.EndiannessGuessed, v.endianness)
			}
			if len(sb.Parts) != v.parts || len(sb.Fallbacks) != v.fallbacks {
				t.Fatalf("%d parts and %d fallbacks, want %d and %d", len(sb.Parts), len(sb.Fallbacks), v.parts, v.fallbacks)
			}
			if got := sb.Parts[0].Inline != nil; got != v.inline {
				t.Errorf("inline = %v, want %v", got, v.inline)
			}
			// The timestamps in the vectors are 2026 (generation time).
			if sb.Timestamp < 1_700_000_000 || sb.Timestamp > 2_000_000_000 {
				t.Errorf("timestamp %d not plausible: byte order?", sb.Timestamp)
			}
			if ostree.Sum(sb.CommitData) != v.to || sb.Commit == nil {
				t.Error("embedded commit does not hash to the to-checksum")
			}
			loose, err := readFile(repo, ostree.ObjectPath(v.to, ostree.ObjCommit, true))
			if err != nil || !bytes.Equal(loose, sb.CommitData) {
				t.Errorf("embedded commit differs from the loose .commit (%v)", err)
			}
			if sb.CommitMeta == nil {
				t.Fatal("no detached metadata in the superblock")
			}
			cm, err := ostree.DecodeVarDict("commitmeta", sb.CommitMeta)
			if err != nil {
				t.Fatal(err)
			}
			if len(ostree.Signatures(cm, "ostree.gpgsigs")) == 0 && v.to.String()[:2] == "c2" {
				t.Error("C1's detached metadata in the superblock has no GPG signature")
			}
			for i, p := range sb.Parts {
				if p.Version != 0 || len(p.Objects) == 0 {
					t.Errorf("part %d: version %d, %d objects", i, p.Version, len(p.Objects))
				}
				if p.Inline != nil && uint64(len(p.Inline)) != p.Size {
					t.Errorf("inline part %d: %d bytes, header says %d", i, len(p.Inline), p.Size)
				}
			}
			for _, f := range sb.Fallbacks {
				if f.Object.Type != ostree.ObjFile || f.USize != 1<<20 {
					t.Errorf("fallback %s: usize %d", f.Object, f.USize)
				}
				st, err := statFile(repo, ostree.ObjectPath(f.Object.Checksum, f.Object.Type, true))
				if err != nil || uint64(st) != f.Size {
					t.Errorf("fallback %s: size %d, .filez is %d bytes (%v)", f.Object, f.Size, st, err)
				}
			}
			// The writer reproduces ostree's bytes exactly.
			again, err := sb.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, data) {
				t.Errorf("re-encoded superblock differs (%d vs %d bytes)", len(again), len(data))
			}
		})
	}
}

func TestApplyVectorDeltas(t *testing.T) {
	repo := vectorRepo(t)
	for _, v := range vectorDeltas(t) {
		t.Run(v.name, func(t *testing.T) {
			sb, err := ParseSuperblock(readSuperblock(t, repo, v.from, v.to))
			if err != nil {
				t.Fatal(err)
			}
			var src *repoSource
			var source Source
			if v.needsSrc {
				src = &repoSource{dir: repo}
				source = src
			}
			sink := newMemSink()
			var objects []ObjRef
			for i, ph := range sb.Parts {
				part, err := OpenPart(partData(t, repo, sb, i), ph, ph.Inline != nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := part.Apply(context.Background(), ph.Objects, source, sink); err != nil {
					t.Fatal(err)
				}
				objects = append(objects, ph.Objects...)
				// The part's GVariant round-trips.
				enc, err := part.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if again, err := decodePart(enc); err != nil || !bytes.Equal(again.Payload, part.Payload) || !bytes.Equal(again.Ops, part.Ops) {
					t.Errorf("part %d does not round-trip: %v", i, err)
				}
			}
			if len(sink.order) != len(objects) || sink.aborts != 0 {
				t.Fatalf("sink got %d objects and %d aborts, want %d and 0", len(sink.order), sink.aborts, len(objects))
			}
			for i, o := range objects {
				if sink.order[i] != o {
					t.Errorf("object %d is %s, want %s", i, sink.order[i], o)
				}
			}
			checkAgainstRepo(t, repo, sink)
			if v.needsSrc && len(src.opens) == 0 {
				t.Error("the C1->C2 delta never read a source object")
			}
		})
	}
}

// TestApplyVectorOps checks that the C1->C2 vector exercises every opcode.
func TestApplyVectorOps(t *testing.T) {
	repo := vectorRepo(t)
	vs := vectorDeltas(t)
	sb, err := ParseSuperblock(readSuperblock(t, repo, vs[1].from, vs[1].to))
	if err != nil {
		t.Fatal(err)
	}
	part, err := OpenPart(partData(t, repo, sb, 0), sb.Parts[0], false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[byte]int{}
	for _, op := range opcodes(t, part.Ops, sb.Parts[0].Objects) {
		seen[op]++
	}
	for _, op := range []byte("SowrRcB") {
		if seen[op] == 0 {
			t.Errorf("opcode %q not in the vector", op)
		}
	}
}

// opcodes decodes an op stream into its opcodes (for tests); objects
// tells metadata splices (two arguments) from content splices (four).
func opcodes(t testing.TB, ops []byte, objects []ObjRef) []byte {
	t.Helper()
	nargs := map[byte]int{'o': 3, 'w': 2, 'r': 1, 'R': 0, 'c': 0, 'B': 2}
	var out []byte
	next := 0
	for i := 0; i < len(ops); {
		op := ops[i]
		i++
		n, ok := nargs[op]
		switch {
		case op == 'S' || op == 'o':
			n = 4
			if objects[next].Type.IsMeta() {
				n = 2
			}
			if op == 'o' {
				n = 3
			}
			next++
		case !ok:
			t.Fatalf("unknown opcode %q", op)
		}
		out = append(out, op)
		for ; n > 0; n-- {
			for ops[i]&0x80 != 0 {
				i++
			}
			i++
		}
	}
	return out
}
