package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/objcache"
)

// session is what a command that touches remotes and the cache needs: the
// config, the store and a fetcher over them.
type session struct {
	home    string
	cfg     *fetch.Config
	store   *objcache.Store
	fetcher *fetch.Fetcher
}

// openSession opens the cache of the lazytree home (Badger allows one
// process; a running daemon is reached through its socket instead).
func openSession(ctx context.Context, g *globalOptions) (*session, error) {
	return openSessionWith(ctx, g, fetch.Options{})
}

// openSessionWith is openSession with fetcher options.
func openSessionWith(ctx context.Context, g *globalOptions, opts fetch.Options) (*session, error) {
	home := g.HomeDir()
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	store, err := objcache.Open(ctx, home, objcache.Options{})
	if err != nil {
		return nil, fmt.Errorf("open cache in %s: %w", home, err)
	}
	return &session{home: home, cfg: cfg, store: store, fetcher: fetch.New(store, cfg, opts)}, nil
}

func (s *session) Close() error { return s.store.Close() }

// isTerminal reports whether w is a terminal (for progress bars).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// explainForeignHome turns a permission error of command (its path, as
// "cache gc") on a lazytree home the caller may not use, such as root's
// /var/lib/lazytree seen by another user, into one that says so: the raw
// cause ("open .../config: permission denied") names an internal file and
// not the rule, which is that only root and the home's owner may use its
// daemon, remotes, pins and cache. Other errors pass unchanged.
func explainForeignHome(err error, home, command string) error {
	if !errors.Is(err, fs.ErrPermission) || os.Geteuid() == 0 {
		return err
	}
	st, serr := os.Stat(home)
	if serr != nil || unix.Access(home, unix.R_OK|unix.W_OK|unix.X_OK) == nil {
		return err // no such home, or ours: the cause is elsewhere
	}
	uid := st.Sys().(*syscall.Stat_t).Uid
	owner := fmt.Sprintf("uid %d", uid)
	if u, lerr := user.LookupId(strconv.FormatUint(uint64(uid), 10)); lerr == nil {
		owner = fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Errorf("%s: refused: the lazytree home %s belongs to %s; only root and its owner may use its daemon, remotes, pins and cache (its mount is readable by every user)", command, home, owner)
}
