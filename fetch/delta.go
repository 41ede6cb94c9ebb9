package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
)

// maxSuperblock caps a delta superblock (inline parts included).
const maxSuperblock = ostree.MaxMetadataSize

// deltaDigests returns the static deltas to commit to that the remote
// lists with their superblock digests: from the verified summary, else
// from the (unsigned) delta index. A delta without a digest is never
// used; the digest is what makes a superblock trustworthy.
func (f *Fetcher) deltaDigests(ctx context.Context, rs *remoteState, to ostree.Checksum) map[string]ostree.Checksum {
	out := map[string]ostree.Checksum{}
	rs.mu.Lock()
	s := rs.summary
	rs.mu.Unlock()
	if s != nil {
		if m, err := ostree.StaticDeltas(s.Metadata); err == nil {
			for k, v := range m {
				out[k] = v
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	data, err := rs.c.getAll(ctx, ostree.DeltaIndexPath(to), 1<<20)
	if err != nil {
		return out
	}
	dict, err := ostree.DecodeVarDict("delta index", data)
	if err != nil {
		return out
	}
	if m, err := ostree.StaticDeltas(dict); err == nil {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// pullDelta brings a verified commit's objects in through a static delta
// when one helps: one from prev, the ref's previous commit, if cached, or
// one from scratch when nothing of the commit's tree is cached yet. Every
// object a delta produces is verified before it is stored; whatever a
// delta does not provide (fallbacks, skipped parts) the normal walk
// fetches afterwards. It returns whether a delta was applied; a remote
// without a usable delta is not an error.
func (f *Fetcher) pullDelta(ctx context.Context, remote string, prev *ostree.Checksum, to ostree.Checksum, cm *ostree.Commit, p *Progress) (bool, error) {
	if f.opts.NoDeltas {
		return false, nil
	}
	rs, err := f.remote(remote)
	if err != nil {
		return false, err
	}
	digests := f.deltaDigests(ctx, rs, to)
	if len(digests) == 0 {
		return false, nil
	}
	var from *ostree.Checksum
	if prev != nil {
		if ok, _ := f.store.Has(index.TypeCommit, prev.String()); ok {
			if _, listed := digests[ostree.DeltaName(prev, to)]; listed {
				from = prev
			}
		}
	}
	if from == nil {
		if ok, _ := f.store.Has(index.TypeDirTree, cm.RootTree.String()); ok {
			return false, nil // the tree is (partly) here: loose objects fetch only what is missing
		}
		if _, listed := digests[ostree.DeltaName(nil, to)]; !listed {
			return false, nil
		}
	}
	name := ostree.DeltaName(from, to)
	want := digests[name]
	dir := ostree.DeltaPath(from, to)
	data, err := rs.c.getAll(ctx, dir+"/superblock", maxSuperblock)
	if err != nil {
		return false, fmt.Errorf("remote %s: delta %s: %w", remote, name, err)
	}
	if got := ostree.Sum(data); got != want {
		return false, &VerifyError{remote, "delta " + name, "checksum", &ostree.ChecksumError{Object: dir + "/superblock", Got: got, Want: want}}
	}
	sb, err := delta.ParseSuperblock(data)
	if err != nil {
		return false, fmt.Errorf("remote %s: delta %s: %w", remote, name, err)
	}
	if sb.To != to || (from == nil) != (sb.From == nil) || (from != nil && *sb.From != *from) {
		return false, &VerifyError{remote, "delta " + name, "checksum", errors.New("superblock is for other commits")}
	}
	f.stats.BytesFetched.Add(int64(len(data)))
	src := deltaSource{f.store}
	sink := &deltaSink{store: f.store, remote: remote}
	for i, hdr := range sb.Parts {
		if f.havePart(hdr) {
			continue
		}
		part := hdr.Inline
		if part == nil {
			if part, err = rs.c.getAll(ctx, fmt.Sprintf("%s/%d", dir, i), int64(hdr.Size)); err != nil {
				return false, fmt.Errorf("remote %s: delta %s part %d: %w", remote, name, i, err)
			}
			f.stats.BytesFetched.Add(int64(len(part)))
		}
		pt, err := delta.OpenPart(part, hdr, hdr.Inline != nil)
		if err != nil {
			return false, &VerifyError{remote, fmt.Sprintf("delta %s part %d", name, i), "checksum", err}
		}
		if err := pt.Apply(ctx, hdr.Objects, src, sink); err != nil {
			return false, fmt.Errorf("remote %s: delta %s part %d: %w", remote, name, i, err)
		}
		f.stats.ObjectsFetched.Add(int64(len(hdr.Objects)))
		if p != nil {
			p.BytesFetched.Add(int64(len(part)))
		}
	}
	return true, nil
}

func (f *Fetcher) havePart(hdr delta.PartHeader) bool {
	for _, o := range hdr.Objects {
		if ok, _ := f.store.Has(index.ObjType(o.Type), o.Checksum.String()); !ok {
			return false
		}
	}
	return true
}

// deltaSource reads the from-commit's files out of the cache.
type deltaSource struct{ store *objcache.Store }

func (s deltaSource) OpenContent(ctx context.Context, c ostree.Checksum) (delta.Blob, error) {
	return s.store.Open(ctx, c.String())
}

// deltaSink stores what a part produces, verified by Apply.
type deltaSink struct {
	store  *objcache.Store
	remote string
}

func (s *deltaSink) PutMetadata(ctx context.Context, obj delta.ObjRef, data []byte) error {
	return s.store.PutMeta(ctx, index.ObjType(obj.Type), obj.Checksum.String(), append([]byte(nil), data...), s.remote)
}

func (s *deltaSink) CreateContent(ctx context.Context, c ostree.Checksum, h *ostree.FileHeader) (delta.ContentWriter, error) {
	if ok, _ := s.store.Has(index.TypeFile, c.String()); ok {
		return nil, nil
	}
	f, err := s.store.CreateTemp()
	if err != nil {
		return nil, err
	}
	return &deltaWriter{File: f, ctx: ctx, s: s, c: c, h: h}, nil
}

type deltaWriter struct {
	*os.File
	ctx context.Context
	s   *deltaSink
	c   ostree.Checksum
	h   *ostree.FileHeader
}

func (w *deltaWriter) Commit() error {
	hdr := index.FileHeader{UID: w.h.UID, GID: w.h.GID, Mode: w.h.Mode, Size: w.h.Size, Symlink: w.h.Target, Raw: w.h.StreamHeader()}
	return w.s.store.PutFile(w.ctx, w.c.String(), hdr, w.File, w.s.remote)
}

func (w *deltaWriter) Abort() {
	name := w.File.Name()
	w.File.Close()
	os.Remove(name)
}
