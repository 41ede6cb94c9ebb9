package fetchtest_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// bigChunks is how many 64 KiB loss chunks the big file has.
const bigChunks = bigSize / (64 << 10)

func TestLoss(t *testing.T) {
	dir, big := makeTree(t)
	const stall = 50 * time.Millisecond
	for _, tc := range []struct {
		name  string
		proxy bool
		rate  int64
	}{
		{"dir", false, 0},
		{"dir/bandwidth", false, 8 << 20},
		{"proxy", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := serve
			if tc.proxy {
				start = accModes[1].start
			}
			s := start(t, dir, fetchtest.Options{Bandwidth: tc.rate, LossStall: stall})
			c := newClient(t, 10*time.Second)
			get(t, c, s.URL()+"/a.txt") // open the connection
			t0 := time.Now()
			if r := get(t, c, s.URL()+"/big"); !bytes.Equal(r.body, big) {
				t.Fatal("body differs without loss")
			}
			plain := time.Since(t0)
			if err := s.Update(func(o *fetchtest.Options) { o.Loss = 1 }); err != nil {
				t.Fatal(err)
			}
			t0 = time.Now()
			if r := get(t, c, s.URL()+"/big"); !bytes.Equal(r.body, big) {
				t.Fatal("body differs with loss")
			}
			lossy := time.Since(t0)
			// The stalls alone take want; a slow machine only adds to the
			// transfer time, which plain measured once.
			want := bigChunks * stall
			t.Logf("without loss %v, with every chunk lost %v (%v more), want %v more", plain, lossy, lossy-plain, want)
			if lossy < want || lossy-plain > want*3/2 {
				t.Fatalf("losing %d chunks of %v took %v, %v without loss; want about %v more", bigChunks, stall, lossy, plain, want)
			}
			log := s.Log()
			if log[1].Lost != 0 || log[2].Lost != bigChunks {
				t.Fatalf("lost %d and %d chunks, want 0 and %d", log[1].Lost, log[2].Lost, bigChunks)
			}
		})
	}
}

// lostChunks fetches /big n times and returns how many chunks each
// response lost.
func lostChunks(t *testing.T, s *fetchtest.Server, n int) []int {
	t.Helper()
	c := newClient(t, 10*time.Second)
	for range n {
		get(t, c, s.URL()+"/big")
	}
	var out []int
	for _, r := range s.Log() {
		out = append(out, r.Lost)
	}
	return out
}

func TestLossIsSeeded(t *testing.T) {
	dir, _ := makeTree(t)
	o := fetchtest.Options{Loss: 0.25, LossStall: time.Millisecond, Seed: 11}
	first := lostChunks(t, serve(t, dir, o), 6)
	total := 0
	for _, n := range first {
		total += n
	}
	// 24 expected of 96.
	if total == 0 || total >= 6*bigChunks/2 {
		t.Fatalf("lost %v chunks at Loss 0.25", first)
	}
	if again := lostChunks(t, serve(t, dir, o), 6); !slices.Equal(first, again) {
		t.Fatalf("the same seed lost %v, then %v", first, again)
	}
	o.Seed = 12
	if other := lostChunks(t, serve(t, dir, o), 6); slices.Equal(first, other) {
		t.Fatalf("another seed lost the same %v", other)
	}
}
