package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// Record makes a workload from a real run: it mounts cfg's ref from a
// fresh cache (unshaped, prefetch none), runs argv with "{root}" in its
// arguments replaced by the ref's directory in the mount (and
// LAZYTREE_ROOT set to it), and turns the access profile the mount
// recorded (each file the command opened, in order) into read operations.
// Think time is not kept: the profile records order, not time. Only
// cfg's Binary, Repo, Ref, keys, Work and Timeout are used.
func Record(ctx context.Context, cfg Config, name string, argv []string) (Workload, error) {
	if len(argv) == 0 {
		return Workload{}, errors.New("bench record: no command")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	work := cfg.Work
	if work == "" {
		d, err := os.MkdirTemp("", "lazytree-record-")
		if err != nil {
			return Workload{}, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	r := &runner{cfg: cfg, work: work}
	srv, err := newServer(cfg.Repo, fetchtest.Options{})
	if err != nil {
		return Workload{}, err
	}
	defer srv.Close()
	r.srv = srv
	if isURL(cfg.Repo) {
		if cfg.Ref == "" {
			return Workload{}, errors.New("bench record: --ref is needed with a repository URL")
		}
	} else if _, err := r.survey(); err != nil {
		return Workload{}, err
	}
	home, mp := filepath.Join(work, "record-home"), filepath.Join(work, "record-mnt")
	if err := r.addRemote(ctx, home); err != nil {
		return Workload{}, err
	}
	d, err := r.startDaemon(ctx, home, mp, fetch.PrefetchNone)
	if err != nil {
		return Workload{}, err
	}
	root := filepath.Join(mp, remoteName, r.cfg.Ref)
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = strings.ReplaceAll(a, "{root}", root)
	}
	env := append(os.Environ(), "LAZYTREE_ROOT="+root)
	_, err = runCommand(ctx, args, env, time.Now())
	d.stop()
	if err != nil {
		return Workload{}, fmt.Errorf("bench record: %w", err)
	}
	prof := filepath.Join(work, "recorded.profile")
	if err := r.lt(ctx, home, "profile", "export", remoteName+":"+r.cfg.Ref, "-o", prof); err != nil {
		return Workload{}, fmt.Errorf("bench record: %w", err)
	}
	f, err := os.Open(prof)
	if err != nil {
		return Workload{}, err
	}
	defer f.Close()
	p, err := treeindex.DecodeProfile(f)
	if err != nil {
		return Workload{}, fmt.Errorf("bench record: %w", err)
	}
	w := Workload{Name: name}
	for _, path := range p.Paths {
		w.Ops = append(w.Ops, Op{Op: "read", Path: path})
	}
	if len(w.Ops) == 0 {
		return Workload{}, errors.New("bench record: the command opened no file of the ref")
	}
	return w, w.validate()
}
