package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/sandbox"
)

// appMeta is what `run` and `info` use of a Flatpak app's metadata
// keyfile. Every string in it came from a remote: validated here, escaped
// wherever it is printed.
type appMeta struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"` // ID/ARCH/BRANCH
	Command string `json:"command,omitempty"`
	Context appContext
	Env     []string `json:"environment,omitempty"` // K=V, validated
	// Ignored are entries not granted, with why (shown by info and run).
	Ignored []string `json:"ignored,omitempty"`
}

// appContext is the [Context] group: the permissions an app asks for.
type appContext struct {
	Shared      []string `json:"shared,omitempty"`
	Sockets     []string `json:"sockets,omitempty"`
	Devices     []string `json:"devices,omitempty"`
	Filesystems []string `json:"filesystems,omitempty"`
	Features    []string `json:"features,omitempty"`
}

// Values of [Context] lists that lazytree understands; others are kept
// for display but grant nothing.
var (
	knownShared  = []string{"network", "ipc"}
	knownSockets = []string{"x11", "fallback-x11", "wayland", "pulseaudio", "session-bus", "system-bus", "ssh-auth", "pcsc", "cups", "gpg-agent", "inherit-wayland-socket"}
	knownDevices = []string{"dri", "kvm", "shm", "all", "input", "usb"}
)

// parseAppMeta reads an app's (or a runtime's) metadata. A runtime's has
// [Runtime] instead of [Application]; wantApp says which is required.
func parseAppMeta(data []byte, wantApp bool) (*appMeta, error) {
	kf, err := ostree.ParseKeyFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("metadata does not parse: %w", err)
	}
	m := &appMeta{}
	group := "Application"
	if !wantApp {
		group = "Runtime"
	}
	if !kf.HasGroup(group) {
		return nil, fmt.Errorf("metadata has no [%s] group", group)
	}
	m.Name, _ = kf.String(group, "name")
	m.Runtime, _ = kf.String(group, "runtime")
	m.Command, _ = kf.String(group, "command")
	if wantApp {
		if m.Runtime == "" {
			return nil, errors.New("metadata: [Application] has no runtime=")
		}
		if err := validRuntimeTriple(m.Runtime); err != nil {
			return nil, fmt.Errorf("metadata: runtime=%q: %w", m.Runtime, err)
		}
	}
	list := func(key string) []string {
		v, _ := kf.String("Context", key)
		var out []string
		for _, s := range strings.Split(v, ";") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	keep := func(key string, known []string) []string {
		var out []string
		for _, s := range list(key) {
			switch {
			case strings.HasPrefix(s, "!"):
				// A negation only matters against an override; nothing
				// is granted by it.
			case known != nil && !slices.Contains(known, s):
				m.Ignored = append(m.Ignored, fmt.Sprintf("%s=%s: unknown", key, s))
			default:
				out = append(out, s)
			}
		}
		return out
	}
	m.Context.Shared = keep("shared", knownShared)
	m.Context.Sockets = keep("sockets", knownSockets)
	m.Context.Devices = keep("devices", knownDevices)
	m.Context.Filesystems = keep("filesystems", nil)
	m.Context.Features = keep("features", nil)
	if kf.HasGroup("Environment") {
		for _, k := range kf.Keys("Environment") {
			v, _ := kf.String("Environment", k)
			kv := k + "=" + v
			if err := sandbox.ValidEnv(kv); err != nil {
				m.Ignored = append(m.Ignored, err.Error())
				continue
			}
			m.Env = append(m.Env, kv)
		}
	}
	return m, nil
}

// validRuntimeTriple checks ID/ARCH/BRANCH, each a valid ref component.
func validRuntimeTriple(s string) error {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return errors.New("want ID/ARCH/BRANCH")
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return errors.New("empty or dot component")
		}
	}
	return ostree.ValidateRef("runtime/" + s)
}

// xdgDirs are Flatpak's xdg-* filesystem names and where they are under
// the home directory by default.
var xdgDirs = map[string]string{
	"xdg-desktop": "Desktop", "xdg-documents": "Documents", "xdg-download": "Downloads",
	"xdg-music": "Music", "xdg-pictures": "Pictures", "xdg-public-share": "Public",
	"xdg-templates": "Templates", "xdg-videos": "Videos",
	"xdg-config": ".config", "xdg-data": ".local/share", "xdg-cache": ".cache",
}

// resolveFilesystem turns one filesystems= entry (from metadata or
// --filesystem) into a bind: "home", "xdg-download[/sub]", "~/p", "/p",
// each with an optional :ro, :rw or :create. ok is false (with why) for
// entries lazytree does not grant.
func resolveFilesystem(entry, home string) (b sandbox.Bind, ok bool, why string) {
	p, mode := entry, ""
	if i := strings.LastIndexByte(entry, ':'); i >= 0 {
		p, mode = entry[:i], entry[i+1:]
	}
	switch mode {
	case "", "rw":
	case "ro":
		b.ReadOnly = true
	case "create":
		b.Create = true
	default:
		return b, false, "unknown mode :" + mode
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return b, false, "a path with .."
		}
	}
	head, rest, _ := strings.Cut(p, "/")
	switch {
	case p == "home" || p == "~":
		p = home
	case strings.HasPrefix(p, "~/"):
		p = filepath.Join(home, p[2:])
	case xdgDirs[head] != "":
		p = filepath.Join(home, xdgDirs[head], rest)
	case strings.HasPrefix(p, "/"):
	case head == "host" || head == "host-os" || head == "host-etc" || head == "host-root":
		return b, false, "the host's whole file system is never shared"
	default:
		return b, false, "not a path lazytree understands"
	}
	b.Path = filepath.Clean(p)
	if !b.Create {
		if _, err := os.Stat(b.Path); err != nil {
			return b, false, "missing on this host"
		}
	}
	return b, true, ""
}
