// Package bench compares fetch strategies of a lazy mount with each other
// and with peers (a full ostree or flatpak pull) under emulated networks,
// and renders what it measured: a Report, as JSON, a table for a terminal,
// SVG charts and one self-contained HTML file, all drawn from the Report
// alone. Rendering starts no goroutines and reads nothing but the Report.
package bench
