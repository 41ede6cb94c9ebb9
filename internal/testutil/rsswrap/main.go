// Command rsswrap runs a command and writes its peak resident memory, in
// KiB, to the file named by RSSWRAP_OUT. Benchmarks run children through
// it because a child that a large Go process starts directly reports, as
// its rusage maxrss, at least its parent's high-water mark (Go starts
// children with CLONE_VM, so the child's first memory map is the
// parent's). Started from this small process, the command's figure is
// its own.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rsswrap CMD [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState != nil {
		if out := os.Getenv("RSSWRAP_OUT"); out != "" {
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			os.WriteFile(out, []byte(fmt.Sprint(ru.Maxrss)), 0o644)
		}
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
