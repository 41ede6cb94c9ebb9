package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/sandbox"
)

func TestParseAppMeta(t *testing.T) {
	m, err := parseAppMeta([]byte(`[Application]
name=org.example.App
runtime=org.example.Platform/x86_64/23.08
command=app

[Context]
shared=network;ipc;!ipc;bogus;
sockets=x11;wayland;pulseaudio;
devices=dri;
filesystems=home;xdg-download:ro;/srv/data;host;
features=devel;

[Environment]
FOO=bar
BAD KEY=x
`), true)
	if err != nil {
		t.Fatal(err)
	}
	if m.Runtime != "org.example.Platform/x86_64/23.08" || m.Command != "app" || m.Name != "org.example.App" {
		t.Errorf("application group: %+v", m)
	}
	if strings.Join(m.Context.Shared, ",") != "network,ipc" {
		t.Errorf("shared %v: want network,ipc (negation and unknown entries grant nothing)", m.Context.Shared)
	}
	if strings.Join(m.Context.Filesystems, ",") != "home,xdg-download:ro,/srv/data,host" {
		t.Errorf("filesystems %v", m.Context.Filesystems)
	}
	if strings.Join(m.Env, ",") != "FOO=bar" {
		t.Errorf("environment %v: want FOO=bar only", m.Env)
	}
	if len(m.Ignored) != 2 {
		t.Errorf("ignored %q: want the unknown shared= and the bad key", m.Ignored)
	}
}

func TestParseAppMetaErrors(t *testing.T) {
	for name, in := range map[string]string{
		"no group":        "[Runtime]\nname=x\n",
		"no runtime":      "[Application]\nname=org.a.B\n",
		"runtime shape":   "[Application]\nruntime=org.a.B/x86_64\n",
		"runtime dotdot":  "[Application]\nruntime=../x86_64/1\n",
		"does not parse":  "[Application\nruntime=a/b/c\n",
		"runtime newline": "[Application]\nruntime=a/b/c\x1b[2J\n",
	} {
		if _, err := parseAppMeta([]byte(in), true); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestResolveFilesystem(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "Downloads"), 0o755)
	for _, c := range []struct {
		in   string
		want sandbox.Bind
		ok   bool
	}{
		{"home", sandbox.Bind{Path: home}, true},
		{"~/Downloads:ro", sandbox.Bind{Path: filepath.Join(home, "Downloads"), ReadOnly: true}, true},
		{"xdg-download", sandbox.Bind{Path: filepath.Join(home, "Downloads")}, true},
		{"xdg-config/app:create", sandbox.Bind{Path: filepath.Join(home, ".config/app"), Create: true}, true},
		{"/tmp", sandbox.Bind{Path: "/tmp"}, true},
		{"host", sandbox.Bind{}, false},
		{"host-etc", sandbox.Bind{}, false},
		{"xdg-music", sandbox.Bind{}, false}, // missing here
		{"~/../../etc", sandbox.Bind{}, false},
		{"/srv:bogus", sandbox.Bind{}, false},
		{"relative/path", sandbox.Bind{}, false},
	} {
		got, ok, why := resolveFilesystem(c.in, home)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: got %+v %v (%s), want %+v %v", c.in, got, ok, why, c.want, c.ok)
		}
	}
}

func TestValidAppID(t *testing.T) {
	for _, id := range []string{"org.example.App", "com.github.user_x.Tool-1"} {
		if err := validAppID(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	for _, id := range []string{"", "app", "org..App", "org.1x.App", "org.example/App", "../x.y", "org.ex ample.App"} {
		if validAppID(id) == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestEscapeLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                "plain",
		"a\nforged: line":      `a\x0aforged: line`,
		"tab\there":            `tab\x09here`,
		"\x1b[8mhidden\x1b[0m": `\x1b[8mhidden\x1b[0m`,
		"evil\u202egnp.exe":    `evil\u202egnp.exe`,
		"zero\u200bwidth":      `zero\u200bwidth`,
		"line\u2028sep":        `line\u2028sep`,
		"ünïcödé ok":           "ünïcödé ok",
	} {
		if got := EscapeLine(in); got != want {
			t.Errorf("EscapeLine(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Escape("two\nlines"); got != "two\nlines" {
		t.Errorf("Escape keeps newlines: got %q", got)
	}
}
