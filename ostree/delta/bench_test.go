package delta

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazytree/lazytree/ostree"
)

// discardSink verifies like any sink but keeps nothing.
type discardSink struct{}

var _ Sink = discardSink{}

func (discardSink) PutMetadata(ctx context.Context, obj ObjRef, data []byte) error { return nil }
func (discardSink) CreateContent(ctx context.Context, c ostree.Checksum, h *ostree.FileHeader) (ContentWriter, error) {
	return discardWriter{}, nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) Commit() error               { return nil }
func (discardWriter) Abort()                      {}

// BenchmarkOpenApply verifies, decompresses and applies the vector parts
// (b.SetBytes is the objects' uncompressed size).
func BenchmarkOpenApply(b *testing.B) {
	repo := vectorRepo(b)
	src := &repoSource{dir: repo}
	for _, v := range vectorDeltas(b) {
		sb, err := ParseSuperblock(readSuperblock(b, repo, v.from, v.to))
		if err != nil {
			b.Fatal(err)
		}
		ph := sb.Parts[0]
		data := ph.Inline
		if data == nil {
			if data, err = os.ReadFile(filepath.Join(repo, sb.Path(), "0")); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(ph.USize))
			for b.Loop() {
				p, err := OpenPart(data, ph, ph.Inline != nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Apply(context.Background(), ph.Objects, src, discardSink{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerate generates a from-scratch delta of 64 files of 256 KiB,
// text-like or random, and reports the throughput over their content.
func BenchmarkGenerate(b *testing.B) {
	for _, kind := range []string{"text", "random"} {
		b.Run(kind, func(b *testing.B) {
			m := newMemRepo()
			files := map[string]ostree.Checksum{}
			r := rand.New(rand.NewPCG(1, 2))
			words := []string{"lorem ", "ipsum ", "dolor ", "sit ", "amet\n", "func ", "return ", "0x1f "}
			var total int64
			for i := range 64 {
				var data []byte
				if kind == "random" {
					data = make([]byte, 256<<10)
					rand.NewChaCha8([32]byte{byte(i)}).Read(data)
				} else {
					var buf bytes.Buffer
					for buf.Len() < 256<<10 {
						buf.WriteString(words[r.IntN(len(words))])
						fmt.Fprint(&buf, r.IntN(1000))
					}
					data = buf.Bytes()
				}
				total += int64(len(data))
				files[fmt.Sprintf("f%02d", i)] = m.putFile(b, &ostree.FileHeader{Mode: ostree.ModeReg | 0o644}, data)
			}
			to := m.commit(b, files)
			b.SetBytes(total)
			var size int
			for b.Loop() {
				size = 0
				_, _, err := Generate(context.Background(), m, nil, to, func(ctx context.Context, i int, data []byte) error {
					size += len(data)
					return nil
				}, GenerateOptions{Timestamp: time.Unix(1, 0)})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size)/float64(total), "ratio")
		})
	}
}

// BenchmarkBspatch applies a patch that rewrites 1 MiB with a diff block
// and an extra block.
func BenchmarkBspatch(b *testing.B) {
	old := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{}).Read(old)
	patch := makePatch(ctrl{diff: make([]byte, 768<<10)}, ctrl{extra: old[:256<<10]})
	buf := make([]byte, chunkSize)
	b.SetBytes(1 << 20)
	for b.Loop() {
		if err := bspatch(context.Background(), bytes.NewReader(old), patch, 1<<20, func([]byte) error { return nil }, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenPart32M opens and applies a part of one 32 MiB object
// (xz, 8 MiB dictionary) held in memory with OpenPart and streamed from a
// file with OpenPartStream; compare B/op, allocs/op and the time.
func BenchmarkOpenPart32M(b *testing.B) {
	bp := makeBigPart(b, 32<<20)
	data, err := os.ReadFile(bp.path)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("memory", func(b *testing.B) {
		b.SetBytes(int64(bp.hdr.USize))
		b.ReportAllocs()
		for b.Loop() {
			p, err := OpenPart(data, bp.hdr, false)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Apply(context.Background(), bp.hdr.Objects, nil, discardSink{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		tmp := b.TempDir()
		b.SetBytes(int64(bp.hdr.USize))
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(bp.path)
			if err != nil {
				b.Fatal(err)
			}
			p, err := OpenPartStream(context.Background(), f, bp.hdr, tmp)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Apply(context.Background(), bp.hdr.Objects, nil, discardSink{}); err != nil {
				b.Fatal(err)
			}
			p.Close()
		}
	})
}
