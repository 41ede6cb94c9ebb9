package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// firstOnly matches the first request of each test only.
func firstOnly() func(*http.Request) bool {
	var n atomic.Int32
	return func(*http.Request) bool { return n.Add(1) == 1 }
}

func resumeServer(t *testing.T, opts fetchtest.Options) (*fetchtest.Server, []byte) {
	t.Helper()
	dir := t.TempDir()
	data := randBytes(4<<20, 7)
	for _, p := range []string{"objects/ab/big.filez", "summary"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := fetchtest.New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, data
}

func testClient(url string, opts HTTPOptions) *client {
	if opts.Backoff == 0 {
		opts.Backoff = 5 * time.Millisecond
	}
	return newClient(nil, url, false, opts)
}

func fetchAll(c *client, path string, maxSize int64) ([]byte, error) {
	var out []byte
	err := c.fetch(context.Background(), path, maxSize, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		out = b
		return err
	})
	return out, err
}

// TestResumeCut: a 4 MiB object whose first transfer breaks at 60 %
// (reset, or a truncated body) reaches the consumer whole and unbroken,
// the rest asked for with Range from where it broke, and the server
// sends at most 1.1 × the object in all. A mutable file (the summary,
// no validator) is fetched again from the start instead.
func TestResumeCut(t *testing.T) {
	cut := int64(4<<20) * 60 / 100
	for _, fault := range []string{"reset", "truncate"} {
		t.Run(fault, func(t *testing.T) {
			rule := fetchtest.Rule{P: 1, Paths: "/objects/", After: cut, Match: firstOnly()}
			var o fetchtest.Options
			if fault == "reset" {
				o.Reset = rule
			} else {
				o.Truncate = rule
			}
			srv, data := resumeServer(t, o)
			c := testClient(srv.URL(), HTTPOptions{})
			got, err := fetchAll(c, "objects/ab/big.filez", 8<<20)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("fetch: %d bytes, %v", len(got), err)
			}
			var sent int64
			var ranges []string
			for _, r := range srv.Log() {
				sent += r.Bytes
				ranges = append(ranges, r.Range)
			}
			if len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") {
				t.Fatalf("requests' ranges %q, want the whole file then a resume", ranges)
			}
			from, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(ranges[1], "bytes="), "-"), 10, 64)
			if from <= 0 || from > cut {
				t.Fatalf("resumed at %d, the cut was at %d", from, cut)
			}
			// A reset also drops what sat unread in the client's socket
			// buffers (on unshaped loopback, most of what was sent), so
			// the server's count only holds for a clean truncation; what
			// the client received holds for both.
			if got := c.bytes.get(); float64(got) > 1.1*float64(len(data)) {
				t.Fatalf("the client received %d bytes for a %d-byte object", got, len(data))
			}
			if fault == "truncate" && float64(sent) > 1.1*float64(len(data)) {
				t.Fatalf("the server sent %d bytes for a %d-byte object", sent, len(data))
			}
			if c.resumes.get() != 1 {
				t.Fatalf("%d resumes counted", c.resumes.get())
			}
		})
	}
	t.Run("mutable", func(t *testing.T) {
		srv, data := resumeServer(t, fetchtest.Options{Reset: fetchtest.Rule{P: 1, Paths: "/summary", After: cut, Match: firstOnly()}})
		c := testClient(srv.URL(), HTTPOptions{})
		got, err := fetchAll(c, "summary", 8<<20)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("fetch: %d bytes, %v", len(got), err)
		}
		for _, r := range srv.Log() {
			if r.Range != "" {
				t.Fatalf("a file without a validator that may change was resumed: %q", r.Range)
			}
		}
	})
}

// origin is a small server of one file with an ETag that cuts its first
// body after cut bytes and can ignore Range, change its ETag or lie in
// Content-Range.
type origin struct {
	data       []byte
	cut        int64 // cut every body after this many bytes (0: never); cutOnce: only the first
	cutOnce    bool
	ignoreRng  bool
	etag       atomic.Value
	changeETag bool  // a new ETag after the first response
	shift      int64 // Content-Range starts this much off
	requests   atomic.Int32
	sent       atomic.Int64
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.requests.Add(1)
	etag := `"v1"`
	if o.changeETag && n > 1 {
		etag = `"v2"`
	}
	w.Header().Set("ETag", etag)
	body, status := o.data, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !o.ignoreRng && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == etag) {
		spec := strings.TrimPrefix(rg, "bytes=")
		a, b, _ := strings.Cut(spec, "-")
		first, _ := strconv.ParseInt(a, 10, 64)
		last := int64(len(o.data)) - 1
		if b != "" {
			last, _ = strconv.ParseInt(b, 10, 64)
		}
		body, status = o.data[first:last+1], http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first+o.shift, last+o.shift, len(o.data)))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if o.cut > 0 && int64(len(body)) > o.cut && (!o.cutOnce || n == 1) {
		w.Write(body[:o.cut])
		o.sent.Add(o.cut)
		panic(http.ErrAbortHandler) // the connection breaks
	}
	w.Write(body)
	o.sent.Add(int64(len(body)))
}

func serveOrigin(t *testing.T, o *origin) string {
	t.Helper()
	srv := httptest.NewServer(o)
	srv.Config.ErrorLog = nil
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestResumeValidators: with an ETag, a cut body resumes with If-Range
// (for any path); a server that ignores Range resends the file and the
// bytes had are skipped; an ETag that changed, or a Content-Range that
// does not start where asked, fails the resume and no mixed bytes reach
// the consumer (the next retry starts over from byte 0).
func TestResumeValidators(t *testing.T) {
	data := randBytes(1<<20, 9)
	cases := []struct {
		name      string
		o         *origin
		wantSent  float64 // at most this × the file
		wantFirst bool    // a retry from 0 after the failed resume
	}{
		{"etag", &origin{cut: 300 << 10, cutOnce: true}, 1.01, false},
		{"ignores range", &origin{cut: 300 << 10, cutOnce: true, ignoreRng: true}, 1.35, false},
		{"etag changed", &origin{cut: 300 << 10, cutOnce: true, changeETag: true}, 2.3, true},
		{"wrong content-range", &origin{cut: 300 << 10, cutOnce: true, shift: 10}, 2.3, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.data = data
			c := testClient(serveOrigin(t, tc.o), HTTPOptions{})
			var starts int
			var out []byte
			err := c.fetch(context.Background(), "summary", 0, func(r io.Reader) error {
				starts++
				b, err := io.ReadAll(r)
				out = b
				return err
			})
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("fetch: %d bytes, %v", len(out), err)
			}
			if got := float64(tc.o.sent.Load()) / float64(len(data)); got > tc.wantSent {
				t.Fatalf("sent %.2f× the file, want at most %.2f×", got, tc.wantSent)
			}
			if tc.wantFirst != (starts > 1) {
				t.Fatalf("consume started %d times", starts)
			}
		})
	}
}

// TestResumeBounded: a server that cuts every body ends the fetch with
// an error after Retries resumes (per attempt), in bounded time.
func TestResumeBounded(t *testing.T) {
	o := &origin{data: randBytes(64<<10, 3), cut: 1000}
	c := testClient(serveOrigin(t, o), HTTPOptions{Retries: 3})
	start := time.Now()
	_, err := fetchAll(c, "objects/x", 0)
	if err == nil {
		t.Fatal("a fetch from a server that cuts every body succeeded")
	}
	// Four attempts (Retries 3), each with at most 3 resumes.
	if n := o.requests.Load(); n > 16 {
		t.Fatalf("%d requests for a fetch with 3 retries and 3 resumes each", n)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

// TestFetchRange: exactly the bytes asked for, from a server that
// honours Range, from one that ignores it, and across a cut.
func TestFetchRange(t *testing.T) {
	data := randBytes(1<<20, 5)
	for _, tc := range []struct {
		name string
		o    *origin
	}{
		{"range", &origin{}},
		{"ignores range", &origin{ignoreRng: true}},
		{"cut", &origin{cut: 100 << 10, cutOnce: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.data = data
			c := testClient(serveOrigin(t, tc.o), HTTPOptions{})
			for _, r := range [][2]int64{{200 << 10, 700 << 10}, {1<<20 - 1, 1 << 20}, {0, 10}} {
				var got []byte
				err := c.fetchRange(context.Background(), "objects/x", r[0], r[1], func(rd io.Reader) error {
					b, err := io.ReadAll(rd)
					got = b
					return err
				})
				if err != nil || !bytes.Equal(got, data[r[0]:r[1]]) {
					t.Fatalf("range %v: %d bytes, %v", r, len(got), err)
				}
			}
		})
	}
	c := testClient(serveOrigin(t, &origin{data: data}), HTTPOptions{})
	if err := c.fetchRange(context.Background(), "objects/x", 10, 10, func(io.Reader) error { return nil }); err == nil {
		t.Fatal("an empty range was accepted")
	}
	var short *origin = &origin{data: data[:1000]}
	c = testClient(serveOrigin(t, short), HTTPOptions{Retries: -1})
	err := c.fetchRange(context.Background(), "objects/x", 500, 2000, func(r io.Reader) error { _, err := io.ReadAll(r); return err })
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "Content-Range") {
		t.Fatalf("a range past the end of the file: %v", err)
	}
}
