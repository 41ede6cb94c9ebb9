package objcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/lazytree/lazytree/index"
)

// obj is a test content object. Its header bytes are opaque to the store,
// so any bytes do; these imitate OSTree's length prefix and padding.
type obj struct {
	sum     index.Sum
	hdr     index.FileHeader
	content []byte
}

func makeObj(seed uint64, size int) obj {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	content := make([]byte, size)
	for i := range content {
		content[i] = byte(r.Uint32())
	}
	gv := []byte(fmt.Sprintf("header-of-%d", seed))
	raw := binary.BigEndian.AppendUint32(nil, uint32(len(gv)))
	raw = append(raw, 0, 0, 0, 0)
	raw = append(raw, gv...)
	h := sha256.New()
	h.Write(raw)
	h.Write(content)
	return obj{
		sum:     index.Sum(h.Sum(nil)),
		hdr:     index.FileHeader{UID: 0, GID: 0, Mode: 0o100644, Size: uint64(size), Raw: raw},
		content: content,
	}
}

func (o obj) id() index.ObjectID { return index.ObjectID{Sum: o.sum, Type: index.TypeFile} }

func openStore(t testing.TB, home string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), home, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *Store, o obj) {
	t.Helper()
	if err := s.PutContent(context.Background(), o.sum, o.hdr, bytes.NewReader(o.content), "test"); err != nil {
		t.Fatal(err)
	}
}

// readAll reads a handle through ReadAt, as FUSE would.
func readAll(h *Handle) ([]byte, error) {
	return io.ReadAll(io.NewSectionReader(h, 0, h.Size()))
}

func expectContent(t testing.TB, s *Store, o obj) {
	t.Helper()
	h, err := s.Open(context.Background(), o.sum)
	if err != nil {
		t.Fatalf("open %s: %v", o.sum.String()[:8], err)
	}
	defer h.Close()
	got, err := readAll(h)
	if err != nil || !bytes.Equal(got, o.content) {
		t.Fatalf("content of %s: %d bytes, err %v; want %d bytes", o.sum.String()[:8], len(got), err, len(o.content))
	}
}

func objPath(home string, sum string) string {
	return filepath.Join(home, "objects", sum[:2], sum[2:]+".file")
}

// dirFiles lists the regular files under dir.
func dirFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diskBytes sums the sizes of the files in objects/.
func diskBytes(t testing.TB, home string) int64 {
	t.Helper()
	var n int64
	for _, p := range dirFiles(t, filepath.Join(home, "objects")) {
		fi, err := os.Stat(p)
		if err == nil {
			n += fi.Size()
		}
	}
	return n
}

func fsckClean(t testing.TB, s *Store) *FsckReport {
	t.Helper()
	r, err := s.Fsck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() {
		t.Errorf("fsck: corrupt %v, missing %v, index %v", r.Corrupt, r.Missing, r.Index)
	}
	return r
}

// hexSum parses a checksum the test wrote out in hex.
func hexSum(s string) index.Sum {
	c, err := index.ParseSum(s)
	if err != nil {
		panic(err)
	}
	return c
}
