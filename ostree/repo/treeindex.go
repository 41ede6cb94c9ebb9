package repo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

var _ treeindex.Source = (*Objects)(nil)

// OpenArchive opens the .filez of a content object, for treeindex.Build.
func (o *Objects) OpenArchive(ctx context.Context, c ostree.Checksum) (io.ReadCloser, error) {
	f, err := os.Open(o.r.objPath(c, ostree.ObjFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ostree.ObjectName(c, ostree.ObjFile), err)
	}
	return f, nil
}

// BuildTreeIndex builds the tree index of commit and stores it at
// ostree.TreeIndexPath (unless an identical one is there), returning the
// checksum the summary names it by.
func (r *Repo) BuildTreeIndex(ctx context.Context, commit ostree.Checksum, opts treeindex.BuildOptions) (ostree.Checksum, error) {
	x, err := treeindex.Build(ctx, &Objects{r}, commit, opts)
	if err != nil {
		return ostree.Checksum{}, err
	}
	b, err := x.Encode()
	if err != nil {
		return ostree.Checksum{}, fmt.Errorf("tree index of %s: %w", commit, err)
	}
	sum := ostree.Sum(b)
	return sum, r.writeLazytreeObject(ostree.TreeIndexPath(sum), b)
}

// profileFile is a profile read for export.
type profileFile struct {
	name string
	sum  ostree.Checksum
	data []byte
	used bool
}

// readProfiles reads and checks the profile files, keyed by commit.
func readProfiles(names []string) (map[ostree.Checksum]*profileFile, error) {
	out := map[ostree.Checksum]*profileFile{}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		p, err := treeindex.DecodeProfile(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		if prev, ok := out[p.Commit]; ok {
			return nil, fmt.Errorf("profile %s: commit %s already has profile %s", name, p.Commit, prev.name)
		}
		b, err := p.Encode()
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		out[p.Commit] = &profileFile{name: name, sum: ostree.Sum(b), data: b}
	}
	return out, nil
}

// writeLazytreeObject stores a content-addressed lazytree object (tree
// index or profile) under rel, unless it is there already.
func (r *Repo) writeLazytreeObject(rel string, data []byte) error {
	p := filepath.Join(r.Dir, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(p, data, 0o644)
}
