package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configure a mount. The zero value is a good default.
type Options struct {
	// RequestTimeout bounds the Source calls made for one FUSE request,
	// together; past it the request fails with EIO (default 30 s).
	RequestTimeout time.Duration
	// TreeTimeout is how long the kernel may cache entries, attributes and
	// negative lookups inside a commit, which never change (default 24 h).
	TreeTimeout time.Duration
	// RefTimeout is how long the kernel may cache the root, remote and ref
	// directories, so that a moved ref shows within it even without
	// Refresh (default 1 s).
	RefTimeout time.Duration
	// RefreshInterval, when positive, makes the mount call Refresh on
	// that period until Unmount.
	RefreshInterval time.Duration
	// NoPassthrough turns FUSE passthrough off: reads then go through the
	// daemon (ReadAt on the Source's File).
	NoPassthrough bool
	// PassthroughMin is the size from which files are passed through
	// (default DefaultPassthroughMin; negative: every file). Smaller
	// files are read through the daemon once and then from the mount's
	// page cache (FOPEN_KEEP_CACHE): registering a backing file costs the
	// daemon two ioctls and the kernel a backing file per open, more than
	// a small warm file's reads, which the page cache serves either way.
	PassthroughMin int64
	// Private leaves out allow_other: only the mounting user sees the tree.
	Private bool
	// MaxErrors is how many recent errors status.json keeps (default 32).
	MaxErrors int
	// Logger receives diagnostics (default: discard).
	Logger *slog.Logger
	// Debug logs every FUSE request and reply to Logger (very verbose).
	Debug bool
}

func (o Options) withDefaults() Options {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.TreeTimeout <= 0 {
		o.TreeTimeout = 24 * time.Hour
	}
	if o.RefTimeout <= 0 {
		o.RefTimeout = time.Second
	}
	switch {
	case o.PassthroughMin == 0:
		o.PassthroughMin = DefaultPassthroughMin
	case o.PassthroughMin < 0:
		o.PassthroughMin = 0
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 32
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// DefaultPassthroughMin is the default Options.PassthroughMin: 128 KiB,
// what one FUSE READ request covers, so a file below it costs at most one
// read through the daemon when it is not in the page cache.
const DefaultPassthroughMin = 128 << 10

// Server is one mounted lazytree file system.
type Server struct {
	fsys       *fsys
	srv        *fuse.Server
	mountpoint string

	stop     chan struct{}
	stopped  sync.WaitGroup
	unmount  sync.Once
	unmntErr error
}

// Mount mounts src at mountpoint (an existing directory) and serves it
// until Unmount. It mounts directly with mount(2) (no fusermount needed
// as root), read-only, nosuid, nodev, with default_permissions and, unless
// opts.Private, allow_other.
func Mount(mountpoint string, src Source, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	f := newFS(src, opts, abs)
	fo := f.fuseOptions()
	rawFS := fs.NewNodeFS(f.root, fo)
	srv, err := fuse.NewServer(rawFS, abs, &fo.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	// go-fuse leaves the /dev/fuse descriptor of a direct mount
	// inheritable: every program the daemon starts would hold the
	// connection open (and could answer FUSE requests).
	closeOnExecFUSE()
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		// The serve loop ends by itself when the mount did not happen.
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	f.passthroughKernel.Store(srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0)
	s := &Server{fsys: f, srv: srv, mountpoint: abs, stop: make(chan struct{})}
	if opts.RefreshInterval > 0 {
		s.stopped.Add(1)
		go s.refreshLoop(opts.RefreshInterval)
	}
	opts.Logger.Debug("mounted", "mountpoint", abs, "passthrough_kernel", f.passthroughKernel.Load())
	return s, nil
}

// fuseOptions are the go-fuse options for the mount.
func (f *fsys) fuseOptions() *fs.Options {
	tree := f.opts.TreeTimeout
	fo := &fs.Options{
		// Per-node timeouts are set in every reply; these are the
		// fallbacks, and NegativeTimeout is what immutable trees use
		// for names that do not exist (ref-level lookups opt out).
		EntryTimeout:    &tree,
		AttrTimeout:     &tree,
		NegativeTimeout: &tree,
		// A mode of 0 is a real mode in a commit, not "unset".
		NullPermissions: true,
		Logger:          slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
	}
	fo.MountOptions = fuse.MountOptions{
		AllowOther:       !f.opts.Private,
		FsName:           "lazytree",
		Name:             "lazytree",
		Options:          []string{"ro", "nosuid", "nodev", "default_permissions"},
		DirectMount:      true,
		DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		Debug:            f.opts.Debug,
		Logger:           slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
	}
	return fo
}

// Mountpoint returns the absolute mount point.
func (s *Server) Mountpoint() string { return s.mountpoint }

// PassthroughKernel reports whether the kernel offered FUSE passthrough.
func (s *Server) PassthroughKernel() bool { return s.fsys.passthroughKernel.Load() }

// Status returns what .lazytree/status.json shows.
func (s *Server) Status() Status { return s.fsys.status() }

// Refresh re-reads every remote's refs and invalidates the kernel's
// entries for refs that moved, appeared or went away, and for remotes
// that were removed: new lookups then see the new commit, while open
// files and working directories keep the tree they had.
func (s *Server) Refresh(ctx context.Context) error { return s.fsys.refresh(ctx) }

func (s *Server) refreshLoop(every time.Duration) {
	defer s.stopped.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.fsys.opts.RequestTimeout)
			if err := s.fsys.refresh(ctx); err != nil {
				s.fsys.log.Warn("refresh refs", "err", err)
			}
			cancel()
		}
	}
}

// Unmount unmounts the file system and waits for the serve loop to end.
// When the mount is busy it retries for a while and then detaches it
// (MNT_DETACH), so that Unmount always returns with nothing left mounted
// at the mount point. It is idempotent.
func (s *Server) Unmount() error {
	s.unmount.Do(func() {
		close(s.stop)
		s.stopped.Wait()
		err := s.srv.Unmount()
		if err != nil {
			// Busy: detach now; the kernel finishes when the last
			// user lets go, and the serve loop ends then.
			if derr := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH); derr != nil && !errors.Is(derr, syscall.EINVAL) {
				s.unmntErr = fmt.Errorf("unmount %s: %w (detach: %v)", s.mountpoint, err, derr)
				return
			}
			s.fsys.log.Warn("mount was busy; detached", "mountpoint", s.mountpoint, "err", err)
		}
	})
	return s.unmntErr
}

// Wait blocks until the file system is unmounted (by Unmount or from
// outside, e.g. umount(8)).
func (s *Server) Wait() { s.srv.Wait() }

// closeOnExecFUSE marks every open /dev/fuse descriptor of the process
// close-on-exec. No program the daemon starts may inherit a FUSE
// connection. (A fork in another goroutine between go-fuse's open and this
// call could still inherit it; the daemon mounts before it starts
// anything.)
func closeOnExecFUSE() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

// Unmount unmounts whatever is mounted at mountpoint, detaching it if it
// is busy. It is for cleaning up after a daemon that died (the kernel then
// answers ENOTCONN at the mount point) and for tests.
func Unmount(mountpoint string) error {
	err := syscall.Unmount(mountpoint, 0)
	if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if derr := syscall.Unmount(mountpoint, syscall.MNT_DETACH); derr != nil && !errors.Is(derr, syscall.EINVAL) {
		return fmt.Errorf("unmount %s: %w", mountpoint, derr)
	}
	return nil
}

// Mounted reports whether path is a mount point of this process's mount
// namespace (listed in /proc/self/mountinfo).
func Mounted(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == abs {
			return true
		}
	}
	return false
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
