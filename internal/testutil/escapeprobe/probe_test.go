//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// A mountinfo as a bwrap sandbox shows it (shortened): a tmpfs root, the
// runtime and app bound read-only, /proc with /proc/sys re-bound read-only,
// and a mount point with a space in it.
const sampleMountinfo = `1270 1269 0:91 / / rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=4k
1271 1270 254:0 /tmp/rt/files /usr ro,nosuid,nodev,relatime master:1 - ext4 /dev/vda rw
1272 1270 254:0 /tmp/app/files /app ro,nosuid,nodev,relatime - ext4 /dev/vda rw
1273 1270 0:92 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1274 1273 0:92 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
1275 1270 0:93 / /dev rw,nosuid,relatime - tmpfs tmpfs rw,mode=755
1276 1270 254:0 /x /my\040dir rw,relatime - ext4 /dev/vda ro
1277 1271 0:94 / /usr rw,nosuid,nodev - tmpfs tmpfs rw
`

func TestParseMountinfo(t *testing.T) {
	mounts, err := parseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 8 {
		t.Fatalf("parsed %d mounts, want 8", len(mounts))
	}
	if mounts[6].point != "/my dir" {
		t.Errorf("escaped mount point = %q, want %q", mounts[6].point, "/my dir")
	}
	tests := []struct{ path, want string }{
		{"/", "rw,nosuid,nodev"},
		{"/etc", "rw,nosuid,nodev"},           // in the root tmpfs
		{"/app", "ro,nosuid,nodev"},           // a mount point
		{"/app/bin/hello", "ro,nosuid,nodev"}, // below one
		{"/usr", "rw,nosuid,nodev"},           // the later mount on the same point wins
		{"/proc/sys", "ro,nosuid,nodev,noexec"},
		{"/proc/sysrq-trigger", "rw,nosuid,nodev,noexec"}, // a prefix that is not a parent
		{"/proc/sys/kernel", "ro,nosuid,nodev,noexec"},
		{"/dev", "rw,nosuid"},
		{"/my dir/f", "ro"}, // ro from the superblock options
	}
	for _, tt := range tests {
		if got := mountOptions(mounts, tt.path); got != tt.want {
			t.Errorf("mountOptions(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
	if got := mountOptions(nil, "/usr"); got != "unmounted" {
		t.Errorf("mountOptions with no mounts = %q, want unmounted", got)
	}
}

func TestParseMountinfoErrors(t *testing.T) {
	for _, in := range []string{
		"1 2 0:1 / / rw\n",                // no separator
		"1 2 0:1 / /a\\04 rw - t s rw\n",  // truncated escape
		"1 2 0:1 / /a\\9zz rw - t s rw\n", // not octal
		"1 2 0:1 / / rw - tmpfs\n",        // separator without fstype, source and options
	} {
		if _, err := parseMountinfo(strings.NewReader(in)); err == nil {
			t.Errorf("parseMountinfo(%q) succeeded, want an error", in)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(sampleMountinfo))
	f.Add([]byte("1 2 0:1 / /a\\134b rw - t s ro\n"))
	f.Add([]byte("1 2 0:1 / / rw shared:1 master:2 - t s rw\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mounts, err := parseMountinfo(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, m := range mounts {
			s := mountOptions(mounts, m.point)
			if !strings.HasPrefix(s, "ro") && !strings.HasPrefix(s, "rw") {
				t.Fatalf("mountOptions(%q) = %q, want ro... or rw...", m.point, s)
			}
		}
	})
}

const sampleNetDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 1500     12    0    0    0     0          0         0     3000      24    0    0    0     0       0          0
`

func TestParseNetDev(t *testing.T) {
	names, err := parseNetDev(strings.NewReader(sampleNetDev))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "lo eth0" {
		t.Errorf("names = %q, want [lo eth0]", names)
	}
	tests := []struct {
		names []string
		want  string
	}{
		{nil, "none"},
		{[]string{"lo"}, "loopback-only"},
		{[]string{"lo", "eth0"}, "non-loopback"},
		{[]string{"tap0"}, "non-loopback"},
	}
	for _, tt := range tests {
		if got := interfacesResult(tt.names); got != tt.want {
			t.Errorf("interfacesResult(%q) = %q, want %q", tt.names, got, tt.want)
		}
	}
	if _, err := parseNetDev(strings.NewReader("h1\nh2\nno colon here\n")); err == nil {
		t.Error("parseNetDev of a line without a name succeeded, want an error")
	}
}

func FuzzParseNetDev(f *testing.F) {
	f.Add([]byte(sampleNetDev))
	f.Add([]byte("a\nb\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := parseNetDev(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" || strings.Contains(n, ":") || strings.TrimSpace(n) != n {
				t.Fatalf("interface name %q", n)
			}
		}
	})
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tescapeprobe\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\nSeccomp:\t2\nSeccomp_filters:\t1\ngarbage\n"
	st, err := parseStatus(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Name": "escapeprobe", "NoNewPrivs": "1", "CapEff": "0000000000000000", "Seccomp": "2", "Seccomp_filters": "1"}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("parseStatus = %v, want %v", st, want)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("NoNewPrivs:\t1\nCapEff:\t0000000000000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStatus(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for k, v := range st {
			if strings.Contains(k, ":") || strings.TrimSpace(v) != v {
				t.Fatalf("field %q = %q", k, v)
			}
		}
	})
}

func TestFDTarget(t *testing.T) {
	tests := []struct{ in, want string }{
		{"pipe:[12345]", "pipe"},
		{"socket:[9]", "socket"},
		{"anon_inode:[eventpoll]", "anon_inode:[eventpoll]"},
		{"anon_inode:bpf-map", "anon_inode:bpf-map"},
		{"/home/u/secret (deleted)", "/home/u/secret (deleted)"},
		{"/dev/fuse", "/dev/fuse"},
	}
	for _, tt := range tests {
		if got := fdTarget(tt.in); got != tt.want {
			t.Errorf("fdTarget(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCmdlineString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/sbin/init\x00", "/sbin/init"},
		{"bwrap\x00--args\x0027\x00sh\x00", "bwrap --args 27 sh"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := cmdlineString([]byte(tt.in)); got != tt.want {
			t.Errorf("cmdlineString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestErrnoName(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{syscall.EPERM, "EPERM"},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}, "ENOENT"},
		{fmt.Errorf("dial: %w", os.ErrDeadlineExceeded), "timeout"},
		{errors.New("odd"), "odd"},
	}
	for _, tt := range tests {
		if got := errnoName(tt.err); got != tt.want {
			t.Errorf("errnoName(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestSummarizeOptions(t *testing.T) {
	if got := summarizeOptions([]string{"noexec", "rw", "nodev", "relatime", "nosuid"}); got != "rw,nosuid,nodev,noexec" {
		t.Errorf("summarizeOptions = %q", got)
	}
	if got := summarizeOptions([]string{"rw", "ro"}); got != "ro" {
		t.Errorf("summarizeOptions with per-mount rw and superblock ro = %q, want ro", got)
	}
}

// TestProbeTableNames checks that every probe has a distinct key of the
// documented families, since the keys are what sandboxes are compared by.
func TestProbeTableNames(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range probes {
		if seen[p.key] {
			t.Errorf("duplicate probe key %q", p.key)
		}
		seen[p.key] = true
		if !strings.HasPrefix(p.key, "seccomp:") && !strings.HasPrefix(p.key, "userns:") {
			t.Errorf("probe key %q is neither seccomp:... nor userns:...", p.key)
		}
	}
}

func TestStatState(t *testing.T) {
	tests := []struct{ in, want string }{
		{"42 (escapeprobe) Z 1 42 42 0 -1", "Z"},
		{"7 (a (b) c) S 1", "S"},
		{"7 (x)", ""},
		{"garbage", ""},
	}
	for _, tt := range tests {
		if got := statState(tt.in); got != tt.want {
			t.Errorf("statState(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
