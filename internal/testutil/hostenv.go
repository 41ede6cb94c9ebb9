package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// User is an unprivileged user created for a test (CreateUser).
type User struct {
	Name     string
	UID, GID int
	Home     string
	// Cred starts a child as the user (SysProcAttr.Credential).
	Cred *syscall.Credential
}

// CreateUser adds a user with home directory home (created, owned by the
// user) for the rest of the test and removes it at cleanup. It needs
// root and useradd (skipped, or failed under CI, without them).
func CreateUser(t testing.TB, home string) User {
	t.Helper()
	RequireRoot(t)
	useradd := RequireTool(t, "useradd")
	name := fmt.Sprintf("lt%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	Run(t, "", nil, useradd, "-M", "-d", home, "-s", "/bin/sh", name)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	return User{Name: name, UID: uid, GID: gid, Home: home, Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// ServeSink accepts connections on l and closes each at once until l is
// closed (at the end of the test): a peer to connect to.
func ServeSink(t testing.TB, l net.Listener) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// TCPSink is ServeSink on a new 127.0.0.1 port; it returns the address.
func TCPSink(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeSink(t, l)
	return l.Addr().String()
}

// WaitProcs waits up to timeout until exactly want processes have the
// command line argv (NUL-separated, as /proc/PID/cmdline) and returns
// their pids. Tests give their processes a unique argument to find them
// by, never a broad name.
func WaitProcs(argv []string, want int, timeout time.Duration) []int {
	var cmdline []byte
	for _, a := range argv {
		cmdline = append(append(cmdline, a...), 0)
	}
	find := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); bytes.Equal(b, cmdline) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	deadline := time.Now().Add(timeout)
	pids := find()
	for len(pids) != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		pids = find()
	}
	return pids
}
