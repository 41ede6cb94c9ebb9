package cli

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// BenchmarkServeCache starts bash on eight clients at once, each its own
// process with a cold cache of its own, two ways in the same run, with the
// origin behind 25 ms per request and 100 Mbit/s shared by everything that
// talks to it:
//   - direct: the eight clients fetch from the origin;
//   - node: they fetch from one `serve --cache` node (cold too) on
//     loopback, unshaped (the clients' LAN), which fetches from the origin.
//
// It reports the origin's bytes per mode and their ratio (direct/node,
// want ≥ 7), and the median and slowest client start per mode:
// `go test -run '^$' -bench ServeCache -benchtime 1x ./cli`.
func BenchmarkServeCache(b *testing.B) {
	f := newShareFixture(b, fetchtest.Options{Latency: 25 * time.Millisecond, Bandwidth: 100e6 / 8, ErrorStatuses: []int{500}})
	const clients = 8
	var directBytes, nodeBytes int64
	var directMed, nodeMed, directMax, nodeMax time.Duration
	for i := 0; i < b.N; i++ {
		for _, mode := range []string{"direct", "node"} {
			f.origin.Reset()
			url := f.origin.URL()
			var stop []*child
			if mode == "node" {
				c, u := f.node(b, fmt.Sprintf("b%d-node", i), url)
				stop, url = append(stop, c), u
			}
			trees := make([]string, clients)
			for k := range trees {
				var c *child
				c, trees[k] = f.client(b, fmt.Sprintf("b%d-%s-%d", i, mode, k), url)
				stop = append(stop, c)
			}
			f.origin.Reset()
			starts := make([]time.Duration, clients)
			errs := make([]error, clients)
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for k, tree := range trees {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					first, _, line, err := timeFirstOutput(ctx, bashArgv(tree+"/files"))
					if err == nil && line != "started" {
						err = fmt.Errorf("printed %q", line)
					}
					starts[k], errs[k] = first, err
				}()
			}
			close(gate)
			wg.Wait()
			for k, err := range errs {
				if err != nil {
					b.Fatalf("%s client %d: %v", mode, k, err)
				}
			}
			slices.Sort(starts)
			med := (starts[clients/2-1] + starts[clients/2]) / 2
			bytes := f.origin.Stats().Bytes
			if mode == "direct" {
				directBytes += bytes
				directMed += med
				directMax += starts[clients-1]
			} else {
				nodeBytes += bytes
				nodeMed += med
				nodeMax += starts[clients-1]
			}
			for _, c := range stop {
				c.stop(b)
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(directBytes)/n/1e6, "direct-origin-MB")
	b.ReportMetric(float64(nodeBytes)/n/1e6, "node-origin-MB")
	b.ReportMetric(float64(directBytes)/float64(nodeBytes), "origin-bytes-ratio")
	b.ReportMetric(directMed.Seconds()/n, "direct-median-s")
	b.ReportMetric(nodeMed.Seconds()/n, "node-median-s")
	b.ReportMetric(directMed.Seconds()/nodeMed.Seconds(), "median-speedup")
	b.ReportMetric(directMax.Seconds()/n, "direct-slowest-s")
	b.ReportMetric(nodeMax.Seconds()/n, "node-slowest-s")
}
