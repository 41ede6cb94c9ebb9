package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
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
// plain line every few seconds elsewhere. While a static delta comes in
// it counts the delta's parts and bytes, then the objects of the walk.
func showProgress(w io.Writer, what string, p *fetch.Progress, done <-chan struct{}) {
	if isTerminal(w) {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		inDelta := false
		for {
			select {
			case <-done:
				bar.Finish()
				return
			case <-t.C:
				if deltaActive(p) {
					if !inDelta {
						inDelta = true
						bar.Reset()
						bar.ChangeMax64(p.DeltaBytes.Load())
					}
					bar.ChangeMax64(p.DeltaBytes.Load()) // fallbacks may drop out
					bar.Describe(deltaLine(what, p, false))
					bar.Set64(p.DeltaBytesDone.Load())
					continue
				}
				if inDelta {
					inDelta = false
					bar.Reset()
					bar.ChangeMax64(-1)
				}
				// The counts are in the description: the bar's own count
				// would say 0/- while nothing is known yet.
				bar.Describe(progressLine(what, p))
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
			fmt.Fprintln(w, progressLine(what, p))
		}
	}
}

// deltaActive reports whether p's pull is bringing in a static delta:
// its parts, or the fallback objects it leaves to be fetched loose.
func deltaActive(p *fetch.Progress) bool {
	n := p.DeltaParts.Load() + p.DeltaLoose.Load()
	return n > 0 && p.DeltaPartsDone.Load()+p.DeltaLooseDone.Load() < n && p.ObjectsDone.Load() == 0
}

// deltaLine says how far a delta is: parts, fallbacks, bytes (bytes
// only with withBytes: a bar shows them itself).
func deltaLine(what string, p *fetch.Progress, withBytes bool) string {
	line := fmt.Sprintf("%s: delta %d/%d parts", what, p.DeltaPartsDone.Load(), p.DeltaParts.Load())
	if n := p.DeltaLoose.Load(); n > 0 {
		line += fmt.Sprintf(" and %d/%d large files", p.DeltaLooseDone.Load(), n)
	}
	if withBytes {
		line += fmt.Sprintf(", %s of %s", formatBytes(p.DeltaBytesDone.Load()), formatBytes(p.DeltaBytes.Load()))
	}
	return line
}

// progressLine is the plain progress line of p.
func progressLine(what string, p *fetch.Progress) string {
	if deltaActive(p) {
		return deltaLine(what, p, true)
	}
	if p.ObjectsKnown.Load() == 0 && p.DeltaParts.Load()+p.DeltaLoose.Load() == 0 {
		// Nothing to count yet: the summary, the commit, a delta's
		// superblock (or retries of them) are on their way.
		return what + ": finding the commit"
	}
	known := fmt.Sprint(p.ObjectsKnown.Load())
	if !p.MetaDone.Load() {
		known += "+" // still walking
	}
	return fmt.Sprintf("%s: %d/%s objects, %s fetched", what, p.ObjectsDone.Load(), known, formatBytes(p.BytesFetched.Load()))
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

// refVerb is pull, pin or unpin: a REMOTE:REF verb that the daemon runs
// when one serves the cache (it owns it), and this process runs on a
// session of its own otherwise.
type refVerb struct {
	op, short string
	// run does the work on a local session; p is nil for verbs without
	// progress.
	run func(ctx context.Context, f *fetch.Fetcher, remote, ref string, p *fetch.Progress) (*fetch.PullResult, error)
	// print shows the result; nil prints nothing.
	print    func(w io.Writer, remote, ref string, res *fetch.PullResult)
	progress bool
}

func newRefCmd(g *globalOptions, v refVerb) *cobra.Command {
	var concurrency int
	var noDeltas bool
	c := &cobra.Command{
		Use:   v.op + " REMOTE:REF",
		Short: v.short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, ref, err := splitRefspec(args[0])
			if err != nil {
				return err
			}
			var opts fetch.Options
			if v.progress {
				if concurrency < 0 || concurrency > 1024 {
					return usagef("--concurrency %d: want 1 to 1024", concurrency)
				}
				opts.HTTP.Concurrency, opts.NoDeltas = concurrency, noDeltas
			}
			tuned := opts.HTTP.Concurrency != 0 || opts.NoDeltas
			if !tuned {
				if handled, err := callDaemon(cmd.Context(), g.HomeDir(), v.op, refArgs{remote, ref}, cmd.OutOrStdout()); handled {
					return err
				}
			} else if daemonRunning(g.HomeDir()) {
				return usagef("%s --concurrency/--disable-static-deltas: a running daemon owns the cache and uses its own settings; stop it (lazytree umount) or drop the flags", v.op)
			}
			if v.progress {
				tightGC()
			}
			s, err := openSessionWith(cmd.Context(), g, opts)
			if err != nil {
				return err
			}
			defer s.Close()
			var res *fetch.PullResult
			if v.progress {
				res, err = runWithProgress(cmd.Context(), cmd.ErrOrStderr(), v.op+" "+args[0], func(p *fetch.Progress) (*fetch.PullResult, error) {
					return v.run(cmd.Context(), s.fetcher, remote, ref, p)
				})
			} else {
				res, err = v.run(cmd.Context(), s.fetcher, remote, ref, nil)
			}
			if err != nil {
				return err
			}
			if v.print != nil {
				v.print(cmd.OutOrStdout(), remote, ref, res)
			}
			return nil
		},
	}
	if v.progress {
		c.Flags().IntVar(&concurrency, "concurrency", 0, "requests in flight (default 64; ostree uses 8); only without a running daemon")
		c.Flags().BoolVar(&noDeltas, "disable-static-deltas", false, "fetch loose objects only, as ostree pull --disable-static-deltas; only without a running daemon")
	}
	return c
}

// tightGC makes the collector run at 10% heap growth rather than 100%
// (unless GOGC says otherwise): a pull's large buffers live long (an xz
// dictionary of 32 MiB while delta parts decode, Badger's memtable)
// and would let as much garbage again pile up before a collection. The
// heap is mostly byte slices without pointers, so the extra collections
// cost little: a 157 MB runtime's pull peaked at about 100 MB resident
// instead of 200, in the same time (with two decoders, before the
// memtable shrank).
func tightGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(10)
	}
}

// refVerbs are pull, pin and unpin, for the commands and for the
// daemon's handlers alike.
var refVerbs = []refVerb{
	{op: "pull", short: "Fetch a ref completely into the cache", progress: true, print: printPull,
		run: func(ctx context.Context, f *fetch.Fetcher, remote, ref string, p *fetch.Progress) (*fetch.PullResult, error) {
			return f.Pull(ctx, remote, ref, p)
		}},
	{op: "pin", short: "Pull a ref and keep it in the cache (never evicted)", progress: true, print: printPin,
		run: func(ctx context.Context, f *fetch.Fetcher, remote, ref string, p *fetch.Progress) (*fetch.PullResult, error) {
			return f.Pin(ctx, remote, ref, p)
		}},
	{op: "unpin", short: "Release a pin; its objects become evictable",
		run: func(ctx context.Context, f *fetch.Fetcher, remote, ref string, _ *fetch.Progress) (*fetch.PullResult, error) {
			return nil, f.Unpin(ctx, remote, ref)
		}},
}

// refCommands are the cobra commands of refVerbs.
func refCommands(g *globalOptions) []*cobra.Command {
	out := make([]*cobra.Command, len(refVerbs))
	for i, v := range refVerbs {
		out[i] = newRefCmd(g, v)
	}
	return out
}

// handler is v as a daemon operation: the same work on the daemon's
// fetcher, without progress, printed to the client.
func (v refVerb) handler(f *fetch.Fetcher) controlHandler {
	return func(ctx context.Context, args json.RawMessage, w io.Writer) error {
		var a refArgs
		if err := json.Unmarshal(args, &a); err != nil || a.Remote == "" || a.Ref == "" {
			return usagef("%s: want a remote and a ref", v.op)
		}
		res, err := v.run(ctx, f, a.Remote, a.Ref, nil)
		if err != nil {
			return err
		}
		if v.print != nil {
			v.print(w, a.Remote, a.Ref, res)
		}
		return nil
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
