package fetchtest_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// req is a finished request over [start, end) in milliseconds.
func req(start, end int) fetchtest.Request {
	t0 := time.Unix(1000, 0)
	return fetchtest.Request{Start: t0.Add(time.Duration(start) * time.Millisecond),
		Duration: time.Duration(end-start) * time.Millisecond, Done: true}
}

func TestCriticalPath(t *testing.T) {
	pending := req(50, 50)
	pending.Done, pending.Duration = false, 0
	for _, tc := range []struct {
		name string
		log  []fetchtest.Request
		want int
	}{
		{"empty", nil, 0},
		{"one", []fetchtest.Request{req(0, 25)}, 1},
		{"parallel", []fetchtest.Request{req(0, 25), req(1, 26), req(2, 27)}, 1},
		{"serial", []fetchtest.Request{req(0, 25), req(26, 51), req(52, 77)}, 3},
		{"serial out of order", []fetchtest.Request{req(52, 77), req(0, 25), req(26, 51)}, 3},
		{"touching is not after", []fetchtest.Request{req(0, 25), req(25, 50)}, 1},
		{"fan out then in", []fetchtest.Request{req(0, 25), req(30, 55), req(31, 56), req(32, 200), req(60, 85), req(201, 226)}, 4},
		{"long one overlaps a chain", []fetchtest.Request{req(0, 1000), req(1, 10), req(11, 20), req(21, 30)}, 3},
		{"pending closes a chain", []fetchtest.Request{req(0, 25), req(30, 40), pending}, 3},
		{"pending never precedes", []fetchtest.Request{pending, req(60, 70), req(80, 90)}, 2},
	} {
		if got := fetchtest.CriticalPath(tc.log); got != tc.want {
			t.Errorf("%s: CriticalPath = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestCriticalPathQuadratic checks the sweep against the plain O(n^2)
// recurrence on random logs.
func TestCriticalPathQuadratic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		log := make([]fetchtest.Request, rng.IntN(60))
		for i := range log {
			s := rng.IntN(500)
			log[i] = req(s, s+rng.IntN(60))
			log[i].Done = rng.IntN(10) > 0
		}
		if got, want := fetchtest.CriticalPath(log), criticalPathQuadratic(log); got != want {
			t.Fatalf("CriticalPath = %d, quadratic = %d, log %v", got, want, log)
		}
	}
}

func criticalPathQuadratic(log []fetchtest.Request) int {
	chain := make([]int, len(log))
	longest := 0
	// Longest path in a DAG by repeated relaxation: at most len(log) rounds.
	for range log {
		for i := range log {
			c := 1
			for j := range log {
				if log[j].Done && log[j].End().Before(log[i].Start) {
					c = max(c, chain[j]+1)
				}
			}
			chain[i] = c
			longest = max(longest, c)
		}
	}
	return longest
}

// TestCriticalPathServer runs sequential and parallel requests against a
// Server with latency and checks the chain its log records.
func TestCriticalPathServer(t *testing.T) {
	dir, _ := makeTree(t)
	srv := serve(t, dir, fetchtest.Options{Latency: 20 * time.Millisecond})
	c := newClient(t, 10*time.Second)
	for range 3 {
		get(t, c, srv.URL()+"/a.txt")
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			r, err := http.NewRequestWithContext(context.Background(), "GET", srv.URL()+"/a.txt", nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := c.Do(r)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	for range 4 {
		<-done
	}
	log := srv.Log()
	if len(log) != 7 {
		t.Fatalf("logged %d requests, want 7", len(log))
	}
	if got := fetchtest.CriticalPath(log); got != 4 {
		t.Errorf("CriticalPath = %d, want 4 (3 sequential, then 4 in parallel)", got)
	}
}
