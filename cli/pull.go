package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
)


// splitRefspec parses NAME:REF.
func splitRefspec(s string) (remote, ref string, err error) {
	remote, ref, ok := strings.Cut(s, ":")
	if !ok || remote == "" || ref == "" {
		return "", "", usagef("%q: want REMOTE:REF", s)
	}
	return remote, ref, nil
}

// showProgress reports p until done is closed: a bar on a terminal, a
// plain line every few seconds elsewhere.
func showProgress(w io.Writer, what string, p *fetch.Progress, done <-chan struct{}) {
	if isTerminal(w) {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				bar.Finish()
				return
			case <-t.C:
				if p.MetaDone.Load() {
					bar.ChangeMax64(p.ObjectsKnown.Load())
				}
				bar.Set64(p.ObjectsDone.Load())
			}
		}
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fmt.Fprintf(w, "%s: %d/%d objects, %s fetched\n", what, p.ObjectsDone.Load(), p.ObjectsKnown.Load(), formatBytes(p.BytesFetched.Load()))
		}
	}
}

func runWithProgress(ctx context.Context, w io.Writer, what string, fn func(p *fetch.Progress) (*fetch.PullResult, error)) (*fetch.PullResult, error) {
	p := &fetch.Progress{}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		showProgress(w, what, p, done)
		close(finished)
	}()
	res, err := fn(p)
	close(done)
	<-finished
	return res, err
}

func newPullCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "pull REMOTE:REF",
		Short: "Fetch a ref completely into the cache",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, ref, err := splitRefspec(args[0])
			if err != nil {
				return err
			}
			if handled, err := callDaemon(cmd.Context(), g.HomeDir(), "pull", refArgs{remote, ref}, cmd.OutOrStdout()); handled {
				return err
			}
			s, err := openSession(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := runWithProgress(cmd.Context(), cmd.ErrOrStderr(), "pull "+args[0], func(p *fetch.Progress) (*fetch.PullResult, error) {
				return s.fetcher.Pull(cmd.Context(), remote, ref, p)
			})
			if err != nil {
				return err
			}
			printPull(cmd.OutOrStdout(), remote, ref, res)
			return nil
		},
	}
}

func newPinCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "pin REMOTE:REF",
		Short: "Pull a ref and keep it in the cache (never evicted)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, ref, err := splitRefspec(args[0])
			if err != nil {
				return err
			}
			if handled, err := callDaemon(cmd.Context(), g.HomeDir(), "pin", refArgs{remote, ref}, cmd.OutOrStdout()); handled {
				return err
			}
			s, err := openSession(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := runWithProgress(cmd.Context(), cmd.ErrOrStderr(), "pin "+args[0], func(p *fetch.Progress) (*fetch.PullResult, error) {
				return s.fetcher.Pin(cmd.Context(), remote, ref, p)
			})
			if err != nil {
				return err
			}
			printPin(cmd.OutOrStdout(), remote, ref, res)
			return nil
		},
	}
}

func newUnpinCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "unpin REMOTE:REF",
		Short: "Release a pin; its objects become evictable",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, ref, err := splitRefspec(args[0])
			if err != nil {
				return err
			}
			if handled, err := callDaemon(cmd.Context(), g.HomeDir(), "unpin", refArgs{remote, ref}, cmd.OutOrStdout()); handled {
				return err
			}
			s, err := openSession(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			return s.fetcher.Unpin(cmd.Context(), remote, ref)
		},
	}
}

// refArgs are the arguments of the pull, pin and unpin daemon operations.
type refArgs struct{ Remote, Ref string }

func printPull(w io.Writer, remote, ref string, res *fetch.PullResult) {
	fmt.Fprintf(w, "%s:%s %s: %d objects, %d fetched (%s)\n", Escape(remote), Escape(ref), res.Commit, res.Objects, res.Fetched, formatBytes(res.Bytes))
}

func printPin(w io.Writer, remote, ref string, res *fetch.PullResult) {
	fmt.Fprintf(w, "pinned %s:%s at %s (%d objects)\n", Escape(remote), Escape(ref), res.Commit, res.Objects)
}
