//go:build linux

// Command escapeprobe runs inside a sandbox (lazytree run, bwrap, flatpak
// run) and reports what the sandbox lets it see and do, as one JSON object
// {check: result} on stdout. It is the test material of the sandbox's
// escape suite: the same probe runs under lazytree's sandbox and under the
// reference (bwrap or flatpak), and the two objects are compared key by
// key, so every result is a short normalized string ("ok", "absent",
// "readonly", "denied:EPERM", "CapEff:0000000000000000") with no pids,
// temporary paths, inode numbers or timings in it.
//
// It is pure Go, built with CGO_ENABLED=0 (testutil.BuildEscapeProbe), so
// it needs nothing of the runtime it is started in. It never tries to do
// harm: every syscall it makes is chosen so that it fails, or succeeds
// without effect, whether or not a filter is installed; only the errno
// tells the two apart (see syscalls.go). The syscall probes run in a
// child process, because a strict filter may answer by killing the caller
// (Flatpak's kills the calling thread for the x32 ABI): a death is
// reported as "killed:SIGNAME" or "killed:thread" and the remaining
// probes go on in a new child.
//
// Modes:
//
//	escapeprobe [flags]          run every check, print the JSON object, exit 0
//	escapeprobe -readfile PATH   print the file's bytes, exit 1 if it cannot be read
//	escapeprobe -child NAME      internal: the child processes described above
//
// Flags of the check mode (the repeatable ones may be given many times):
//
//	-hidden PATH        a host path that must not be visible ("hidden:PATH")
//	-readonly PATH      a directory to try to write, beside /, /usr and /app ("write:PATH")
//	-data DIR           a directory that must be writable ("data:DIR")
//	-connect ADDR       a TCP address on the host to dial ("net:connect")
//	-connect-abstract N an abstract unix socket (@N) on the host to dial ("net:abstract")
//	-expect-network     the sandbox shares the host's network ("net:expected")
//	-env-expect K=V     an environment variable that must have this value ("env:K")
//	-env-absent K       an environment variable that must be unset ("env:K")
//	-host-pid1 CMDLINE  the host's /proc/1/cmdline, NULs as spaces ("pid1")
//	-host-ns LINK       a host namespace, as readlink /proc/self/ns/X prints it ("ns:X")
//
// The checks and their results are documented where each is made: files.go
// (hidden paths, writes, mounts, data, /dev), proc.go (pid 1, pid and other
// namespaces, /proc/self/status, uid, leaked fds, environment), net.go
// (interfaces, connections) and syscalls.go (the seccomp probes and nested
// user namespaces).
//
// It starts one goroutine per syscall child, to read the child's output,
// which ends with the child; every child is waited for before it prints.
package main
