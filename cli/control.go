package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
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
// daemon answers (the caller then does the work itself).
func callDaemon(ctx context.Context, home, op string, args any, w io.Writer) (handled bool, err error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "unix", socketPath(home))
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
	ln       net.Listener
	path     string
	handlers map[string]controlHandler
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func listenControl(home string, handlers map[string]controlHandler) (*controlServer, error) {
	p := socketPath(home)
	// A socket left by a crashed daemon: remove it if nobody answers.
	if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("a daemon already serves %s", p)
	}
	os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(p, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	s := &controlServer{ln: ln, path: p, handlers: handlers, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *controlServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
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
