package delta

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// addSeed adds a seed corpus entry, except that while fuzzing (-fuzz) it
// leaves out seeds over 64 KB: the vector parts are over a megabyte, and
// every execution and every minimisation step would pay for that. Plain
// `go test` still runs them.
func addSeed(f *testing.F, args ...any) {
	if fl := flag.Lookup("test.fuzz"); fl != nil && fl.Value.String() != "" {
		if b, ok := args[0].([]byte); ok && len(b) > 64<<10 {
			return
		}
	}
	f.Add(args...)
}

func FuzzParseSuperblock(f *testing.F) {
	repo := vectorRepo(f)
	for _, v := range vectorDeltas(f) {
		addSeed(f, readSuperblock(f, repo, v.from, v.to))
	}
	// A small inline, big-endian superblock with a fallback, for the
	// fuzzer (the vector one is 265 KB).
	sb, err := ParseSuperblock(readSuperblock(f, repo, nil, vectorDeltas(f)[0].to))
	if err != nil {
		f.Fatal(err)
	}
	s := newSynthetic(f)
	enc, _ := s.part.Encode()
	sb.Parts = []PartHeader{{USize: s.usize, Objects: s.objects, Inline: append([]byte{CompressionNone}, enc...)}}
	sb.Endianness = BigEndian
	sb.Fallbacks = []Fallback{{Object: s.objects[1], Size: 10, USize: 13}}
	small, err := sb.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small)
	f.Fuzz(func(t *testing.T, data []byte) {
		sb, err := ParseSuperblock(data)
		if err != nil {
			if !errors.Is(err, ostree.ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %q matches neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		enc, err := sb.Encode()
		if err != nil {
			t.Fatalf("accepted superblock does not encode: %v", err)
		}
		again, err := ParseSuperblock(enc)
		if err != nil {
			t.Fatalf("re-encoded superblock does not parse: %v", err)
		}
		enc2, err := again.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixpoint: %v", err)
		}
		if again.To != sb.To || len(again.Parts) != len(sb.Parts) || len(again.Fallbacks) != len(sb.Fallbacks) || !bytes.Equal(again.CommitMeta, sb.CommitMeta) {
			t.Fatal("re-parsed superblock differs")
		}
	})
}

// fuzzSource holds every content object of the vector repository.
func fuzzSource(f *testing.F) memSource {
	repo := vectorRepo(f)
	src := memSource{}
	for _, o := range listObjects(f, repo) {
		if o.Type != ostree.ObjFile {
			continue
		}
		_, data, err := readContent(repo, o.Checksum)
		if err != nil {
			f.Fatal(err)
		}
		src[o.Checksum] = data
	}
	return src
}

// FuzzApplyPart mutates decompressed part bodies (the GVariant after the
// compression byte) and their object lists, and applies them: nothing may
// panic, errors must match ErrCorrupt (or come from the source), and
// whatever the sink commits must hash to its name.
func FuzzApplyPart(f *testing.F) {
	repo := vectorRepo(f)
	for _, v := range vectorDeltas(f) {
		sb, err := ParseSuperblock(readSuperblock(f, repo, v.from, v.to))
		if err != nil {
			f.Fatal(err)
		}
		for i, ph := range sb.Parts {
			data := ph.Inline
			if data == nil {
				if data, err = os.ReadFile(filepath.Join(repo, sb.Path(), "0")); err != nil {
					f.Fatal(err)
				}
			}
			body, err := unxz(data[1:], MaxPartSize)
			if err != nil {
				f.Fatalf("part %d: %v", i, err)
			}
			addSeed(f, body, encodeObjects(ph.Objects), ph.USize)
		}
	}
	s := newSynthetic(f)
	enc, err := s.part.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc, encodeObjects(s.objects), s.usize)
	src := fuzzSource(f)
	for c, b := range *s.src {
		src[c] = b
	}
	f.Fuzz(func(t *testing.T, body, objects []byte, usize uint64) {
		objs, err := parseObjects(objects)
		if err != nil {
			return
		}
		p, err := OpenPart(append([]byte{CompressionNone}, body...), PartHeader{USize: usize, Objects: objs}, true)
		if err != nil {
			if !errors.Is(err, ostree.ErrCorrupt) {
				t.Fatalf("OpenPart error %q does not match ErrCorrupt", err)
			}
			return
		}
		// decodePart walks the tables itself; what it accepts must be a
		// TypePart in normal form.
		if _, err := gvariant.Decode(TypePart, body); err != nil {
			t.Fatalf("OpenPart accepted a body gvariant refuses: %v", err)
		}
		sink := newMemSink()
		err = p.Apply(context.Background(), objs, src, sink)
		if err != nil && !errors.Is(err, ostree.ErrCorrupt) && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Apply error %q matches neither ErrCorrupt nor a missing source", err)
		}
		var total uint64
		for ref, data := range sink.meta {
			if ostree.Sum(data) != ref.Checksum {
				t.Fatalf("%s committed with the wrong checksum", ref)
			}
			total += uint64(len(data))
		}
		for c, o := range sink.content {
			if sum, _ := ostree.ContentChecksum(o.h, bytes.NewReader(o.data)); sum != c {
				t.Fatalf("%s committed with the wrong checksum", c)
			}
			total += uint64(len(o.data))
		}
		if total > usize {
			t.Fatalf("%d bytes committed, more than usize %d", total, usize)
		}
	})
}

func FuzzBspatch(f *testing.F) {
	old := []byte("the quick brown fox jumps over the lazy dog")
	f.Add(old, makePatch(ctrl{diff: make([]byte, len(old))}), uint16(len(old)))
	f.Add(old, makePatch(ctrl{seek: -3, diff: make([]byte, 3)}, ctrl{diff: []byte{1, 2, 3}, extra: []byte("xyz")}), uint16(9))
	f.Add([]byte{}, makePatch(ctrl{seek: 1 << 62, extra: []byte("a")}, ctrl{diff: []byte("b")}), uint16(2))
	f.Fuzz(func(t *testing.T, old, patch []byte, size uint16) {
		got, err := runBspatch(old, patch, uint64(size), 7)
		want, ok := refBspatch(old, patch, int(size))
		if (err == nil) != ok {
			t.Fatalf("streaming error %v, reference ok %v", err, ok)
		}
		if err != nil {
			if !errors.Is(err, ostree.ErrCorrupt) {
				t.Fatalf("error %q does not match ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatal("streaming and reference outputs differ")
		}
	})
}

// FuzzUnxz feeds the bounded xz reader arbitrary streams.
func FuzzUnxz(f *testing.F) {
	f.Add(storedXZ([]byte("hello, world")))
	f.Add(storedXZ(bytes.Repeat([]byte{7}, 70000)))
	if c, err := compressXZ([]byte("hello, hello, hello, world")); err == nil {
		f.Add(c[1:])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := unxz(data, 1<<20)
		if err != nil {
			if !errors.Is(err, ostree.ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %q matches neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		if len(out) > 1<<20 {
			t.Fatalf("%d bytes out, limit 1 MiB", len(out))
		}
	})
}

// FuzzOpenPartStream feeds part files to OpenPartStream under a header
// that matches them, and compares with OpenPart: both must accept the
// same parts and decode them alike, errors must be typed, and no
// temporary file may be left.
func FuzzOpenPartStream(f *testing.F) {
	f.Add(storedXZ([]byte("hello, world")), uint64(1<<10))
	if c, err := compressXZ([]byte("hello, hello, hello, world")); err == nil {
		f.Add(c, uint64(1<<10))
	}
	s := newSynthetic(f)
	enc, _ := s.part.Encode()
	f.Add(append([]byte{CompressionNone}, enc...), s.usize)
	if c, err := compressXZ(enc); err == nil {
		f.Add(c, s.usize)
	}
	f.Add(append([]byte{CompressionXZ}, storedXZ(enc)...), s.usize)
	tmp := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, usize uint64) {
		hdr := PartHeader{Checksum: ostree.Sum(data), Size: uint64(len(data)), USize: usize % (64 << 20)}
		p, err := OpenPartStream(context.Background(), bytes.NewReader(data), hdr, tmp)
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Fatalf("%d files left in the temporary directory", len(ents))
		}
		q, qerr := OpenPart(data, hdr, false)
		if (err == nil) != (qerr == nil) {
			t.Fatalf("OpenPartStream error %v, OpenPart error %v", err, qerr)
		}
		if err != nil {
			if !errors.Is(err, ostree.ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %q matches neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		defer p.Close()
		a, _ := p.Encode()
		b, _ := q.Encode()
		if !bytes.Equal(a, b) {
			t.Fatal("OpenPartStream and OpenPart decode differently")
		}
	})
}
