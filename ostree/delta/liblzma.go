//go:build cgo

package delta

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

// lt_stream is liblzma's lzma_stream (lzma/base.h), whose layout is part
// of liblzma.so.5's ABI: declared here so that building needs no
// liblzma headers, and the library is only loaded when present.
typedef struct {
	const uint8_t *next_in;
	size_t avail_in;
	uint64_t total_in;
	uint8_t *next_out;
	size_t avail_out;
	uint64_t total_out;
	const void *allocator;
	void *internal;
	void *reserved_ptr1, *reserved_ptr2, *reserved_ptr3, *reserved_ptr4;
	uint64_t seek_pos, reserved_int2;
	size_t reserved_int3, reserved_int4;
	int reserved_enum1, reserved_enum2;
} lt_stream;

static int (*lt_stream_decoder)(lt_stream *, uint64_t, uint32_t);
static int (*lt_code)(lt_stream *, int);
static void (*lt_end)(lt_stream *);

static int lt_load(void) {
	void *h = dlopen("liblzma.so.5", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return 0;
	lt_stream_decoder = (int (*)(lt_stream *, uint64_t, uint32_t))dlsym(h, "lzma_stream_decoder");
	lt_code = (int (*)(lt_stream *, int))dlsym(h, "lzma_code");
	lt_end = (void (*)(lt_stream *))dlsym(h, "lzma_end");
	return lt_stream_decoder && lt_code && lt_end;
}

enum { LT_BUF = 64 << 10 };

// lt_dec is a decoder with its input and output buffers, all in C memory:
// the stream keeps pointers into them between calls.
typedef struct {
	lt_stream s;
	uint8_t in[LT_BUF];
	uint8_t out[LT_BUF];
} lt_dec;

// lt_new returns a single-stream .xz decoder that refuses to use more
// than memlimit bytes, or NULL with liblzma's error in *ret.
static lt_dec *lt_new(uint64_t memlimit, int *ret) {
	lt_dec *d = calloc(1, sizeof(lt_dec));
	if (!d) {
		*ret = 5; // LZMA_MEM_ERROR
		return NULL;
	}
	*ret = lt_stream_decoder(&d->s, memlimit, 0);
	if (*ret != 0) {
		lt_end(&d->s);
		free(d);
		return NULL;
	}
	return d;
}

static void lt_free(lt_dec *d) {
	lt_end(&d->s);
	free(d);
}

// lt_run decodes what input is pending into the emptied output buffer
// and returns liblzma's answer; *n is the bytes it wrote.
static int lt_run(lt_dec *d, int finish, size_t *n) {
	d->s.next_out = d->out;
	d->s.avail_out = LT_BUF;
	int ret = lt_code(&d->s, finish ? 3 : 0); // LZMA_FINISH : LZMA_RUN
	*n = LT_BUF - d->s.avail_out;
	return ret;
}

// lt_fill makes in[0:n) the pending input.
static void lt_fill(lt_dec *d, size_t n) {
	d->s.next_in = d->in;
	d->s.avail_in = n;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"unsafe"
)

// liblzma is whether the system's liblzma.so.5 could be loaded: xz
// parts are then decoded by it (the library xz and ostree use) rather
// than by the Go port. On a 157 MB runtime's 4 parts of ostree's it
// decoded 1.4x as fast, which is what a pull with one decoder waits on
// (see fetch's deltaDecoders).
var liblzma = sync.OnceValue(func() bool { return C.lt_load() != 0 })

// lzmaReader decodes one .xz stream of r with liblzma.
type lzmaReader struct {
	r        io.Reader
	d        *C.lt_dec
	in, out  []byte // d's buffers
	pos, end int    // out[pos:end] is decoded and not yet read
	eof      bool   // r is at its end
	err      error  // what Read returns once out is drained
}

// newLzmaReader returns a decoder of r that uses at most memlimit bytes
// (the dictionary and its tables), or an error if liblzma cannot be used.
func newLzmaReader(r io.Reader, memlimit uint64) (*lzmaReader, error) {
	if !liblzma() {
		return nil, errNoLiblzma
	}
	var ret C.int
	d := C.lt_new(C.uint64_t(memlimit), &ret)
	if d == nil {
		return nil, lzmaError(ret)
	}
	return &lzmaReader{
		r:   r,
		d:   d,
		in:  unsafe.Slice((*byte)(unsafe.Pointer(&d.in[0])), len(d.in)),
		out: unsafe.Slice((*byte)(unsafe.Pointer(&d.out[0])), len(d.out)),
	}, nil
}

var errNoLiblzma = errors.New("liblzma.so.5 not loaded")

func (z *lzmaReader) Read(p []byte) (int, error) {
	for {
		if z.pos < z.end {
			n := copy(p, z.out[z.pos:z.end])
			z.pos += n
			return n, nil
		}
		if z.err != nil {
			return 0, z.err
		}
		if z.d.s.avail_in == 0 && !z.eof {
			n, err := io.ReadAtLeast(z.r, z.in, 1)
			switch {
			case errors.Is(err, io.EOF):
				z.eof = true
			case err != nil:
				z.err = err
				return 0, err
			}
			C.lt_fill(z.d, C.size_t(n))
		}
		finish := C.int(0)
		if z.eof {
			finish = 1
		}
		var n C.size_t
		ret := C.lt_run(z.d, finish, &n)
		z.pos, z.end = 0, int(n)
		switch ret {
		case 0: // LZMA_OK
		case 1: // LZMA_STREAM_END: what follows the stream is not read
			z.err = io.EOF
		default:
			z.err = lzmaError(ret)
		}
	}
}

// Close frees the decoder (its dictionary goes back to the system).
func (z *lzmaReader) Close() {
	if z.d != nil {
		C.lt_free(z.d)
		z.d = nil
	}
}

// lzmaError describes liblzma's lzma_ret codes.
func lzmaError(ret C.int) error {
	switch ret {
	case 5:
		return errors.New("liblzma: out of memory")
	case 6:
		return errors.New("liblzma: the dictionary is larger than allowed")
	case 7:
		return errors.New("liblzma: not an .xz stream")
	case 8:
		return errors.New("liblzma: unsupported options")
	case 9:
		return errors.New("liblzma: corrupt data")
	case 10:
		return io.ErrUnexpectedEOF
	}
	return fmt.Errorf("liblzma: error %d", int(ret))
}
