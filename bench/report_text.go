package bench

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// baseline is the peer every cell's "vs peer" column is measured against.
const baseline = "peer:ostree"

// tableColumns are the headers of the table, in WriteTable and WriteHTML.
var tableColumns = []string{
	"network", "strategy", "done (median, min–max, spread)", "vs " + baseline,
	"first byte", "mount", "MB fetched / in ref", "requests", "critical path",
	"hit ratio", "peak RSS",
}

// tableRow is one cell of the matrix as the table shows it, before it is
// escaped for a terminal or for HTML.
type tableRow struct {
	cols  []string // one per tableColumns
	noisy bool
	first bool // first row of its network
}

// tableFootnote is an error a cell carries, numbered where the table
// refers to it.
type tableFootnote struct {
	n                           int
	workload, network, strategy string
	err                         string
}

// tableWorkload is the rows of one workload.
type tableWorkload struct {
	name string
	rows []tableRow
}

// table lays out every row of r once, for both the text and the HTML
// table, so that the two cannot disagree.
func (r *Report) table() (ws []tableWorkload, notes []tableFootnote, noisy bool) {
	strategies := r.Strategies()
	for _, wl := range r.Workloads() {
		tw := tableWorkload{name: wl}
		for _, n := range r.Networks() {
			first := true
			base := r.Cell(wl, n, baseline)
			for _, s := range strategies {
				c := r.Cell(wl, n, s)
				if c == nil {
					continue
				}
				row := tableRow{first: first, noisy: c.Noisy}
				first = false
				net := ""
				if row.first {
					net = n.String()
				}
				ref := ""
				if c.Error != "" {
					notes = append(notes, tableFootnote{len(notes) + 1, wl, n.String(), s, c.Error})
					ref = fmt.Sprintf(" [%d]", len(notes))
				}
				if len(c.Samples) == 0 || len(c.Summary) == 0 {
					row.cols = []string{net, s, "failed" + ref, "", "", "", "", "", "", "", ""}
					tw.rows = append(tw.rows, row)
					continue
				}
				noisy = noisy || c.Noisy
				done := c.Summary[MetricDone]
				mark := ""
				if c.Noisy {
					mark = "~"
				}
				row.cols = []string{
					net, s,
					fmt.Sprintf("%s%s (%s, %.0f%%)%s", mark, formatSeconds(done.Median), formatSecondsRange(done.Min, done.Max), done.Spread*100, ref),
					vsBaseline(c, base),
					formatSeconds(c.Summary[MetricFirstByte].Median),
					formatSeconds(c.Summary[MetricMount].Median),
					r.fetched(c.Summary[MetricBytes].Median),
					formatCount(c.Summary[MetricRequests].Median),
					formatCount(c.Summary[MetricCritPath].Median),
					hitRatio(c),
					fmt.Sprintf("%.0f MB", c.Summary[MetricPeakRSS].Median/1e6),
				}
				tw.rows = append(tw.rows, row)
			}
		}
		ws = append(ws, tw)
	}
	return ws, notes, noisy
}

// vsBaseline is "12.3× sooner" (or "later") than base, "baseline" for
// base itself, "" when there is nothing to compare with.
func vsBaseline(c, base *Cell) string {
	switch {
	case base == nil:
		return ""
	case c == base:
		return "baseline"
	}
	sp := c.Speedup(base)
	switch {
	case sp <= 0:
		return ""
	case sp >= 1:
		return fmt.Sprintf("%.1f× sooner", sp)
	}
	return fmt.Sprintf("%.1f× later", 1/sp)
}

func (r *Report) fetched(b float64) string {
	s := formatMB(b)
	if r.RefBytes > 0 {
		pct := fmt.Sprintf("%.1f%%", 100*b/float64(r.RefBytes))
		if b > 0 && 100*b/float64(r.RefBytes) < 0.05 {
			pct = "<0.1%"
		}
		s += fmt.Sprintf(" / %s (%s)", formatMB(float64(r.RefBytes)), pct)
	}
	return s
}

func hitRatio(c *Cell) string {
	if IsPeer(c.Strategy) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", c.Summary[MetricHitRatio].Median*100)
}

// headline is the report's first lines: what was measured, where.
func (r *Report) headline() []string {
	ref := r.Ref
	if r.Commit != "" {
		ref += " @ " + shortCommit(r.Commit)
	}
	l1 := fmt.Sprintf("ref %s (%d files, %s MB), %d runs per cell", ref, r.RefFiles, sig(float64(r.RefBytes)/1e6, 3), r.Runs)
	if r.Repo != "" {
		l1 = r.Repo + ", " + l1
	}
	l2 := fmt.Sprintf("host: %d CPUs, kernel %s, %s", r.Host.CPUs, r.Host.Kernel, r.Host.Go)
	if !r.Started.IsZero() {
		l2 += ", started " + r.Started.UTC().Format("2006-01-02 15:04 UTC")
	}
	return []string{l1, l2}
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// noisyNote explains the "~" mark.
var noisyNote = fmt.Sprintf("~ noisy: the spread of done is over %.0f%%, the median may not repeat", NoiseLimit*100)

// WriteTable writes r as plain-text tables for a person at a terminal, one
// per workload with its networks in report order, then the errors the
// cells carry and r.Notes. Control characters in names and errors (which
// may come from a user's file or a remote) are replaced, so that they
// cannot move the cursor or break the columns.
func (r *Report) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	for _, l := range r.headline() {
		fmt.Fprintln(&b, termSafe(l))
	}
	ws, notes, noisy := r.table()
	for _, tw := range ws {
		fmt.Fprintf(&b, "\nworkload %s\n", termSafe(tw.name))
		var tb bytes.Buffer
		t := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t, strings.Join(tableColumns, "\t"))
		for i, row := range tw.rows {
			if row.first && i > 0 {
				fmt.Fprintln(t, strings.Repeat("\t", len(tableColumns)-1))
			}
			cols := make([]string, len(row.cols))
			for j, c := range row.cols {
				cols[j] = termSafe(c)
			}
			fmt.Fprintln(t, strings.Join(cols, "\t"))
		}
		t.Flush()
		// The rule between networks is empty cells, padded: trim it.
		for _, l := range strings.SplitAfter(tb.String(), "\n") {
			if l != "" {
				fmt.Fprintln(&b, strings.TrimRight(l, " \n"))
			}
		}
	}
	if noisy || len(notes) > 0 {
		fmt.Fprintln(&b)
	}
	if noisy {
		fmt.Fprintln(&b, noisyNote)
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "[%d] %s, %s, %s: %s\n", n.n, termSafe(n.workload), n.network, termSafe(n.strategy), termSafe(n.err))
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(&b, "\nNotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", termSafe(n))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// termSafe replaces control characters (tabs, newlines, escapes) with
// spaces or U+FFFD.
func termSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r):
			return unicode.ReplacementChar
		}
		return r
	}, s)
}

// sig formats v with n significant digits and no exponent: sig(4.2, 3) is
// "4.20", sig(1234, 3) is "1234".
func sig(v float64, n int) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	d := n - 1 - int(math.Floor(math.Log10(math.Abs(v))))
	return strconv.FormatFloat(v, 'f', max(d, 0), 64)
}

// formatSeconds is v seconds with three significant digits: "4.20s",
// "420ms".
func formatSeconds(v float64) string {
	if v != 0 && math.Abs(v) < 1 {
		return sig(v*1000, 3) + "ms"
	}
	return sig(v, 3) + "s"
}

// formatSecondsRange is "1.20–1.30s", in the unit of the larger end.
func formatSecondsRange(lo, hi float64) string {
	if hi != 0 && math.Abs(hi) < 1 {
		return sig(lo*1000, 3) + "–" + sig(hi*1000, 3) + "ms"
	}
	return sig(lo, 3) + "–" + sig(hi, 3) + "s"
}

// formatBytes is v bytes with three significant digits in decimal units:
// "12.3 MB".
func formatBytes(v float64) string {
	a := math.Abs(v)
	switch {
	case a < 1e3:
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	case a < 1e6:
		return sig(v/1e3, 3) + " kB"
	case a < 1e9:
		return sig(v/1e6, 3) + " MB"
	}
	return sig(v/1e9, 3) + " GB"
}

// formatMB is v bytes in megabytes, three significant digits.
func formatMB(v float64) string { return sig(v/1e6, 3) + " MB" }

// formatCount is a median count: whole, or halves for an even number of
// samples.
func formatCount(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
