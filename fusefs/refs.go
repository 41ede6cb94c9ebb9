package fusefs

import (
	"sort"
	"strings"

	"github.com/lazytree/lazytree/ostree"
)

// refEntry is one child of a ref directory MOUNT/<remote>/<prefix>: either
// a ref (Leaf, with its commit) or a synthetic directory for a longer ref
// name.
type refEntry struct {
	Name   string
	Leaf   bool
	Commit ostree.Checksum
}

// refChild resolves name inside the ref directory prefix ("" for the
// remote's own directory, otherwise ending in "/"). A ref wins over a
// longer ref that would need the same name as a directory ("a/b" and
// "a/b/c" cannot both exist in refs/heads, but a summary could list both):
// "a/b/c" is then not reachable. Invalid ref names are never reachable.
func refChild(refs map[string]ostree.Checksum, prefix, name string) (refEntry, bool) {
	if ostree.ValidateFileName(name) != nil {
		return refEntry{}, false
	}
	full := prefix + name
	if c, ok := refs[full]; ok && ostree.ValidateRef(full) == nil && !shadowed(refs, full) {
		return refEntry{Name: name, Leaf: true, Commit: c}, true
	}
	sub := full + "/"
	for r := range refs {
		if strings.HasPrefix(r, sub) && ostree.ValidateRef(r) == nil && !shadowed(refs, r) {
			return refEntry{Name: name}, true
		}
	}
	return refEntry{}, false
}

// refChildren lists the ref directory prefix, sorted by name.
func refChildren(refs map[string]ostree.Checksum, prefix string) []refEntry {
	byName := map[string]refEntry{}
	for r, c := range refs {
		if !strings.HasPrefix(r, prefix) || ostree.ValidateRef(r) != nil || shadowed(refs, r) {
			continue
		}
		rest := r[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			name := rest[:i]
			if _, ok := byName[name]; !ok {
				byName[name] = refEntry{Name: name}
			}
			continue
		}
		byName[rest] = refEntry{Name: rest, Leaf: true, Commit: c}
	}
	out := make([]refEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// shadowed reports whether a shorter ref is a directory prefix of r (then
// r is not reachable: see refChild).
func shadowed(refs map[string]ostree.Checksum, r string) bool {
	for i := 0; i < len(r); i++ {
		if r[i] == '/' {
			if _, ok := refs[r[:i]]; ok {
				return true
			}
		}
	}
	return false
}
