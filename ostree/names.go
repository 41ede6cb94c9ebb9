package ostree

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxNameLength bounds file names from remotes (Linux NAME_MAX).
const MaxNameLength = 255

// MaxRefLength bounds ref names.
const MaxRefLength = 1024

// ValidateFileName checks a dirtree entry name: non-empty, not "." or "..",
// no '/', no NUL, valid UTF-8, at most MaxNameLength bytes. Every name that
// comes from a remote passes through here before it becomes a path.
func ValidateFileName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("invalid file name: empty")
	case name == "." || name == "..":
		return fmt.Errorf("invalid file name %q", name)
	case len(name) > MaxNameLength:
		return fmt.Errorf("invalid file name %q: longer than %d bytes", clip(name), MaxNameLength)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("invalid file name %q: contains '/' or NUL", clip(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("invalid file name %q: not UTF-8", clip(name))
	}
	return nil
}

// GLib's \w with Unicode semantics: letters, digits, marks and underscore.
const wordClass = `\p{L}\p{N}\p{M}_`

// Compiled on first use: the Unicode classes take about a millisecond,
// which every start of the binary (a sandbox's init among them) would pay.
var (
	refRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:[` + wordClass + `][-.` + wordClass + `]*/)*[` + wordClass + `][-.` + wordClass + `]*$`)
	})
	remoteNameRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[` + wordClass + `][-.` + wordClass + `]*$`)
	})
	collectionRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$`)
	})
)

// ValidateRef checks a ref name the way ostree does (ostree-format.md 3.1).
func ValidateRef(ref string) error {
	if len(ref) > MaxRefLength || !utf8.ValidString(ref) || !refRE().MatchString(ref) {
		return fmt.Errorf("invalid ref name %q", clip(ref))
	}
	return nil
}

// ValidateRemoteName checks a remote name: one ref component.
func ValidateRemoteName(name string) error {
	if len(name) > MaxNameLength || !utf8.ValidString(name) || !remoteNameRE().MatchString(name) {
		return fmt.Errorf("invalid remote name %q", clip(name))
	}
	return nil
}

// ValidateCollectionID checks a collection id: a D-Bus-interface-like name.
func ValidateCollectionID(id string) error {
	if len(id) > 255 || !collectionRE().MatchString(id) {
		return fmt.Errorf("invalid collection id %q", clip(id))
	}
	return nil
}
