//go:build linux

// The runtime must not open files of its own before main lists the open
// fds: since Go 1.25 it keeps the cgroup CPU limit files open to follow
// changes of the limit. Neither setting changes anything else here.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// config is what the flags of the check mode ask for.
type config struct {
	hidden, readonly, data   []string
	connect, connectAbstract string
	expectNetwork            bool
	envExpect, envAbsent     []string
	hostPID1                 string
	hostNS                   []string
}

func main() {
	// The fd listing comes first, before anything here opens a file, a
	// socket, a pipe to a child or the runtime's netpoller.
	fds := leakedFDs()

	var cfg config
	var readfile, child string
	var from int
	fl := flag.NewFlagSet("escapeprobe", flag.ContinueOnError)
	fl.Var((*listFlag)(&cfg.hidden), "hidden", "host `PATH` that must be invisible (repeatable)")
	fl.Var((*listFlag)(&cfg.readonly), "readonly", "directory `PATH` that must not be writable, besides /, /usr, /app (repeatable)")
	fl.Var((*listFlag)(&cfg.data), "data", "directory `DIR` that must be writable (repeatable)")
	fl.StringVar(&cfg.connect, "connect", "", "TCP `ADDR` on the host to dial")
	fl.StringVar(&cfg.connectAbstract, "connect-abstract", "", "abstract unix socket `NAME` on the host to dial (without the @)")
	fl.BoolVar(&cfg.expectNetwork, "expect-network", false, "the sandbox shares the host's network")
	fl.Var((*listFlag)(&cfg.envExpect), "env-expect", "`K=V` that must be in the environment (repeatable)")
	fl.Var((*listFlag)(&cfg.envAbsent), "env-absent", "variable `K` that must not be set (repeatable)")
	fl.StringVar(&cfg.hostPID1, "host-pid1", "", "the host's /proc/1/cmdline with NULs as spaces")
	fl.Var((*listFlag)(&cfg.hostNS), "host-ns", "host namespace `LINK` such as net:[4026531840] (repeatable)")
	fl.StringVar(&readfile, "readfile", "", "print the file at `PATH` and exit")
	fl.StringVar(&child, "child", "", "internal: run as a child `MODE`")
	fl.IntVar(&from, "from", 0, "internal: first probe of -child syscalls")
	if err := fl.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "escapeprobe: unexpected argument %q\n", fl.Arg(0))
		os.Exit(2)
	}
	switch {
	case child != "":
		os.Exit(runChild(child, from))
	case readfile != "":
		if err := catFile(readfile); err != nil {
			fmt.Fprintf(os.Stderr, "escapeprobe: %v\n", err)
			os.Exit(1)
		}
		return
	}

	res := results{"fds": fds}
	checkFiles(res, &cfg)
	checkDev(res)
	checkProc(res, &cfg)
	checkEnv(res, &cfg)
	checkNet(res, &cfg)
	runSyscallProbes(res)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "escapeprobe: %v\n", err)
		os.Exit(1)
	}
}

// results maps a check's name to its result; encoding/json writes the
// keys sorted, so the same results always print the same bytes.
type results map[string]string

// catFile copies the file at p to stdout (for /.flatpak-info and the like).
func catFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(os.Stdout, f); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}

// errnoName returns the symbolic name of the errno inside err ("EPERM"),
// "timeout" for a deadline, or the error's text when it carries no errno.
func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(en))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// denied is the result of a syscall that failed: "denied:ERRNO".
func denied(err error) string { return "denied:" + errnoName(err) }
