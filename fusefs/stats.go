package fusefs

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// op names one kind of FUSE request that reaches fusefs.
type op int

const (
	opLookup op = iota
	opGetattr
	opReaddir
	opOpen
	opRead
	opReadlink
	opGetxattr
	opListxattr
	numOps
)

var opNames = [numOps]string{"lookup", "getattr", "readdir", "open", "read", "readlink", "getxattr", "listxattr"}

func (o op) String() string { return opNames[o] }

// ErrorRecord is one failed request, as status.json shows it.
type ErrorRecord struct {
	Time   time.Time `json:"time"`
	Op     string    `json:"op"`
	Path   string    `json:"path,omitempty"`
	Object string    `json:"object,omitempty"`
	Errno  string    `json:"errno"`
	Cause  string    `json:"cause"`
}

// Stats are fusefs's own counters. Bytes read through FUSE passthrough
// never reach the daemon and are not in BytesServed; PassthroughFiles
// counts the backing files handed to the kernel (one per inode, shared by
// its concurrent opens).
type Stats struct {
	Ops              map[string]uint64 `json:"ops"`
	Errors           uint64            `json:"errors"`
	Timeouts         uint64            `json:"timeouts"`
	Interrupts       uint64            `json:"interrupts"`
	BytesServed      uint64            `json:"bytes_served"`
	Opens            uint64            `json:"opens"`
	OpenFiles        int64             `json:"open_files"`
	PassthroughFiles uint64            `json:"passthrough_files"`
	// StreamingOpens counts opens of files served before they were whole
	// (StreamingFile), which are read through the daemon.
	StreamingOpens uint64 `json:"streaming_opens"`
	// PassthroughKernel says whether the kernel offered FUSE passthrough
	// when the mount started.
	PassthroughKernel bool          `json:"passthrough_kernel"`
	SourceInFlight    int64         `json:"source_in_flight"`
	LastErrors        []ErrorRecord `json:"last_errors"`
}

// Status is the document served as .lazytree/status.json.
type Status struct {
	Time       time.Time `json:"time"`
	Mountpoint string    `json:"mountpoint"`
	FS         Stats     `json:"fusefs"`
	Source     any       `json:"source"`
}

// stats is safe for concurrent use; counters are atomics and the error
// ring has its own mutex (taken alone, never with another lock).
type stats struct {
	ops              [numOps]atomic.Uint64
	errors           atomic.Uint64
	timeouts         atomic.Uint64
	interrupts       atomic.Uint64
	bytesServed      atomic.Uint64
	opens            atomic.Uint64
	openFiles        atomic.Int64
	passthroughFiles atomic.Uint64
	streamingOpens   atomic.Uint64
	inflight         atomic.Int64

	mu   sync.Mutex
	ring []ErrorRecord // last maxErrors, oldest first
	max  int
}

func newStats(maxErrors int) *stats { return &stats{max: maxErrors} }

func (s *stats) count(o op) { s.ops[o].Add(1) }

// fail records a failed request. ENOENT for a name that does not exist is
// not a failure and is not recorded; callers do not pass it here.
func (s *stats) fail(o op, path, object string, errno syscall.Errno, cause error) {
	s.errors.Add(1)
	switch {
	case errno == syscall.EINTR:
		s.interrupts.Add(1)
	case errors.Is(cause, context.DeadlineExceeded):
		s.timeouts.Add(1)
	}
	rec := ErrorRecord{Time: time.Now().UTC(), Op: o.String(), Path: path, Object: object, Errno: errnoName(errno)}
	if cause != nil {
		rec.Cause = cause.Error()
	}
	s.mu.Lock()
	if len(s.ring) >= s.max {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:len(s.ring)-1]
	}
	s.ring = append(s.ring, rec)
	s.mu.Unlock()
}

func (s *stats) snapshot() Stats {
	st := Stats{
		Ops:              make(map[string]uint64, numOps),
		Errors:           s.errors.Load(),
		Timeouts:         s.timeouts.Load(),
		Interrupts:       s.interrupts.Load(),
		BytesServed:      s.bytesServed.Load(),
		Opens:            s.opens.Load(),
		OpenFiles:        s.openFiles.Load(),
		PassthroughFiles: s.passthroughFiles.Load(),
		StreamingOpens:   s.streamingOpens.Load(),
		SourceInFlight:   s.inflight.Load(),
	}
	for i := range s.ops {
		st.Ops[op(i).String()] = s.ops[i].Load()
	}
	s.mu.Lock()
	st.LastErrors = append([]ErrorRecord{}, s.ring...)
	s.mu.Unlock()
	return st
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EIO:
		return "EIO"
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EINTR:
		return "EINTR"
	case syscall.EROFS:
		return "EROFS"
	case syscall.ENODATA:
		return "ENODATA"
	}
	return e.Error()
}

// marshalStatus renders a status document; a Source whose Status does not
// marshal is reported as such rather than failing the whole file.
func marshalStatus(st Status) []byte {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		st.Source = map[string]string{"error": "source status does not marshal: " + err.Error()}
		b, _ = json.MarshalIndent(st, "", "  ")
	}
	return append(b, '\n')
}
