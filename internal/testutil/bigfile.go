package testutil

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// WriteHostBlob writes a file of exactly size bytes made of the host's
// own programs and shared libraries (ELF code and data, the content of a
// large library), concatenated in name order and repeated when the host
// has fewer: realistic content for large-file tests that compresses like
// real machine code. The same host gives the same bytes.
func WriteHostBlob(path string, size int64) error {
	var srcs []string
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/bin", "/usr/sbin", "/usr/lib"} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() && p != dir {
				return fs.SkipDir
			}
			if d.Type().IsRegular() {
				srcs = append(srcs, p)
			}
			return nil
		})
	}
	sort.Strings(srcs)
	if len(srcs) == 0 {
		return fmt.Errorf("host blob: no programs found on this host")
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	left := size
	for pass := 0; left > 0; pass++ {
		wrote := false
		for _, p := range srcs {
			if left == 0 {
				break
			}
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			n, err := io.Copy(out, io.LimitReader(f, left))
			f.Close()
			if err != nil {
				out.Close()
				return fmt.Errorf("host blob: %s: %w", p, err)
			}
			left -= n
			wrote = wrote || n > 0
		}
		if !wrote {
			out.Close()
			return fmt.Errorf("host blob: the host's programs are unreadable")
		}
	}
	return out.Close()
}
