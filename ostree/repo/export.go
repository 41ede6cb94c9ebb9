package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// ExportOptions control what Export writes.
type ExportOptions struct {
	Signer *Signer
	// Deltas, when set, generates static deltas for every ref head (from
	// scratch, and from its parent) and lists them in the summary.
	Deltas DeltaGenerator
	// Now is the summary's last-modified time (zero: now).
	Now time.Time
	// Expires, when set, is written as ostree.summary.expires: clients
	// refuse the summary after it (a frozen mirror cannot serve it
	// forever).
	Expires time.Time
	// TreeIndex, when set, builds the tree index of every ref's commit
	// (ostree/treeindex), stores it at ostree.TreeIndexPath and names it
	// in the ref's summary metadata (ostree.RefTreeIndex).
	TreeIndex bool
	// TreeIndexOptions tune the builder (chunking, the access-point
	// scanner); the zero value gives its defaults and no access points.
	TreeIndexOptions treeindex.BuildOptions
	// Profiles are access profile files (treeindex.Profile JSON). Each is
	// stored at ostree.ProfilePath and named (ostree.RefProfile) in every
	// ref whose commit is the profile's; a profile whose commit no ref
	// points at is an error.
	Profiles []string
}

// ExportResult describes a written summary.
type ExportResult struct {
	Refs        int
	Deltas      int
	SummarySize int
	Signed      bool
	// TreeIndexes and Profiles count the refs that name one.
	TreeIndexes int
	Profiles    int
}

// Export writes the summary of every ref in refs/heads, with the per-ref
// metadata ostree and flatpak clients read, and summary.sig when a key is
// given. Both files are replaced atomically; a stale summary.sig is removed
// when the new summary is unsigned.
func (r *Repo) Export(ctx context.Context, opts ExportOptions) (*ExportResult, error) {
	refs, err := r.Refs()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	profiles, err := readProfiles(opts.Profiles)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	heads := map[ostree.Checksum]bool{}
	for _, c := range refs {
		heads[c] = true
	}
	for c, p := range profiles {
		if !heads[c] {
			return nil, fmt.Errorf("export: profile %s: no ref points at its commit %s", p.name, c)
		}
	}
	indexes := map[ostree.Checksum]ostree.Checksum{} // commit -> tree index
	var nIndexes, nProfiles int
	s := &ostree.Summary{}
	type cacheEntry struct {
		name                string
		installed, download uint64
		metadata            string
	}
	var cache []cacheEntry
	deltas := map[string]ostree.Checksum{}
	for _, name := range SortedRefs(refs) {
		c := refs[name]
		commit, data, err := r.ReadCommit(c)
		if err != nil {
			return nil, fmt.Errorf("export: ref %s: %w", name, err)
		}
		if opts.Deltas != nil {
			if err := r.deltasFor(ctx, opts.Deltas, c, commit, deltas); err != nil {
				return nil, fmt.Errorf("export: ref %s: %w", name, err)
			}
		}
		meta := gvariant.VarDict{}
		meta.Set(ostree.RefTimestamp, "t", ostree.BE64Variant(commit.Timestamp).Value)
		if v, ok := commit.MetaString(ostree.MetaVersion); ok {
			meta.Set(ostree.RefVersion, "s", v)
		}
		if opts.TreeIndex {
			sum, ok := indexes[c]
			if !ok {
				if sum, err = r.BuildTreeIndex(ctx, c, opts.TreeIndexOptions); err != nil {
					return nil, fmt.Errorf("export: ref %s: %w", name, err)
				}
				indexes[c] = sum
			}
			meta.Set(ostree.RefTreeIndex, "ay", sum.Bytes())
			nIndexes++
		}
		if p, ok := profiles[c]; ok {
			if !p.used {
				if err := r.writeLazytreeObject(ostree.ProfilePath(p.sum), p.data); err != nil {
					return nil, fmt.Errorf("export: profile %s: %w", p.name, err)
				}
				p.used = true
			}
			meta.Set(ostree.RefProfile, "ay", p.sum.Bytes())
			nProfiles++
		}
		s.Refs = append(s.Refs, ostree.SummaryRef{Name: name, CommitSize: uint64(len(data)), Checksum: c, Metadata: meta})
		if strings.HasPrefix(name, "app/") || strings.HasPrefix(name, "runtime/") {
			md, _ := commit.MetaString("xa.metadata")
			e := cacheEntry{name: name, metadata: md, download: uint64(len(data))}
			err := r.Walk(commit, func(oc ostree.Checksum, t ostree.ObjectType) error {
				e.download += uint64(r.objectSize(oc, t))
				if t == ostree.ObjFile {
					f, err := os.Open(r.objPath(oc, t))
					if err != nil {
						return err
					}
					h, err := ostree.ReadArchiveHeader(f)
					f.Close()
					if err != nil {
						return fmt.Errorf("%s: %w", ostree.ObjectName(oc, t), err)
					}
					e.installed += h.Size
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("export: ref %s: %w", name, err)
			}
			cache = append(cache, e)
		}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	gm := gvariant.VarDict{}
	gm.Set(ostree.SummaryMode, "s", "archive-z2")
	gm.Set(ostree.SummaryTombstones, "b", false)
	gm.Set(ostree.SummaryLastModified, "t", ostree.BE64Variant(uint64(now.Unix())).Value)
	if !opts.Expires.IsZero() {
		gm.Set(ostree.SummaryExpires, "t", ostree.BE64Variant(uint64(opts.Expires.Unix())).Value)
	}
	if r.CollectionID != "" {
		gm.Set(ostree.SummaryCollectionID, "s", r.CollectionID)
	}
	if len(deltas) > 0 {
		gm.Set(ostree.SummaryStaticDeltas, "a{sv}", deltaDict(deltas))
	}
	if len(cache) > 0 {
		items := make([]any, len(cache))
		for i, e := range cache {
			items[i] = gvariant.DictEntry{Key: e.name, Value: []any{ostree.BE64Variant(e.installed).Value, ostree.BE64Variant(e.download).Value, e.metadata}}
		}
		gm.Set("xa.cache", "v", gvariant.NewVariant("a{s(tts)}", items))
		gm.Set("xa.cache-version", "u", uint32(2))
	}
	s.Metadata = gm
	data, err := s.Encode()
	if err != nil {
		return nil, fmt.Errorf("export: summary: %w", err)
	}
	res := &ExportResult{Refs: len(s.Refs), SummarySize: len(data), Deltas: len(deltas), TreeIndexes: nIndexes, Profiles: nProfiles}
	if err := r.Sync(); err != nil {
		return nil, err
	}
	sigPath := filepath.Join(r.Dir, "summary.sig")
	if opts.Signer.Empty() {
		if err := os.Remove(sigPath); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		return res, writeFileAtomic(filepath.Join(r.Dir, "summary"), data, 0o644)
	}
	sig, err := opts.Signer.sign([]any{}, data)
	if err != nil {
		return nil, fmt.Errorf("export: sign summary: %w", err)
	}
	// A client that reads the new summary with the old signature (or the
	// reverse) fails verification and retries; a mismatched pair is never
	// accepted.
	if err := writeFileAtomic(filepath.Join(r.Dir, "summary"), data, 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(sigPath, gvariant.MustEncode(ostree.TypeVarDict, sig), 0o644); err != nil {
		return nil, err
	}
	res.Signed = true
	return res, nil
}
