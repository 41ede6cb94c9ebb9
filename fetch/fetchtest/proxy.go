package fetchtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// NewProxy serves, until Close, what upstream serves: a base URL (http or
// https) whose path prefix is kept, so that with upstream
// "https://example.org/repo" a request for /summary is forwarded to
// https://example.org/repo/summary. The network, faults, log and totals
// are those of New; see doc.go for what proxy mode forwards and which
// faults apply.
func NewProxy(upstream string, opts Options) (*Server, error) {
	cfg, err := compile(opts)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("fetchtest: proxy %s: %w", upstream, err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("fetchtest: proxy %s: not an http or https base URL", upstream)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The body is passed on byte for byte, with the upstream's own
	// Content-Length, so the transport must not ask for gzip on its own.
	tr.DisableCompression = true
	// Enough idle connections for a client's parallel fetches not to
	// reconnect upstream on every request.
	tr.MaxIdleConnsPerHost = 64
	// Redirects are followed (as http.Client does, ten at most): the
	// client is shown where the content is, not how it got there.
	up := &upstreamSource{base: base, tr: tr, client: &http.Client{Transport: tr}}
	s, err := start(up, cfg)
	if err != nil {
		return nil, fmt.Errorf("fetchtest: proxy %s: %w", upstream, err)
	}
	return s, nil
}

// upstreamSource forwards requests to an upstream HTTP server.
type upstreamSource struct {
	base   *url.URL
	tr     *http.Transport
	client *http.Client
}

var _ source = (*upstreamSource)(nil)

// Headers forwarded each way; anything else is dropped, so that the
// response is what the emulated network made of the upstream's, not
// what the upstream's framing or connection handling was.
var (
	forwardRequest = []string{"Range", "If-None-Match", "If-Range"}
	// X-Lazytree-Recreated (fetch/serve's RecreatedHeader) marks a cache
	// node's re-encoded objects, and proxies in front of a node pass it
	// on as they pass on any header.
	forwardResponse = []string{"Content-Type", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified", "Cache-Control", "X-Lazytree-Recreated"}
)

// errHeaderTimeout cancels an upstream request whose headers are late.
var errHeaderTimeout = errors.New("fetchtest: upstream response headers timed out")

func (u *upstreamSource) open(x *exchange, p string) *content {
	target := *u.base
	target.Path = u.base.Path + p
	target.RawQuery = x.r.URL.RawQuery

	// The upstream request ends with the client's, with Close, or when
	// its headers are late. The goroutine ends when cancel is called:
	// on release, or below when there is no response to release.
	ctx, cancel := context.WithCancelCause(x.r.Context())
	go func() {
		select {
		case <-x.s.done:
			cancel(errConnClosed)
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, x.r.Method, target.String(), nil)
	if err != nil {
		cancel(nil)
		return u.failed(x, http.StatusBadGateway, err)
	}
	for _, k := range forwardRequest {
		if v := x.r.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	late := time.AfterFunc(x.cfg.upstreamTimeout, func() { cancel(errHeaderTimeout) })
	resp, err := u.client.Do(req)
	if !late.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		err = errHeaderTimeout
	}
	if err != nil {
		cancel(nil)
		if errors.Is(err, errHeaderTimeout) {
			return u.failed(x, http.StatusGatewayTimeout, err)
		}
		return u.failed(x, http.StatusBadGateway, err)
	}

	h := http.Header{}
	for _, k := range forwardResponse {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	// ContentLength is the upstream's Content-Length, also for HEAD; a
	// response without one is passed on to EOF, chunked.
	n := resp.ContentLength
	if n >= 0 && bodyAllowed(resp.StatusCode) {
		h.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	if x.r.Method == http.MethodHead || !bodyAllowed(resp.StatusCode) {
		n = 0
	}
	return &content{status: resp.StatusCode, header: h, body: resp.Body, n: n, release: func() {
		resp.Body.Close()
		cancel(nil)
	}}
}

// failed answers a request that the upstream could not, and logs why:
// the status alone would not tell a refused connection from a bad name.
func (u *upstreamSource) failed(x *exchange, code int, err error) *content {
	if l := x.cfg.Logger; l != nil {
		l.Debug("fetchtest: upstream failed", "method", x.r.Method, "path", x.r.URL.Path, "status", code, "err", err)
	}
	return errorContent(code)
}

func (u *upstreamSource) close() { u.tr.CloseIdleConnections() }

// bodyAllowed reports whether a response with status code may carry a
// body (RFC 9110: not 1xx, 204 or 304).
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}
