package delta

import (
	"bytes"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
)

func TestStoredXZ(t *testing.T) {
	xzBin := testutil.RequireTool(t, "xz")
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 100, 1 << 16, 1<<16 + 1, 3<<16 - 7, 1 << 20} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		s := storedXZ(data)
		got, err := unxz(s, int64(n))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: our decoder: %v", n, err)
		}
		cmd := exec.Command(xzBin, "--decompress", "--stdout", "--single-stream")
		cmd.Stdin = bytes.NewReader(s)
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%d bytes: xz(1) says %v", n, err)
		}
	}
}
