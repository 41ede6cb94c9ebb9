package fetch

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lazytree/lazytree/ostree"
)

// RemoteFile is what a .flatpakrepo or .flatpakref file says of the
// remote it describes (Flatpak's [Flatpak Repo] and [Flatpak Ref] keyfile
// groups).
type RemoteFile struct {
	URL string
	// GPGKey is the decoded GPGKey, nil when the file has none.
	GPGKey []byte
	// CollectionID is DeploySideloadCollectionID, "" when absent.
	CollectionID string
	// SuggestedName is SuggestRemoteName, "" when absent.
	SuggestedName string
}

// ReadRemoteFile parses a .flatpakrepo or .flatpakref file. Its values are
// the file's, unchecked beyond their encoding: Config.Add validates them.
func ReadRemoteFile(r io.Reader) (*RemoteFile, error) {
	kf, err := ostree.ParseKeyFile(r)
	if err != nil {
		return nil, err
	}
	group := "Flatpak Repo"
	if kf.HasGroup("Flatpak Ref") {
		group = "Flatpak Ref"
	}
	if !kf.HasGroup(group) {
		return nil, errors.New("neither a .flatpakrepo nor a .flatpakref file")
	}
	if v, ok := kf.String(group, "Version"); ok && v != "1" {
		return nil, fmt.Errorf("unsupported Version %q", v)
	}
	rf := &RemoteFile{}
	if rf.URL, _ = kf.String(group, "Url"); rf.URL == "" {
		return nil, errors.New("no Url")
	}
	if key, ok := kf.String(group, "GPGKey"); ok && key != "" {
		if rf.GPGKey, err = base64.StdEncoding.DecodeString(strings.TrimSpace(key)); err != nil {
			return nil, fmt.Errorf("GPGKey is not base64: %w", err)
		}
	}
	rf.CollectionID, _ = kf.String(group, "DeploySideloadCollectionID")
	rf.SuggestedName, _ = kf.String(group, "SuggestRemoteName")
	return rf, nil
}
