package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/internal/testutil"
)

// The tests here connect to control sockets as another user: the test
// binary runs itself again as TestHelperControlDial, which drops to
// nobody before it dials. Running as root and calling setuid in the child
// (rather than exec'ing as nobody) means the binary need not be readable
// by nobody.
const (
	dialHelperEnv = "LAZYTREE_TEST_CONTROL_DIAL"
	nobody        = 65534
	resultPrefix  = "control-dial-result: "
)

// dialResult is what the helper reports.
type dialResult struct {
	SetuidError string        `json:"setuid_error,omitempty"`
	DialError   string        `json:"dial_error,omitempty"`
	EACCES      bool          `json:"eacces,omitempty"`
	Reply       *controlReply `json:"reply,omitempty"`
	ReplyError  string        `json:"reply_error,omitempty"`
}

// TestHelperControlDial is not a test: it is the child of dialAsNobody.
func TestHelperControlDial(t *testing.T) {
	path := os.Getenv(dialHelperEnv)
	if path == "" {
		return
	}
	var res dialResult
	defer func() {
		b, _ := json.Marshal(res)
		fmt.Printf("\n%s%s\n", resultPrefix, b)
		os.Exit(0)
	}()
	if err := syscall.Setgroups(nil); err != nil {
		res.SetuidError = err.Error()
		return
	}
	if err := syscall.Setgid(nobody); err != nil {
		res.SetuidError = err.Error()
		return
	}
	if err := syscall.Setuid(nobody); err != nil {
		res.SetuidError = err.Error()
		return
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		res.DialError, res.EACCES = err.Error(), errors.Is(err, syscall.EACCES)
		return
	}
	defer conn.Close()
	// A socket that is bound but not yet served accepts and never
	// replies.
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(conn).Encode(controlRequest{Op: "probe"}); err != nil {
		res.ReplyError = err.Error()
		return
	}
	var rep controlReply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		res.ReplyError = err.Error()
		return
	}
	res.Reply = &rep
}

// dialAsNobody connects to the unix socket at path as uid 65534 from a
// child process and sends it a "probe" request.
func dialAsNobody(t *testing.T, path string) dialResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperControlDial$", "-test.count=1")
	cmd.Env = append(os.Environ(), dialHelperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dial helper: %v\n%s", err, out)
	}
	_, line, ok := strings.Cut(string(out), resultPrefix)
	if !ok {
		t.Fatalf("dial helper printed no result:\n%s", out)
	}
	line, _, _ = strings.Cut(line, "\n")
	var res dialResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("dial helper result %q: %v", line, err)
	}
	if res.SetuidError != "" {
		testutil.SkipOrFail(t, "cannot become uid %d: %s", nobody, res.SetuidError)
	}
	return res
}

// publicDir makes a directory that uid 65534 can search, under /tmp
// (t.TempDir's parents are 0700) with a short name (sockaddr_un holds 108
// bytes).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ltctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openSocket is a control server on a socket that anyone may connect to,
// as a broken file system check would leave it: only checkPeer stands
// between another user and the handlers.
func openSocket(t *testing.T, dir string, handlers map[string]controlHandler) string {
	t.Helper()
	p := filepath.Join(dir, "open.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	s := newControlServer(ln, p, handlers)
	t.Cleanup(s.Close)
	return p
}

// TestControlSocketNeverOpenToOthers reproduces hole 7 of issue 8: the
// socket was bound with the process umask in place and chmodded 0600
// after listen, so with umask 000 another user connected (and unmounted
// the daemon) in between. Now, at the instant of bind and after, uid
// 65534 cannot connect, whatever the umask.
func TestControlSocketNeverOpenToOthers(t *testing.T) {
	testutil.RequireRoot(t)
	home := publicDir(t)
	// The control: in this very directory, nobody can connect to a socket
	// whose mode allows it, so the refusals below are the permissions'
	// doing and not an unreachable directory's.
	if res := dialAsNobody(t, openSocket(t, home, map[string]controlHandler{})); res.DialError != "" {
		t.Fatalf("uid %d cannot reach an open socket in %s: %s", nobody, home, res.DialError)
	}

	old := syscall.Umask(0)
	defer syscall.Umask(old)
	var atBind *dialResult
	var boundDirMode os.FileMode
	controlBoundHook = func(bound string) {
		st, err := os.Stat(filepath.Dir(bound))
		if err != nil {
			t.Errorf("stat the bind directory: %v", err)
			return
		}
		boundDirMode = st.Mode().Perm()
		r := dialAsNobody(t, bound)
		atBind = &r
	}
	defer func() { controlBoundHook = nil }()
	var ran atomic.Bool
	s, err := listenControl(home, map[string]controlHandler{
		"probe": func(ctx context.Context, _ json.RawMessage, w io.Writer) error { ran.Store(true); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	syscall.Umask(old)

	if atBind == nil {
		t.Fatal("the bind hook did not run")
	}
	if boundDirMode != 0o700 {
		t.Errorf("the socket was bound in a directory of mode %o, want 700", boundDirMode)
	}
	if atBind.DialError == "" || !atBind.EACCES {
		t.Errorf("at bind, uid %d: dial error %q, want permission denied (reply %+v)", nobody, atBind.DialError, atBind.Reply)
	}
	st, err := os.Stat(socketPath(home))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want a socket of mode 600", socketPath(home), st.Mode())
	}
	after := dialAsNobody(t, socketPath(home))
	if after.DialError == "" || !after.EACCES {
		t.Errorf("after listen, uid %d: dial error %q, want permission denied (reply %+v)", nobody, after.DialError, after.Reply)
	}
	if ran.Load() {
		t.Fatal("a handler ran for uid 65534")
	}
	entries, _ := os.ReadDir(home)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".ctl") {
			t.Errorf("bind directory %s left behind", e.Name())
		}
	}
	// The owner still gets through.
	handled, err := callDaemon(context.Background(), home, "probe", nil, io.Discard)
	if !handled || err != nil || !ran.Load() {
		t.Fatalf("root's call: handled %v, err %v, handler ran %v", handled, err, ran.Load())
	}
	// A second daemon is refused while the first serves, and a socket
	// left by a dead one is replaced.
	if _, err := listenControl(home, nil); err == nil {
		t.Fatal("a second daemon took over a served socket")
	}
}

// TestControlRefusesOtherUsers: a peer whose SO_PEERCRED uid is neither
// root nor the daemon's gets a refusal and no handler runs, even when the
// socket's mode would let it connect.
func TestControlRefusesOtherUsers(t *testing.T) {
	testutil.RequireRoot(t)
	var ran atomic.Bool
	p := openSocket(t, publicDir(t), map[string]controlHandler{
		"probe": func(ctx context.Context, _ json.RawMessage, w io.Writer) error { ran.Store(true); return nil },
	})
	res := dialAsNobody(t, p)
	if res.DialError != "" || res.ReplyError != "" {
		t.Fatalf("uid %d: dial error %q, reply error %q; want a refusal reply", nobody, res.DialError, res.ReplyError)
	}
	if res.Reply.OK || !strings.Contains(res.Reply.Error, fmt.Sprintf("uid %d", nobody)) {
		t.Fatalf("uid %d got reply %+v, want a refusal naming its uid", nobody, *res.Reply)
	}
	if ran.Load() {
		t.Fatalf("the handler ran for uid %d", nobody)
	}
	// Root is let in through the same socket.
	conn, err := net.Dial("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	json.NewEncoder(conn).Encode(controlRequest{Op: "probe"})
	var rep controlReply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || !ran.Load() {
		t.Fatalf("root got %+v, handler ran %v", rep, ran.Load())
	}
}
