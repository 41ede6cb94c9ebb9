package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
)

type statusOptions struct {
	JSON bool
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	c := &cobra.Command{
		Use:   "status",
		Short: "Show what the daemon is doing: mount, remotes, cache, pins, prefetch, fetches, errors",
		Long: `Show the state of this home's daemon for people: the mount, each remote
(online or offline, which mirror is in use), cache use against the quota,
pins, prefetch progress, fetches in flight, large files being served
before they are whole, and the recent errors with object and cause.
Without a running daemon it shows the cache and the pins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g.HomeDir(), o, cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return c
}

// statusJSON is what `status --json` prints.
type statusJSON struct {
	Home    string `json:"home"`
	Running bool   `json:"running"`
	// The daemon's part, when one runs.
	PID        int            `json:"pid,omitempty"`
	Mountpoint string         `json:"mountpoint,omitempty"`
	Source     *fetch.Status  `json:"source,omitempty"`
	Serve      any            `json:"serve,omitempty"`
	Cache      cacheStatsJSON `json:"cache"`
	Pins       []pinJSON      `json:"pins"`
}

func runStatus(ctx context.Context, home string, o *statusOptions, w io.Writer) error {
	st := statusJSON{Home: home, Pins: []pinJSON{}}
	var raw bytes.Buffer
	handled, err := callDaemon(ctx, home, "status", nil, &raw)
	if handled && err != nil {
		return err
	}
	if handled {
		var d struct {
			PID        int             `json:"pid"`
			Mountpoint string          `json:"mountpoint"`
			Source     *fetch.Status   `json:"source"`
			Serve      json.RawMessage `json:"serve"`
		}
		if err := json.Unmarshal(raw.Bytes(), &d); err != nil {
			return fmt.Errorf("daemon status: %w", err)
		}
		st.Running, st.PID, st.Mountpoint, st.Source = true, d.PID, d.Mountpoint, d.Source
		if len(d.Serve) > 0 && string(d.Serve) != "null" {
			st.Serve = d.Serve
		}
	}
	var cb bytes.Buffer
	if err := runCacheCmd(ctx, home, cacheArgs{Cmd: "stats", Stats: cacheStatsOptions{JSON: true}}, &cb); err != nil {
		return err
	}
	if err := json.Unmarshal(cb.Bytes(), &st.Cache); err != nil {
		return fmt.Errorf("cache stats: %w", err)
	}
	cb.Reset()
	if err := runCacheCmd(ctx, home, cacheArgs{Cmd: "pins", Pins: pinsOptions{JSON: true}}, &cb); err != nil {
		return err
	}
	if err := json.Unmarshal(cb.Bytes(), &st.Pins); err != nil {
		return fmt.Errorf("pins: %w", err)
	}
	if o.JSON {
		return writeJSON(w, st)
	}
	return printStatus(w, &st, time.Now())
}

func printStatus(w io.Writer, st *statusJSON, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if st.Running {
		prefetch := ""
		if st.Source != nil {
			prefetch = ", prefetch " + st.Source.Prefetch
		}
		fmt.Fprintf(tw, "daemon\tpid %d, mounted at %s%s\n", st.PID, Escape(st.Mountpoint), prefetch)
	} else {
		fmt.Fprintf(tw, "daemon\tnot running (start one with: lazytree mount)\n")
	}
	fmt.Fprintf(tw, "home\t%s\n", Escape(st.Home))
	c := st.Cache
	if c.Stats != nil {
		pct := 0.0
		if c.MaxBytes > 0 {
			pct = 100 * float64(c.Bytes) / float64(c.MaxBytes)
		}
		line := fmt.Sprintf("%s of %s (%.1f%%), %d objects, hit ratio %.1f%%", formatBytes(c.Bytes), formatBytes(c.MaxBytes), pct, c.Objects, 100*c.HitRatio)
		if st.Source != nil && st.Source.PartialBytes > 0 {
			line += fmt.Sprintf(", %s in partial files", formatBytes(st.Source.PartialBytes))
		}
		fmt.Fprintf(tw, "cache\t%s\n", line)
	}
	switch len(st.Pins) {
	case 0:
		fmt.Fprintf(tw, "pins\tnone\n")
	default:
		var names []string
		for _, p := range st.Pins {
			if p.Ref != "" {
				names = append(names, Escape(p.Remote+":"+p.Ref))
			} else {
				names = append(names, "commit "+shortSum(p.Commit))
			}
		}
		fmt.Fprintf(tw, "pins\t%s\n", strings.Join(names, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	src := st.Source
	if src == nil {
		return nil
	}
	if len(src.Remotes) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REMOTE\tSTATE\tSUMMARY\tURL IN USE\tREQUESTS\tRECEIVED")
		for _, r := range src.Remotes {
			state := "online"
			if r.Offline {
				state = "offline: " + EscapeLine(r.Cause)
			} else if cause, ok := src.RefErrors[r.Name]; ok {
				// Its refs could not be had the last time the mount
				// asked: not online in any sense a reader cares about.
				state = "refs unavailable: " + EscapeLine(shortCause(cause))
			}
			verified := "not yet verified"
			if !r.SummaryVerified.IsZero() {
				verified = "verified " + ago(now, r.SummaryVerified)
			}
			inUse, reqs, bytes := "-", int64(0), int64(0)
			for _, u := range r.URLs {
				reqs += u.Requests
				bytes += u.Bytes
				if u.InUse {
					inUse = EscapeLine(u.URL)
					if u.Role == fetch.RoleMirror {
						inUse += " (mirror)"
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", Escape(r.Name), state, verified, inUse, reqs, formatBytes(bytes))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "fetched\t%d objects, %s; %d cache hits, %d from tree indexes\n", src.ObjectsFetched, formatBytes(src.BytesFetched), src.CacheHits, src.IndexHits)
	fmt.Fprintf(tw, "in flight\t%s\n", inFlight(src))
	fmt.Fprintf(tw, "http\t%d requests, %d retries, %d resumed, %d failovers\n", src.HTTP.Requests, src.HTTP.Retries, src.HTTP.Resumes, src.HTTP.Failovers)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(src.Prefetches) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFETCH\tREMOTE\tCOMMIT\tSTATE\tDIRS\tFILES\tERRORS\tSECONDS")
		for _, p := range src.Prefetches {
			state := p.State
			if p.DeltaParts > 0 {
				state += fmt.Sprintf(" (delta parts %d/%d, %s)", p.DeltaPartsDone, p.DeltaParts, formatBytes(p.DeltaBytes))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.1f\n", p.Mode, Escape(p.Remote), shortSum(p.Commit), state, p.Dirs, p.Files, p.Errors, p.Seconds)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(src.PartialFiles) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVED BEFORE WHOLE\tREMOTE\tCHUNKS VERIFIED\tFETCHING\tOPEN")
		for _, p := range src.PartialFiles {
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\n", shortObject(p.Object), Escape(p.Remote), p.Have, p.Chunks, p.Fetching, p.Readers)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(src.RecentErrors) == 0 {
		fmt.Fprintln(w, "no recent errors")
		return nil
	}
	fmt.Fprintf(w, "recent errors (%d in all, the last %d):\n", src.FetchErrors, min(len(src.RecentErrors), 5))
	errs := src.RecentErrors[max(0, len(src.RecentErrors)-5):]
	for _, e := range errs {
		fmt.Fprintf(w, "  %s  %s  %s: %s\n", e.Time.Local().Format("15:04:05"), Escape(e.Remote), shortObject(e.Object), EscapeLine(trimCause(e.Cause, e.Object)))
	}
	return nil
}

// inFlight summarises the requests in flight by class.
func inFlight(src *fetch.Status) string {
	var parts []string
	var total int64
	keys := make([]string, 0, len(src.Scheduler.InFlight))
	for k := range src.Scheduler.InFlight {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if n := src.Scheduler.InFlight[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
			total += n
		}
	}
	if total == 0 {
		return "nothing"
	}
	return fmt.Sprintf("%d requests (%s)", total, strings.Join(parts, ", "))
}

func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// shortObject shortens "<64 hex>.file" to "<12 hex>….file".
func shortObject(o string) string {
	if i := strings.IndexByte(o, '.'); i == 64 {
		return o[:12] + "…" + o[i:]
	}
	return Escape(o)
}

// trimCause drops the object name and the remote that a cause repeats
// ("remote r: <object>: GET ...") where the line names them already.
func trimCause(cause, object string) string {
	if i := strings.Index(cause, object+": "); i >= 0 {
		return cause[i+len(object)+2:]
	}
	return cause
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	default:
		return t.Local().Format("2006-01-02 15:04")
	}
}

// shortCause is the last part of an error chain, where Go's wrapping put
// the cause ("...: connect: connection refused" is "connection refused"),
// with the part before it kept when that alone would say little.
func shortCause(msg string) string {
	parts := strings.Split(msg, ": ")
	if len(parts) <= 2 {
		return msg
	}
	return strings.Join(parts[len(parts)-2:], ": ")
}
