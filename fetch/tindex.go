package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// The tree index (ostree/treeindex, DESIGN.md "Tree index") of a commit
// holds every dirtree, dirmeta and content header reachable from it. The
// summary's per-ref metadata names it by checksum, so it is exactly as
// trusted as that remote's verified summary: it is used only for the
// remote whose summary named it, only when that summary is signed and
// checked (or the remote checks no signatures at all, when nothing is),
// and only for the commit it says it indexes, which must be the one the
// summary lists. Dirtrees and dirmetas from it are content-addressed and
// hashed again before they are stored; headers from it are the
// publisher's signed word for that remote's paths only, never for a
// reader that came by checksum alone; a symlink's is hashed (its checksum
// covers the header alone). A content object fetched later is verified
// whole as always; an index size it disagrees with fails the open (mode,
// owner and xattrs are not compared yet). A missing, tampered or untrusted index changes
// nothing but speed: objects are fetched one by one as before.

// MaxTreeIndexSize caps the compressed index fetched from a remote.
const MaxTreeIndexSize = 64 << 20

// maxIndexesPerRemote bounds the indexes kept in memory per remote (the
// oldest loaded is dropped).
const maxIndexesPerRemote = 8

// errNoTreeIndex: the remote's summary names no usable index for the
// commit.
var errNoTreeIndex = errors.New("no tree index")

type remoteIndexes struct {
	mu    sync.RWMutex
	order []ostree.Checksum
	by    map[ostree.Checksum]*treeindex.Index
}

func (ri *remoteIndexes) add(c ostree.Checksum, x *treeindex.Index) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.by == nil {
		ri.by = map[ostree.Checksum]*treeindex.Index{}
	}
	if _, ok := ri.by[c]; ok {
		return
	}
	if len(ri.order) >= maxIndexesPerRemote {
		delete(ri.by, ri.order[0])
		ri.order = ri.order[1:]
	}
	ri.order = append(ri.order, c)
	ri.by[c] = x
}

func (ri *remoteIndexes) each(fn func(x *treeindex.Index) bool) {
	ri.mu.RLock()
	defer ri.mu.RUnlock()
	for i := len(ri.order) - 1; i >= 0; i-- {
		if fn(ri.by[ri.order[i]]) {
			return
		}
	}
}

func (f *Fetcher) indexes(remote string) *remoteIndexes {
	v, _ := f.tindex.LoadOrStore(remote, &remoteIndexes{})
	return v.(*remoteIndexes)
}

// trustsIndex reports whether an index named by r's summary may be used.
func trustsIndex(r *Remote) bool {
	return r.GPGVerifySummary || r.SignVerify || !r.Verifies()
}

// TreeIndex makes sure the tree index the verified summary of remote
// names for commit c (through any ref listing c) is loaded: fetched,
// hashed against the summary's checksum, decoded, checked to index c and
// to hold the whole tree of cm. It returns errNoTreeIndex (wrapped) when
// there is none to use; other errors say what was wrong with one.
func (f *Fetcher) TreeIndex(ctx context.Context, remote string, c ostree.Checksum, cm *ostree.Commit) (*treeindex.Index, error) {
	ri := f.indexes(remote)
	var found *treeindex.Index
	ri.each(func(x *treeindex.Index) bool {
		if x.Commit == c {
			found = x
		}
		return found != nil
	})
	if found != nil {
		return found, nil
	}
	rs, sum, err := f.publishedSum(ctx, remote, c, "tree index", (*ostree.SummaryRef).TreeIndex)
	if err != nil {
		return nil, err
	}
	name := "tree index " + sum.String()
	v, err := f.detached(ctx, remote+"/"+ostree.TreeIndexPath(sum), func(ctx context.Context) (any, error) {
		data, err := f.getBounded(ctx, rs, ostree.TreeIndexPath(sum), MaxTreeIndexSize, &sum)
		if err != nil {
			var ce *ostree.ChecksumError
			if errors.As(err, &ce) {
				err = &VerifyError{remote, name, "checksum", err}
			}
			return nil, objectError(remote, name, err)
		}
		f.stats.ObjectsFetched.Add(1)
		f.stats.BytesFetched.Add(int64(len(data)))
		x, err := treeindex.Decode(data)
		if err != nil {
			return nil, &VerifyError{remote, name, "tree index", err}
		}
		if x.Commit != c {
			return nil, &VerifyError{remote, name, "tree index", fmt.Errorf("indexes commit %s, the summary lists it for %s", x.Commit, c)}
		}
		if err := x.CheckComplete(cm.RootTree, cm.RootMeta); err != nil {
			return nil, &VerifyError{remote, name, "tree index", err}
		}
		for i := range x.Files {
			fl := &x.Files[i]
			if fl.Header.IsSymlink() {
				continue
			}
			f.sizes.LoadOrStore(sizeKey{remote, fl.Checksum}, sizeInfo{fl.ArchivedSize, fl.Header.Size})
		}
		ri.add(c, x)
		return x, nil
	})
	if err != nil {
		f.stats.record(remote, name, err)
		return nil, err
	}
	return v.(*treeindex.Index), nil
}

// indexMeta returns a dirtree or dirmeta from remote's loaded indexes,
// hashed against c.
func (f *Fetcher) indexMeta(remote string, t ostree.ObjectType, c ostree.Checksum) ([]byte, bool) {
	v, ok := f.tindex.Load(remote)
	if !ok {
		return nil, false
	}
	var data []byte
	v.(*remoteIndexes).each(func(x *treeindex.Index) bool {
		var b []byte
		var ok bool
		switch t {
		case ostree.ObjDirTree:
			b, ok = x.DirTree(c)
		case ostree.ObjDirMeta:
			b, ok = x.DirMeta(c)
		}
		if ok && sha256.Sum256(b) == c {
			data = b
		}
		return data != nil
	})
	return data, data != nil
}

// indexHeader returns a content header from remote's loaded indexes.
func (f *Fetcher) indexHeader(remote string, c ostree.Checksum) (*ostree.FileHeader, bool) {
	v, ok := f.tindex.Load(remote)
	if !ok {
		return nil, false
	}
	var h *ostree.FileHeader
	v.(*remoteIndexes).each(func(x *treeindex.Index) bool {
		if fl, ok := x.File(c); ok {
			cp := fl.Header
			cp.Xattrs = append([]ostree.Xattr(nil), fl.Header.Xattrs...)
			if cp.IsSymlink() {
				// A symlink's checksum covers its header alone: check it.
				if sum, err := ostree.ContentChecksum(&cp, strings.NewReader("")); err != nil || sum != c {
					return false
				}
			}
			h = &cp
		}
		return h != nil
	})
	return h, h != nil
}

// PublishedProfile returns the access profile that the verified summary
// of remote publishes for commit c (lazytree export --profile), trusted
// like a tree index (see trustsIndex). It returns errNoTreeIndex (wrapped)
// when there is none to use.
func (f *Fetcher) PublishedProfile(ctx context.Context, remote string, c ostree.Checksum) (*treeindex.Profile, error) {
	rs, sum, err := f.publishedSum(ctx, remote, c, "profile", (*ostree.SummaryRef).Profile)
	if err != nil {
		return nil, err
	}
	name := "profile " + sum.String()
	data, err := f.getBounded(ctx, rs, ostree.ProfilePath(sum), treeindex.MaxProfileSize, &sum)
	if err != nil {
		err = objectError(remote, name, err)
		f.stats.record(remote, name, err)
		return nil, err
	}
	p, err := treeindex.DecodeProfile(bytes.NewReader(data))
	if err != nil {
		return nil, &VerifyError{remote, name, "profile", err}
	}
	if p.Commit != c {
		return nil, &VerifyError{remote, name, "profile", fmt.Errorf("profiles commit %s, the summary lists it for %s", p.Commit, c)}
	}
	return p, nil
}

// publishedSum finds what the verified summary of remote names, with
// pick, for a ref listing commit c (a tree index, a profile), when that
// remote's summary may be trusted for it (trustsIndex). With none to
// use, the error wraps errNoTreeIndex.
func (f *Fetcher) publishedSum(ctx context.Context, remote string, c ostree.Checksum, what string, pick func(*ostree.SummaryRef) (ostree.Checksum, bool)) (*remoteState, ostree.Checksum, error) {
	rs, err := f.remote(remote)
	if err != nil {
		return nil, ostree.Checksum{}, err
	}
	if !trustsIndex(rs.r) {
		return nil, ostree.Checksum{}, fmt.Errorf("%w: remote %s checks commit signatures but not its summary's", errNoTreeIndex, remote)
	}
	s, err := f.Summary(ctx, remote, false)
	if err != nil {
		return nil, ostree.Checksum{}, err
	}
	if s == nil {
		return nil, ostree.Checksum{}, fmt.Errorf("%w: remote %s has no summary", errNoTreeIndex, remote)
	}
	for i := range s.Refs {
		if s.Refs[i].Checksum == c {
			if sum, ok := pick(&s.Refs[i]); ok {
				return rs, sum, nil
			}
		}
	}
	return nil, ostree.Checksum{}, fmt.Errorf("%w: the summary of %s names no %s for %s", errNoTreeIndex, remote, what, c)
}
