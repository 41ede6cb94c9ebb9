package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket: one JSON request per connection, one JSON reply.
// Commands that change the cache (pull, pin, cache ...) and remote changes
// go through it while a daemon owns the cache (Badger allows one process).

const socketName = "lazytree.sock"

type controlRequest struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

type controlReply struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
	// Usage marks an error that should exit with code 2.
	Usage bool `json:"usage,omitempty"`
}

// controlHandler runs one operation in the daemon, writing what the
// command would print to w.
type controlHandler func(ctx context.Context, args json.RawMessage, w io.Writer) error

func socketPath(home string) string { return filepath.Join(home, socketName) }

// callDaemon sends op to the daemon of home. handled is false when no
// daemon answers (the caller then does the work itself); a socket this
// user may not reach is not "no daemon": it is handled, with the
// permission error (another user's home, see explainForeignHome).
func callDaemon(ctx context.Context, home, op string, args any, w io.Writer) (handled bool, err error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "unix", socketPath(home))
	if errors.Is(err, fs.ErrPermission) {
		return true, fmt.Errorf("daemon: %w", err)
	}
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	raw, err := json.Marshal(args)
	if err != nil {
		return true, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(controlRequest{Op: op, Args: raw}); err != nil {
		return true, fmt.Errorf("daemon: %w", err)
	}
	var rep controlReply
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&rep); err != nil {
		return true, fmt.Errorf("daemon: no reply: %w", err)
	}
	io.WriteString(w, rep.Output)
	if !rep.OK {
		if rep.Usage {
			return true, usageError{errors.New(rep.Error)}
		}
		return true, errors.New(rep.Error)
	}
	return true, nil
}

// controlServer serves the socket until Close.
type controlServer struct {
	ln       *net.UnixListener
	path     string
	handlers map[string]controlHandler
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// listenControl serves handlers on the control socket of home. Every
// operation can change or stop the daemon, so only root and the daemon's
// own user may use it, and that is enforced twice: the socket is never
// connectable by anyone else at any instant (listenPrivate), and every
// peer's credentials are checked (checkPeer) in case the file system
// check is ever lost (a home on a file system without permissions, a
// socket path handed to a sandbox).
func listenControl(home string, handlers map[string]controlHandler) (*controlServer, error) {
	p := socketPath(home)
	// A socket left by a crashed daemon: replace it if nobody answers.
	if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("a daemon already serves %s", p)
	}
	ln, err := listenPrivate(p)
	if err != nil {
		return nil, err
	}
	return newControlServer(ln, p, handlers), nil
}

// controlBoundHook, when set (tests only), runs between bind and rename
// with the path the socket was bound at.
var controlBoundHook func(bound string)

// listenPrivate binds a unix socket that appears at path already
// owner-only. A socket bound in place gets the process umask and could be
// connected to before a chmod; umask itself is process-wide and so not
// safe to change in a daemon with goroutines. So the socket is bound in a
// fresh 0700 directory next to path, made 0600 there, and renamed into
// place: rename keeps the inode that connect looks up, and replaces a
// stale socket atomically.
func listenPrivate(path string) (*net.UnixListener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".ctl")
	if err != nil {
		return nil, fmt.Errorf("listen control socket %s: %w", path, err)
	}
	defer os.Remove(dir)
	bound := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen control socket %s: %w", path, err)
	}
	// Close must not unlink the bound name: the socket lives at path.
	ln.SetUnlinkOnClose(false)
	if controlBoundHook != nil {
		controlBoundHook(bound)
	}
	err = os.Chmod(bound, 0o600)
	if err == nil {
		err = os.Rename(bound, path)
	}
	if err != nil {
		ln.Close()
		os.Remove(bound)
		return nil, fmt.Errorf("listen control socket %s: %w", path, err)
	}
	return ln, nil
}

func newControlServer(ln *net.UnixListener, path string, handlers map[string]controlHandler) *controlServer {
	ln.SetUnlinkOnClose(false)
	ctx, cancel := context.WithCancel(context.Background())
	s := &controlServer{ln: ln, path: path, handlers: handlers, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.serve()
	return s
}

func (s *controlServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			if err := checkPeer(conn); err != nil {
				refuse(conn, err)
				return
			}
			s.handle(conn)
		}()
	}
}

// checkPeer admits root and the daemon's own user (SO_PEERCRED: the
// credentials the peer had when it connected, which it cannot forge).
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("check control peer: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("check control peer: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("check control peer: %w", cerr)
	}
	if own := os.Geteuid(); cred.Uid != 0 && int(cred.Uid) != own {
		return fmt.Errorf("refuse control connection from uid %d (pid %d): only root and uid %d may use this daemon", cred.Uid, cred.Pid, own)
	}
	return nil
}

// refuse tells a peer that checkPeer turned away why. Its request is read
// first (bounded in size and time: the peer is not trusted) so that the
// close does not reset the connection before the reply is read.
func refuse(conn *net.UnixConn, why error) {
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var req controlRequest
	json.NewDecoder(io.LimitReader(conn, 64<<10)).Decode(&req)
	json.NewEncoder(conn).Encode(controlReply{Error: why.Error()})
}

func (s *controlServer) handle(conn net.Conn) {
	var req controlRequest
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	rep := controlReply{OK: true}
	h, ok := s.handlers[req.Op]
	var out bytes.Buffer
	if !ok {
		rep = controlReply{Error: fmt.Sprintf("unknown daemon operation %q", req.Op)}
	} else if err := h(s.ctx, req.Args, &out); err != nil {
		var u usageError
		rep = controlReply{Error: err.Error(), Usage: errors.As(err, &u)}
	}
	rep.Output = out.String()
	json.NewEncoder(conn).Encode(rep)
}

// Close stops accepting, waits for running operations and removes the
// socket.
func (s *controlServer) Close() {
	s.ln.Close()
	s.cancel()
	s.wg.Wait()
	os.Remove(s.path)
}

// daemonRunning reports whether a daemon answers on home's socket.
func daemonRunning(home string) bool {
	conn, err := net.DialTimeout("unix", socketPath(home), 2*time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
