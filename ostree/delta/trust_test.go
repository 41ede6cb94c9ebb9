package delta

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

// TestPartObjectTypes checks that a superblock whose parts list a commit,
// commitmeta or tombstone, or whose fallbacks name anything but a content
// object, is refused: a part's objects are verified by sha256 only, so a
// commit in a part would be an unsigned commit (issue 8, hole 1).
func TestPartObjectTypes(t *testing.T) {
	repo := vectorRepo(t)
	vs := vectorDeltas(t)
	good := readSuperblock(t, repo, vs[0].from, vs[0].to)
	reencode := func(f func(s *Superblock)) []byte {
		s, err := ParseSuperblock(good)
		if err != nil {
			t.Fatal(err)
		}
		f(s)
		b, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	evil := ostree.Sum([]byte("EVIL"))
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"commit in part", reencode(func(s *Superblock) {
			s.Parts[0].Objects = append(s.Parts[0].Objects, ObjRef{ostree.ObjCommit, evil})
		}), "parts carry only"},
		{"the to-commit in part", reencode(func(s *Superblock) {
			s.Parts[0].Objects = append([]ObjRef{{ostree.ObjCommit, s.To}}, s.Parts[0].Objects...)
		}), "parts carry only"},
		{"tombstone in part", reencode(func(s *Superblock) {
			s.Parts[0].Objects[0].Type = ostree.ObjTombstone
		}), "parts carry only"},
		{"commit fallback", reencode(func(s *Superblock) {
			s.Fallbacks = []Fallback{{Object: ObjRef{ostree.ObjCommit, evil}, Size: 1, USize: 1}}
		}), "fallbacks are content objects"},
		{"dirtree fallback", reencode(func(s *Superblock) {
			s.Fallbacks = []Fallback{{Object: ObjRef{ostree.ObjDirTree, evil}, Size: 1, USize: 1}}
		}), "fallbacks are content objects"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSuperblock(tc.data)
			if !errors.Is(err, ostree.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// A content fallback is still accepted (the vector with a fallback
	// parses in TestParseVectorSuperblocks).
	if _, err := ParseSuperblock(reencode(func(s *Superblock) {
		s.Fallbacks = []Fallback{{Object: ObjRef{ostree.ObjFile, evil}, Size: 1, USize: 1}}
	})); err != nil {
		t.Errorf("content fallback refused: %v", err)
	}
}

// recordSink fails the test if Apply ever hands it a commit.
type recordSink struct {
	*memSink
	t *testing.T
}

func (s recordSink) PutMetadata(ctx context.Context, obj ObjRef, data []byte) error {
	if obj.Type == ostree.ObjCommit {
		s.t.Errorf("PutMetadata called with commit %s", obj)
	}
	return s.memSink.PutMetadata(ctx, obj, data)
}

// TestApplyNeverProducesCommit asks Apply directly (bypassing
// ParseSuperblock) for a well-formed commit whose bytes are in the
// payload and hash to its name: it must refuse before any op runs.
func TestApplyNeverProducesCommit(t *testing.T) {
	commit, err := (&ostree.Commit{Subject: "EVIL", Timestamp: 1, RootTree: ostree.Sum([]byte("t")), RootMeta: ostree.Sum([]byte("m"))}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	s := newSynthetic(t)
	off := uint64(len(s.part.Payload))
	s.part.Payload = append(s.part.Payload, commit...)
	s.part.Ops = append(s.part.Ops, *(&opsBuilder{}).op('S', uint64(len(commit)), off)...)
	ref := ObjRef{ostree.ObjCommit, ostree.Sum(commit)}
	for _, objs := range [][]ObjRef{
		append(append([]ObjRef(nil), s.objects...), ref), // last, after legitimate objects
		{ref}, // alone
	} {
		enc, err := s.part.Encode()
		if err != nil {
			t.Fatal(err)
		}
		p, err := OpenPart(append([]byte{0}, enc...), PartHeader{USize: s.usize + uint64(len(commit)), Objects: objs}, true)
		if err != nil {
			t.Fatal(err)
		}
		sink := recordSink{newMemSink(), t}
		err = p.Apply(context.Background(), objs, s.src, sink)
		if !errors.Is(err, ostree.ErrCorrupt) || !strings.Contains(err.Error(), "only dirtree, dirmeta and content") {
			t.Fatalf("error %v, want a refusal of the commit", err)
		}
		if len(sink.order) != 0 {
			t.Errorf("%d objects produced before the refusal", len(sink.order))
		}
	}
}
