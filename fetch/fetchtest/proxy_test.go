package fetchtest_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// proxy starts a proxy to upstream that the test closes at its end.
func proxy(t *testing.T, upstream string, o fetchtest.Options) *fetchtest.Server {
	t.Helper()
	s, err := fetchtest.NewProxy(upstream, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestProxyServe forwards to an upstream that serves the directory above
// the repo, so that the upstream's path prefix is exercised too.
func TestProxyServe(t *testing.T) {
	dir, big := makeTree(t)
	up := serve(t, filepath.Dir(dir), fetchtest.Options{})
	p := proxy(t, up.URL()+"/repo/", fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	for _, tc := range []struct {
		method, path string
		status       int
		body         []byte
		// asked reports that the upstream must see the request.
		asked bool
	}{
		{"GET", "/a.txt", 200, []byte(smallTxt), true},
		{"GET", "/big", 200, big, true},
		{"GET", "/empty", 200, []byte{}, true},
		{"GET", objPath, 200, []byte("object bytes"), true},
		{"HEAD", "/a.txt", 200, []byte{}, true},
		{"GET", "/missing", 404, nil, true},
		{"GET", "/sub", 404, nil, true},
		{"GET", "/", 404, nil, false},
		{"GET", "//a.txt", 404, nil, false},
		{"GET", "/sub/", 404, nil, false},
		{"GET", "/%2e%2e/secret", 404, nil, false},
		{"POST", "/a.txt", 405, nil, false},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			before := up.Stats().Requests
			r := do(t, c, tc.method, p.URL()+tc.path)
			if r.doErr != nil || r.readErr != nil {
				t.Fatalf("%v %v", r.doErr, r.readErr)
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if asked := up.Stats().Requests > before; asked != tc.asked {
				t.Fatalf("upstream asked: %v, want %v", asked, tc.asked)
			}
			if tc.status != 200 {
				return
			}
			if !bytes.Equal(r.body, tc.body) {
				t.Fatalf("body %d bytes, want %d", len(r.body), len(tc.body))
			}
			want := strconv.Itoa(len(tc.body))
			if tc.method == "HEAD" {
				want = strconv.Itoa(len(smallTxt))
			}
			if got := r.header.Get("Content-Length"); got != want {
				t.Fatalf("Content-Length %q, want %q", got, want)
			}
			if got := r.header.Get("Accept-Ranges"); got != "bytes" {
				t.Fatalf("Accept-Ranges %q", got)
			}
			if got := r.header.Get("Content-Type"); got != "application/octet-stream" {
				t.Fatalf("Content-Type %q", got)
			}
		})
	}
	// The upstream saw the prefixed paths, the proxy's log the client's.
	if got := up.Count("/repo/a.txt"); got != 2 {
		t.Fatalf("upstream logged /repo/a.txt %d times, want 2", got)
	}
	if got, want := p.Count("/a.txt"), 3; got != want { // GET, HEAD and POST
		t.Fatalf("proxy logged /a.txt %d times, want %d", got, want)
	}
	if st := p.Stats(); st.Requests != 12 || st.InFlight != 0 || st.Conns != 1 {
		t.Fatalf("proxy stats %+v", st)
	}
	if l := p.Log()[4]; l.Method != "HEAD" || l.Status != 200 || l.Bytes != 0 || !l.Done {
		t.Fatalf("HEAD logged as %+v", l)
	}
	p.Reset()
	if len(p.Log()) != 0 || p.Stats().Requests != 0 {
		t.Fatal("Reset left requests in the proxy's log")
	}
}

func TestProxyRawPaths(t *testing.T) {
	dir, _ := makeTree(t)
	up := serve(t, dir, fetchtest.Options{})
	p := proxy(t, up.URL(), fetchtest.Options{})
	for _, target := range []string{"/../secret", "/sub/../a.txt", "/./a.txt", "/a.txt%00"} {
		t.Run(target, func(t *testing.T) {
			nc, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 && resp.StatusCode != 400 {
				t.Fatalf("status %d, want 404 or 400", resp.StatusCode)
			}
		})
	}
	if got := up.Stats().Requests; got != 0 {
		t.Fatalf("%d refused requests reached the upstream", got)
	}
}

func TestProxyRange(t *testing.T) {
	dir, big := makeTree(t)
	up := serve(t, dir, fetchtest.Options{})
	p := proxy(t, up.URL(), fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	r := get(t, c, p.URL()+"/big", "Range", "bytes=1000-1999")
	if r.status != 206 || !bytes.Equal(r.body, big[1000:2000]) {
		t.Fatalf("range: %d, %d bytes", r.status, len(r.body))
	}
	if got, want := r.header.Get("Content-Range"), fmt.Sprintf("bytes 1000-1999/%d", bigSize); got != want {
		t.Fatalf("Content-Range %q, want %q", got, want)
	}
	r = get(t, c, p.URL()+"/big", "Range", fmt.Sprintf("bytes=%d-", bigSize))
	if r.status != 416 || r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", bigSize) {
		t.Fatalf("unsatisfiable range: %d %q", r.status, r.header.Get("Content-Range"))
	}
	if l := up.Log()[0]; l.Range != "bytes=1000-1999" {
		t.Fatalf("upstream got Range %q", l.Range)
	}
	if l := p.Log()[0]; l.Range != "bytes=1000-1999" || l.Status != 206 || l.Bytes != 1000 {
		t.Fatalf("proxy logged %+v", l)
	}
}

func TestProxyFaults(t *testing.T) {
	dir, big := makeTree(t)
	up := serve(t, dir, fetchtest.Options{})
	p := proxy(t, up.URL(), fetchtest.Options{Corrupt: fetchtest.Rule{P: 1, Paths: "/big"}})
	c := newClient(t, 10*time.Second)

	r := get(t, c, p.URL()+"/big")
	if len(r.body) != bigSize || countDiff(r.body, big) != 1 {
		t.Fatalf("corrupt: %d bytes, %d differing; want %d and 1", len(r.body), countDiff(r.body, big), bigSize)
	}
	r = get(t, c, p.URL()+"/big", "Range", "bytes=500-509")
	if countDiff(r.body, big[500:510]) != 1 {
		t.Fatalf("corrupt range %x, original %x", r.body, big[500:510])
	}

	if err := p.SetOptions(fetchtest.Options{Truncate: fetchtest.Rule{P: 1, Paths: "/big", After: 1000}}); err != nil {
		t.Fatal(err)
	}
	r = do(t, c, "GET", p.URL()+"/big")
	if !errors.Is(r.readErr, io.ErrUnexpectedEOF) || !bytes.Equal(r.body, big[:1000]) {
		t.Fatalf("truncate: %d bytes, %v", len(r.body), r.readErr)
	}

	// Faults that replace the response do not ask the upstream.
	asked := up.Stats().Requests
	if err := p.SetOptions(fetchtest.Options{Status5xx: fetchtest.Rule{P: 1}, ErrorStatuses: []int{503}}); err != nil {
		t.Fatal(err)
	}
	if r := get(t, c, p.URL()+"/a.txt"); r.status != 503 {
		t.Fatalf("5xx: got %d", r.status)
	}
	if got := up.Stats().Requests; got != asked {
		t.Fatalf("a 5xx fault asked the upstream (%d requests, %d before)", got, asked)
	}

	// Override answers in place of the upstream, ranges included.
	old := []byte("an older summary")
	if err := p.SetOptions(fetchtest.Options{Override: func(path string) ([]byte, bool) {
		return old, path == "/summary"
	}}); err != nil {
		t.Fatal(err)
	}
	if r := get(t, c, p.URL()+"/summary", "Range", "bytes=3-7"); r.status != 206 || !bytes.Equal(r.body, old[3:8]) {
		t.Fatalf("override: %d %q", r.status, r.body)
	}

	log := p.Log()
	for i, want := range []fetchtest.Fault{fetchtest.FaultCorrupt, fetchtest.FaultCorrupt, fetchtest.FaultTruncate, fetchtest.FaultStatus, fetchtest.FaultNone} {
		if log[i].Fault != want {
			t.Fatalf("log[%d].Fault = %q, want %q", i, log[i].Fault, want)
		}
	}
	if !log[4].Overridden || p.Stats().Faults != 4 {
		t.Fatalf("log %+v, stats %+v", log, p.Stats())
	}
}

func TestProxyUpstreamFails(t *testing.T) {
	dir, _ := makeTree(t)
	down, err := fetchtest.New(dir, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	p := proxy(t, down.URL(), fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	if r := get(t, c, p.URL()+"/a.txt"); r.status != http.StatusBadGateway {
		t.Fatalf("upstream down: %d, want 502", r.status)
	}
	if l := p.Log()[0]; l.Status != http.StatusBadGateway || !l.Done {
		t.Fatalf("logged %+v", l)
	}

	// An upstream that does not answer in time is a 504.
	slow := serve(t, dir, fetchtest.Options{Latency: time.Hour})
	const timeout = 200 * time.Millisecond
	p = proxy(t, slow.URL(), fetchtest.Options{UpstreamTimeout: timeout})
	start := time.Now()
	if r := get(t, c, p.URL()+"/a.txt"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("slow upstream: %d, want 504", r.status)
	}
	if d := time.Since(start); d < timeout || d > 10*timeout {
		t.Fatalf("504 after %v, want about %v", d, timeout)
	}

	for _, bad := range []string{"ftp://example.org/", "http://", "not a url", "http://h/x?q=1", "http://h/%zz"} {
		if s, err := fetchtest.NewProxy(bad, fetchtest.Options{}); err == nil {
			s.Close()
			t.Errorf("NewProxy(%q) accepted", bad)
		}
	}
	if _, err := fetchtest.NewProxy(slow.URL(), fetchtest.Options{Loss: 2}); !errors.Is(err, fetchtest.ErrInvalidOptions) {
		t.Fatalf("invalid options: %v", err)
	}
}

// TestProxyCloseStopsEverything closes a proxy while one request waits
// for the upstream's headers, one is stalled mid-body upstream and one
// is throttled by the proxy's own link.
func TestProxyCloseStopsEverything(t *testing.T) {
	dir, _ := makeTree(t)
	before := runtime.NumGoroutine()
	up, err := fetchtest.New(dir, fetchtest.Options{Stall: fetchtest.Rule{
		P:     1,
		Match: func(r *http.Request) bool { return r.URL.Path != "/big" },
		After: 4096,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	p, err := fetchtest.NewProxy(up.URL(), fetchtest.Options{Bandwidth: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for _, path := range []string{"/big", "/empty", objPath} {
		wg.Go(func() {
			resp, err := c.Get(p.URL() + path)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	waitFor(t, "three requests in flight", 5*time.Second, func() bool { return p.Stats().InFlight == 3 })
	waitFor(t, "the upstream to see them", 5*time.Second, func() bool { return up.Stats().Requests == 3 })
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if st := p.Stats(); st.InFlight != 0 {
		t.Fatalf("%d handlers still running after Close", st.InFlight)
	}
	wg.Wait()
	// The upstream sees its clients leave.
	waitFor(t, "the upstream's handlers to return", 5*time.Second, func() bool { return up.Stats().InFlight == 0 })
	up.Close()
	tr.CloseIdleConnections()
	waitGoroutines(t, before)
}
