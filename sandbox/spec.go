package sandbox

import (
	"io"
)

// Spec is one sandboxed command: what is bound where and what the command
// may do. Paths are host paths unless said otherwise.
type Spec struct {
	// Runtime is the runtime's files/ directory, bound read-only at /usr
	// (required). Its etc/ (if any) is linked into /etc entry by entry,
	// beside the generated files.
	Runtime string
	// App is the app's files/ directory, bound read-only at /app; empty
	// leaves /app an empty directory.
	App string
	// AppID names the app (FLATPAK_ID, ~/.var/app/AppID); empty for a
	// runtime-only run, which gets no data directories.
	AppID string
	// Command is the argv to start; Command[0] without a slash is looked
	// up in /app/bin then /usr/bin inside the sandbox. It is never parsed
	// as options.
	Command []string
	// Env is added to the allowlisted environment, later entries winning
	// (the app's [Environment], then --env).
	Env []string
	// Dir is the working directory inside the sandbox (default: HOME).
	Dir string

	// Share names what is not unshared: "network", "ipc".
	Share []string
	// Filesystems are extra binds (--filesystem and the metadata's
	// filesystems=), each at the same path inside.
	Filesystems []Bind
	// Sockets are the metadata's sockets= (x11, wayland, pulseaudio, ...):
	// bound when the host has them, ignored otherwise.
	Sockets []string
	// Devices are the metadata's devices= (dri, kvm, shm, all).
	Devices []string
	// Devel allows ptrace, perf_event_open and personality (--devel).
	Devel bool

	// Home is the user's home directory (host path, also HOME inside);
	// default: the invoking user's. The app's data lives in
	// Home/.var/app/AppID/{data,config,cache}, created if missing and
	// opened without following symlinks.
	Home string
	// UID and GID are the command's identity. Zero values: the invoking
	// user's; when that is root, SUDO_UID/SUDO_GID, else 65534 (a
	// sandboxed command never runs as root).
	UID, GID int
	// UserName is the name written to /etc/passwd (default: the host's
	// name for UID, else "user").
	UserName string
	// FlatpakInfo is the content of the read-only /.flatpak-info.
	FlatpakInfo []byte
	// Mask are host paths (absolute) hidden under an empty tmpfs wherever
	// a bind would show them (lazytree's own state and mount).
	Mask []string

	// Stdin, Stdout and Stderr default to the process's own.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Bind is one host path bound into the sandbox at the same path.
type Bind struct {
	Path     string
	ReadOnly bool
	// Create makes the directory on the host when it is missing
	// (filesystems=PATH:create); only under Home, one component at a
	// time without following symlinks, owned by the command's user.
	Create bool
	// NoSymlinks refuses a path with a symlink anywhere in it (for paths
	// a remote's metadata asks for: the app may have planted links in
	// the directories it can write).
	NoSymlinks bool
}
