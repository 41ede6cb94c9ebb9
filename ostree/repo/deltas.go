package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

// Objects gives a static delta generator (ostree/delta.Generate) the
// objects of a repository.
type Objects struct{ r *Repo }

// DeltaGenerator writes one static delta from objs: the parts through
// writePart, and returns the superblock. ostree/delta.Generate fits; the
// repository does not import that package so that its tests can use this
// one.
type DeltaGenerator func(ctx context.Context, objs *Objects, from *ostree.Checksum, to ostree.Checksum,
	writePart func(ctx context.Context, i int, data []byte) error) (superblock []byte, err error)

func (o *Objects) ReadMetadata(ctx context.Context, t ostree.ObjectType, c ostree.Checksum) ([]byte, error) {
	return o.r.ReadObject(c, t)
}

func (o *Objects) ReadCommitMeta(ctx context.Context, c ostree.Checksum) ([]byte, error) {
	b, err := os.ReadFile(o.r.objPath(c, ostree.ObjCommitMeta))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (o *Objects) OpenContent(ctx context.Context, c ostree.Checksum) (*ostree.FileHeader, io.ReadCloser, error) {
	f, err := os.Open(o.r.objPath(c, ostree.ObjFile))
	if err != nil {
		return nil, nil, err
	}
	cr, err := ostree.NewContentReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", ostree.ObjectName(c, ostree.ObjFile), err)
	}
	return cr.Header, readCloser{cr, f}, nil
}

func (o *Objects) StoredSize(ctx context.Context, c ostree.Checksum) (uint64, error) {
	fi, err := os.Stat(o.r.objPath(c, ostree.ObjFile))
	if err != nil {
		return 0, err
	}
	return uint64(fi.Size()), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// GenerateDelta writes the static delta from -> to (from nil: from
// scratch) under deltas/, unless it exists, and returns the sha256 of its
// superblock, which the summary lists.
func (r *Repo) GenerateDelta(ctx context.Context, gen DeltaGenerator, from *ostree.Checksum, to ostree.Checksum) (ostree.Checksum, error) {
	dir := filepath.Join(r.Dir, ostree.DeltaPath(from, to))
	if b, err := os.ReadFile(filepath.Join(dir, "superblock")); err == nil {
		return ostree.Sum(b), nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(r.Dir, "tmp"), "delta-")
	if err != nil {
		return ostree.Checksum{}, err
	}
	defer os.RemoveAll(tmp)
	write := func(ctx context.Context, i int, data []byte) error {
		return os.WriteFile(filepath.Join(tmp, fmt.Sprint(i)), data, 0o644)
	}
	sb, err := gen(ctx, &Objects{r}, from, to, write)
	if err != nil {
		return ostree.Checksum{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "superblock"), sb, 0o644); err != nil {
		return ostree.Checksum{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return ostree.Checksum{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return ostree.Checksum{}, err
	}
	// The directory appears complete or not at all.
	if err := os.Rename(tmp, dir); err != nil {
		return ostree.Checksum{}, err
	}
	return ostree.Sum(sb), nil
}

// deltasFor generates the deltas of a ref head: from scratch, and from its
// parent when the parent is in the repository.
func (r *Repo) deltasFor(ctx context.Context, gen DeltaGenerator, to ostree.Checksum, c *ostree.Commit, out map[string]ostree.Checksum) error {
	sum, err := r.GenerateDelta(ctx, gen, nil, to)
	if err != nil {
		return err
	}
	out[ostree.DeltaName(nil, to)] = sum
	if c.Parent != nil && r.HasObject(*c.Parent, ostree.ObjCommit) {
		sum, err := r.GenerateDelta(ctx, gen, c.Parent, to)
		if err != nil {
			return err
		}
		out[ostree.DeltaName(c.Parent, to)] = sum
	}
	return nil
}

// deltaDict renders delta name -> superblock digest as the a{sv} the
// summary's ostree.static-deltas holds.
func deltaDict(m map[string]ostree.Checksum) []any {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = gvariant.DictEntry{Key: n, Value: gvariant.NewVariant("ay", m[n].Bytes())}
	}
	return out
}
