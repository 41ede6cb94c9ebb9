package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/serve"
)

func TestServeName(t *testing.T) {
	const hex = "0b2a616e41511a39d534510658f4686d82e2ccd37e2af24c727df431562c424a"
	long := "/objects/" + strings.Repeat("a", serve.MaxNameLength-len("/objects/"))
	valid := []struct {
		path  string
		class serve.Class
	}{
		{"/config", serve.ShortLived},
		{"/summary", serve.ShortLived},
		{"/summary.sig", serve.ShortLived},
		{"/summary.idx", serve.ShortLived},
		{"/summary.idx.sig", serve.ShortLived},
		{"/refs/heads/a/b", serve.ShortLived},
		{"/delta-indexes/nc/ZaXFpJijcfPGOJL9x8Au7I6c1+5Cbyz5xgW1VEF6s.index", serve.ShortLived},
		{"/objects/ab/cd.filez", serve.Immutable},
		{"/deltas/wn/3DwI6sKf_8aitP3+XNo91Q7zhmt8FOXrmi6ZmDXEw/superblock", serve.Immutable},
		{"/summaries/x.gz", serve.Immutable},
		{"/lazytree/tree-index/" + hex, serve.Immutable},
		{"/lazytree/profile/" + hex, serve.Immutable},
		{"/refs/heads/ünïcode", serve.ShortLived},
		{long, serve.Immutable},
	}
	for _, tc := range valid {
		name, class, err := serve.Name(tc.path)
		if err != nil {
			t.Errorf("Name(%q): %v, want valid", tc.path, err)
			continue
		}
		if want := tc.path[1:]; name != want {
			t.Errorf("Name(%q) = %q, want %q", tc.path, name, want)
		}
		if class != tc.class {
			t.Errorf("Name(%q) class = %v, want %v", tc.path, class, tc.class)
		}
	}
	invalid := []string{
		"",
		"/",
		"config",
		"//x",
		"/objects/../config",
		"/./config",
		"/objects//x",
		"/objects/ab/",
		"/objects/ab/.",
		"/objects",
		"/refs",
		"/config/x",
		"/summary.sig/x",
		`/objects/ab\cd.filez`,
		"/refs/heads/a\nb",
		"/refs/heads/a\rb",
		"/refs/heads/a\x00b",
		"/refs/heads/a\x7fb",
		"/refs/heads/a\tb",
		"/etc/passwd",
		"/lazytree/other",
		"/lazytree/tree-index",
		"/lazytree/tree-index/",
		"/Config",
		"/objects.filez",
		long + "a",
		"/objects/" + strings.Repeat("a", 1<<16),
	}
	for _, p := range invalid {
		if name, class, err := serve.Name(p); err == nil {
			t.Errorf("Name(%q) = %q, %v, want an error", p, name, class)
		}
	}
}

// syncBuffer is an access log the server's connections share with the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSuffix(s.b.String(), "\n"), "\n")
}

const (
	objectBody     = "0123456789abcdef"
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheShort     = "public, max-age=60, must-revalidate"
)

// newRepo writes a small repository directory with the file types Dir
// must tell apart and returns it.
func newRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	files := map[string]string{
		"config":                "[core]\nrepo_version=1\nmode=archive-z2\n",
		"summary":               "summary bytes",
		"refs/heads/main":       strings.Repeat("a", 64) + "\n",
		"objects/ab/cd.filez":   objectBody,
		"objects/ab/dir.filez/": "",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(outside, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"objects/ab/in.filez":       "cd.filez",
		"objects/ab/up.filez":       "../../config",
		"objects/ab/out.filez":      outside,
		"objects/ab/outrel.filez":   "../../../" + filepath.Base(filepath.Dir(outside)) + "/secret",
		"objects/ab/dangling.filez": "nowhere",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "objects", "ab", "fifo.filez"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startDir serves dir with serve.NewServer on 127.0.0.1 and returns the
// server and its access log.
func startDir(t *testing.T, dir string, o serve.Options) (*httptest.Server, *syncBuffer) {
	t.Helper()
	d, err := serve.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return start(t, d, o)
}

func start(t *testing.T, b serve.Backend, o serve.Options) (*httptest.Server, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	if o.AccessLog == nil {
		o.AccessLog = log
	}
	h := serve.Handler(b, o)
	ts := httptest.NewUnstartedServer(h)
	ts.Config = serve.NewServer(h)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, log
}

// client never waits long: a handler that blocks fails the test instead
// of hanging it.
var client = &http.Client{Timeout: 10 * time.Second}

// do sends one request and returns the response with its body read.
func do(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestServeDir(t *testing.T) {
	ts, _ := startDir(t, newRepo(t), serve.Options{})
	cases := []struct {
		path   string
		status int
		cache  string
		body   string
	}{
		{"/config", 200, cacheShort, "[core]\nrepo_version=1\nmode=archive-z2\n"},
		{"/summary", 200, cacheShort, "summary bytes"},
		{"/refs/heads/main", 200, cacheShort, strings.Repeat("a", 64) + "\n"},
		{"/objects/ab/cd.filez", 200, cacheImmutable, objectBody},
		// A symlink that stays inside is followed, also to a file
		// outside objects/.
		{"/objects/ab/in.filez", 200, cacheImmutable, objectBody},
		{"/objects/ab/up.filez", 200, cacheImmutable, "[core]\nrepo_version=1\nmode=archive-z2\n"},
		{"/objects/ab/out.filez", 404, "", ""},
		{"/objects/ab/outrel.filez", 404, "", ""},
		{"/objects/ab/dangling.filez", 404, "", ""},
		{"/objects/ab/dir.filez", 404, "", ""},
		{"/objects/ab/fifo.filez", 404, "", ""},
		{"/objects/ab/missing.filez", 404, "", ""},
		{"/objects/ab", 404, "", ""},
		{"/summary.sig", 404, "", ""},
		{"/etc/passwd", 404, "", ""},
		{"/objects/../config", 404, "", ""},
		{"/objects/%2e%2e/config", 404, "", ""},
		{"/objects/ab%2F..%2F..%2Fconfig", 404, "", ""},
		{"/objects/ab/cd.filez/x", 404, "", ""},
	}
	for _, tc := range cases {
		resp, body := do(t, "GET", ts.URL+tc.path, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s: status %d, want %d (body %q)", tc.path, resp.StatusCode, tc.status, body)
			continue
		}
		if got := resp.Header.Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		if tc.status != 200 {
			if strings.Contains(body, "outside") {
				t.Errorf("GET %s: body %q shows the file outside", tc.path, body)
			}
			continue
		}
		if body != tc.body {
			t.Errorf("GET %s: body %q, want %q", tc.path, body, tc.body)
		}
		if got := resp.Header.Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("GET %s: Content-Type %q", tc.path, got)
		}
		if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(tc.body)) {
			t.Errorf("GET %s: Content-Length %q, want %d", tc.path, got, len(tc.body))
		}
	}
}

func TestServeETag(t *testing.T) {
	dir := newRepo(t)
	ts, _ := startDir(t, dir, serve.Options{})
	url := ts.URL + "/objects/ab/cd.filez"
	resp, _ := do(t, "GET", url, nil)
	tag := resp.Header.Get("ETag")
	if len(tag) < 3 || !strings.HasPrefix(tag, `"`) || !strings.HasSuffix(tag, `"`) {
		t.Fatalf("ETag %q, want a strong (quoted, not W/) tag", tag)
	}
	if resp, _ := do(t, "GET", url, nil); resp.Header.Get("ETag") != tag {
		t.Errorf("second GET: ETag %q, want %q again", resp.Header.Get("ETag"), tag)
	}
	if resp, _ := do(t, "HEAD", url, nil); resp.Header.Get("ETag") != tag {
		t.Errorf("HEAD: ETag %q, want %q", resp.Header.Get("ETag"), tag)
	}

	resp, body := do(t, "GET", url, map[string]string{"If-None-Match": tag})
	if resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("If-None-Match %s: status %d body %q, want 304 and no body", tag, resp.StatusCode, body)
	}
	if got := resp.Header.Get("ETag"); got != tag {
		t.Errorf("304: ETag %q, want %q", got, tag)
	}
	resp, body = do(t, "GET", url, map[string]string{"If-None-Match": `"other", ` + tag})
	if resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("If-None-Match list with %s: status %d body %q, want 304", tag, resp.StatusCode, body)
	}
	resp, body = do(t, "GET", url, map[string]string{"If-None-Match": `"other"`})
	if resp.StatusCode != 200 || body != objectBody {
		t.Errorf("If-None-Match other tag: status %d body %q, want 200 and the file", resp.StatusCode, body)
	}

	// A rewritten short-lived file gets a new tag.
	summary := ts.URL + "/summary"
	resp, _ = do(t, "GET", summary, nil)
	old := resp.Header.Get("ETag")
	if err := os.WriteFile(filepath.Join(dir, "summary"), []byte("a new summary"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, body = do(t, "GET", summary, map[string]string{"If-None-Match": old})
	if resp.StatusCode != 200 || body != "a new summary" || resp.Header.Get("ETag") == old {
		t.Errorf("after rewrite: status %d body %q ETag %q (old %q), want 200, the new bytes and a new tag",
			resp.StatusCode, body, resp.Header.Get("ETag"), old)
	}
}

func TestServeRange(t *testing.T) {
	ts, _ := startDir(t, newRepo(t), serve.Options{})
	url := ts.URL + "/objects/ab/cd.filez"
	resp, body := do(t, "GET", url, map[string]string{"Range": "bytes=2-5"})
	if resp.StatusCode != http.StatusPartialContent || body != objectBody[2:6] {
		t.Errorf("Range bytes=2-5: status %d body %q, want 206 %q", resp.StatusCode, body, objectBody[2:6])
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 2-5/%d", len(objectBody)); got != want {
		t.Errorf("Range bytes=2-5: Content-Range %q, want %q", got, want)
	}
	if got := resp.Header.Get("Cache-Control"); got != cacheImmutable {
		t.Errorf("206: Cache-Control %q, want %q", got, cacheImmutable)
	}
	resp, body = do(t, "GET", url, map[string]string{"Range": "bytes=-3"})
	if resp.StatusCode != http.StatusPartialContent || body != objectBody[len(objectBody)-3:] {
		t.Errorf("Range bytes=-3: status %d body %q", resp.StatusCode, body)
	}

	resp, _ = do(t, "GET", url, map[string]string{"Range": "bytes=100-200"})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("Range bytes=100-200: status %d, want 416", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes */%d", len(objectBody)); got != want {
		t.Errorf("416: Content-Range %q, want %q", got, want)
	}
	if got := resp.Header.Get("Cache-Control"); got == cacheImmutable {
		t.Errorf("416: Cache-Control %q: an error must not be cached for a year", got)
	}
}

// rawRequest writes one request on a new connection that the server
// closes after it, and returns everything the server sent.
func rawRequest(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServeNoBody checks on the wire that HEAD and 304 send headers
// only (net/http's client would hide a body there).
func TestServeNoBody(t *testing.T) {
	ts, _ := startDir(t, newRepo(t), serve.Options{})
	addr := ts.Listener.Addr().String()
	resp, _ := do(t, "GET", ts.URL+"/objects/ab/cd.filez", nil)
	tag := resp.Header.Get("ETag")
	for _, tc := range []struct{ what, req, status string }{
		{"HEAD", "HEAD /objects/ab/cd.filez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 "},
		{"304", "GET /objects/ab/cd.filez HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + tag + "\r\nConnection: close\r\n\r\n", "HTTP/1.1 304 "},
	} {
		out := rawRequest(t, addr, tc.req)
		head, body, ok := strings.Cut(out, "\r\n\r\n")
		if !ok || !strings.HasPrefix(head, tc.status) {
			t.Errorf("%s: response %q, want %q...", tc.what, out, tc.status)
			continue
		}
		if body != "" {
			t.Errorf("%s: body %q after the headers, want none", tc.what, body)
		}
		if tc.what == "HEAD" && !strings.Contains(head, "\r\nContent-Length: 16\r\n") {
			t.Errorf("HEAD: headers\n%s\nwant Content-Length: 16", head)
		}
		if !strings.Contains(head, "\r\nEtag: "+tag+"\r\n") {
			t.Errorf("%s: headers\n%s\nwant Etag: %s", tc.what, head, tag)
		}
	}
}

func TestServeMethods(t *testing.T) {
	ts, _ := startDir(t, newRepo(t), serve.Options{})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		resp, _ := do(t, m, ts.URL+"/config", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, resp.StatusCode)
		}
		if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("%s: Allow %q, want %q", m, got, "GET, HEAD")
		}
	}
	resp, body := do(t, "HEAD", ts.URL+"/config", nil)
	if resp.StatusCode != 200 || body != "" || resp.ContentLength <= 0 {
		t.Errorf("HEAD: status %d, Content-Length %d, body %q; want 200, a length and no body", resp.StatusCode, resp.ContentLength, body)
	}
}

// logLine is an access log line split into its fields.
type logLine struct {
	method, path, proto, status, bytes, rest string
}

// parseLogLine splits "TIME CLIENT METHOD "PATH" PROTO STATUS BYTES
// DURATION [range=..] [note=..]".
func parseLogLine(t *testing.T, line string) logLine {
	t.Helper()
	f := strings.SplitN(line, " ", 4)
	if len(f) != 4 {
		t.Fatalf("access log line %q: too few fields", line)
	}
	if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
		t.Errorf("access log line %q: time: %v", line, err)
	}
	if f[1] != "127.0.0.1" {
		t.Errorf("access log line %q: client %q, want 127.0.0.1", line, f[1])
	}
	q, err := strconv.QuotedPrefix(f[3])
	if err != nil {
		t.Fatalf("access log line %q: path not quoted: %v", line, err)
	}
	path, _ := strconv.Unquote(q)
	g := strings.SplitN(strings.TrimPrefix(f[3][len(q):], " "), " ", 5)
	if len(g) < 4 {
		t.Fatalf("access log line %q: too few fields after the path", line)
	}
	l := logLine{method: f[2], path: path, proto: g[0], status: g[1], bytes: g[2]}
	if len(g) == 5 {
		l.rest = g[4]
	}
	return l
}

func TestServeAccessLog(t *testing.T) {
	ts, log := startDir(t, newRepo(t), serve.Options{})
	reqs := []struct {
		method, path, rangeHdr string
		status, bytes          string
	}{
		{"GET", "/objects/ab/cd.filez", "", "200", "16"},
		{"HEAD", "/config", "", "200", "0"},
		{"GET", "/objects/ab/missing.filez", "", "404", "10"},
		{"GET", "/objects/ab/cd.filez", "bytes=2-5", "206", "4"},
		{"POST", "/config", "", "405", "19"},
		// A newline in the path (sent as %0A) stays inside its quoted
		// field.
		{"GET", "/refs/heads/x\n2000-01-01T00:00:00Z 10.0.0.1 GET \"/forged\" HTTP/1.1 200 1 1ms", "", "404", "10"},
		{"GET", "/a b", "", "404", "10"},
	}
	for _, r := range reqs {
		u := ts.URL + escapePath(r.path)
		h := map[string]string{}
		if r.rangeHdr != "" {
			h["Range"] = r.rangeHdr
		}
		do(t, r.method, u, h)
	}
	// The line is written after the response: a client can be faster.
	var lines []string
	for i := 0; i < 100; i++ {
		if lines = log.Lines(); len(lines) >= len(reqs) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(lines) != len(reqs) {
		t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), len(reqs), strings.Join(lines, "\n"))
	}
	for i, r := range reqs {
		l := parseLogLine(t, lines[i])
		if l.method != r.method || l.path != r.path || l.proto != "HTTP/1.1" || l.status != r.status || l.bytes != r.bytes {
			t.Errorf("access log line %q = %+v, want %s %q HTTP/1.1 %s %s", lines[i], l, r.method, r.path, r.status, r.bytes)
		}
		if r.rangeHdr != "" && l.rest != "range="+strconv.Quote(r.rangeHdr) {
			t.Errorf("access log line %q: want range=%q at the end", lines[i], r.rangeHdr)
		}
	}
	for _, line := range lines {
		if strings.Contains(line, "10.0.0.1") && !strings.Contains(line, `\n2000-01-01`) {
			t.Errorf("access log line %q: the newline was not escaped", line)
		}
	}
}

// escapePath percent-encodes every byte of p but a few safe ones, for a
// request URL.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if strings.IndexByte("/.-_=", c) >= 0 || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestServeH2C(t *testing.T) {
	ts, log := startDir(t, newRepo(t), serve.Options{})
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, rg := range []string{"", "bytes=2-5"} {
		req, err := http.NewRequest("GET", ts.URL+"/objects/ab/cd.filez", nil)
		if err != nil {
			t.Fatal(err)
		}
		want, status := objectBody, 200
		if rg != "" {
			req.Header.Set("Range", rg)
			want, status = objectBody[2:6], 206
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Proto != "HTTP/2.0" {
			t.Errorf("h2c: Proto %q, want HTTP/2.0", resp.Proto)
		}
		if resp.StatusCode != status || string(b) != want {
			t.Errorf("h2c Range %q: status %d body %q, want %d %q", rg, resp.StatusCode, b, status, want)
		}
		if got := resp.Header.Get("Cache-Control"); got != cacheImmutable {
			t.Errorf("h2c: Cache-Control %q", got)
		}
	}
	for i := 0; i < 100 && len(log.Lines()) < 2; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range log.Lines() {
		if l := parseLogLine(t, line); l.proto != "HTTP/2.0" {
			t.Errorf("access log line %q: protocol %q, want HTTP/2.0", line, l.proto)
		}
	}
}

// TestServeWriteTimeoutKeepAlive reuses one HTTP/1.1 connection after
// it sat idle longer than WriteTimeout: a response with no body (HEAD,
// 304) must not inherit the deadline the previous response set.
func TestServeWriteTimeoutKeepAlive(t *testing.T) {
	ts, _ := startDir(t, newRepo(t), serve.Options{WriteTimeout: 100 * time.Millisecond})
	c, err := net.DialTimeout("tcp", ts.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, method := range []string{"GET", "HEAD", "GET"} {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		if _, err := fmt.Fprintf(c, "%s /objects/ab/cd.filez HTTP/1.1\r\nHost: x\r\n\r\n", method); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(method, "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("request %d (%s) on the idle connection: %v", i+1, method, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d (%s): status %d, %v", i+1, method, resp.StatusCode, err)
		}
		if want := map[string]string{"GET": objectBody, "HEAD": ""}[method]; string(b) != want {
			t.Errorf("request %d (%s): body %q, want %q", i+1, method, b, want)
		}
	}
}

func TestServeNewDir(t *testing.T) {
	if _, err := serve.NewDir(t.TempDir()); err == nil {
		t.Error("NewDir of an empty directory succeeded, want an error (no config)")
	}
	if _, err := serve.NewDir(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("NewDir of a missing directory succeeded")
	}
	notDir := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := serve.NewDir(notDir); err == nil {
		t.Error("NewDir of a regular file succeeded")
	}
	d, err := serve.NewDir(newRepo(t))
	if err != nil {
		t.Fatalf("NewDir of a repository: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
}

// errBackend fails every Open with err.
type errBackend struct{ err error }

func (b errBackend) Open(ctx context.Context, name string) (*serve.File, error) { return nil, b.err }

func TestServeBackendErrors(t *testing.T) {
	cases := []struct {
		err    error
		status int
	}{
		{fmt.Errorf("objects/ab/cd.filez: %w", fs.ErrNotExist), 404},
		{&fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, 404},
		{fmt.Errorf("objects/ab/cd.filez: %w", fs.ErrPermission), 403},
		{fmt.Errorf("fetch objects/ab/cd.filez from r: %w: digest mismatch", serve.ErrUpstream), 502},
		{errors.New("disk on fire"), 500},
	}
	for _, tc := range cases {
		ts, log := start(t, errBackend{tc.err}, serve.Options{})
		resp, body := do(t, "GET", ts.URL+"/objects/ab/cd.filez", nil)
		if resp.StatusCode != tc.status {
			t.Errorf("Open error %q: status %d, want %d", tc.err, resp.StatusCode, tc.status)
		}
		if strings.Contains(body, "fire") || strings.Contains(body, "digest") {
			t.Errorf("Open error %q: body %q tells the client the internal error", tc.err, body)
		}
		if got := resp.Header.Get("Cache-Control"); got != "" {
			t.Errorf("Open error %q: Cache-Control %q, want none", tc.err, got)
		}
		for i := 0; i < 100 && log.Lines()[0] == ""; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if l := parseLogLine(t, log.Lines()[0]); l.status != strconv.Itoa(tc.status) {
			t.Errorf("Open error %q: logged status %s, want %d", tc.err, l.status, tc.status)
		}
	}
}
