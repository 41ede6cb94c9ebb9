//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// dialTimeout bounds each connection attempt; a new network namespace
// refuses at once (only lo is there), so this only matters when packets
// are dropped.
const dialTimeout = 3 * time.Second

// checkNet runs the network checks:
//
//   - "net:interfaces": "loopback-only" when /proc/net/dev lists lo and
//     nothing else (a new network namespace), "non-loopback" when it lists
//     any other interface (the host's network is shared), "none" when it
//     lists nothing.
//   - "net:connect" (with -connect ADDR): "connected" when a TCP
//     connection to ADDR, a listener the test opened on the host, is
//     established; else "unreachable:ERRNO" (ECONNREFUSED in a new
//     namespace, where 127.0.0.1 is the sandbox's own lo) or
//     "unreachable:timeout".
//   - "net:abstract" (with -connect-abstract NAME): likewise for the
//     abstract unix socket @NAME, which is per network namespace (an X11
//     or D-Bus abstract socket of the host is reachable only when the
//     network is shared).
//   - "net:expected": "ok" when all of the above agree with
//     -expect-network (shared: non-loopback and connected; not shared:
//     no other interface and nothing reached), else "mismatch".
func checkNet(res results, cfg *config) {
	shared := false
	if names, err := readNetDev("/proc/net/dev"); err != nil {
		res["net:interfaces"] = denied(err)
	} else {
		res["net:interfaces"] = interfacesResult(names)
		shared = res["net:interfaces"] == "non-loopback"
	}
	agree := shared == cfg.expectNetwork
	if cfg.connect != "" {
		res["net:connect"] = dialResult("tcp", cfg.connect)
		agree = agree && (res["net:connect"] == "connected") == cfg.expectNetwork
	}
	if cfg.connectAbstract != "" {
		res["net:abstract"] = dialResult("unix", "@"+cfg.connectAbstract)
		agree = agree && (res["net:abstract"] == "connected") == cfg.expectNetwork
	}
	res["net:expected"] = "mismatch"
	if agree {
		res["net:expected"] = "ok"
	}
}

func interfacesResult(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	for _, n := range names {
		if n != "lo" {
			return "non-loopback"
		}
	}
	return "loopback-only"
}

func dialResult(network, addr string) string {
	c, err := net.DialTimeout(network, addr, dialTimeout)
	if err != nil {
		return "unreachable:" + errnoName(err)
	}
	c.Close()
	return "connected"
}

// parseNetDev returns the interface names of /proc/net/dev: two header
// lines, then one "name: counters..." line per interface.
func parseNetDev(r io.Reader) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for i := 0; sc.Scan(); i++ {
		if i < 2 {
			continue // "Inter-|   Receive ..." and " face |bytes ..."
		}
		name, _, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("parse /proc/net/dev line %q: no interface name", sc.Text())
		}
		names = append(names, name)
	}
	return names, sc.Err()
}

func readNetDev(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetDev(f)
}
