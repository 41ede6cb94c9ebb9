package cli

import (
	"context"
	"fmt"
	"io"
	"os"

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
