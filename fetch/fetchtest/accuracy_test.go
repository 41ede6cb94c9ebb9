package fetchtest_test

import (
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// The accuracy tests check that what a client measures is what was asked
// for, within 10%, for the directory server and for the proxy in front
// of an unshaped upstream. Timer noise on a loaded machine only adds
// time, so RTTs are medians of many samples, and a bandwidth run lasts
// long enough (1.7 s) that a few late wake-ups do not show.

const (
	accLatency = 50 * time.Millisecond
	accRate    = 2_500_000 // bytes/s: 20 Mbit/s
	hugeSize   = 4 << 20
	tolerance  = 0.10
)

// accModes start a shaped Server over dir: directly, or as a proxy to an
// unshaped upstream.
var accModes = []struct {
	name  string
	start func(t *testing.T, dir string, o fetchtest.Options) *fetchtest.Server
}{
	{"dir", serve},
	{"proxy", func(t *testing.T, dir string, o fetchtest.Options) *fetchtest.Server {
		return proxy(t, serve(t, dir, fetchtest.Options{}).URL(), o)
	}},
}

// within fails the test when got is off want by more than tolerance, and
// logs the error either way.
func within(t *testing.T, what string, got, want float64) {
	t.Helper()
	e := (got - want) / want
	t.Logf("%s: %.4g, want %.4g: %+.2f%%", what, got, want, 100*e)
	if e > tolerance || e < -tolerance {
		t.Errorf("%s %.4g is off %.4g by %+.1f%%, more than %.0f%%", what, got, want, 100*e, 100*tolerance)
	}
}

func median(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

// rtts times n small GETs on c after one untimed GET that opens the
// connection.
func rtts(t *testing.T, c *http.Client, url string, n int) ([]time.Duration, error) {
	t.Helper()
	var out []time.Duration
	for i := range n + 1 {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, time.Since(start))
		}
	}
	return out, nil
}

func TestAccuracyRTT(t *testing.T) {
	dir, _ := makeTree(t)
	for _, m := range accModes {
		t.Run(m.name, func(t *testing.T) {
			s := m.start(t, dir, fetchtest.Options{Latency: accLatency})
			one, err := rtts(t, newClient(t, 10*time.Second), s.URL()+"/a.txt", 9)
			if err != nil {
				t.Fatal(err)
			}
			within(t, "median RTT over one connection (ms)", ms(median(one)), ms(accLatency))

			const conns, each = 8, 4
			samples := make([][]time.Duration, conns)
			errs := make([]error, conns)
			var wg sync.WaitGroup
			for i := range conns {
				c := newClient(t, 10*time.Second) // its own pool: its own connection
				wg.Go(func() {
					// Independent clients: their requests overlap but do
					// not all wake on the same tick.
					time.Sleep(time.Duration(i) * accLatency / conns)
					samples[i], errs[i] = rtts(t, c, s.URL()+"/a.txt", each)
				})
			}
			wg.Wait()
			var all []time.Duration
			for i := range conns {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				all = append(all, samples[i]...)
			}
			within(t, "median RTT over 8 connections (ms)", ms(median(all)), ms(accLatency))
			if got := s.Stats().Conns; got != 1+conns {
				t.Fatalf("%d connections, want %d: the samples did not keep theirs alive", got, 1+conns)
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeHuge adds a 4 MiB file of random bytes to dir.
func writeHuge(t *testing.T, dir string) {
	t.Helper()
	b := make([]byte, hugeSize)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "huge"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// download GETs url (with a Range when rng is set) on a connection of its
// own and returns the body size.
func download(t *testing.T, url, rng string) (int64, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := freshClient(t, 10*time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(io.Discard, resp.Body)
}

func TestAccuracyBandwidth(t *testing.T) {
	dir, _ := makeTree(t)
	writeHuge(t, dir)
	o := fetchtest.Options{Latency: accLatency, Bandwidth: accRate}
	for _, m := range accModes {
		t.Run(m.name+"/one", func(t *testing.T) {
			s := m.start(t, dir, o)
			start := time.Now()
			n, err := download(t, s.URL()+"/huge", "")
			if err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start) - accLatency
			if n != hugeSize {
				t.Fatalf("read %d bytes, want %d", n, hugeSize)
			}
			within(t, "rate over one connection (bytes/s)", float64(n)/elapsed.Seconds(), accRate)
		})
		t.Run(m.name+"/many", func(t *testing.T) {
			s := m.start(t, dir, o)
			const conns = 8
			const part = hugeSize / conns
			got := make([]int64, conns)
			errs := make([]error, conns)
			var wg sync.WaitGroup
			start := time.Now()
			for i := range conns {
				rng := "bytes=" + itoa(i*part) + "-" + itoa((i+1)*part-1)
				wg.Go(func() { got[i], errs[i] = download(t, s.URL()+"/huge", rng) })
			}
			wg.Wait()
			elapsed := time.Since(start) - accLatency
			var total int64
			for i := range conns {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				total += got[i]
			}
			if total != hugeSize {
				t.Fatalf("read %d bytes, want %d", total, hugeSize)
			}
			if st := s.Stats(); st.Conns != conns {
				t.Fatalf("%d connections, want %d", st.Conns, conns)
			}
			within(t, "aggregate rate over 8 connections (bytes/s)", float64(total)/elapsed.Seconds(), accRate)
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
