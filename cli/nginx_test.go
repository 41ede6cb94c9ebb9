package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
)

// nginxConf is a caching reverse proxy in front of one upstream, all of
// its files under the prefix: the cache keeps what the upstream's
// Cache-Control allows (nginx's default: no proxy_cache_valid), one
// upstream request per key at a time, and finishes a fetch whose client
// went away so that the next reader finds it cached. The access log
// shows each request's cache status.
const nginxConf = `worker_processes 1;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
	log_format lt '$upstream_cache_status $status "$request_uri" $body_bytes_sent';
	access_log %[1]s/access.log lt;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	proxy_cache_path %[1]s/cache levels=1:2 keys_zone=lt:10m max_size=1g inactive=1h use_temp_path=off;
	server {
		listen %[2]s;
		location / {
			proxy_pass http://%[3]s;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache lt;
			proxy_cache_lock on;
			proxy_cache_lock_timeout 30s;
			proxy_cache_revalidate on;
			proxy_ignore_client_abort on;
			add_header X-Cache-Status $upstream_cache_status always;
		}
	}
}
`

// nginxProxy is an nginx master the test started, with its prefix.
type nginxProxy struct {
	dir, url string
	cmd      *exec.Cmd
	done     chan struct{}
}

// startNginx starts nginx in the foreground as a cache in front of
// upstream (host:port) and returns once it accepts connections; it is
// stopped by PID at cleanup.
func startNginx(t *testing.T, bin, dir, upstream string) *nginxProxy {
	t.Helper()
	for _, d := range []string{"tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// nginx wants a fixed port: take a free one and give it back.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, addr, upstream), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &nginxProxy{dir: dir, url: "http://" + addr + "/", done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	p.cmd.Stdout, p.cmd.Stderr = &out, &out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	for range 200 {
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out.String(), log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx: nothing listens on %s after 10 s", addr)
	return nil
}

// stop ends nginx gracefully (SIGQUIT to the master), then kills its
// process group after 10 s.
func (p *nginxProxy) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("nginx pid %d ignored SIGQUIT for 10 s", p.cmd.Process.Pid)
	}
}

// nginxLogLine is one line of nginxConf's access log.
type nginxLogLine struct {
	cache, status, path string
}

// accessLog reads nginx's access log.
func (p *nginxProxy) accessLog(t *testing.T) []nginxLogLine {
	t.Helper()
	var out []nginxLogLine
	readLines(t, filepath.Join(p.dir, "access.log"), func(l string) {
		f := strings.Fields(l)
		if len(f) >= 3 {
			out = append(out, nginxLogLine{cache: f[0], status: f[1], path: strings.Trim(f[2], `"`)})
		}
	})
	return out
}

func readLines(t *testing.T, path string, fn func(string)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// serveLogObjects counts the requests for /objects/ paths in a `lazytree
// serve --access-log` file (TIME CLIENT METHOD "PATH" PROTO STATUS ...).
func serveLogObjects(t *testing.T, path string) map[string]int {
	t.Helper()
	n := map[string]int{}
	readLines(t, path, func(l string) {
		i := strings.IndexByte(l, '"')
		if i < 0 {
			return
		}
		q, err := strconv.QuotedPrefix(l[i:])
		if err != nil {
			return
		}
		if p, err := strconv.Unquote(q); err == nil && strings.HasPrefix(p, "/objects/") {
			n[p]++
		}
	})
	return n
}

// readWhole starts bash from tree, then compares the whole tree with co.
func readWhole(tree, co string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, line, err := timeFirstOutput(ctx, bashArgv(filepath.Join(tree, "files"))); err != nil || line != "started" {
		return fmt.Errorf("bash: %q, %v", line, err)
	}
	return testutil.TreeDiff(tree, co, testutil.DiffOptions{MaskSpecialBits: true, IgnoreRootMode: true})
}

// TestServeNginx puts nginx, as an HTTP cache, in front of `lazytree
// serve` of the published repo (DESIGN.md, "Sharing": any HTTP cache
// works between hosts, because objects never change). Three clients, each
// its own process and cache, one after the other start bash and read the
// whole tree through nginx: every tree equals ostree's checkout, and
// after the first client the origin serves no object again (summary,
// config and refs may be revalidated): nginx answers them from its
// cache.
func TestServeNginx(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.RequireTool(t, "nginx")
	f := newShareFixture(t, fetchtest.Options{})
	co := testutil.OstreeCheckout(t, f.origin.URL(), shareRef, f.key)
	originLog := filepath.Join(f.base, "serve-access.log")
	_, line := f.start(t, " at http://", "serve", "--listen", "127.0.0.1:0", "--access-log", originLog, f.pub)
	upstream := strings.TrimSuffix(line[strings.Index(line, "http://")+len("http://"):], "/")
	px := startNginx(t, bin, filepath.Join(f.base, "nginx"), upstream)

	var first map[string]int
	var firstLines int
	for i := range 3 {
		_, tree := f.client(t, fmt.Sprintf("client%d", i), px.url)
		if err := readWhole(tree, co); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		counts := serveLogObjects(t, originLog)
		if i == 0 {
			first, firstLines = counts, len(px.accessLog(t))
			for p, n := range counts {
				if n != 1 {
					t.Errorf("origin served %s %d times to nginx, want once", p, n)
				}
			}
			if len(counts) == 0 {
				t.Fatalf("the origin's access log shows no object requests")
			}
			continue
		}
		again := 0
		for p, n := range counts {
			if n != first[p] {
				if again++; again <= 5 {
					t.Errorf("after client %d the origin served %s %d times, %d after the first client", i, p, n, first[p])
				}
			}
		}
		if again > 5 {
			t.Errorf("after client %d the origin served %d objects again in all", i, again)
		}
	}
	// What nginx answered the second and third clients: every object
	// from its cache.
	hits, misses := 0, 0
	for _, l := range px.accessLog(t)[firstLines:] {
		if !strings.HasPrefix(l.path, "/objects/") {
			continue
		}
		if l.cache == "HIT" && (l.status == "200" || l.status == "206") {
			hits++
		} else if misses++; misses <= 5 {
			t.Errorf("nginx answered %s with %s (cache %s), want a cache HIT", l.path, l.status, l.cache)
		}
	}
	if misses > 0 || hits == 0 {
		t.Errorf("nginx answered the second and third clients' object requests with %d HITs and %d others", hits, misses)
	}
	var obj string
	for p := range first {
		obj = p
		break
	}
	resp, err := http.Get(strings.TrimSuffix(px.url, "/") + obj)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Cache-Status"); resp.StatusCode != 200 || got != "HIT" {
		t.Errorf("GET %s through nginx: %s, X-Cache-Status %q, want 200 and HIT", obj, resp.Status, got)
	}
	t.Logf("origin served %d objects once each; nginx answered %d object requests of clients 2 and 3 from its cache", len(first), hits)
}
