package fetch

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"math/bits"
	"sort"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/gvariant"
)

var typeSummaryIndex = gvariant.MustType("(a{s(ayaaya{sv})}a{sv})")

// maxMergedSummary caps the sub-summaries of one summary.idx together
// (decompressed), as one summary is capped; a variable for tests.
var maxMergedSummary int64 = ostree.MaxSummarySize

// fetchIndexedSummary reads Flatpak's summary.idx (verified like a
// summary) and every sub-summary it names (each checked against the
// digest in the index), and merges them into one summary: refs from all
// subsets, the index's global metadata, and each ref's xa.data sizes
// gathered into an xa.cache entry so that listings show them.
func (f *Fetcher) fetchIndexedSummary(ctx context.Context, rs *remoteState) (*ostree.Summary, []byte, []byte, error) {
	r := rs.r
	data, err := f.getBounded(ctx, rs, "summary.idx", ostree.MaxSummarySize, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	sig, sigErr := f.getBounded(ctx, rs, "summaries/"+ostree.Sum(data).String()+".idx.sig", maxSummarySig, nil)
	if sigErr != nil {
		sig, sigErr = f.getBounded(ctx, rs, "summary.idx.sig", maxSummarySig, nil)
	}
	if r.GPGVerifySummary || r.SignVerify {
		if sigErr != nil {
			return nil, nil, nil, &VerifyError{r.Name, "summary.idx", "summary signature", fmt.Errorf("summary.idx.sig: %w", sigErr)}
		}
		dict, err := ostree.DecodeVarDict("summary.idx.sig", sig)
		if err != nil {
			return nil, nil, nil, &VerifyError{r.Name, "summary.idx.sig", "summary signature", err}
		}
		if err := r.verifySignatures("summary.idx", data, dict, r.GPGVerifySummary, r.SignVerify); err != nil {
			return nil, nil, nil, err
		}
	}
	v, err := gvariant.Decode(typeSummaryIndex, data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("remote %s: summary.idx: %w", r.Name, err)
	}
	top := v.([]any)
	merged := &ostree.Summary{Metadata: top[1].([]any)}
	seen := map[string]bool{}
	var cache []any
	// The merged summary is one summary: together the sub-summaries may
	// not be larger than one may be (each is checked against a digest,
	// but an unsigned index can name any number of them).
	budget := maxMergedSummary
	for _, e := range top[0].([]any) {
		de := e.(gvariant.DictEntry)
		digest, err := ostree.ChecksumFromBytes(de.Value.([]any)[0].([]byte))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("remote %s: summary.idx: subset %q: %w", r.Name, de.Key, err)
		}
		gz, err := f.getBounded(ctx, rs, "summaries/"+digest.String()+".gz", budget, nil)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("remote %s: sub-summary %q: %w", r.Name, de.Key, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("remote %s: sub-summary %q: %w", r.Name, de.Key, err)
		}
		sub, err := readBounded(ctx, zr, rs.large, budget, nil, "sub-summary")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("remote %s: sub-summary %q: unreadable or, with the others, larger than %d bytes: %w", r.Name, de.Key, maxMergedSummary, err)
		}
		budget -= int64(len(sub))
		if got := ostree.Sum(sub); got != digest {
			return nil, nil, nil, &VerifyError{r.Name, "sub-summary " + de.Key.(string), "checksum", &ostree.ChecksumError{Object: "summaries/" + digest.String(), Got: got, Want: digest}}
		}
		s, err := ostree.DecodeSummary(sub)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("remote %s: sub-summary %q: %w", r.Name, de.Key, err)
		}
		for _, ref := range s.Refs {
			if seen[ref.Name] {
				continue
			}
			seen[ref.Name] = true
			merged.Refs = append(merged.Refs, ref)
			if xd, err := gvariant.LookupTyped(ref.Metadata, "xa.data", "(tts)"); err == nil {
				t := xd.([]any)
				cache = append(cache, gvariant.DictEntry{Key: ref.Name, Value: t})
			}
		}
	}
	sort.Slice(merged.Refs, func(i, j int) bool { return merged.Refs[i].Name < merged.Refs[j].Name })
	sort.Slice(cache, func(i, j int) bool {
		return cache[i].(gvariant.DictEntry).Key.(string) < cache[j].(gvariant.DictEntry).Key.(string)
	})
	if len(cache) > 0 {
		if _, ok := gvariant.Lookup(merged.Metadata, "xa.cache"); !ok {
			merged.Metadata = append(append([]any(nil), merged.Metadata...),
				gvariant.DictEntry{Key: "xa.cache", Value: gvariant.NewVariant("v", gvariant.NewVariant("a{s(tts)}", cache))})
		}
	}
	return merged, data, sig, nil
}

// be64 converts the big-endian integers Flatpak stores.
func be64(v uint64) uint64 { return bits.ReverseBytes64(v) }
