package testutil

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
)

// Shape of the trees GenTree makes.
const (
	genFilesPerDir = 100
	genFanout      = 8 // subdirectories per directory level
	genChunk       = 64 << 10
)

var (
	genExts  = []string{".so", ".txt", ".png", ".json", "", ".py", ".mo", ".h", ".svg", ".bin"}
	genWords = []string{
		"the", "of", "runtime", "flatpak", "ostree", "commit", "object", "tree",
		"static", "library", "version", "license", "gnome", "glib", "include", "return",
		"int", "void", "const", "struct", "file", "path", "data", "error",
		"{", "}", "(", ")", ";", "=", "0x00", "\n",
	}
)

// GenTree writes a deterministic tree for benchmarks into dir (created if
// missing): files regular files whose sizes sum to exactly totalBytes,
// about 100 per directory in directories nested 8 wide; sizes have a long
// tail (mostly small files, a few large ones, some empty); content is
// a per-file mix of text-like (compresses well) and random (does not)
// 64 KiB blocks; about 10 % are executable, and every directory also
// holds a relative symlink to one of its files and, every fifth one, an
// absolute symlink. The same arguments always give the same tree.
// Files are written by GOMAXPROCS goroutines that end before it returns.
func GenTree(dir string, files int, totalBytes int64, seed int64) error {
	if files <= 0 || totalBytes < 0 {
		return fmt.Errorf("gen tree: want files > 0 and totalBytes >= 0, got %d and %d", files, totalBytes)
	}
	sizes := genSizes(files, totalBytes, seed)
	ndirs := (files + genFilesPerDir - 1) / genFilesPerDir
	depth := 1
	for n := genFanout; n < ndirs; n *= genFanout {
		depth++
	}

	type job struct {
		path  string
		index int
		size  int64
		exec  bool
	}
	jobs := make(chan job)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			buf := make([]byte, genChunk)
			for j := range jobs {
				if err := genFile(j.path, j.size, j.exec, fileRNG(seed, j.index), buf); err != nil {
					fail(err)
				}
			}
		})
	}

	shape := rand.New(rand.NewPCG(uint64(seed), 0x7368617065)) // "shape"
	for k := 0; k < ndirs && !failed(); k++ {
		d := filepath.Join(dir, genDirPath(k, depth))
		if err := os.MkdirAll(d, 0o755); err != nil {
			fail(fmt.Errorf("gen tree: %w", err))
			break
		}
		first := k * genFilesPerDir
		last := min(first+genFilesPerDir, files)
		for i := first; i < last; i++ {
			name := "f" + strconv.Itoa(i) + genExts[shape.IntN(len(genExts))]
			jobs <- job{path: filepath.Join(d, name), index: i, size: sizes[i], exec: shape.IntN(10) == 0}
			if i == first {
				if err := os.Symlink(name, filepath.Join(d, "link-to-first")); err != nil {
					fail(fmt.Errorf("gen tree: %w", err))
				}
			}
		}
		if k%5 == 0 {
			if err := os.Symlink("/usr/lib/os-release", filepath.Join(d, "abs-link")); err != nil {
				fail(fmt.Errorf("gen tree: %w", err))
			}
		}
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

// genDirPath names directory k as its depth base-8 digits, "d3/d0/d7".
func genDirPath(k, depth int) string {
	parts := make([]string, depth)
	for i := depth - 1; i >= 0; i-- {
		parts[i] = "d" + strconv.Itoa(k%genFanout)
		k /= genFanout
	}
	return filepath.Join(parts...)
}

// genSizes draws Pareto-distributed weights (a long tail), scales them to
// sum to total exactly, and makes about 1 % of files empty.
func genSizes(files int, total int64, seed int64) []int64 {
	r := rand.New(rand.NewPCG(uint64(seed), 0x73697a6573)) // "sizes"
	w := make([]float64, files)
	var sum float64
	for i := range w {
		if r.IntN(100) == 0 {
			continue
		}
		// Pareto with alpha 1.2, capped so one file cannot dwarf a small tree.
		w[i] = math.Min(math.Pow(1-r.Float64(), -1/1.2), 5000)
		sum += w[i]
	}
	sizes := make([]int64, files)
	if sum == 0 {
		sizes[0] = total
		return sizes
	}
	var used int64
	largest := 0
	for i := range w {
		sizes[i] = int64(w[i] / sum * float64(total))
		used += sizes[i]
		if w[i] > w[largest] {
			largest = i
		}
	}
	// Rounding left a small remainder (or, in float error, an excess).
	sizes[largest] += total - used
	if sizes[largest] < 0 {
		sizes[largest] = 0
	}
	return sizes
}

func fileRNG(seed int64, index int) *rand.ChaCha8 {
	var in [16]byte
	binary.LittleEndian.PutUint64(in[:8], uint64(seed))
	binary.LittleEndian.PutUint64(in[8:], uint64(index))
	return rand.NewChaCha8(sha256.Sum256(in[:]))
}

// genFile writes size bytes: each 64 KiB block is text-like with the
// file's own probability (0, 50 or 90 %), random otherwise.
func genFile(path string, size int64, exec bool, rng *rand.ChaCha8, buf []byte) (err error) {
	mode := os.FileMode(0o644)
	if exec {
		mode = 0o755
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("gen tree: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("gen tree: %w", cerr)
		}
	}()
	r := rand.New(rng)
	textPercent := []int{0, 50, 90}[r.IntN(3)]
	for left := size; left > 0; {
		n := min(left, genChunk)
		block := buf[:n]
		if r.IntN(100) < textPercent {
			fillText(block, r)
		} else {
			_, _ = rng.Read(block) // never fails
		}
		if _, err := f.Write(block); err != nil {
			return fmt.Errorf("gen tree: %w", err)
		}
		left -= n
	}
	// The umask may have cleared bits; make the mode exact.
	return f.Chmod(mode)
}

// fillText fills b with words from a small vocabulary, which deflate
// compresses several times.
func fillText(b []byte, r *rand.Rand) {
	i := 0
	for i < len(b) {
		bits := r.Uint64()
		for k := 0; k < 10 && i < len(b); k++ {
			word := genWords[bits&31]
			bits >>= 5
			i += copy(b[i:], word)
			if i < len(b) && word != "\n" {
				b[i] = ' '
				i++
			}
		}
	}
}
