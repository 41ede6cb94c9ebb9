//go:build linux && !amd64

package main

// archProbes has no syscall probes for this architecture: the escape
// suite runs on x86_64, whose syscall numbers and extra ABIs the probes of
// syscalls_amd64.go are written for.
func archProbes() []probe {
	return []probe{{"seccomp:arch", func() string { return "unsupported" }}}
}
