//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hostInits are the names of a host's pid 1 that "pid1" recognises
// without -host-pid1.
var hostInits = []string{"systemd", "init", "upstart", "runit", "openrc-init", "s6-svscan", "tini", "dumb-init"}

// initNS are the inode numbers of the kernel's initial namespaces
// (include/linux/proc_ns.h). Those of net and mnt are fixed only since
// Linux 6.18; on older kernels -host-ns must name them.
var initNS = map[string]string{
	"cgroup": "cgroup:[4026531835]",
	"ipc":    "ipc:[4026531839]",
	"mnt":    "mnt:[4026531832]",
	"net":    "net:[4026531833]",
	"pid":    "pid:[4026531836]",
	"time":   "time:[4026531834]",
	"user":   "user:[4026531837]",
	"uts":    "uts:[4026531838]",
}

// nsTypes are the namespaces "ns:TYPE" reports on, sorted.
var nsTypes = []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}

// statusFields are the /proc/self/status fields reported literally.
var statusFields = []string{"NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp", "Seccomp_filters"}

// checkProc runs the process checks:
//
//   - "pid1": "host-init" when /proc/1/cmdline (NULs as spaces) equals
//     -host-pid1, or names a known init (systemd, init, ...); "sandbox"
//     otherwise (bwrap's or lazytree's own pid 1 of a new pid namespace).
//   - "pid": "pidns" when getpid() < 100 (a fresh pid namespace), else
//     "host-pids".
//   - "ns:TYPE" for cgroup, ipc, mnt, net, pid, time, user and uts:
//     "host" when /proc/self/ns/TYPE is the host's (given by -host-ns, or
//     else the kernel's initial namespace), "new" when it differs.
//   - "status:FIELD" for NoNewPrivs, CapInh, CapPrm, CapEff, CapBnd,
//     CapAmb, Seccomp and Seccomp_filters: "FIELD:VALUE" as
//     /proc/self/status has it ("NoNewPrivs:1", "CapEff:0000000000000000",
//     "Seccomp:2"), or "FIELD:absent".
//   - "uid", "gid": "uid:nonroot" when none of the real, effective and
//     saved ids is 0, else "uid:root" (likewise "gid:...").
func checkProc(res results, cfg *config) {
	res["pid1"] = pid1Result(cfg.hostPID1)
	res["pid"] = "host-pids"
	if os.Getpid() < 100 {
		res["pid"] = "pidns"
	}
	host := map[string]string{}
	for _, l := range cfg.hostNS {
		if t, _, ok := strings.Cut(l, ":"); ok {
			host[t] = l
		}
	}
	for _, t := range nsTypes {
		res["ns:"+t] = nsResult(t, host)
	}
	st, err := readStatus("/proc/self/status")
	for _, f := range statusFields {
		switch v, ok := st[f]; {
		case err != nil:
			res["status:"+f] = f + ":" + errnoName(err)
		case !ok:
			res["status:"+f] = f + ":absent"
		default:
			res["status:"+f] = f + ":" + v
		}
	}
	ru, eu, su := unix.Getresuid()
	res["uid"] = "uid:nonroot"
	if ru == 0 || eu == 0 || su == 0 {
		res["uid"] = "uid:root"
	}
	rg, eg, sg := unix.Getresgid()
	res["gid"] = "gid:nonroot"
	if rg == 0 || eg == 0 || sg == 0 {
		res["gid"] = "gid:root"
	}
}

func pid1Result(hostPID1 string) string {
	b, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		return "cmdline:" + errnoName(err)
	}
	cmd := cmdlineString(b)
	if hostPID1 != "" && cmd == strings.TrimSpace(hostPID1) {
		return "host-init"
	}
	argv0, _, _ := strings.Cut(cmd, " ")
	if slices.Contains(hostInits, filepath.Base(argv0)) {
		return "host-init"
	}
	return "sandbox"
}

// cmdlineString turns a /proc/PID/cmdline (NUL-terminated arguments) into
// one line with the arguments separated by spaces.
func cmdlineString(b []byte) string {
	return strings.TrimSpace(string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
}

func nsResult(t string, host map[string]string) string {
	link, err := os.Readlink("/proc/self/ns/" + t)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "absent"
		}
		return denied(err)
	}
	want, ok := host[t]
	if !ok {
		want = initNS[t]
	}
	if link == want {
		return "host"
	}
	return "new"
}

// parseStatus parses /proc/PID/status ("Name:\tvalue" lines) into a map.
// Lines without a colon are skipped.
func parseStatus(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}

func readStatus(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseStatus(f)
}

// leakedFDs is the "fds" check: the open file descriptors other than 0, 1
// and 2 (and the one it lists with), which a sandbox must not pass to the
// command (bwrap's --seccomp, --args and --info-fd, a FUSE or control
// socket, an open directory of the host). "none", or "N=TARGET ..." in
// ascending order with TARGET normalized by fdTarget. It uses raw
// syscalls so that it opens nothing but the listing fd, and runs first.
func leakedFDs() string {
	dir, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "list:" + errnoName(err)
	}
	defer unix.Close(dir)
	var names []string
	buf := make([]byte, 8<<10)
	for {
		n, err := unix.ReadDirent(dir, buf)
		if err != nil {
			return "list:" + errnoName(err)
		}
		if n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	var fds []int
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 || fd == dir {
			continue
		}
		fds = append(fds, fd)
	}
	if len(fds) == 0 {
		return "none"
	}
	slices.Sort(fds)
	parts := make([]string, len(fds))
	for i, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			target = "?" + errnoName(err)
		}
		parts[i] = fmt.Sprintf("%d=%s", fd, fdTarget(target))
	}
	return strings.Join(parts, " ")
}

var fdInode = regexp.MustCompile(`^([a-z_]+):\[[0-9]+\]$`)

// fdTarget normalizes the link target of /proc/self/fd/N: the inode
// numbers of "pipe:[123]", "socket:[456]" and the like vary between runs
// and are dropped ("pipe", "socket"); paths and "anon_inode:[eventfd]"
// stay as they are.
func fdTarget(t string) string {
	if m := fdInode.FindStringSubmatch(t); m != nil {
		return m[1]
	}
	return t
}

// envChecked are the variables a sandbox must not pass from the host:
// they make the dynamic loader load host code.
var envChecked = []string{"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"}

// checkEnv runs the environment checks:
//
//   - "env:K" for LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT and each
//     -env-absent K: "K:absent", or "K=VALUE" when it is set.
//   - "env:K" for each -env-expect K=V: "ok" when K has the value V,
//     else "K=VALUE" or "K:absent".
func checkEnv(res results, cfg *config) {
	for _, k := range append(slices.Clone(envChecked), cfg.envAbsent...) {
		res["env:"+k] = envValue(k)
	}
	for _, kv := range cfg.envExpect {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := os.LookupEnv(k); ok && got == v {
			res["env:"+k] = "ok"
			continue
		}
		res["env:"+k] = envValue(k)
	}
}

func envValue(k string) string {
	if v, ok := os.LookupEnv(k); ok {
		return k + "=" + v
	}
	return k + ":absent"
}
