package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
)

func newCacheCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and maintain the local object cache",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newCacheStatsCmd(g), newCacheGCCmd(g), newCacheFsckCmd(g))
	return c
}

type cacheStatsOptions struct {
	JSON bool
}

func newCacheStatsCmd(g *globalOptions) *cobra.Command {
	var o cacheStatsOptions
	c := &cobra.Command{
		Use:   "stats [--json]",
		Short: "Show objects, bytes, pins, hit ratio and use by remote",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheCmd(cmd.Context(), g.HomeDir(), cacheArgs{Cmd: "stats", Stats: o}, cmd.OutOrStdout())
		},
	}
	bindJSON(c, &o.JSON)
	return c
}

type cacheGCOptions struct {
	To   string
	JSON bool
}

func newCacheGCCmd(g *globalOptions) *cobra.Command {
	var o cacheGCOptions
	c := &cobra.Command{
		Use:   "gc [--to SIZE]",
		Short: "Evict least recently used objects (never pinned or open ones)",
		Long: "Evict least recently used objects until the cache holds at most SIZE\n" +
			"(e.g. 500M, 10G; powers of 1024), by default the quota's low-water mark.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheCmd(cmd.Context(), g.HomeDir(), cacheArgs{Cmd: "gc", GC: o}, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&o.To, "to", "", "target size (default: 90% of the quota)")
	bindJSON(c, &o.JSON)
	return c
}

type cacheFsckOptions struct {
	Repair bool
	JSON   bool
}

func newCacheFsckCmd(g *globalOptions) *cobra.Command {
	var o cacheFsckOptions
	c := &cobra.Command{
		Use:   "fsck [--repair]",
		Short: "Rehash every cached object; drop missing and corrupt ones",
		Long: "Rehash every cached object against its checksum and check the index.\n" +
			"Missing and corrupt objects are dropped from the cache (they are fetched\n" +
			"again when next needed). Exits 1 if anything was wrong.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheCmd(cmd.Context(), g.HomeDir(), cacheArgs{Cmd: "fsck", Fsck: o}, cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&o.Repair, "repair", false, "also fetch dropped objects again from the remotes")
	bindJSON(c, &o.JSON)
	return c
}

type pinsOptions struct {
	JSON bool
}

func newPinsCmd(g *globalOptions) *cobra.Command {
	var o pinsOptions
	c := &cobra.Command{
		Use:   "pins [--json]",
		Short: "List pinned refs and commits",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheCmd(cmd.Context(), g.HomeDir(), cacheArgs{Cmd: "pins", Pins: o}, cmd.OutOrStdout())
		},
	}
	bindJSON(c, &o.JSON)
	return c
}

// errNoCache: the home has no cache yet. Reading commands report an
// empty cache rather than create one.
var errNoCache = errors.New("no cache")

// daemonSessionKey carries the daemon's session in a context: cache
// commands sent to the daemon use its open store instead of opening one.
type daemonSessionKey struct{}

func withDaemonSession(ctx context.Context, s *session) context.Context {
	return context.WithValue(ctx, daemonSessionKey{}, s)
}

// acquireCache returns the daemon's store (inside the daemon) or opens the
// cache of home; release closes what was opened and nothing else.
func acquireCache(ctx context.Context, home string) (*objcache.Store, func() error, error) {
	if ds, ok := ctx.Value(daemonSessionKey{}).(*session); ok {
		return ds.store, func() error { return nil }, nil
	}
	s, err := openCache(ctx, home)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

// cacheArgs carry a cache command to the daemon.
type cacheArgs struct {
	Cmd   string
	Stats cacheStatsOptions
	GC    cacheGCOptions
	Fsck  cacheFsckOptions
	Pins  pinsOptions
}

// runCacheCmd runs a cache command in the daemon when one is running.
func runCacheCmd(ctx context.Context, home string, a cacheArgs, w io.Writer) error {
	if handled, err := callDaemon(ctx, home, "cache", a, w); handled {
		return err
	}
	return runCacheLocal(ctx, home, a, w)
}

// runCacheLocal runs a cache command in this process (which may be the
// daemon, see withDaemonSession).
func runCacheLocal(ctx context.Context, home string, a cacheArgs, w io.Writer) error {
	switch a.Cmd {
	case "stats":
		return runCacheStats(ctx, home, a.Stats, w)
	case "gc":
		return runCacheGC(ctx, home, a.GC, w)
	case "fsck":
		return runCacheFsck(ctx, home, a.Fsck, w)
	case "pins":
		return runPins(ctx, home, a.Pins, w)
	}
	return fmt.Errorf("unknown cache command %q", a.Cmd)
}

// openCache opens the cache in home for a command that runs without the
// daemon.
func openCache(ctx context.Context, home string) (*objcache.Store, error) {
	if _, err := os.Stat(filepath.Join(home, "index")); errors.Is(err, fs.ErrNotExist) {
		return nil, errNoCache
	}
	s, err := objcache.Open(ctx, home, objcache.Options{})
	if errors.Is(err, index.ErrLocked) {
		return nil, fmt.Errorf("cache %s is in use by another process (a running lazytree daemon?)", home)
	}
	return s, err
}

// cacheStatsJSON is what `cache stats --json` prints.
type cacheStatsJSON struct {
	Home string `json:"home"`
	*objcache.Stats
	HitRatio float64 `json:"hit_ratio"`
}

func runCacheStats(ctx context.Context, home string, o cacheStatsOptions, w io.Writer) error {
	s, release, err := acquireCache(ctx, home)
	var st *objcache.Stats
	switch {
	case errors.Is(err, errNoCache):
		st = &objcache.Stats{MaxBytes: objcache.DefaultMaxBytes, ByType: map[string]objcache.Usage{}, ByRemote: map[string]objcache.Usage{}}
	case err != nil:
		return err
	default:
		defer release()
		if st, err = s.Stats(ctx); err != nil {
			return err
		}
		if err := release(); err != nil {
			return err
		}
	}
	if o.JSON {
		return writeJSON(w, cacheStatsJSON{Home: home, Stats: st, HitRatio: st.HitRatio()})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "cache\t%s\n", Escape(home))
	fmt.Fprintf(tw, "objects\t%d\n", st.Objects)
	pct := 0.0
	if st.MaxBytes > 0 {
		pct = 100 * float64(st.Bytes) / float64(st.MaxBytes)
	}
	fmt.Fprintf(tw, "size\t%s of %s (%.1f%%)\n", formatBytes(st.Bytes), formatBytes(st.MaxBytes), pct)
	fmt.Fprintf(tw, "pinned\t%d objects, %s\n", st.Pinned.Objects, formatBytes(st.Pinned.Bytes))
	fmt.Fprintf(tw, "hit ratio\t%.1f%% (%d hits, %d misses)\n", 100*st.HitRatio(), st.Hits, st.Misses)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, table := range []struct {
		title string
		m     map[string]objcache.Usage
	}{{"TYPE", st.ByType}, {"REMOTE", st.ByRemote}} {
		if len(table.m) == 0 {
			continue
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tOBJECTS\tSIZE\n", table.title)
		for _, k := range sortedUsageKeys(table.m) {
			u := table.m[k]
			if k == "" {
				k = "(unknown)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\n", Escape(k), u.Objects, formatBytes(u.Bytes))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func sortedUsageKeys(m map[string]objcache.Usage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func runCacheGC(ctx context.Context, home string, o cacheGCOptions, w io.Writer) error {
	target := int64(-1)
	if o.To != "" {
		n, err := parseByteSize(o.To)
		if err != nil {
			return usagef("cache gc: --to: %v", err)
		}
		target = n
	}
	s, release, err := acquireCache(ctx, home)
	if errors.Is(err, errNoCache) {
		fmt.Fprintf(w, "no cache at %s\n", Escape(home))
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	if target < 0 {
		target = int64(float64(s.MaxBytes()) * objcache.DefaultLowWater)
	}
	r, err := s.GC(ctx, target)
	if err != nil {
		return err
	}
	if err := release(); err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(w, struct {
			objcache.GCResult
			Target int64 `json:"target"`
		}{r, target})
	}
	fmt.Fprintf(w, "evicted %d objects, freed %s; the cache holds %s (target %s)\n",
		r.Evicted, formatBytes(r.Freed), formatBytes(r.Bytes), formatBytes(target))
	if r.Bytes > target {
		fmt.Fprintf(w, "the rest is pinned or in use\n")
	}
	return nil
}

// fsckJSON is what `cache fsck --json` prints.
type fsckJSON struct {
	*objcache.FsckReport
	Clean bool `json:"clean"`
	// Repaired lists the objects --repair fetched again; RepairErrors
	// those it could not.
	Repaired     []string `json:"repaired,omitempty"`
	RepairErrors []string `json:"repair_errors,omitempty"`
}

// repairFetcher is the daemon's fetcher when the daemon runs this, else
// a fetcher of this process over s.
func repairFetcher(ctx context.Context, home string, s *objcache.Store) (*fetch.Fetcher, error) {
	if ds, ok := ctx.Value(daemonSessionKey{}).(*session); ok {
		return ds.fetcher, nil
	}
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	return fetch.New(s, cfg, fetch.Options{}), nil
}

func runCacheFsck(ctx context.Context, home string, o cacheFsckOptions, w io.Writer) error {
	s, release, err := acquireCache(ctx, home)
	if errors.Is(err, errNoCache) {
		fmt.Fprintf(w, "no cache at %s\n", Escape(home))
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	r, err := s.FsckSinceOpen(ctx)
	if err != nil {
		return err
	}
	var repaired []string
	var repairErrs []string
	if o.Repair {
		var names []string
		for _, p := range append(append([]objcache.Problem(nil), r.Corrupt...), r.Missing...) {
			names = append(names, p.Object)
		}
		if f, err := repairFetcher(ctx, home, s); err != nil {
			repairErrs = []string{err.Error()}
		} else {
			repaired, repairErrs = f.Repair(ctx, names)
		}
	}
	if err := release(); err != nil {
		return err
	}
	dropped := len(r.Corrupt) + len(r.Missing)
	if o.JSON {
		out := fsckJSON{FsckReport: r, Clean: r.Clean()}
		out.Repaired, out.RepairErrors = repaired, repairErrs
		if err := writeJSON(w, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "checked %d objects, %s\n", r.Checked, formatBytes(r.Bytes))
		for _, p := range r.Corrupt {
			fmt.Fprintf(w, "corrupt %s: %s\n", p.Object, Escape(p.Cause))
		}
		for _, p := range r.Missing {
			fmt.Fprintf(w, "missing %s: %s\n", p.Object, Escape(p.Cause))
		}
		for _, p := range r.Index {
			fmt.Fprintf(w, "index: %s\n", Escape(p))
		}
		if r.OrphansRemoved > 0 {
			fmt.Fprintf(w, "removed %d files that had no record\n", r.OrphansRemoved)
		}
		if r.TempRemoved > 0 {
			fmt.Fprintf(w, "removed %d unfinished writes from tmp/\n", r.TempRemoved)
		}
		if dropped > 0 {
			fmt.Fprintf(w, "dropped %d objects from the cache; they are fetched again when next needed\n", dropped)
		}
	}
	if o.Repair && !o.JSON {
		for _, name := range repaired {
			fmt.Fprintf(w, "fetched %s again\n", name)
		}
		for _, e := range repairErrs {
			fmt.Fprintf(w, "could not fetch again: %s\n", Escape(e))
		}
	}
	if len(repairErrs) > 0 {
		return fmt.Errorf("cache fsck --repair: %d objects could not be fetched again", len(repairErrs))
	}
	if o.Repair && len(repaired) == dropped && len(r.Index) == 0 {
		return nil
	}
	if !r.Clean() {
		return fmt.Errorf("cache fsck: %d corrupt, %d missing, %d index problems", len(r.Corrupt), len(r.Missing), len(r.Index))
	}
	return nil
}

// pinJSON is one entry of `pins --json`.
type pinJSON struct {
	Kind         string    `json:"kind"`
	Remote       string    `json:"remote,omitempty"`
	Ref          string    `json:"ref,omitempty"`
	Commit       string    `json:"commit"`
	Created      time.Time `json:"created"`
	Objects      int64     `json:"objects"`
	Present      int64     `json:"present"`
	PresentBytes int64     `json:"present_bytes"`
}

func runPins(ctx context.Context, home string, o pinsOptions, w io.Writer) error {
	var pins []index.Pin
	s, release, err := acquireCache(ctx, home)
	switch {
	case errors.Is(err, errNoCache):
	case err != nil:
		return err
	default:
		defer release()
		if pins, err = s.Pins(ctx); err != nil {
			return err
		}
		if err := release(); err != nil {
			return err
		}
	}
	list := make([]pinJSON, 0, len(pins))
	for _, p := range pins {
		list = append(list, pinJSON{
			Kind: p.Kind.String(), Remote: p.Remote, Ref: p.Ref, Commit: p.Commit.String(),
			Created: p.Created.UTC(), Objects: p.Objects, Present: p.Present, PresentBytes: p.PresentBytes,
		})
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // refs first
		}
		if a.Remote+":"+a.Ref != b.Remote+":"+b.Ref {
			return a.Remote+":"+a.Ref < b.Remote+":"+b.Ref
		}
		return a.Commit < b.Commit
	})
	if o.JSON {
		return writeJSON(w, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "no pins")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PINNED\tCOMMIT\tOBJECTS\tCACHED\tSINCE")
	for _, p := range list {
		name := "commit"
		if p.Kind == index.PinRef.String() {
			name = Escape(p.Remote + ":" + p.Ref)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d (%s)\t%s\n", name, p.Commit[:12], p.Objects, p.Present,
			formatBytes(p.PresentBytes), p.Created.Local().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

// parseByteSize parses a size such as 10G, 500M, 1.5GiB, 4096 or 0.
// Suffixes K, M, G, T (optionally followed by "i", "iB" or "B", any
// case) are powers of 1024.
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRightFunc(t, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' })
	unit := strings.ToUpper(t[len(num):])
	num = strings.TrimSpace(num)
	var mult float64
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I") {
	case "":
		mult = 1
		if unit != "" && unit != "B" {
			return 0, fmt.Errorf("invalid size %q", s)
		}
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n := v * mult
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(n), nil
}

// formatBytes prints a size in binary units: 512 B, 1.5 KiB, 10.0 GiB.
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
