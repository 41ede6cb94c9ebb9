package fetch

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
)

// Commit returns commit c verified for remote and ref exactly as a fresh
// fetch from that remote is: its checksum, the signatures the remote
// requires (from the detached metadata stored with it), its ref and
// collection bindings for ref (if not empty), and no downgrade from the
// last commit verified for that ref. Where the bytes come from does not
// matter: a commit in the cache (stored by a pull of another remote, by a
// delta, or before a restart) is checked again for this remote and ref.
// With remote empty (a commit asked for by checksum alone) it must verify
// for at least one configured remote.
func (f *Fetcher) Commit(ctx context.Context, remote, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	cm, _, err := f.commit(ctx, remote, ref, c)
	return cm, err
}

// commit is Commit that also says which remote verified the commit (the
// one asked for, or the first that accepts it when remote is empty).
func (f *Fetcher) commit(ctx context.Context, remote, ref string, c ostree.Checksum) (*ostree.Commit, string, error) {
	if remote == "" {
		return f.commitAnyRemote(ctx, c)
	}
	rs, err := f.remote(remote)
	if err != nil {
		return nil, "", err
	}
	cm, err := f.cachedCommit(ctx, rs, ref, c)
	if err == nil {
		f.stats.CacheHits.Add(1)
		return cm, remote, nil
	}
	var ve *VerifyError
	if errors.As(err, &ve) && !ve.signature() {
		// Bindings, dates: the same bytes fetched again would fail the
		// same way.
		return nil, "", err
	}
	// Not cached, or cached without the signatures this remote requires
	// (its detached metadata came from elsewhere): fetch it from remote.
	key := "commit/" + remote + "/" + ref + "/" + c.String()
	v, err := f.detached(ctx, key, func(ctx context.Context) (any, error) {
		return f.fetchCommit(ctx, rs, ref, c)
	})
	if err != nil {
		f.stats.record(remote, ostree.ObjectName(c, ostree.ObjCommit), err)
		return nil, "", err
	}
	return v.(*ostree.Commit), remote, nil
}

// commitAnyRemote returns c verified for the first configured remote that
// accepts it: from the cache where one does, else fetched from each remote
// in turn.
func (f *Fetcher) commitAnyRemote(ctx context.Context, c ostree.Checksum) (*ostree.Commit, string, error) {
	names := f.remoteOrder(c)
	var last error = fmt.Errorf("commit %s: %w", c, ErrNoCommit)
	for _, name := range names {
		rs, err := f.remote(name)
		if err != nil {
			continue
		}
		if cm, err := f.cachedCommit(ctx, rs, "", c); err == nil {
			f.stats.CacheHits.Add(1)
			return cm, name, nil
		} else if !errors.Is(err, objcache.ErrNotPresent) {
			last = err
		}
	}
	for _, name := range names {
		cm, _, err := f.commit(ctx, name, "", c)
		if err == nil {
			return cm, name, nil
		}
		if ctx.Err() != nil {
			return nil, "", err
		}
		last = err
	}
	return nil, "", last
}

// remoteOrder lists the remotes to try for commit c: first those with a
// ref verified at c, then the one it was fetched from, then the rest, so
// that after a restart the objects below it are asked of a remote that
// has them (and their names are not sent to another server).
func (f *Fetcher) remoteOrder(c ostree.Checksum) []string {
	names := f.Remotes()
	rank := map[string]int{}
	for _, n := range names {
		rank[n] = 2
		if refs, err := f.db.Refs(n); err == nil {
			for _, r := range refs {
				if r.Commit == c {
					rank[n] = 0
					break
				}
			}
		}
	}
	if o, err := f.db.Object(index.ObjectID{Sum: c, Type: index.TypeCommit}); err == nil {
		if r, ok := rank[o.Origin]; ok && r > 1 {
			rank[o.Origin] = 1
		}
	}
	sort.SliceStable(names, func(i, j int) bool { return rank[names[i]] < rank[names[j]] })
	return names
}

// cachedCommit verifies a cached commit for rs and ref. It returns an
// error matching objcache.ErrNotPresent when the commit is not cached.
func (f *Fetcher) cachedCommit(ctx context.Context, rs *remoteState, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	data, err := f.store.ReadMeta(ctx, index.TypeCommit, c)
	if err != nil {
		return nil, err
	}
	var dict []any
	if meta, err := f.store.ReadMeta(ctx, index.TypeCommitMeta, c); err == nil {
		if dict, err = ostree.DecodeVarDict("commitmeta", meta); err != nil {
			dict = nil // verified like a missing one: a required signature fails
		}
	}
	return f.verifyCommit(rs, ref, c, data, dict)
}

// verifyCommit runs every check a commit must pass for remote rs and ref,
// whatever its bytes came from, and records it as the ref's last verified
// commit. data must be the commit object, dict its detached metadata.
func (f *Fetcher) verifyCommit(rs *remoteState, ref string, c ostree.Checksum, data []byte, dict []any) (*ostree.Commit, error) {
	r := rs.r
	name := ostree.ObjectName(c, ostree.ObjCommit)
	if got := ostree.Sum(data); got != c {
		return nil, &VerifyError{r.Name, name, "checksum", &ostree.ChecksumError{Object: name, Got: got, Want: c}}
	}
	// Signatures before anything else is parsed. A signature check that
	// passed once for this remote's keys holds for these bytes for good.
	_, known := rs.signed.Load(c)
	if !known {
		if err := r.verifySignatures(name, data, dict, r.GPGVerify, r.SignVerify); err != nil {
			return nil, err
		}
	}
	cm, err := ostree.DecodeCommit(data)
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", r.Name, err)
	}
	if !known {
		// Once per remote state and commit: what the signed commit says
		// of its objects' sizes does not change either.
		f.learnSizes(r, cm)
		rs.signed.Store(c, true)
	}
	if err := r.checkBindings(name, ref, cm); err != nil {
		return nil, err
	}
	now := f.opts.Now()
	if ref == "" {
		if err := checkTime(r.Name, name, cm, c, ostree.Checksum{}, 0, false, now, f.opts.MaxFutureSkew); err != nil {
			return nil, err
		}
	} else {
		last, err := f.db.Ref(r.Name, ref)
		has := err == nil
		if err := checkTime(r.Name, name, cm, c, last.Commit, last.Timestamp, has, now, f.opts.MaxFutureSkew); err != nil {
			return nil, err
		}
		if !has || last.Commit != c {
			if err := f.db.SetRef(r.Name, ref, index.Ref{Commit: c, Verified: now, Timestamp: cm.Timestamp}); err != nil {
				return nil, err
			}
		}
	}
	f.origin.LoadOrStore(cm.RootTree, r.Name)
	f.origin.LoadOrStore(cm.RootMeta, r.Name)
	return cm, nil
}

func (f *Fetcher) fetchCommit(ctx context.Context, rs *remoteState, ref string, c ostree.Checksum) (*ostree.Commit, error) {
	r := rs.r
	remote := r.Name
	name := ostree.ObjectName(c, ostree.ObjCommit)
	// The commit first, hashed while it streams, then its detached
	// metadata with the signatures checked over it: either way a
	// mirror's damaged copy is refused inside the client, which then
	// asks the next URL. Nothing is parsed before its signatures pass.
	data, err := f.getBounded(ctx, rs, ostree.ObjectPath(c, ostree.ObjCommit, true), metaCap(ostree.ObjCommit), &c)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("remote %s: %s: %w (%w)", remote, name, ErrNoCommit, err)
	}
	var ce *ostree.ChecksumError
	if errors.As(err, &ce) {
		return nil, &VerifyError{remote, name, "checksum", err}
	}
	if err != nil {
		return nil, fmt.Errorf("remote %s: %s: %w", remote, name, err)
	}
	_, known := rs.signed.Load(c)
	var dict []any
	metaName := ostree.ObjectName(c, ostree.ObjCommitMeta)
	metaBytes, err := f.getChecked(ctx, rs, ostree.ObjectPath(c, ostree.ObjCommitMeta, true), metaCap(ostree.ObjCommitMeta), nil, func(b []byte) error {
		d, err := ostree.DecodeVarDict("commitmeta", b)
		if err != nil {
			return err
		}
		if !known {
			if err := r.verifySignatures(name, data, d, r.GPGVerify, r.SignVerify); err != nil {
				return err
			}
		}
		dict = d
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		var ve *VerifyError
		if errors.As(err, &ve) {
			return nil, err
		}
		return nil, fmt.Errorf("remote %s: %s: %w", remote, metaName, err)
	}
	cm, err := f.verifyCommit(rs, ref, c, data, dict)
	if err != nil {
		return nil, err
	}
	if metaBytes != nil {
		if err := f.putCommitMeta(ctx, rs, c, metaBytes); err != nil {
			return nil, err
		}
	}
	if err := f.store.PutMeta(ctx, index.TypeCommit, c, data, remote); err != nil {
		return nil, err
	}
	f.stats.ObjectsFetched.Add(1)
	f.stats.BytesFetched.Add(int64(len(data) + len(metaBytes)))
	return cm, nil
}

// putCommitMeta stores the detached metadata that verified a commit,
// replacing what another remote left there: the next check of the cached
// commit for this remote then finds the signatures it needs.
func (f *Fetcher) putCommitMeta(ctx context.Context, rs *remoteState, c ostree.Checksum, data []byte) error {
	if !rs.r.GPGVerify && !rs.r.SignVerify {
		// A remote that checks no signature never replaces what one that
		// does verified.
		return f.store.PutMeta(ctx, index.TypeCommitMeta, c, data, rs.r.Name)
	}
	return f.store.ReplaceMeta(ctx, index.TypeCommitMeta, c, data, rs.r.Name)
}

// CommitFor is Commit that also names the remote that verified the
// commit: the one asked for, or with remote empty the first configured
// remote that accepts it (where the objects below it are fetched from).
func (f *Fetcher) CommitFor(ctx context.Context, remote, ref string, c ostree.Checksum) (*ostree.Commit, string, error) {
	return f.commit(ctx, remote, ref, c)
}
