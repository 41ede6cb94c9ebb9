package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
)

// cacheObj is a content object for the cache tests: the store treats the
// header bytes as opaque, so any bytes do.
type cacheObj struct {
	sum     index.Sum
	hdr     index.FileHeader
	content []byte
}

func newCacheObj(i, size int) cacheObj {
	content := bytes.Repeat([]byte{byte(i)}, size)
	raw := binary.BigEndian.AppendUint32(nil, 8)
	raw = append(raw, 0, 0, 0, 0)
	raw = binary.BigEndian.AppendUint64(raw, uint64(i))
	h := sha256.New()
	h.Write(raw)
	h.Write(content)
	return cacheObj{sum: index.Sum(h.Sum(nil)), hdr: index.FileHeader{Mode: 0o100644, Size: uint64(len(content)), Raw: raw}, content: content}
}

// fillCache makes a cache in home with three content objects from two
// remotes, a dirtree, and a pin of one object under flathub:app/x.
func fillCache(t *testing.T, home string) []cacheObj {
	t.Helper()
	ctx := context.Background()
	s, err := objcache.Open(ctx, home, objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs := []cacheObj{newCacheObj(1, 1000), newCacheObj(2, 2000), newCacheObj(3, 3000)}
	for i, o := range objs {
		remote := "flathub"
		if i == 2 {
			remote = "gnome-nightly"
		}
		if err := s.PutContent(ctx, o.sum, o.hdr, bytes.NewReader(o.content), remote); err != nil {
			t.Fatal(err)
		}
	}
	tree := []byte("dirtree")
	if err := s.PutMeta(ctx, index.TypeDirTree, index.Sum(sha256.Sum256(tree)), tree, "flathub"); err != nil {
		t.Fatal(err)
	}
	sum, _ := index.ParseSum(objs[1].sum.String())
	commit := index.Sum(sha256.Sum256([]byte("commit")))
	if err := s.PinRef(ctx, "flathub", "app/x", commit, []index.ObjectID{{Sum: sum, Type: index.TypeFile}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.Open(ctx, objs[0].sum)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := s.Open(ctx, newCacheObj(9, 1).sum); err == nil {
		t.Fatal("open of an absent object succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return objs
}

// runLT runs a lazytree command line in process.
func runLT(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestCacheStats(t *testing.T) {
	home := t.TempDir()
	fillCache(t, home)
	out, errOut, code := runLT(t, "--home", home, "cache", "stats", "--json")
	if code != 0 {
		t.Fatalf("cache stats --json: exit %d: %s", code, errOut)
	}
	var st struct {
		Objects  int64
		Bytes    int64
		Pinned   objcache.Usage
		ByRemote map[string]objcache.Usage `json:"by_remote"`
		ByType   map[string]objcache.Usage `json:"by_type"`
		Hits     uint64
		Misses   uint64
		HitRatio float64 `json:"hit_ratio"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if st.Objects != 4 || st.Bytes != 6007 || st.Pinned != (objcache.Usage{Objects: 1, Bytes: 2000}) ||
		st.ByRemote["flathub"] != (objcache.Usage{Objects: 3, Bytes: 3007}) || st.ByRemote["gnome-nightly"].Bytes != 3000 ||
		st.ByType["dirtree"].Objects != 1 || st.Hits != 1 || st.Misses != 1 || st.HitRatio != 0.5 {
		t.Errorf("stats = %+v", st)
	}

	out, _, code = runLT(t, "--home", home, "cache", "stats")
	for _, want := range []string{"objects    4", "5.9 KiB of 10.0 GiB", "pinned     1 objects, 2.0 KiB", "hit ratio  50.0% (1 hits, 1 misses)",
		"REMOTE         OBJECTS  SIZE\nflathub        3        2.9 KiB\ngnome-nightly  1        2.9 KiB\n", "TYPE     OBJECTS  SIZE\ndirtree  1        7 B\n"} {
		if !strings.Contains(out, want) || code != 0 {
			t.Errorf("cache stats output lacks %q:\n%s", want, out)
		}
	}
}

func TestCacheStatsWithoutCache(t *testing.T) {
	home := filepath.Join(t.TempDir(), "none")
	out, _, code := runLT(t, "--home", home, "cache", "stats")
	if code != 0 || !strings.Contains(out, "objects    0") {
		t.Errorf("stats of no cache: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(home); err == nil {
		t.Error("cache stats created the home directory")
	}
	if out, _, code := runLT(t, "--home", home, "pins"); code != 0 || out != "no pins\n" {
		t.Errorf("pins of no cache: exit %d, %q", code, out)
	}
}

func TestCacheInUse(t *testing.T) {
	home := t.TempDir()
	s, err := objcache.Open(context.Background(), home, objcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, errOut, code := runLT(t, "--home", home, "cache", "stats")
	if code != ExitFailure || !strings.Contains(errOut, "in use by another process") {
		t.Errorf("stats of a cache in use: exit %d: %s", code, errOut)
	}
}

func TestCacheGC(t *testing.T) {
	home := t.TempDir()
	objs := fillCache(t, home)
	if _, errOut, code := runLT(t, "--home", home, "cache", "gc", "--to", "lots"); code != ExitUsage {
		t.Errorf("gc --to lots: exit %d: %s", code, errOut)
	}
	out, errOut, code := runLT(t, "--home", home, "cache", "gc", "--to", "0")
	if code != 0 {
		t.Fatalf("gc: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "evicted 3 objects, freed 3.9 KiB; the cache holds 2.0 KiB (target 0 B)") || !strings.Contains(out, "pinned or in use") {
		t.Errorf("gc output:\n%s", out)
	}
	for i, o := range objs {
		_, err := os.Stat(filepath.Join(home, "objects", o.sum.String()[:2], o.sum.String()[2:]+".file"))
		if (err == nil) != (i == 1) {
			t.Errorf("object %d after gc: %v (only the pinned one should stay)", i, err)
		}
	}
}

func TestCacheFsck(t *testing.T) {
	home := t.TempDir()
	objs := fillCache(t, home)
	out, errOut, code := runLT(t, "--home", home, "cache", "fsck")
	if code != 0 || !strings.Contains(out, "checked 4 objects, 5.9 KiB\n") {
		t.Fatalf("fsck of a good cache: exit %d: %s%s", code, out, errOut)
	}
	p := filepath.Join(home, "objects", objs[2].sum.String()[:2], objs[2].sum.String()[2:]+".file")
	b, _ := os.ReadFile(p)
	b[10] ^= 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runLT(t, "--home", home, "cache", "fsck", "--repair")
	if code != ExitFailure {
		t.Errorf("fsck of a corrupt cache: exit %d", code)
	}
	for _, want := range []string{"corrupt " + objs[2].sum.String() + ".file: checksum mismatch", "dropped 1 objects", "could not fetch again: " + objs[2].sum.String() + ".file", "no remote configured"} {
		if !strings.Contains(out, want) {
			t.Errorf("fsck output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "1 objects could not be fetched again") {
		t.Errorf("fsck error: %s", errOut)
	}
	// Dropped: the next fsck is clean.
	out, _, code = runLT(t, "--home", home, "cache", "fsck", "--json")
	var r struct {
		Checked int64
		Clean   bool
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || !r.Clean || r.Checked != 3 {
		t.Errorf("second fsck: exit %d, %+v, %v\n%s", code, r, err, out)
	}
}

func TestPinsCommand(t *testing.T) {
	home := t.TempDir()
	fillCache(t, home)
	out, _, code := runLT(t, "--home", home, "pins")
	if code != 0 || !strings.Contains(out, "flathub:app/x") || !strings.Contains(out, "1 (2.0 KiB)") {
		t.Errorf("pins: exit %d\n%s", code, out)
	}
	out, _, _ = runLT(t, "--home", home, "pins", "--json")
	var pins []pinJSON
	if err := json.Unmarshal([]byte(out), &pins); err != nil || len(pins) != 1 || pins[0].Remote != "flathub" || pins[0].Ref != "app/x" || pins[0].PresentBytes != 2000 {
		t.Errorf("pins --json = %+v, %v", pins, err)
	}
}

func TestParseByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"4096", 4096}, {"10G", 10 << 30}, {"500M", 500 << 20}, {"1.5GiB", 3 << 29},
		{"2k", 2048}, {"1T", 1 << 40}, {"7B", 7}, {"3 MB", 3 << 20},
	} {
		if got, err := parseByteSize(c.in); err != nil || got != c.want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "10X", "1e400", "NaN", "10GG"} {
		if got, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 10 << 30: "10.0 GiB", 1536 << 20: "1.5 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
