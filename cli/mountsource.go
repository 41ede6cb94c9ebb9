package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
)

// mountSource adapts fetch.MountSource to fusefs.Source: it turns the
// fetch layer's "no such remote/ref/commit" into fusefs.ErrNotFound and
// hands out cache handles as fusefs.File.
type mountSource struct {
	*fetch.MountSource
}

var (
	_ fusefs.Source       = mountSource{}
	_ fusefs.HeaderPeeker = mountSource{}
	_ fusefs.DirHinter    = mountSource{}
	_ fusefs.File         = (*objcache.Handle)(nil)
)

func notFound(err error) error {
	if errors.Is(err, fetch.ErrNoRemote) || errors.Is(err, fetch.ErrNoRef) || errors.Is(err, fetch.ErrNoCommit) {
		return fmt.Errorf("%w: %w", fusefs.ErrNotFound, err)
	}
	return err
}

func (m mountSource) Refs(ctx context.Context, remote string) (map[string]ostree.Checksum, error) {
	r, err := m.MountSource.Refs(ctx, remote)
	return r, notFound(err)
}

func (m mountSource) Commit(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.Commit, error) {
	cm, err := m.MountSource.Commit(ctx, via.Remote, via.Ref, c)
	return cm, notFound(err)
}

func (m mountSource) DirTree(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.DirTree, error) {
	return m.MountSource.DirTree(ctx, via.Remote, c)
}

func (m mountSource) DirMeta(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.DirMeta, error) {
	return m.MountSource.DirMeta(ctx, via.Remote, c)
}

func (m mountSource) FileHeader(ctx context.Context, via fusefs.Via, c ostree.Checksum) (*ostree.FileHeader, error) {
	return m.MountSource.FileHeader(ctx, via.Remote, c)
}

func (m mountSource) Open(ctx context.Context, via fusefs.Via, c ostree.Checksum) (fusefs.File, error) {
	h, err := m.MountSource.Open(ctx, via.Remote, c)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (m mountSource) HintDir(via fusefs.Via, commit ostree.Checksum, dir string, c ostree.Checksum, t *ostree.DirTree, listed bool) {
	m.MountSource.HintDir(via.Remote, commit, dir, c, t, listed)
}

func (m mountSource) HintScan(via fusefs.Via, commit ostree.Checksum, dir string, c ostree.Checksum, t *ostree.DirTree) {
	m.MountSource.HintScan(via.Remote, commit, dir, c, t)
}

func (m mountSource) RecordAccess(via fusefs.Via, commit ostree.Checksum, p string) {
	m.MountSource.RecordAccess(via.Remote, commit, p)
}

func (m mountSource) HintLookup(via fusefs.Via, commit ostree.Checksum, p string) {
	m.MountSource.HintLookup(via.Remote, commit, p)
}

func (m mountSource) PeekFileHeader(via fusefs.Via, c ostree.Checksum) (*ostree.FileHeader, bool) {
	return m.MountSource.PeekFileHeader(via.Remote, c)
}
