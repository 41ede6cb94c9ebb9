package fetchtest_test

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// Timing tests assert lower bounds only: a loaded machine makes things
// slower, never faster.

func TestLatency(t *testing.T) {
	dir, _ := makeTree(t)
	const latency = 100 * time.Millisecond
	s := serve(t, dir, fetchtest.Options{Latency: latency, Jitter: 20 * time.Millisecond, Seed: 3})
	c := newClient(t, 10*time.Second)
	start := time.Now()
	for range 3 {
		get(t, c, s.URL()+"/a.txt")
	}
	if d := time.Since(start); d < 3*latency {
		t.Fatalf("3 requests took %v, want at least %v", d, 3*latency)
	}
	for _, r := range s.Log() {
		if r.Duration < latency {
			t.Fatalf("request %d took %v", r.Seq, r.Duration)
		}
	}
	// Latency applies to errors as well.
	start = time.Now()
	get(t, c, s.URL()+"/missing")
	if d := time.Since(start); d < latency {
		t.Fatalf("404 took %v", d)
	}
}

func TestConnLatency(t *testing.T) {
	dir, _ := makeTree(t)
	const handshake = 150 * time.Millisecond
	s := serve(t, dir, fetchtest.Options{ConnLatency: handshake})
	c := newClient(t, 10*time.Second)
	start := time.Now()
	get(t, c, s.URL()+"/a.txt")
	if d := time.Since(start); d < handshake {
		t.Fatalf("first request took %v, want at least %v", d, handshake)
	}
	// Later requests on the kept-alive connection do not pay it again;
	// nothing is asserted on their time, only that they share it.
	get(t, c, s.URL()+"/a.txt")
	if got := s.Stats().Conns; got != 1 {
		t.Fatalf("%d connections", got)
	}
}

// fetchAll GETs each path concurrently on its own connection and returns
// the time taken.
func fetchAll(t *testing.T, url string, paths ...string) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(paths))
	for i, p := range paths {
		wg.Go(func() {
			c := freshClient(t, 10*time.Second)
			resp, err := c.Get(url + p)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			_, errs[i] = io.Copy(io.Discard, resp.Body)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start)
}

func TestBandwidth(t *testing.T) {
	dir, big := makeTree(t)
	const rate = 4 << 20
	// 1 MiB at 4 MiB/s: 250 ms.
	s := serve(t, dir, fetchtest.Options{Bandwidth: rate})
	c := newClient(t, 10*time.Second)
	start := time.Now()
	r := get(t, c, s.URL()+"/big")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("1 MiB at 4 MiB/s took %v", d)
	}
	if !bytes.Equal(r.body, big) {
		t.Fatal("throttled body differs")
	}
	if st := s.Stats(); st.Bytes != bigSize || st.WireBytes <= bigSize {
		t.Fatalf("stats %+v", st)
	}

	// The link is shared: two connections of 512 KiB each still need
	// 250 ms together.
	if d := fetchAll(t, s.URL(), "/big", "/big"); d < 400*time.Millisecond {
		t.Fatalf("2 MiB over two connections of a 4 MiB/s link took %v", d)
	}

	// Per connection, each flow has its own limit: 1 MiB each at 8 MiB/s
	// per connection still takes 125 ms.
	if err := s.SetOptions(fetchtest.Options{ConnBandwidth: 2 * rate}); err != nil {
		t.Fatal(err)
	}
	if d := fetchAll(t, s.URL(), "/big", "/big", "/big"); d < 100*time.Millisecond {
		t.Fatalf("1 MiB per connection at 8 MiB/s took %v", d)
	}
}

// TestCloseStopsEverything closes a Server while responses are delayed,
// throttled, stalled and idle, and checks that every goroutine ends.
func TestCloseStopsEverything(t *testing.T) {
	dir, _ := makeTree(t)
	before := runtime.NumGoroutine()
	s, err := fetchtest.New(dir, fetchtest.Options{
		Bandwidth: 64 << 10,
		Stall:     fetchtest.Rule{P: 1, Paths: "/sub/x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	get(t, c, s.URL()+"/a.txt") // leaves an idle kept-alive connection
	var wg sync.WaitGroup
	fetch := func(p string) {
		wg.Go(func() {
			resp, err := c.Get(s.URL() + p)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	fetch("/big") // throttled: 16 s at 64 KiB/s
	fetch("/sub/x")
	waitFor(t, "two requests in flight", 5*time.Second, func() bool { return s.Stats().InFlight == 2 })
	if err := s.Update(func(o *fetchtest.Options) { o.Latency = time.Hour }); err != nil {
		t.Fatal(err)
	}
	fetch("/objects/cd/4567.commit")
	waitFor(t, "three requests in flight", 5*time.Second, func() bool { return s.Stats().InFlight == 3 })
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if st := s.Stats(); st.InFlight != 0 {
		t.Fatalf("%d handlers still running after Close", st.InFlight)
	}
	wg.Wait()
	tr.CloseIdleConnections()
	waitGoroutines(t, before)
	s.Close() // twice is fine
	if _, err := http.Get(s.URL() + "/a.txt"); err == nil {
		t.Fatal("served after Close")
	}
}

// TestConcurrentUpdates exercises the server under -race: clients on many
// connections while the options change under them.
func TestConcurrentUpdates(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{Bandwidth: 64 << 20})
	c := newClient(t, 10*time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var faults atomic.Int64 // Stats().Faults before each Reset
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := []string{"/a.txt", objPath, "/big", "/sub/x"}[i%4]
				resp, err := c.Get(s.URL() + p)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := float64(i%3) / 4
			s.Update(func(o *fetchtest.Options) {
				o.Status5xx.P = p
				o.Truncate.P = p
				o.Corrupt.P = p
				o.Reset = fetchtest.Rule{P: p / 4, After: fetchtest.Seeded}
			})
			s.Log()
			s.Count("/objects/")
			s.Stats()
			if i%50 == 0 {
				faults.Add(s.Stats().Faults)
				s.Reset()
			}
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if faults.Load()+s.Stats().Faults == 0 {
		t.Fatal("no fault was injected")
	}
}
