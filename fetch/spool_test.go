package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestSpoolReaderFollowsDownload(t *testing.T) {
	sp, err := newSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	want := bytes.Repeat([]byte("part bytes "), 10000)
	if err := sp.start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := 0; i < len(want); i += 7000 {
			sp.Write(want[i:min(i+7000, len(want))])
			time.Sleep(time.Millisecond)
		}
		sp.finish(nil)
	}()
	got, err := io.ReadAll(sp.reader(context.Background()))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (err %v), want the %d written", len(got), err, len(want))
	}
}

func TestSpoolRestartAndErrors(t *testing.T) {
	sp, err := newSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.start()
	sp.Write([]byte("first attempt"))
	r := sp.reader(context.Background())
	buf := make([]byte, 5)
	if n, err := r.Read(buf); n != 5 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	sp.start() // a retry starts over
	if _, err := r.Read(buf); !errors.Is(err, errSpoolRestarted) {
		t.Fatalf("read after a restart: %v, want errSpoolRestarted", err)
	}
	sp.Write([]byte("second"))
	boom := errors.New("connection reset")
	sp.finish(boom)
	got, err := io.ReadAll(sp.reader(context.Background()))
	if string(got) != "second" || !errors.Is(err, boom) {
		t.Fatalf("second attempt: %q, %v; want its bytes, then its error", got, err)
	}

	// A reader waiting for bytes that never come stops with its context.
	sp2, _ := newSpool(t.TempDir())
	defer sp2.Close()
	sp2.start()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sp2.reader(ctx).Read(buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting reader: %v, want its context's error", err)
	}
}
