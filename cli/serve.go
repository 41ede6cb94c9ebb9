package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/serve"
	"github.com/lazytree/lazytree/ostree"
)

// serveOptions are serve's flags.
type serveOptions struct {
	Listen    string
	Cache     bool
	Upstreams []string
	AccessLog string
}

func newServeCmd(g *globalOptions) *cobra.Command {
	o := &serveOptions{}
	c := &cobra.Command{
		Use:   "serve DIR | --cache [--upstream NAME]...",
		Short: "Publish a repository, or the cache, over HTTP for ostree, flatpak and lazytree clients",
		Long: `serve DIR publishes an archive repository over HTTP/1.1 and cleartext HTTP/2,
with caching headers an HTTP cache understands: objects, deltas and tree
indexes are immutable, summary, signatures, refs and config short-lived.

serve --cache offers this machine's cache to other hosts as an archive
remote of each upstream remote (at /NAME/, and at / when there is one):
objects it has are served at once, objects it lacks are fetched from the
upstream, verified and stored first. Summaries and signatures pass
through unchanged, so clients verify the publisher's keys. When a daemon
runs (lazytree mount), it serves its cache until it stops; otherwise this
process owns the cache until interrupted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 1 {
				dir = args[0]
			}
			return runServe(cmd.Context(), g, dir, o, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "address to listen on (port 0 picks one)")
	c.Flags().BoolVar(&o.Cache, "cache", false, "serve the cache, fetching through from upstream remotes")
	c.Flags().StringArrayVar(&o.Upstreams, "upstream", nil, "remote to serve with --cache (default: every remote)")
	c.Flags().StringVar(&o.AccessLog, "access-log", "-", "append one line per request to FILE (- for stderr, empty for none)")
	return c
}

// runServe is `serve`.
func runServe(ctx context.Context, g *globalOptions, dir string, o *serveOptions, w io.Writer) error {
	switch {
	case o.Cache && dir != "":
		return usagef("serve: give a directory or --cache, not both")
	case !o.Cache && dir == "":
		return usagef("serve: give a repository directory, or --cache")
	case !o.Cache && len(o.Upstreams) > 0:
		return usagef("serve: --upstream needs --cache")
	}
	if o.Cache {
		return runServeCache(ctx, g, o, w)
	}
	d, err := serve.NewDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	logw, closeLog, err := openAccessLog(o.AccessLog)
	if err != nil {
		return err
	}
	defer closeLog()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := serve.NewServer(serve.Handler(d, serve.Options{AccessLog: logw}))
	fmt.Fprintf(w, "serving %s at http://%s/\n", dir, ln.Addr())
	return serveUntilSignal(ctx, srv, ln)
}

// serveUntilSignal serves on ln until ctx ends or SIGTERM/SIGINT, then
// gives requests in flight a few seconds.
func serveUntilSignal(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	defer signalStop(sigs)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	case <-sigs:
	}
	return shutdown(srv)
}

func shutdown(srv *http.Server) error {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return srv.Close()
	}
	return nil
}

// openAccessLog opens the access log: "-" is stderr, "" none, else a file
// appended to.
func openAccessLog(p string) (io.Writer, func() error, error) {
	switch p {
	case "":
		return nil, func() error { return nil }, nil
	case "-":
		return os.Stderr, func() error { return nil }, nil
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("access log: %w", err)
	}
	return f, f.Close, nil
}

// serveCacheArgs is the daemon operation "serve-cache".
type serveCacheArgs struct {
	Listen    string   `json:"listen"`
	Upstreams []string `json:"upstreams,omitempty"`
	AccessLog string   `json:"access_log,omitempty"`
}

// runServeCache is `serve --cache`: in the running daemon, or in this
// process with the cache opened here.
func runServeCache(ctx context.Context, g *globalOptions, o *serveOptions, w io.Writer) error {
	args := serveCacheArgs{Listen: o.Listen, Upstreams: o.Upstreams, AccessLog: o.AccessLog}
	if args.AccessLog == "-" {
		args.AccessLog = "" // the daemon's stderr is its log
	}
	if handled, err := callDaemon(ctx, g.HomeDir(), "serve-cache", args, w); handled {
		return err
	}
	s, err := openSessionWith(ctx, g, fetch.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	defer s.Close()
	logw, closeLog, err := openAccessLog(o.AccessLog)
	if err != nil {
		return err
	}
	defer closeLog()
	cs := &cacheServers{}
	defer cs.Close()
	stop := make(chan struct{}, 1)
	handlers := map[string]controlHandler{
		"status": func(ctx context.Context, _ json.RawMessage, w io.Writer) error {
			return writeJSON(w, map[string]any{"pid": os.Getpid(), "serve": cs.Status()})
		},
		"serve-cache": cs.handler(s.fetcher),
	}
	for op, h := range sessionHandlers(s, stop, "stopping the cache server") {
		handlers[op] = h
	}
	ctl, err := listenControl(s.home, handlers)
	if err != nil {
		return err
	}
	defer ctl.Close()
	msg, err := cs.start(s.fetcher, args.Listen, args.Upstreams, logw)
	if err != nil {
		return err
	}
	fmt.Fprint(w, msg)
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	defer signalStop(sigs)
	select {
	case <-ctx.Done():
	case <-sigs:
	case <-stop:
	}
	return nil
}

// cacheServers are the serve --cache listeners of one process.
type cacheServers struct {
	mu      sync.Mutex
	running []*cacheServer
}

type cacheServer struct {
	addr     string
	srv      *http.Server
	backends []*fetch.CacheBackend
}

// handler is the daemon operation "serve-cache".
func (cs *cacheServers) handler(f *fetch.Fetcher) controlHandler {
	return func(ctx context.Context, raw json.RawMessage, w io.Writer) error {
		var a serveCacheArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		var logw io.Writer = os.Stderr
		if a.AccessLog != "" {
			f, err := os.OpenFile(a.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
			if err != nil {
				return fmt.Errorf("access log: %w", err)
			}
			// Kept open for the server's life; closed with the daemon.
			logw = f
		}
		msg, err := cs.start(f, a.Listen, a.Upstreams, logw)
		if err != nil {
			return err
		}
		io.WriteString(w, msg)
		return nil
	}
}

// start listens on addr and serves the cache as each upstream (every
// remote when none is named), and returns what to tell the user.
func (cs *cacheServers) start(f *fetch.Fetcher, addr string, upstreams []string, logw io.Writer) (string, error) {
	if len(upstreams) == 0 {
		upstreams = f.Remotes()
	}
	if len(upstreams) == 0 {
		return "", errors.New("serve --cache: no remote configured (lazytree remote add NAME URL)")
	}
	slices.Sort(upstreams)
	upstreams = slices.Compact(upstreams)
	mux := http.NewServeMux()
	var backends []*fetch.CacheBackend
	for _, name := range upstreams {
		if err := ostree.ValidateRemoteName(name); err != nil {
			return "", usagef("serve --cache: --upstream %q: %v", name, err)
		}
		b, err := f.CacheBackend(name)
		if err != nil {
			return "", fmt.Errorf("serve --cache: %w", err)
		}
		backends = append(backends, b)
		h := serve.Handler(b, serve.Options{AccessLog: logw})
		mux.Handle("/"+name+"/", http.StripPrefix("/"+name, h))
		if len(upstreams) == 1 {
			mux.Handle("/", h)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("serve --cache: %w", err)
	}
	srv := serve.NewServer(mux)
	cs.mu.Lock()
	cs.running = append(cs.running, &cacheServer{addr: ln.Addr().String(), srv: srv, backends: backends})
	cs.mu.Unlock()
	go srv.Serve(ln)
	var sb strings.Builder
	for _, name := range upstreams {
		fmt.Fprintf(&sb, "serving the cache of %s at http://%s/%s/\n", name, ln.Addr(), name)
	}
	if len(upstreams) == 1 {
		fmt.Fprintf(&sb, "serving the cache of %s at http://%s/\n", upstreams[0], ln.Addr())
	}
	return sb.String(), nil
}

// Status is what status.json shows of the cache servers.
func (cs *cacheServers) Status() []map[string]any {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := []map[string]any{}
	for _, s := range cs.running {
		var st []fetch.ServeStats
		for _, b := range s.backends {
			st = append(st, b.Stats())
		}
		out = append(out, map[string]any{"listen": s.addr, "upstreams": st})
	}
	return out
}

// Close stops every server.
func (cs *cacheServers) Close() {
	cs.mu.Lock()
	running := cs.running
	cs.running = nil
	cs.mu.Unlock()
	for _, s := range running {
		shutdown(s.srv)
	}
}
