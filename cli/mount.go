package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/objcache"
)

type mountOptions struct {
	Foreground bool
	CacheSize  string
	Prefetch   string
	Refresh    bool
	Timeout    time.Duration
	// Concurrency bounds requests in flight per remote (0: fetch's
	// default).
	Concurrency int
	// LogLevel is the daemon's log threshold (default info).
	LogLevel slog.Level
}

// defaultMountpoint is /run/lazytree for root, else $XDG_RUNTIME_DIR/lazytree.
func defaultMountpoint() string {
	if os.Geteuid() == 0 {
		return "/run/lazytree"
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "lazytree")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("lazytree-%d", os.Getuid()))
}

func newMountCmd(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	c := &cobra.Command{
		Use:   "mount [MOUNTPOINT]",
		Short: "Mount every ref of every remote, fetched on demand",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp := defaultMountpoint()
			if len(args) == 1 {
				abs, err := filepath.Abs(args[0])
				if err != nil {
					return err
				}
				mp = abs
			}
			return runMount(cmd.Context(), g, mp, o, cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&o.Foreground, "foreground", false, "serve in this process instead of a background daemon")
	c.Flags().StringVar(&o.CacheSize, "cache-size", "", "cache quota, e.g. 10G (default from config, else 10 GiB)")
	c.Flags().StringVar(&o.Prefetch, "prefetch", fetch.PrefetchNone, "background fetching: "+strings.Join(fetch.PrefetchModes, ", ")+" (a remote's prefetch= config key overrides it)")
	c.Flags().BoolVar(&o.Refresh, "refresh", false, "make the running daemon refresh refs from the summaries now")
	c.Flags().DurationVar(&o.Timeout, "timeout", 30*time.Second, "deadline of a fetch under a file system request")
	c.Flags().IntVar(&o.Concurrency, "concurrency", 0, "requests in flight per remote (default 64; ostree uses 8)")
	return c
}

// runMount is `mount`: a daemon in the background (or this process with
// --foreground), or a refresh of the running one.
func runMount(ctx context.Context, g *globalOptions, mp string, o *mountOptions, w io.Writer) error {
	if !fetch.ValidPrefetch(o.Prefetch) {
		return usagef("--prefetch %q: want one of %s", o.Prefetch, strings.Join(fetch.PrefetchModes, ", "))
	}
	if o.Concurrency != 0 && o.Concurrency < 4 {
		return usagef("--concurrency %d: want at least 4 (a quarter is kept for on-demand reads)", o.Concurrency)
	}
	if o.Refresh {
		handled, err := callDaemon(ctx, g.HomeDir(), "refresh", nil, w)
		if !handled {
			return errors.New("mount --refresh: no daemon is running")
		}
		return err
	}
	if !o.Foreground {
		return startDaemon(ctx, g, mp, o, w)
	}
	return runDaemon(ctx, g, mp, o, func(s *fusefs.Server) {
		fmt.Fprintf(w, "mounted %s (passthrough: %v)\n", s.Mountpoint(), s.PassthroughKernel())
	})
}

// startDaemon runs `lazytree mount --foreground` detached, and returns once
// its control socket answers (or it died).
func startDaemon(ctx context.Context, g *globalOptions, mp string, o *mountOptions, out io.Writer) error {
	home := g.HomeDir()
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	// The daemon's command line, from the parsed options (not from
	// os.Args: this may not be the process's own command line).
	args := []string{"--home", home, "mount", "--foreground", "--prefetch", o.Prefetch, "--timeout", o.Timeout.String()}
	if o.CacheSize != "" {
		args = append(args, "--cache-size", o.CacheSize)
	}
	if o.Concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(o.Concurrency))
	}
	args = append(args, mp)
	logPath := filepath.Join(home, "daemon.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	died := make(chan error, 1)
	go func() { died <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-died:
			return fmt.Errorf("daemon exited (%v); see %s", err, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		var sb strings.Builder
		if handled, err := callDaemon(ctx, home, "status", nil, &sb); handled && err == nil {
			fmt.Fprintf(out, "daemon %d serving %s (log %s)\n", cmd.Process.Pid, mp, logPath)
			return nil
		}
	}
	cmd.Process.Kill()
	return fmt.Errorf("daemon did not start within 60 s; see %s", logPath)
}

// runDaemon owns the cache, serves the mount and the control socket until
// ctx ends, SIGTERM, or an unmount request.
func runDaemon(ctx context.Context, g *globalOptions, mp string, o *mountOptions, ready func(*fusefs.Server)) error {
	home := g.HomeDir()
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("mount point %s: %w", mp, err)
	}
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		return err
	}
	max, err := cacheQuota(cfg, o.CacheSize)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	store, err := objcache.Open(ctx, home, objcache.Options{MaxBytes: max, Logger: logger})
	if err != nil {
		return fmt.Errorf("open cache in %s: %w", home, err)
	}
	defer store.Close()
	f := fetch.New(store, cfg, fetch.Options{Logger: logger, HTTP: fetch.HTTPOptions{Concurrency: o.Concurrency},
		SpeculativeConcurrency: o.Concurrency * 3 / 4, BackgroundConcurrency: o.Concurrency / 4})
	src := fetch.NewSource(f, fetch.SourceOptions{Prefetch: o.Prefetch})
	defer src.Close()
	srv, err := fusefs.Mount(mp, mountSource{src}, fusefs.Options{RequestTimeout: o.Timeout, Logger: logger})
	if err != nil {
		return err
	}
	defer srv.Unmount()
	sess := &session{home: home, cfg: cfg, store: store, fetcher: f}
	stop := make(chan struct{}, 1)
	cs := &cacheServers{}
	defer cs.Close()
	handlers := daemonHandlers(sess, src, srv, cs, stop)
	ctl, err := listenControl(home, handlers)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if ready != nil {
		ready(srv)
	}
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	defer signalStop(sigs)
	select {
	case <-ctx.Done():
	case <-sigs:
	case <-stop:
	}
	logger.Info("unmounting", "mountpoint", mp)
	return nil
}

// daemonHandlers are the operations the control socket offers.
func daemonHandlers(s *session, src *fetch.MountSource, srv *fusefs.Server, cs *cacheServers, stop chan struct{}) map[string]controlHandler {
	handlers := map[string]controlHandler{
		"status": func(ctx context.Context, _ json.RawMessage, w io.Writer) error {
			return writeJSON(w, map[string]any{"mountpoint": srv.Mountpoint(), "pid": os.Getpid(), "source": src.Status(), "serve": cs.Status()})
		},
		"serve-cache": cs.handler(s.fetcher),
		"refresh": func(ctx context.Context, _ json.RawMessage, w io.Writer) error {
			src.Refresh(ctx)
			return srv.Refresh(ctx)
		},
		"reload": func(ctx context.Context, _ json.RawMessage, w io.Writer) error {
			cfg, err := fetch.LoadConfig(s.home)
			if err != nil {
				return err
			}
			s.cfg = cfg
			s.fetcher.SetConfig(cfg)
			return srv.Refresh(ctx)
		},
	}
	for op, h := range sessionHandlers(s, stop, "unmounting "+srv.Mountpoint()) {
		handlers[op] = h
	}
	for op, h := range profileHandlers(s, src) {
		handlers[op] = h
	}
	return handlers
}

// sessionHandlers are the operations of every process that owns the
// cache (a mount daemon, a serve --cache): cache, pull, pin, unpin, and
// "unmount", which stops the process, saying stopping.
func sessionHandlers(s *session, stop chan struct{}, stopping string) map[string]controlHandler {
	handlers := map[string]controlHandler{
		"cache": func(ctx context.Context, args json.RawMessage, w io.Writer) error {
			var a cacheArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return err
			}
			return runCacheLocal(withDaemonSession(ctx, s), s.home, a, w)
		},
		"unmount": func(ctx context.Context, _ json.RawMessage, w io.Writer) error {
			select {
			case stop <- struct{}{}:
			default:
			}
			fmt.Fprintln(w, stopping)
			return nil
		},
	}
	for _, v := range refVerbs {
		handlers[v.op] = v.handler(s.fetcher)
	}
	return handlers
}

func newUnmountCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "unmount [MOUNTPOINT]",
		Short: "Stop the daemon and unmount",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			theirs, running := daemonMountpoint(cmd.Context(), g.HomeDir())
			if len(args) == 0 {
				// This home's daemon, wherever it mounted; else a stale
				// mount at the default place.
				mp := defaultMountpoint()
				if running {
					mp = theirs
				}
				return runUnmount(cmd.Context(), g, mp, cmd.OutOrStdout())
			}
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if running && !samePath(theirs, abs) {
				if fusefs.Mounted(abs) {
					// Not this daemon's: a mount a dead daemon left.
					return unmountStale(abs, cmd.OutOrStdout())
				}
				return fmt.Errorf("unmount %s: not mounted; the daemon of %s serves %s (lazytree unmount stops it)",
					Escape(abs), Escape(g.HomeDir()), Escape(theirs))
			}
			return runUnmount(cmd.Context(), g, abs, cmd.OutOrStdout())
		},
	}
}

// samePath reports whether a and b name one directory (symlinks
// resolved where they can be).
func samePath(a, b string) bool {
	if ra, err := filepath.EvalSymlinks(a); err == nil {
		a = ra
	}
	if rb, err := filepath.EvalSymlinks(b); err == nil {
		b = rb
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// daemonMountpoint is where home's daemon serves its mount, when one
// runs and says.
func daemonMountpoint(ctx context.Context, home string) (string, bool) {
	var raw bytes.Buffer
	handled, err := callDaemon(ctx, home, "status", nil, &raw)
	if !handled || err != nil {
		return "", false
	}
	var d struct {
		Mountpoint string `json:"mountpoint"`
	}
	if json.Unmarshal(raw.Bytes(), &d) != nil || d.Mountpoint == "" {
		return "", false
	}
	return d.Mountpoint, true
}

// runUnmount is `unmount`: the daemon unmounts when one runs; a mount a
// dead daemon left behind is removed here.
func runUnmount(ctx context.Context, g *globalOptions, mp string, w io.Writer) error {
	handled, err := callDaemon(ctx, g.HomeDir(), "unmount", nil, w)
	if handled {
		if err != nil {
			return err
		}
		// Wait for the daemon to let go of the mount.
		for i := 0; i < 100; i++ {
			if !fusefs.Mounted(mp) {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("unmount %s: the daemon did not unmount within 10 s", mp)
	}
	if !fusefs.Mounted(mp) {
		return fmt.Errorf("unmount %s: not mounted and no daemon running", mp)
	}
	// A daemon that died left its mount behind.
	return unmountStale(mp, w)
}

// unmountStale removes a lazytree mount no running daemon serves.
func unmountStale(mp string, w io.Writer) error {
	if err := fusefs.Unmount(mp); err != nil {
		return err
	}
	fmt.Fprintf(w, "unmounted stale mount %s\n", Escape(mp))
	return nil
}

// cacheQuota is --cache-size, else [cache] size= in config, else 0 (the
// store's default).
func cacheQuota(cfg *fetch.Config, flag string) (int64, error) {
	v := flag
	if v == "" {
		v, _ = cfg.KeyFile().String("cache", "size")
	}
	if v == "" {
		return 0, nil
	}
	n, err := parseByteSize(v)
	if err != nil {
		return 0, usagef("cache size %q: %v", v, err)
	}
	return n, nil
}
