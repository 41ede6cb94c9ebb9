package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// Drift is a cell whose median time differs between two reports of the
// same inputs by more than NoiseLimit.
type Drift struct {
	Workload, Strategy string
	Network            Network
	// Before and After are the medians of MetricDone; Change is
	// |After-Before| over their mean.
	Before, After, Change float64
}

func (d Drift) String() string {
	return fmt.Sprintf("%s, %s, %s: median %.3g s before, %.3g s now (%.0f%% apart, more than %.0f%%)",
		d.Network, d.Workload, d.Strategy, d.Before, d.After, 100*d.Change, 100*NoiseLimit)
}

// Compare returns the cells of now whose median time to done is more than
// NoiseLimit away from the same cell in before, in now's order. Cells
// that either report lacks, or that have no samples, are skipped.
func Compare(before, now *Report) []Drift {
	var out []Drift
	for i := range now.Cells {
		c := &now.Cells[i]
		b := before.Cell(c.Workload, c.Network, c.Strategy)
		if b == nil || len(b.Samples) == 0 || len(c.Samples) == 0 {
			continue
		}
		x, y := b.Summary[MetricDone].Median, c.Summary[MetricDone].Median
		if mean := (x + y) / 2; mean > 0 {
			if ch := math.Abs(y-x) / mean; ch > NoiseLimit {
				out = append(out, Drift{Workload: c.Workload, Strategy: c.Strategy, Network: c.Network, Before: x, After: y, Change: ch})
			}
		}
	}
	return out
}

// ReadReport decodes a report as --json writes it.
func ReadReport(r io.Reader) (*Report, error) {
	var rep Report
	dec := json.NewDecoder(io.LimitReader(r, 64<<20))
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("bench report: %w", err)
	}
	if rep.Version != ReportVersion {
		return nil, fmt.Errorf("bench report: version %d, want %d", rep.Version, ReportVersion)
	}
	return &rep, nil
}
