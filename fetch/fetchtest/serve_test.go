package fetchtest_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

func TestServe(t *testing.T) {
	dir, big := makeTree(t)
	s := serve(t, dir, fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	for _, tc := range []struct {
		method, path string
		status       int
		body         []byte
	}{
		{"GET", "/a.txt", 200, []byte(smallTxt)},
		{"GET", "/big", 200, big},
		{"GET", "/empty", 200, []byte{}},
		{"GET", objPath, 200, []byte("object bytes")},
		{"GET", "/inlink", 200, []byte(smallTxt)},
		{"HEAD", "/a.txt", 200, []byte{}},
		{"GET", "/missing", 404, nil},
		{"GET", "/sub", 404, nil},
		{"GET", "/sub/", 404, nil},
		{"GET", "/", 404, nil},
		{"GET", "//a.txt", 404, nil},
		{"GET", "/a.txt/x", 404, nil},
		{"GET", "/escape", 404, nil},
		{"GET", "/absescape", 404, nil},
		{"GET", "/%2e%2e/secret", 404, nil},
		{"POST", "/a.txt", 405, nil},
		{"DELETE", "/a.txt", 405, nil},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			r := do(t, c, tc.method, s.URL()+tc.path)
			if r.doErr != nil || r.readErr != nil {
				t.Fatalf("%v %v", r.doErr, r.readErr)
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if tc.status != 200 {
				if bytes.Contains(r.body, []byte("secret")) {
					t.Fatalf("leaked the secret: %q", r.body)
				}
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
		})
	}
}

// TestRawPaths sends request lines that net/http's client would not, to
// check that nothing outside the directory is reachable.
func TestRawPaths(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{})
	for _, target := range []string{
		"/../secret", "/sub/../a.txt", "/./a.txt", "/a.txt%00", "/sub/../../secret", "*",
	} {
		t.Run(target, func(t *testing.T) {
			nc, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
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
}

func TestRange(t *testing.T) {
	dir, big := makeTree(t)
	s := serve(t, dir, fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	n := len(big)
	for _, tc := range []struct {
		rng          string
		status       int
		off, length  int
		contentRange string
	}{
		{"bytes=0-9", 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)},
		{"bytes=1000-1999", 206, 1000, 1000, fmt.Sprintf("bytes 1000-1999/%d", n)},
		{"bytes=1000-", 206, 1000, n - 1000, fmt.Sprintf("bytes 1000-%d/%d", n-1, n)},
		{"bytes=-16", 206, n - 16, 16, fmt.Sprintf("bytes %d-%d/%d", n-16, n-1, n)},
		{"bytes=-99999999", 206, 0, n, fmt.Sprintf("bytes 0-%d/%d", n-1, n)},
		{"bytes=10-99999999", 206, 10, n - 10, fmt.Sprintf("bytes 10-%d/%d", n-1, n)},
		{fmt.Sprintf("bytes=%d-%d", n-1, n-1), 206, n - 1, 1, fmt.Sprintf("bytes %d-%d/%d", n-1, n-1, n)},
		{fmt.Sprintf("bytes=%d-", n), 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
		{"bytes=-0", 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
		{"bytes=0-1,5-6", 200, 0, n, ""},
		{"items=0-1", 200, 0, n, ""},
		{"bytes=9-2", 200, 0, n, ""},
		{"bytes=x-2", 200, 0, n, ""},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			r := get(t, c, s.URL()+"/big", "Range", tc.rng)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if got := r.header.Get("Content-Range"); got != tc.contentRange {
				t.Fatalf("Content-Range %q, want %q", got, tc.contentRange)
			}
			if tc.status == 416 {
				return
			}
			if !bytes.Equal(r.body, big[tc.off:tc.off+tc.length]) {
				t.Fatalf("body is not bytes %d+%d", tc.off, tc.length)
			}
		})
	}
	log := s.Log()
	if got := log[0].Range; got != "bytes=0-9" {
		t.Fatalf("logged range %q", got)
	}
	if log[0].Status != 206 || log[0].Bytes != 10 {
		t.Fatalf("logged %d with %d bytes, want 206 with 10", log[0].Status, log[0].Bytes)
	}
}

func TestKeepAlive(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	for range 10 {
		get(t, c, s.URL()+"/a.txt")
	}
	if got := s.Stats().Conns; got != 1 {
		t.Fatalf("%d connections for 10 sequential requests, want 1", got)
	}
	for _, r := range s.Log() {
		if r.Conn != 1 || r.Proto != "HTTP/1.1" {
			t.Fatalf("request %d on connection %d over %s", r.Seq, r.Conn, r.Proto)
		}
	}
}

func TestHTTP2(t *testing.T) {
	dir, big := makeTree(t)
	s := serve(t, dir, fetchtest.Options{HTTP2: true})
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(h2.CloseIdleConnections)
	c := &http.Client{Transport: h2, Timeout: 10 * time.Second}

	resp, err := c.Get(s.URL() + "/big")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("served %s, want HTTP/2", resp.Proto)
	}
	if r := get(t, c, s.URL()+"/big", "Range", "bytes=5-9"); r.status != 206 || !bytes.Equal(r.body, big[5:10]) {
		t.Fatalf("range over HTTP/2: %d %q", r.status, r.body)
	}
	// HTTP/1.1 clients are still served.
	if r := get(t, newClient(t, 10*time.Second), s.URL()+"/a.txt"); r.status != 200 {
		t.Fatalf("HTTP/1.1 beside HTTP/2: %d", r.status)
	}
	if got := s.Log()[0].Proto; got != "HTTP/2.0" {
		t.Fatalf("logged %s", got)
	}

	// Truncation and resets still reach an HTTP/2 client as errors.
	if err := s.Update(func(o *fetchtest.Options) {
		o.Truncate = fetchtest.Rule{P: 1, Paths: "/big", After: 1000}
	}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, c, "GET", s.URL()+"/big"); r.doErr == nil && r.readErr == nil {
		t.Fatalf("truncated HTTP/2 response read without error (%d bytes)", len(r.body))
	}
	if err := s.Update(func(o *fetchtest.Options) {
		o.Truncate = fetchtest.Rule{}
		o.Reset = fetchtest.Rule{P: 1, Paths: "/big", After: 1000}
	}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, c, "GET", s.URL()+"/big"); r.doErr == nil && r.readErr == nil {
		t.Fatalf("reset HTTP/2 response read without error (%d bytes)", len(r.body))
	}
	if err := s.SetOptions(fetchtest.Options{}); !errors.Is(err, fetchtest.ErrInvalidOptions) {
		t.Fatalf("turning HTTP/2 off at run time: %v, want ErrInvalidOptions", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	dir, _ := makeTree(t)
	for name, o := range map[string]fetchtest.Options{
		"negative latency":       {Latency: -1},
		"negative jitter":        {Jitter: -1},
		"negative bandwidth":     {Bandwidth: -1},
		"negative conn limit":    {ConnBandwidth: -1},
		"probability above 1":    {Status5xx: fetchtest.Rule{P: 1.5}},
		"negative probability":   {Corrupt: fetchtest.Rule{P: -0.1}},
		"bad glob":               {Reset: fetchtest.Rule{P: 1, Paths: "/objects/[ab"}},
		"bad fail-first glob":    {FailFirstN: 1, FailFirstPaths: "["},
		"negative fail-first":    {FailFirstN: -1},
		"not a 5xx":              {ErrorStatuses: []int{404}},
		"BeforeHeaders on stall": {Stall: fetchtest.Rule{P: 1, After: fetchtest.BeforeHeaders}},
		"negative After":         {Truncate: fetchtest.Rule{P: 1, After: -7}},
		"loss above 1":           {Loss: 1.5},
		"negative loss":          {Loss: -0.1},
		"NaN loss":               {Loss: math.NaN()},
		"negative loss stall":    {Loss: 0.1, LossStall: -1},
		"negative upstream wait": {UpstreamTimeout: -1},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := fetchtest.New(dir, o)
			if err == nil {
				s.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, fetchtest.ErrInvalidOptions) {
				t.Fatalf("error %v does not match ErrInvalidOptions", err)
			}
		})
	}
	if _, err := fetchtest.New(dir+"/nonexistent", fetchtest.Options{}); err == nil {
		t.Fatal("served a missing directory")
	}
	s := serve(t, dir, fetchtest.Options{Latency: time.Millisecond})
	if err := s.SetOptions(fetchtest.Options{Bandwidth: -5}); err == nil {
		t.Fatal("SetOptions accepted a negative bandwidth")
	}
	if got := s.Options().Latency; got != time.Millisecond {
		t.Fatalf("a refused SetOptions changed Latency to %v", got)
	}
}

func TestLog(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{})
	c := newClient(t, 10*time.Second)
	get(t, c, s.URL()+"/a.txt")
	do(t, c, "HEAD", s.URL()+objPath)
	get(t, c, s.URL()+"/objects/ab/0123.dirtree", "Range", "bytes=0-3")
	get(t, c, s.URL()+"/objects/cd/4567.commit")
	get(t, c, s.URL()+"/missing")
	get(t, c, s.URL()+"/a.txt")

	log := s.Log()
	want := []struct {
		method, path string
		status       int
		bytes        int64
		attempt      int
	}{
		{"GET", "/a.txt", 200, int64(len(smallTxt)), 0},
		{"HEAD", objPath, 200, 0, 0},
		{"GET", "/objects/ab/0123.dirtree", 206, 4, 0},
		{"GET", "/objects/cd/4567.commit", 200, 12, 0},
		{"GET", "/missing", 404, -1, 0},
		{"GET", "/a.txt", 200, int64(len(smallTxt)), 1},
	}
	if len(log) != len(want) {
		t.Fatalf("%d logged requests, want %d", len(log), len(want))
	}
	for i, w := range want {
		r := log[i]
		if r.Seq != i || r.Method != w.method || r.Path != w.path || r.Status != w.status || r.Attempt != w.attempt || !r.Done {
			t.Errorf("log[%d] = %+v, want %+v", i, r, w)
		}
		if w.bytes >= 0 && r.Bytes != w.bytes {
			t.Errorf("log[%d] bytes %d, want %d", i, r.Bytes, w.bytes)
		}
		if r.Start.IsZero() || r.Duration <= 0 || r.Fault != fetchtest.FaultNone {
			t.Errorf("log[%d] start %v duration %v fault %q", i, r.Start, r.Duration, r.Fault)
		}
	}
	for pattern, n := range map[string]int{
		"":                   6,
		"/a.txt":             2,
		"a.txt":              2,
		"/a":                 0,
		"/objects/":          3,
		"/objects/*/*.filez": 1,
		"**.commit":          1,
		"/objects/**":        3,
		"/objects/*":         0,
		"/objects/?b/*":      2,
		"/objects/[ac]?/*":   3,
		"/objects/[!a]?/*":   1,
	} {
		if got := s.Count(pattern); got != n {
			t.Errorf("Count(%q) = %d, want %d", pattern, got, n)
		}
	}
	paths := s.Paths()
	if len(paths) != 6 || paths[0] != "/a.txt" || paths[4] != "/missing" {
		t.Errorf("Paths() = %q", paths)
	}
	st := s.Stats()
	if st.Requests != 6 || st.InFlight != 0 || st.Conns != 1 || st.Faults != 0 {
		t.Errorf("Stats() = %+v", st)
	}
	if wantBytes := int64(2*len(smallTxt) + 4 + 12); st.Bytes < wantBytes || st.WireBytes <= st.Bytes {
		t.Errorf("Stats() bytes %d wire %d, want at least %d and more on the wire", st.Bytes, st.WireBytes, wantBytes)
	}

	s.Reset()
	if len(s.Log()) != 0 || s.Count("") != 0 || s.Stats().Requests != 0 {
		t.Fatalf("Reset left %d requests, stats %+v", len(s.Log()), s.Stats())
	}
	get(t, c, s.URL()+"/a.txt")
	if r := s.Log()[0]; r.Seq != 0 || r.Attempt != 0 {
		t.Fatalf("after Reset: seq %d attempt %d, want 0 0", r.Seq, r.Attempt)
	}
}

func TestCountPanicsOnBadGlob(t *testing.T) {
	dir, _ := makeTree(t)
	s := serve(t, dir, fetchtest.Options{})
	defer func() {
		if recover() == nil {
			t.Fatal("Count accepted a malformed glob")
		}
	}()
	s.Count("/objects/[")
}
