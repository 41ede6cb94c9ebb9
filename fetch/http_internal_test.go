package fetch

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestMirrorable: a mirror of a remote that verifies nothing may serve
// only files checked against a checksum from elsewhere.
func TestMirrorable(t *testing.T) {
	for path, want := range map[string]bool{
		"objects/ab/cdef.filez":             true,
		"/objects/ab/cdef.commit":           true,
		"deltas/ab/cdef/superblock":         true,
		"delta-indexes/ab/cdef.index":       true,
		"lazytree/tree-index/abcd":          true,
		"lazytree/profile/abcd":             true,
		"summary":                           false,
		"summary.sig":                       false,
		"summary.idx":                       false,
		"summary.idx.sig":                   false,
		"summaries/abcd.gz":                 false,
		"summaries/abcd.idx.sig":            false,
		"refs/heads/app/org.example/x86_64": false,
		"config":                            false,
		"objectsx/ab":                       false,
	} {
		if got := mirrorable(path); got != want {
			t.Errorf("mirrorable(%q) = %v, want %v", path, got, want)
		}
	}
}

// lastBytesErr returns its data, and with the last of it an error, the
// way a body does when a stall timer or a reset fires as it completes.
type lastBytesErr struct {
	data []byte
	err  error
}

func (r *lastBytesErr) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, r.err
	}
	return n, nil
}

// TestStreamCompleteBodyWithError: a body whose last bytes come with an
// error is complete; the stream must neither resume it (a request sent
// after its slot was given back) nor report the error.
func TestStreamCompleteBodyWithError(t *testing.T) {
	c := &client{opts: HTTPOptions{Retries: 3, StallTimeout: time.Minute}}
	released := 0
	st := &stream{
		c: c, ctx: context.Background(), path: "objects/ab/cdef.filez", want: 6,
		body:     &watchedReader{r: &lastBytesErr{data: []byte("abcdef"), err: errStalled}, opts: &c.opts, c: c, start: time.Now()},
		received: func() { released++ },
	}
	got, err := io.ReadAll(st)
	if err != nil || string(got) != "abcdef" {
		t.Fatalf("ReadAll = %q, %v; want all six bytes and no error", got, err)
	}
	if st.resumes != 0 {
		t.Errorf("%d resume requests for a complete body", st.resumes)
	}
	if released == 0 {
		t.Error("the slot was never given back")
	}
}
