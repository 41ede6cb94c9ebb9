package fetch

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/sign"
)

// ErrNoRemote is returned for a remote name that is not configured.
var ErrNoRemote = errors.New("no such remote")

// Remote is one configured remote, as in ostree's [remote "NAME"] groups.
type Remote struct {
	Name    string
	URL     string
	Mirrors []string
	// GPGVerify checks commit signatures; GPGVerifySummary the summary's.
	GPGVerify        bool
	GPGVerifySummary bool
	// SignVerify checks ed25519 signatures of commits and the summary.
	SignVerify   bool
	CollectionID string

	gpg     *sign.GPGKeyring
	ed25519 []ed25519.PublicKey
}

// Verifies reports whether any signature check is on.
func (r *Remote) Verifies() bool { return r.GPGVerify || r.GPGVerifySummary || r.SignVerify }

// URLs returns the primary URL followed by the mirrors.
func (r *Remote) URLs() []string { return append([]string{r.URL}, r.Mirrors...) }

// Config is the remotes section of $LAZYTREE_HOME/config plus the trusted
// keys under keys/<remote>/.
type Config struct {
	home string
	kf   *ostree.KeyFile
}

const (
	gpgKeyFile     = "trustedkeys.gpg"
	ed25519KeyFile = "trusted.ed25519"
)

func remoteGroup(name string) string { return `remote "` + name + `"` }

// LoadConfig reads the config of a lazytree home; a missing file is an
// empty configuration.
func LoadConfig(home string) (*Config, error) {
	c := &Config{home: home, kf: ostree.NewKeyFile()}
	f, err := os.Open(filepath.Join(home, "config"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	if c.kf, err = ostree.ParseKeyFile(f); err != nil {
		return nil, fmt.Errorf("load config %s: %w", f.Name(), err)
	}
	return c, nil
}

// KeyFile exposes the underlying keyfile for settings outside remotes.
func (c *Config) KeyFile() *ostree.KeyFile { return c.kf }

// Save writes the config atomically.
func (c *Config) Save() error {
	if err := os.MkdirAll(c.home, 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.home, "config"), c.kf.Marshal())
}

// Names lists the configured remotes, sorted.
func (c *Config) Names() []string {
	var out []string
	for _, g := range c.kf.Groups() {
		if strings.HasPrefix(g, `remote "`) && strings.HasSuffix(g, `"`) {
			out = append(out, g[len(`remote "`):len(g)-1])
		}
	}
	sort.Strings(out)
	return out
}

// Remote loads one remote with its keys.
func (c *Config) Remote(name string) (*Remote, error) {
	g := remoteGroup(name)
	if err := ostree.ValidateRemoteName(name); err != nil || !c.kf.HasGroup(g) {
		return nil, fmt.Errorf("remote %q: %w", name, ErrNoRemote)
	}
	r := &Remote{Name: name}
	r.URL, _ = c.kf.String(g, "url")
	r.Mirrors = c.kf.List(g, "mirrors")
	r.CollectionID, _ = c.kf.String(g, "collection-id")
	var err error
	if r.GPGVerify, err = c.kf.Bool(g, "gpg-verify", true); err != nil {
		return nil, err
	}
	if r.GPGVerifySummary, err = c.kf.Bool(g, "gpg-verify-summary", r.GPGVerify); err != nil {
		return nil, err
	}
	if r.SignVerify, err = c.kf.Bool(g, "sign-verify", false); err != nil {
		return nil, err
	}
	keyDir := filepath.Join(c.home, "keys", name)
	if b, err := os.ReadFile(filepath.Join(keyDir, gpgKeyFile)); err == nil {
		if r.gpg, err = sign.LoadGPGKeyring(b); err != nil {
			return nil, fmt.Errorf("remote %s: keyring: %w", name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(keyDir, ed25519KeyFile)); err == nil {
		if r.ed25519, err = sign.ParseEd25519PublicKeys(b); err != nil {
			return nil, fmt.Errorf("remote %s: ed25519 keys: %w", name, err)
		}
	}
	if (r.GPGVerify || r.GPGVerifySummary) && r.gpg == nil {
		return nil, fmt.Errorf("remote %s: gpg-verify is on but no key was imported", name)
	}
	if r.SignVerify && len(r.ed25519) == 0 {
		return nil, fmt.Errorf("remote %s: sign-verify is on but no ed25519 key was given", name)
	}
	return r, nil
}

// AddOptions describe a new remote.
type AddOptions struct {
	URL          string
	Mirrors      []string
	GPGKeys      [][]byte // public keys, binary or armored
	Ed25519Keys  []byte   // one base64 key per line
	NoGPGVerify  bool
	CollectionID string
	// Replace allows overwriting an existing remote.
	Replace bool
}

// CheckURL accepts only http and https URLs.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("url %q: only http and https URLs are supported", raw)
	}
	return nil
}

// Add configures a remote. A remote with no key is refused unless
// NoGPGVerify is set: an unverified remote must be asked for explicitly.
func (c *Config) Add(name string, o AddOptions) error {
	if err := ostree.ValidateRemoteName(name); err != nil {
		return err
	}
	g := remoteGroup(name)
	if c.kf.HasGroup(g) && !o.Replace {
		return fmt.Errorf("remote %s already exists", name)
	}
	for _, u := range append([]string{o.URL}, o.Mirrors...) {
		if err := CheckURL(u); err != nil {
			return fmt.Errorf("remote %s: %w", name, err)
		}
	}
	if o.CollectionID != "" {
		if err := ostree.ValidateCollectionID(o.CollectionID); err != nil {
			return err
		}
	}
	var keyring []byte
	for _, k := range o.GPGKeys {
		if _, err := sign.LoadGPGKeyring(k); err != nil {
			return fmt.Errorf("remote %s: gpg key: %w", name, err)
		}
		keyring = append(keyring, k...)
	}
	if len(o.Ed25519Keys) > 0 {
		keys, err := sign.ParseEd25519PublicKeys(o.Ed25519Keys)
		if err != nil || len(keys) == 0 {
			return fmt.Errorf("remote %s: ed25519 key: no valid key (%v)", name, err)
		}
	}
	gpgOn := len(keyring) > 0
	if !gpgOn && len(o.Ed25519Keys) == 0 && !o.NoGPGVerify {
		return fmt.Errorf("remote %s: no key given: import one with --gpg-import or --sign-pubkey-file, or pass --no-gpg-verify to trust the network", name)
	}
	keyDir := filepath.Join(c.home, "keys", name)
	os.RemoveAll(keyDir)
	if gpgOn || len(o.Ed25519Keys) > 0 {
		if err := os.MkdirAll(keyDir, 0o755); err != nil {
			return err
		}
	}
	if gpgOn {
		if err := writeAtomic(filepath.Join(keyDir, gpgKeyFile), keyring); err != nil {
			return err
		}
	}
	if len(o.Ed25519Keys) > 0 {
		if err := writeAtomic(filepath.Join(keyDir, ed25519KeyFile), o.Ed25519Keys); err != nil {
			return err
		}
	}
	c.kf.RemoveGroup(g)
	c.kf.Set(g, "url", o.URL)
	if len(o.Mirrors) > 0 {
		c.kf.SetList(g, "mirrors", o.Mirrors)
	}
	c.kf.Set(g, "gpg-verify", fmt.Sprint(gpgOn))
	c.kf.Set(g, "gpg-verify-summary", fmt.Sprint(gpgOn))
	c.kf.Set(g, "sign-verify", fmt.Sprint(len(o.Ed25519Keys) > 0))
	if o.CollectionID != "" {
		c.kf.Set(g, "collection-id", o.CollectionID)
	}
	return nil
}

// Remove deletes a remote and its keys.
func (c *Config) Remove(name string) error {
	if !c.kf.RemoveGroup(remoteGroup(name)) {
		return fmt.Errorf("remote %q: %w", name, ErrNoRemote)
	}
	return os.RemoveAll(filepath.Join(c.home, "keys", name))
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
