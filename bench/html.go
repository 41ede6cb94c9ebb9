package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"strings"
)

// htmlPage is what the page template is filled from; every string in it
// is escaped by html/template except SVG, which svg escaped itself.
type htmlPage struct {
	Title     string
	Headline  []string
	Columns   []string
	Workloads []htmlWorkload
	Noisy     string
	Footnotes []string
	Notes     []string
}

type htmlWorkload struct {
	Name string
	Rows []htmlRow
	SVG  template.HTML
}

// htmlRow is a tableRow and its CSS class: "first" draws a rule above a
// network's first row, "noisy" colours the done column.
type htmlRow struct {
	Class string
	Cols  []string
}

// The page is written as well-formed XML too (self-closed void elements,
// no named entities), so that XML tools and the tests can read it.
var htmlTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{.Title}}</title>
<style>
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;margin:1.5em;color:#111;max-width:1400px}
p.meta{color:#555;margin:.2em 0}
table{border-collapse:collapse;font-size:13px;margin:.8em 0}
th,td{padding:.25em .7em;text-align:left;white-space:nowrap}
th{border-bottom:2px solid #444}
tr.first td{border-top:1px solid #bbb}
tr.noisy td:nth-child(3){color:#a05a00}
figure{margin:1em 0;overflow-x:auto}
figure svg{max-width:100%;height:auto}
.foot{color:#555;font-size:13px}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{range .Headline}}<p class="meta">{{.}}</p>
{{end}}{{range .Workloads}}<section>
<h2>workload {{.Name}}</h2>
<table>
<thead><tr>{{range $.Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr{{with .Class}} class="{{.}}"{{end}}>{{range .Cols}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
<figure>
{{.SVG}}</figure>
</section>
{{end}}{{if .Noisy}}<p class="foot">{{.Noisy}}</p>
{{end}}{{range .Footnotes}}<p class="foot">{{.}}</p>
{{end}}{{with .Notes}}<h2>Notes</h2>
<ul>
{{range .}}<li>{{.}}</li>
{{end}}</ul>
{{end}}</body>
</html>
`))

// WriteHTML writes r as one self-contained HTML page (no scripts, no
// external fonts or files): what was measured, then per workload the table
// and its charts inline, then the errors and r.Notes.
func (r *Report) WriteHTML(w io.Writer) error {
	ws, notes, noisy := r.table()
	p := htmlPage{Title: "lazytree bench: " + r.Ref, Headline: r.headline(), Columns: tableColumns}
	for i, tw := range ws {
		var svg bytes.Buffer
		r.svg(&svg, i, tw.name)
		hw := htmlWorkload{Name: tw.name, SVG: template.HTML(svg.String())}
		for _, row := range tw.rows {
			var class []string
			if row.first {
				class = append(class, "first")
			}
			if row.noisy {
				class = append(class, "noisy")
			}
			hw.Rows = append(hw.Rows, htmlRow{Class: strings.Join(class, " "), Cols: row.cols})
		}
		p.Workloads = append(p.Workloads, hw)
	}
	if noisy {
		p.Noisy = noisyNote
	}
	for _, n := range notes {
		p.Footnotes = append(p.Footnotes, fmt.Sprintf("[%d] %s, %s, %s: %s", n.n, n.workload, n.network, n.strategy, n.err))
	}
	p.Notes = r.Notes
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, p); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}
