// Package sandbox starts a command in new Linux namespaces the way
// `flatpak run` does with bubblewrap, without cgo and without bwrap: a
// tmpfs root with a runtime tree at /usr and an app tree at /app, a
// generated /etc, /proc of a new pid namespace, a minimal /dev, the app's
// private data directories, then no new privileges, no capabilities, a
// non-root uid and a seccomp filter at least as strict as Flatpak's.
//
// It knows nothing of OSTree: cli hands it host paths (usually on the
// lazy mount) and the permissions parsed from an app's metadata.
//
// How a sandbox starts. Run re-executes the running binary (/proc/self/exe)
// with Cloneflags for the new namespaces; the binary's main calls Init
// first, which recognises the re-exec by its argv[0] and never returns.
// That process is pid 1 of the new pid namespace: it builds the root under
// a private tmpfs, pivots into it, and starts the command from a locked OS
// thread whose credentials, capabilities, no-new-privs bit and seccomp
// filter are the command's (a forked child inherits its thread's). Then it
// reaps every process of the namespace and exits with the command's status;
// when it exits the kernel kills whatever is left. Its parent death signal
// is SIGKILL, so killing Run's process tears the sandbox down.
//
// Run starts no goroutines that outlive it; Init runs in its own process.
package sandbox
