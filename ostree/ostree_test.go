package ostree

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	testvectors "github.com/lazytree/lazytree/internal/vectors"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// vectors is the test-vector directory (internal/vectors).
func vectors(t testing.TB) string { return testvectors.Dir(t) }

type vectorObject struct {
	path string
	sum  Checksum
	typ  string
}

func vectorObjects(t testing.TB) []vectorObject {
	t.Helper()
	var out []vectorObject
	for _, repo := range []string{"repo", "flatpak-repo"} {
		root := filepath.Join(vectors(t), repo, "objects")
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			dir := filepath.Base(filepath.Dir(p))
			name, ext, _ := strings.Cut(filepath.Base(p), ".")
			c, err := ParseChecksum(dir + name)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out = append(out, vectorObject{p, c, ext})
			return nil
		})
	}
	if len(out) < 30 {
		t.Fatalf("only %d objects found", len(out))
	}
	return out
}

// TestVectorObjects decodes every object written by the real ostree and
// flatpak, re-encodes it to identical bytes and recomputes its checksum.
func TestVectorObjects(t *testing.T) {
	counts := map[string]int{}
	for _, o := range vectorObjects(t) {
		data, err := os.ReadFile(o.path)
		if err != nil {
			t.Fatal(err)
		}
		var again []byte
		switch o.typ {
		case "commit":
			c, err := DecodeCommit(data)
			if err != nil {
				t.Fatalf("%s: %v", o.path, err)
			}
			if again, err = c.Encode(); err != nil {
				t.Fatal(err)
			}
		case "dirtree":
			d, err := DecodeDirTree(data)
			if err != nil {
				t.Fatalf("%s: %v", o.path, err)
			}
			again = d.Encode()
		case "dirmeta":
			m, err := DecodeDirMeta(data)
			if err != nil {
				t.Fatalf("%s: %v", o.path, err)
			}
			again = m.Encode()
		case "commitmeta":
			d, err := DecodeVarDict("commitmeta", data)
			if err != nil {
				t.Fatalf("%s: %v", o.path, err)
			}
			again = gvariant.MustEncode(TypeVarDict, d)
			if len(Signatures(d, "ostree.gpgsigs")) == 0 {
				t.Errorf("%s: no ostree.gpgsigs", o.path)
			}
		case "filez":
			cr, err := NewContentReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", o.path, err)
			}
			if err := cr.Verify(o.sum); err != nil {
				t.Fatalf("%s: %v", o.path, err)
			}
			// The header re-encodes to the same bytes.
			hl := 8 + int(uint32(data[0])<<24|uint32(data[1])<<16|uint32(data[2])<<8|uint32(data[3]))
			if !bytes.Equal(cr.Header.ArchiveHeader(), data[:hl]) {
				t.Errorf("%s: archive header re-encodes differently", o.path)
			}
			counts[o.typ]++
			continue
		default:
			t.Fatalf("unexpected object %s", o.path)
		}
		if !bytes.Equal(again, data) {
			t.Errorf("%s: re-encoded bytes differ", o.path)
		}
		if o.typ != "commitmeta" && Sum(data) != o.sum {
			t.Errorf("%s: checksum %s", o.path, Sum(data))
		}
		counts[o.typ]++
	}
	for _, typ := range []string{"commit", "dirtree", "dirmeta", "commitmeta", "filez"} {
		if counts[typ] == 0 {
			t.Errorf("no %s objects checked", typ)
		}
	}
	t.Logf("checked %v", counts)
}

func TestVectorCommitC1(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(vectors(t), "repo/objects/c2/7dc3c08eac29fffc6a2b4fdfe5cda3dd50ef3866b7c14e5eb9a2e999835c4c.commit"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeCommit(data)
	if err != nil {
		t.Fatal(err)
	}
	if c.Timestamp != 1704067200 || c.Subject != "Initial commit" || c.Parent != nil {
		t.Fatalf("decoded %d %q %v", c.Timestamp, c.Subject, c.Parent)
	}
	if got := c.ContentChecksum().String(); got != "3256920211e09f6d7722e95ee5cc94b78f1e1c6e2dfcfdd3e0378eb8523db38d" {
		t.Fatalf("content checksum %s", got)
	}
	refs, _ := c.MetaStrings(MetaRefBinding)
	if strings.Join(refs, ",") != "exampleos/x86_64/old,exampleos/x86_64/stable" {
		t.Fatalf("ref binding %v", refs)
	}
	sizes, err := DecodeSizes(c.Metadata)
	if err != nil || len(sizes) != 22 {
		t.Fatalf("sizes: %d, %v", len(sizes), err)
	}
	// Round trip of ostree.sizes.
	enc := EncodeSizes(sizes)
	v, _ := gvariant.LookupTyped(c.Metadata, MetaSizes, "aay")
	for i, b := range v.([]any) {
		if !bytes.Equal(b.([]byte), enc[i].([]byte)) {
			t.Fatalf("sizes entry %d re-encodes differently", i)
		}
	}
}

func TestVectorSummaries(t *testing.T) {
	for _, p := range []string{"repo/summary", "flatpak-repo/summary"} {
		data, err := os.ReadFile(filepath.Join(vectors(t), p))
		if err != nil {
			t.Fatal(err)
		}
		s, err := DecodeSummary(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		again, err := s.Encode()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("%s: re-encode differs (%v)", p, err)
		}
		for _, r := range s.Refs {
			if _, ok := r.Timestamp(); !ok {
				t.Errorf("%s: ref %s has no timestamp", p, r.Name)
			}
		}
		if _, ok := s.LastModified(); !ok {
			t.Errorf("%s: no last-modified", p)
		}
	}
	data, _ := os.ReadFile(filepath.Join(vectors(t), "repo/summary"))
	s, _ := DecodeSummary(data)
	r, ok := s.Ref("exampleos/x86_64/stable")
	if !ok || r.Checksum.String() != "9dc65a5c5a498a371f3c63892fdc7c02eec8e9cd7ee426f2cf9c605b554417ab" {
		t.Fatalf("stable ref: %v %v", r, ok)
	}
	if ts, _ := r.Timestamp(); ts != 1706745600 {
		t.Fatalf("timestamp %d", ts)
	}
	deltas, err := StaticDeltas(s.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	_ = deltas // 2022.7 with indexed deltas may list none; parsing must not fail
}

func TestDeltaNames(t *testing.T) {
	c1, _ := ParseChecksum("c27dc3c08eac29fffc6a2b4fdfe5cda3dd50ef3866b7c14e5eb9a2e999835c4c")
	if got := c1.ModifiedBase64(); got != "wn3DwI6sKf_8aitP3+XNo91Q7zhmt8FOXrmi6ZmDXEw" {
		t.Fatalf("modified base64 %s", got)
	}
	if _, err := os.Stat(filepath.Join(vectors(t), "repo", DeltaPath(nil, c1), "superblock")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(vectors(t), "repo", DeltaIndexPath(c1))); err != nil {
		t.Fatal(err)
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b", "a\x00b", "\xff", strings.Repeat("x", 256)} {
		if ValidateFileName(n) == nil {
			t.Errorf("ValidateFileName(%q) accepted", n)
		}
	}
	for _, n := range []string{"a", "ünïcode.txt", "...", ".hidden", "a b"} {
		if err := ValidateFileName(n); err != nil {
			t.Errorf("ValidateFileName(%q): %v", n, err)
		}
	}
	for _, r := range []string{"exampleos/x86_64/stable", "ünï/x", "é", "Ω1", "app/org.x.Y/x86_64/master", "a_b-c.d"} {
		if err := ValidateRef(r); err != nil {
			t.Errorf("ValidateRef(%q): %v", r, err)
		}
	}
	for _, r := range []string{"a b", "-x", "x/.y", "x//y", "x/", "", "/x", "..", "a/../b"} {
		if ValidateRef(r) == nil {
			t.Errorf("ValidateRef(%q) accepted", r)
		}
	}
	for _, c := range []string{"org.example.TestRepo", "a.b"} {
		if err := ValidateCollectionID(c); err != nil {
			t.Errorf("ValidateCollectionID(%q): %v", c, err)
		}
	}
	for _, c := range []string{"org", "1a.b", "a..b", "a.b-c"} {
		if ValidateCollectionID(c) == nil {
			t.Errorf("ValidateCollectionID(%q) accepted", c)
		}
	}
	for _, c := range []string{"", "ABCDEF", strings.Repeat("g", 64), strings.Repeat("A", 64)} {
		if _, err := ParseChecksum(c); err == nil {
			t.Errorf("ParseChecksum(%q) accepted", c)
		}
	}
}

func dirtreeWith(names ...string) []byte {
	files := make([]any, len(names))
	for i, n := range names {
		files[i] = []any{n, make([]byte, 32)}
	}
	return gvariant.MustEncode(TypeDirTree, []any{files, []any{}})
}

func TestHostileDirTrees(t *testing.T) {
	for _, names := range [][]string{{".."}, {"a/b"}, {""}, {"."}, {"b", "a"}, {"a", "a"}} {
		if _, err := DecodeDirTree(dirtreeWith(names...)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("dirtree %q: err = %v, want ErrCorrupt", names, err)
		}
	}
	// A name that is both a file and a directory.
	both := gvariant.MustEncode(TypeDirTree, []any{[]any{[]any{"x", make([]byte, 32)}}, []any{[]any{"x", make([]byte, 32), make([]byte, 32)}}})
	if _, err := DecodeDirTree(both); err == nil {
		t.Error("accepted a name in both lists")
	}
	short := gvariant.MustEncode(TypeDirTree, []any{[]any{[]any{"x", make([]byte, 31)}}, []any{}})
	if _, err := DecodeDirTree(short); err == nil {
		t.Error("accepted a 31-byte checksum")
	}
}

func TestFilezRoundTripAndHostile(t *testing.T) {
	content := bytes.Repeat([]byte("lazytree "), 1000)
	h := &FileHeader{Size: uint64(len(content)), Mode: ModeReg | 0o644, Xattrs: []Xattr{{"user.a", []byte("1")}}}
	var buf bytes.Buffer
	sum, err := WriteArchive(&buf, h, bytes.NewReader(content), 6)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ContentChecksum(h, bytes.NewReader(content))
	if sum != want {
		t.Fatalf("WriteArchive checksum %s, want %s", sum, want)
	}
	cr, err := NewContentReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(cr)
	if err != nil || !bytes.Equal(got, content) || cr.Sum() != sum {
		t.Fatalf("read back: %v", err)
	}

	// Declared size smaller than the payload: inflating past it fails.
	small := *h
	small.Size = 10
	var lie bytes.Buffer
	lie.Write(small.ArchiveHeader())
	lie.Write(buf.Bytes()[len(h.ArchiveHeader()):])
	cr, err = NewContentReader(bytes.NewReader(lie.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cr); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("oversized content: err = %v", err)
	}
	// Declared size larger than the payload.
	big := *h
	big.Size = 1 << 40
	lie.Reset()
	lie.Write(big.ArchiveHeader())
	lie.Write(buf.Bytes()[len(h.ArchiveHeader()):])
	cr, _ = NewContentReader(bytes.NewReader(lie.Bytes()))
	if _, err := io.Copy(io.Discard, cr); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short content: err = %v", err)
	}
	// A flipped payload byte fails verification or inflation.
	bad := append([]byte(nil), buf.Bytes()...)
	bad[len(bad)-3] ^= 0xff
	cr, _ = NewContentReader(bytes.NewReader(bad))
	if err := cr.Verify(sum); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped byte: err = %v", err)
	}
	// Header length out of range.
	for _, hdr := range [][]byte{{0, 0, 0, 0, 0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, {0, 0, 0, 50, 0, 0, 0, 0, 1}} {
		if _, err := NewContentReader(bytes.NewReader(hdr)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("header %x: err = %v", hdr, err)
		}
	}
	// A device node cannot be stored.
	dev := &FileHeader{Mode: 0o020644}
	if _, err := WriteArchive(io.Discard, dev, nil, 0); err == nil {
		t.Error("WriteArchive accepted a character device")
	}
}

func TestKeyFile(t *testing.T) {
	src := "# comment\n[core]\nrepo_version=1\nmode=archive-z2\n\n[remote \"origin\"]\nurl=http://x/\nlist=a;b\\;c;d;\nmsg=hello\\nworld\\s\n"
	kf, err := ParseKeyFile(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := kf.String("core", "mode"); v != "archive-z2" {
		t.Fatalf("mode %q", v)
	}
	if l := kf.List(`remote "origin"`, "list"); strings.Join(l, "|") != "a|b;c|d" {
		t.Fatalf("list %q", l)
	}
	if v, _ := kf.String(`remote "origin"`, "msg"); v != "hello\nworld " {
		t.Fatalf("msg %q", v)
	}
	again, err := ParseKeyFile(bytes.NewReader(kf.Marshal()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Marshal(), kf.Marshal()) {
		t.Fatal("keyfile does not round trip")
	}
	for _, bad := range []string{"key=outside\n", "[unterminated\n", "[g]\nnovalue\n", "[g]\n=v\n"} {
		if _, err := ParseKeyFile(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseKeyFile(%q) accepted", bad)
		}
	}
}

func TestSummaryCap(t *testing.T) {
	if _, err := DecodeSummary(make([]byte, MaxSummarySize+1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("oversized summary: %v", err)
	}
}
