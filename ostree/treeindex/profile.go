package treeindex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/lazytree/lazytree/ostree"
)

// Bounds of a published access profile.
const (
	ProfileVersion    = 1
	MaxProfileSize    = 8 << 20
	MaxProfilePaths   = 100_000
	MaxProfilePathLen = 4096
)

// ErrBadProfile is matched by every error DecodeProfile returns.
var ErrBadProfile = errors.New("treeindex: bad access profile")

// Profile is a published access profile: the files a program start
// opened, in open order, so that a client can fetch them in parallel
// before they are asked for.
type Profile struct {
	Commit ostree.Checksum
	// Paths are relative to the commit root ("files/bin/python3"), in
	// open order, each once.
	Paths []string
}

type profileJSON struct {
	Version int      `json:"version"`
	Commit  string   `json:"commit"`
	Paths   []string `json:"paths"`
}

// Encode returns the canonical JSON form (one line, newline-terminated).
// It checks what DecodeProfile checks.
func (p *Profile) Encode() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	paths := p.Paths
	if paths == nil {
		paths = []string{}
	}
	b, err := json.Marshal(profileJSON{Version: ProfileVersion, Commit: p.Commit.String(), Paths: paths})
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if len(b) > MaxProfileSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadProfile, len(b), MaxProfileSize)
	}
	return b, nil
}

// DecodeProfile parses a profile of at most MaxProfileSize bytes from r:
// one JSON object with exactly the keys version (1), commit (a checksum)
// and paths, nothing after it but white space, at most MaxProfilePaths
// paths, each valid (ValidateProfilePath) and listed once.
func DecodeProfile(r io.Reader) (*Profile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxProfileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxProfileSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBadProfile, MaxProfileSize)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrBadProfile)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	var pj profileJSON
	if err := d.Decode(&pj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadProfile, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrBadProfile)
	}
	if pj.Version != ProfileVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadProfile, pj.Version, ProfileVersion)
	}
	c, err := ostree.ParseChecksum(pj.Commit)
	if err != nil {
		return nil, fmt.Errorf("%w: commit: %v", ErrBadProfile, err)
	}
	p := &Profile{Commit: c, Paths: pj.Paths}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Profile) validate() error {
	if len(p.Paths) > MaxProfilePaths {
		return fmt.Errorf("%w: %d paths, more than %d", ErrBadProfile, len(p.Paths), MaxProfilePaths)
	}
	seen := make(map[string]bool, len(p.Paths))
	for _, s := range p.Paths {
		if err := ValidateProfilePath(s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("%w: path %q listed twice", ErrBadProfile, clip(s))
		}
		seen[s] = true
	}
	return nil
}

// ValidateProfilePath checks one profile path: non-empty, at most
// MaxProfilePathLen bytes, relative, and made of components that are
// valid file names (ostree.ValidateFileName: no "", ".", "..", NUL), so
// it can be looked up one dirtree at a time and never leaves the tree.
func ValidateProfilePath(s string) error {
	if s == "" || len(s) > MaxProfilePathLen {
		return fmt.Errorf("%w: path of %d bytes", ErrBadProfile, len(s))
	}
	if strings.HasPrefix(s, "/") {
		return fmt.Errorf("%w: absolute path %q", ErrBadProfile, clip(s))
	}
	for _, part := range strings.Split(s, "/") {
		if err := ostree.ValidateFileName(part); err != nil {
			return fmt.Errorf("%w: path %q: %v", ErrBadProfile, clip(s), err)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
