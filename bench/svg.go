package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNoWorkload is returned for a workload the report has no cell of.
var ErrNoWorkload = errors.New("bench: no such workload")

// Chart geometry, in SVG user units. A bar's slot is wide enough for its
// value label ("1234 MB" at svgFontValue), so labels of neighbours never
// overlap whatever the number of strategies; the chart grows instead.
const (
	svgSlot      = 50.0 // one bar and its gutter
	svgBarW      = 34.0
	svgGroupGap  = 30.0
	svgLeft      = 84.0
	svgRight     = 24.0
	svgMinWidth  = 720.0
	svgPlotH     = 240.0
	svgHeadroom  = 20.0 // above the highest whisker, for its label
	svgFontValue = 11.0
	svgCharW     = 0.6 // average glyph width per unit of font size
)

// lazyColors are the fills of the lazy strategies (Okabe–Ito, readable by
// most colour-blind readers); peers are grey and hatched.
var lazyColors = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

var peerColors = []struct{ fill, line string }{{"#bdbdbd", "#555555"}, {"#e0e0e0", "#888888"}, {"#9e9e9e", "#333333"}}

// panel is one of the two charts of a workload.
type panel struct {
	metric, title, axis string
	format              func(float64) string
	tick                func(float64) string
}

var svgPanels = []panel{
	{MetricDone, "(a) time until the workload is done", "seconds, log scale", formatSeconds, tickSeconds},
	{MetricBytes, "(b) bytes fetched from the server", "bytes, log scale", formatBytes, tickBytes},
}

// esc is s escaped for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// num is v as an SVG coordinate.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// textWidth estimates the rendered width of s at font size size.
func textWidth(s string, size float64) float64 {
	return float64(utf8.RuneCountInString(s)) * size * svgCharW
}

// clip shortens s to at most n runes, with an ellipsis.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// WriteSVG writes the charts of one workload as a self-contained SVG: (a)
// time until done and (b) bytes fetched, each with one group of bars per
// network and one bar per strategy, median as the bar and min..max as the
// whisker, on a log scale. Every bar (class "bar") and its value label
// (class "value") carries data-workload, data-network, data-strategy,
// data-metric and data-median (the JSON float), so that tests and scripts
// can read the chart back.
func (r *Report) WriteSVG(w io.Writer, workload string) error {
	wi := slices.Index(r.Workloads(), workload)
	if wi < 0 {
		return fmt.Errorf("write chart %q: %w", workload, ErrNoWorkload)
	}
	var b bytes.Buffer
	r.svg(&b, wi, workload)
	_, err := w.Write(b.Bytes())
	return err
}

// WriteSVGs writes one SVG per workload into dir, named after the
// workload (characters other than letters, digits, '.', '-' and '_'
// become '_'), and returns the paths in workload order.
func (r *Report) WriteSVGs(dir string) ([]string, error) {
	var paths []string
	for i, wl := range r.Workloads() {
		name := "chart-" + FileSafe(wl) + ".svg"
		if slices.Contains(paths, filepath.Join(dir, name)) {
			name = fmt.Sprintf("chart-%s-%d.svg", FileSafe(wl), i)
		}
		p := filepath.Join(dir, name)
		var b bytes.Buffer
		r.svg(&b, i, wl)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			return paths, fmt.Errorf("write chart %q: %w", wl, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// FileSafe keeps a name (a workload's, from a user's file) usable as
// one file name: ASCII letters, digits, ".", "-" and "_", no leading dot,
// at most 60 characters.
func FileSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r == '.' || r == '-' || r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return r
		}
		return '_'
	}, s)
	return clip(strings.TrimLeft(s, "."), 60)
}

// svg draws workload wl, the wi'th of r.Workloads; wi keeps the ids of
// its patterns apart from the other charts' in one HTML page.
func (r *Report) svg(b *bytes.Buffer, wi int, wl string) {
	nets := r.Networks()
	all := r.Strategies()
	var strats []string // the strategies this workload has a cell of
	for _, s := range all {
		for _, n := range nets {
			if r.Cell(wl, n, s) != nil {
				strats = append(strats, s)
				break
			}
		}
	}
	// Few bars spread over the least width, up to twice their slot, so a
	// one-network chart does not leave half of itself empty.
	gaps := float64(max(len(nets)-1, 0)) * svgGroupGap
	slot := svgSlot
	if n := float64(len(nets) * len(strats)); n > 0 {
		slot = min(2*svgSlot, max(svgSlot, (svgMinWidth-svgLeft-svgRight-gaps)/n))
	}
	groupW := float64(len(strats)) * slot
	plotW := float64(len(nets))*groupW + gaps
	width := max(svgLeft+plotW+svgRight, svgMinWidth)

	// Colours follow the report's strategies, not this workload's, so a
	// strategy looks the same in every chart.
	fill := map[string]string{}
	stroke := map[string]string{}
	var defs strings.Builder
	lazy, peer := 0, 0
	for _, s := range all {
		if IsPeer(s) {
			pc := peerColors[peer%len(peerColors)]
			id := fmt.Sprintf("lt-w%d-hatch%d", wi, peer)
			fmt.Fprintf(&defs, `<pattern id="%s" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="%s"/><line x1="0" y1="0" x2="0" y2="6" stroke="%s" stroke-width="2.5"/></pattern>`, id, pc.fill, pc.line)
			fill[s], stroke[s] = "url(#"+id+")", pc.line
			peer++
			continue
		}
		fill[s] = lazyColors[lazy%len(lazyColors)]
		stroke[s] = "#333333"
		lazy++
	}

	var body bytes.Buffer
	y := 0.0
	// Title and what was measured.
	y += 28
	fmt.Fprintf(&body, `<text x="16" y="%s" class="title">%s</text>`+"\n", num(y), esc(clip("lazytree bench: "+wl, 90)))
	for _, l := range r.headline() {
		y += 18
		fmt.Fprintf(&body, `<text x="16" y="%s" class="sub">%s</text>`+"\n", num(y), esc(clip(l, int((width-32)/(12*svgCharW)))))
	}
	// Legend, wrapped to the width.
	y += 26
	x := 16.0
	for _, s := range strats {
		label := clip(s, 40)
		w := 18 + textWidth(label, 12) + 22
		if x+w > width-svgRight && x > 16 {
			x = 16
			y += 20
		}
		fmt.Fprintf(&body, `<rect x="%s" y="%s" width="14" height="14" fill="%s" stroke="%s"/><text x="%s" y="%s" class="legend">%s</text>`+"\n",
			num(x), num(y-11), fill[s], stroke[s], num(x+19), num(y), esc(label))
		x += w
	}
	noisy, failed := false, false
	for _, p := range svgPanels {
		y += 34
		fmt.Fprintf(&body, `<text x="16" y="%s" class="panel">%s</text>`+"\n", num(y), esc(p.title))
		top := y + 12
		bottom := top + svgPlotH
		lo, hi := r.domain(wl, p.metric)
		scale := func(v float64) float64 {
			if v <= 0 {
				return bottom
			}
			v = min(max(v, lo), hi)
			return bottom - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*(bottom-top-svgHeadroom)
		}
		// Axis, ticks and grid.
		for _, t := range logTicks(lo, hi) {
			ty := scale(t)
			fmt.Fprintf(&body, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/><text x="%s" y="%s" class="tick">%s</text>`+"\n",
				num(svgLeft), num(ty), num(svgLeft+plotW), num(ty), num(svgLeft-6), num(ty+4), esc(p.tick(t)))
		}
		fmt.Fprintf(&body, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, num(svgLeft), num(top), num(svgLeft), num(bottom))
		fmt.Fprintf(&body, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`+"\n", num(svgLeft), num(bottom), num(svgLeft+plotW), num(bottom))
		cy := (top + bottom) / 2
		fmt.Fprintf(&body, `<text x="18" y="%s" class="axistitle" transform="rotate(-90 18 %s)">%s</text>`+"\n", num(cy), num(cy), esc(p.axis))

		for gi, n := range nets {
			gx := svgLeft + float64(gi)*(groupW+svgGroupGap)
			fmt.Fprintf(&body, `<text x="%s" y="%s" class="net">%s</text>`+"\n", num(gx+groupW/2), num(bottom+17), esc(clip(n.String(), int(groupW/(12*svgCharW)))))
			for si, s := range strats {
				c := r.Cell(wl, n, s)
				if c == nil {
					continue
				}
				cx := gx + float64(si)*slot + slot/2
				st, ok := c.Summary[p.metric]
				if !ok {
					if c.Error != "" {
						failed = true
						fmt.Fprintf(&body, `<text x="%s" y="%s" class="failed" transform="rotate(-90 %s %s)"><title>%s</title>✕ failed</text>`+"\n",
							num(cx+4), num(bottom-6), num(cx+4), num(bottom-6), esc(s+" @ "+n.String()+": "+c.Error))
					}
					continue
				}
				data := fmt.Sprintf(`data-workload="%s" data-network="%s" data-strategy="%s" data-metric="%s" data-median="%s"`,
					esc(wl), esc(n.String()), esc(s), esc(p.metric), strconv.FormatFloat(st.Median, 'g', -1, 64))
				yMed := scale(st.Median)
				fmt.Fprintf(&body, `<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="%s" %s data-min="%s" data-max="%s"><title>%s</title></rect>`+"\n",
					num(cx-svgBarW/2), num(yMed), num(svgBarW), num(bottom-yMed), fill[s], stroke[s], data,
					strconv.FormatFloat(st.Min, 'g', -1, 64), strconv.FormatFloat(st.Max, 'g', -1, 64),
					esc(fmt.Sprintf("%s @ %s: median %s, min %s, max %s", s, n, p.format(st.Median), p.format(st.Min), p.format(st.Max))))
				labelY := yMed
				if st.Max > st.Min {
					y1, y2 := scale(st.Min), scale(st.Max)
					fmt.Fprintf(&body, `<path class="whisker" d="M%s %sV%sM%s %sh10M%s %sh10"/>`+"\n",
						num(cx), num(y1), num(y2), num(cx-5), num(y1), num(cx-5), num(y2))
					labelY = min(labelY, y2)
				}
				mark := ""
				if p.metric == MetricDone && c.Noisy {
					mark, noisy = "~", true
				}
				fmt.Fprintf(&body, `<text class="value" x="%s" y="%s" %s>%s</text>`+"\n", num(cx), num(labelY-4), data, esc(mark+p.format(st.Median)))
			}
		}
		y = bottom + 17
	}
	var foot []string
	foot = append(foot, "bar: median; whisker: min–max; hatched grey: peers (a full pull)")
	if noisy {
		foot = append(foot, noisyNote)
	}
	if failed {
		foot = append(foot, "✕ failed: no samples (the table and the tooltip say why)")
	}
	for _, f := range foot {
		y += 18
		fmt.Fprintf(&body, `<text x="16" y="%s" class="foot">%s</text>`+"\n", num(y), esc(f))
	}
	height := y + 14

	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %s %s" width="%s" height="%s" font-family="DejaVu Sans, Verdana, Arial, sans-serif">`+"\n",
		num(width), num(height), num(width), num(height))
	fmt.Fprintf(b, `<title>%s</title>`+"\n", esc("lazytree bench: "+wl))
	b.WriteString(`<style>
.title{font-size:18px;font-weight:bold;fill:#111}
.sub{font-size:12px;fill:#555}
.legend{font-size:12px;fill:#222}
.panel{font-size:14px;font-weight:bold;fill:#222}
.tick{font-size:11px;fill:#444;text-anchor:end}
.axistitle{font-size:12px;fill:#444;text-anchor:middle}
.net{font-size:12px;font-weight:bold;fill:#222;text-anchor:middle}
.value{font-size:11px;fill:#111;text-anchor:middle}
.failed{font-size:11px;fill:#b00020}
.foot{font-size:11px;fill:#555}
.grid{stroke:#e4e4e4;stroke-width:1}
.axis{stroke:#444;stroke-width:1}
.whisker{stroke:#111;stroke-width:1.4;fill:none}
</style>
`)
	fmt.Fprintf(b, "<defs>%s</defs>\n", defs.String())
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	b.Write(body.Bytes())
	b.WriteString("</svg>\n")
}

// domain is the decades the log scale of metric spans in workload wl: from
// the power of ten at or below the smallest positive min to the one at or
// above the largest max.
func (r *Report) domain(wl, metric string) (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for _, c := range r.Cells {
		st, ok := c.Summary[metric]
		if c.Workload != wl || !ok {
			continue
		}
		for _, v := range []float64{st.Min, st.Median, st.Max} {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if hi == 0 {
		return 1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// logTicks are the labeled ticks between lo and hi, powers of ten apart:
// 1, 2 and 5 of each decade when there are few, else the powers only.
func logTicks(lo, hi float64) []float64 {
	decades := int(math.Round(math.Log10(hi / lo)))
	steps := []float64{1}
	if decades <= 2 {
		steps = []float64{1, 2, 5}
	}
	var out []float64
	for d := 0; d <= decades; d++ {
		p := lo * math.Pow(10, float64(d))
		for _, s := range steps {
			if v := p * s; v <= hi*1.0001 {
				out = append(out, v)
			}
		}
	}
	return out
}

// tickSeconds is a tick label: "100ms", "1s", "20s".
func tickSeconds(v float64) string {
	if v < 1 {
		return strconv.FormatFloat(round6(v*1000), 'f', -1, 64) + "ms"
	}
	return strconv.FormatFloat(round6(v), 'f', -1, 64) + "s"
}

// tickBytes is a tick label: "100 kB", "1 MB".
func tickBytes(v float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for v >= 1000*0.9999 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return strconv.FormatFloat(round6(v), 'f', -1, 64) + " " + units[i]
}

// round6 drops the float noise of powers of ten (0.30000000000000004).
func round6(v float64) float64 {
	p := math.Pow(10, 6-math.Ceil(math.Log10(math.Abs(v)+1e-300)))
	return math.Round(v*p) / p
}
