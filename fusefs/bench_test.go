package fusefs_test

import (
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/reposource"
	"github.com/lazytree/lazytree/internal/testutil"
)

// BenchmarkStatTree: lstat of every entry of a 10,000-file tree, warm,
// on local disk and through the mount (the tree committed with
// ostree/repo and served by reposource). "mount" lets the kernel cache
// attributes as the mount does by default (immutable trees); "mount-nocache"
// expires every entry at once, so each lstat is a round trip to the daemon.
func BenchmarkStatTree(b *testing.B) {
	requireFUSE(b)
	files := envInt(b, "LAZYTREE_BENCH_FILES", 10000)
	tree := filepath.Join(b.TempDir(), "tree")
	if err := testutil.GenTree(tree, files, int64(files)*4<<10, 1); err != nil {
		b.Fatal(err)
	}
	repoDir, _ := commitTree(b, "", tree, "gen")
	syscall.Sync()
	var rels []string
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != tree {
			rel, _ := filepath.Rel(tree, p)
			rels = append(rels, rel)
		}
		return err
	})
	statAll := func(b *testing.B, root string) {
		for _, rel := range rels {
			if _, err := os.Lstat(filepath.Join(root, rel)); err != nil {
				b.Fatal(err)
			}
		}
	}
	run := func(b *testing.B, root string) {
		statAll(b, root) // warm
		b.ResetTimer()
		for range b.N {
			statAll(b, root)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rels)), "ns/stat")
	}
	b.Run("disk", func(b *testing.B) { run(b, tree) })
	for _, tc := range []struct {
		name string
		opts fusefs.Options
	}{
		{"mount", fusefs.Options{}},
		{"mount-nocache", fusefs.Options{TreeTimeout: time.Nanosecond, RefTimeout: time.Nanosecond}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			src, err := reposource.New(b.TempDir(), map[string]string{"gen": repoDir})
			if err != nil {
				b.Fatal(err)
			}
			_, mnt := mountSource(b, src, tc.opts)
			run(b, filepath.Join(mnt, "gen/gen"))
		})
	}
}

// BenchmarkSequentialRead: read a big cached file from start to end with
// 1 MiB reads, warm, on local disk and through the mount with and without
// passthrough. LAZYTREE_BENCH_FILE_MB sets the size (default 1024).
func BenchmarkSequentialRead(b *testing.B) {
	requireFUSE(b)
	size := int64(envInt(b, "LAZYTREE_BENCH_FILE_MB", 1024)) << 20
	tree := filepath.Join(b.TempDir(), "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	big := filepath.Join(tree, "big")
	writeRandom(b, big, size)
	repoDir, _ := commitTree(b, "", tree, "big")
	// Reads of freshly written files compete with their writeback: let
	// it finish before measuring.
	syscall.Sync()
	buf := make([]byte, 1<<20)
	readAll := func(b *testing.B, p string) {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		if err != nil || n != size {
			b.Fatalf("read %d of %d bytes: %v", n, size, err)
		}
	}
	run := func(b *testing.B, p string) {
		readAll(b, p) // warm (the mount inflates the object here)
		syscall.Sync()
		readAll(b, p)
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			readAll(b, p)
		}
	}
	b.Run("disk", func(b *testing.B) { run(b, big) })
	for _, tc := range []struct {
		name string
		opts fusefs.Options
	}{
		{"mount-passthrough", fusefs.Options{}},
		{"mount-read", fusefs.Options{NoPassthrough: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			src, err := reposource.New(b.TempDir(), map[string]string{"big": repoDir})
			if err != nil {
				b.Fatal(err)
			}
			srv, mnt := mountSource(b, src, tc.opts)
			run(b, filepath.Join(mnt, "big/big/big"))
			st := srv.Status().FS
			b.ReportMetric(float64(st.Ops["read"])/float64(b.N+1), "fuse-reads/op")
		})
	}
}

// BenchmarkOpenSmall opens, reads and closes each of 2,000 cached 4 KiB
// files, warm, on local disk and through the mount, where by default
// they are too small for passthrough ("mount") and where every file is
// passed through ("mount-passthrough"): the per-open cost a process start
// or a `tar` of a runtime pays (lookups and attributes are cached by the
// kernel).
func BenchmarkOpenSmall(b *testing.B) {
	requireFUSE(b)
	files := envInt(b, "LAZYTREE_BENCH_FILES", 2000)
	tree := filepath.Join(b.TempDir(), "tree")
	if err := testutil.GenTree(tree, files, int64(files)*4<<10, 1); err != nil {
		b.Fatal(err)
	}
	repoDir, _ := commitTree(b, "", tree, "gen")
	syscall.Sync()
	var rels []string
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(tree, p)
			rels = append(rels, rel)
		}
		return err
	})
	buf := make([]byte, 64<<10)
	readAll := func(b *testing.B, root string) {
		for _, rel := range rels {
			f, err := os.Open(filepath.Join(root, rel))
			if err != nil {
				b.Fatal(err)
			}
			for {
				n, err := f.Read(buf)
				if n == 0 || err != nil {
					break
				}
			}
			f.Close()
		}
	}
	run := func(b *testing.B, root string) {
		readAll(b, root) // warm
		b.ResetTimer()
		for range b.N {
			readAll(b, root)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rels)), "ns/file")
	}
	b.Run("disk", func(b *testing.B) { run(b, tree) })
	for _, tc := range []struct {
		name string
		opts fusefs.Options
	}{
		{"mount", fusefs.Options{}},
		{"mount-passthrough", fusefs.Options{PassthroughMin: -1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			src, err := reposource.New(b.TempDir(), map[string]string{"gen": repoDir})
			if err != nil {
				b.Fatal(err)
			}
			_, mnt := mountSource(b, src, tc.opts)
			run(b, filepath.Join(mnt, "gen/gen"))
		})
	}
}

// BenchmarkWalkMemory walks (lstat of every entry) a 50,000-file tree
// through a fresh mount once per iteration and reports the process's heap
// after a GC: "MB-heap" in total, "MB-walk" grown during the walk (fusefs
// nodes plus reposource's in-memory headers and dirtrees), and "MB-sys",
// what the Go runtime holds from the OS. LAZYTREE_BENCH_FILES sets the
// file count.
func BenchmarkWalkMemory(b *testing.B) {
	requireFUSE(b)
	files := envInt(b, "LAZYTREE_BENCH_FILES", 50000)
	tree := filepath.Join(b.TempDir(), "tree")
	if err := testutil.GenTree(tree, files, int64(files)*1<<10, 2); err != nil {
		b.Fatal(err)
	}
	repoDir, _ := commitTree(b, "", tree, "gen")
	if err := os.RemoveAll(tree); err != nil {
		b.Fatal(err)
	}
	var heap, grown, sys float64
	for range b.N {
		src, err := reposource.New(b.TempDir(), map[string]string{"gen": repoDir})
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		srv, mnt := mountSource(b, src, fusefs.Options{})
		n := 0
		err = filepath.WalkDir(filepath.Join(mnt, "gen/gen"), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if _, err := os.Lstat(p); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil || n < files {
			b.Fatalf("walked %d entries: %v", n, err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap += float64(after.HeapInuse) / (1 << 20)
		grown += (float64(after.HeapInuse) - float64(before.HeapInuse)) / (1 << 20)
		sys += float64(after.Sys) / (1 << 20)
		if err := srv.Unmount(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(heap/float64(b.N), "MB-heap")
	b.ReportMetric(grown/float64(b.N), "MB-walk")
	b.ReportMetric(sys/float64(b.N), "MB-sys")
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

func writeRandom(b *testing.B, p string, size int64) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, rng, size); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
