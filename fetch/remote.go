package fetch

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/sign"
)

// The not-found sentinels, one per meaning. ErrNotFound (http.go) is the
// server's answer for one file; these say what the user asked for does
// not exist.
var (
	// ErrNoRemote: the remote name is not configured.
	ErrNoRemote = errors.New("no such remote")
	// ErrNoRef: the remote does not publish the ref.
	ErrNoRef = errors.New("no such ref")
	// ErrNoCommit: no configured remote has the commit (nor the cache).
	ErrNoCommit = errors.New("no such commit")
)

// Remote is one configured remote, as in ostree's [remote "NAME"] groups.
type Remote struct {
	Name string
	// URL is the origin: the publisher's repository.
	URL string
	// Mirrors are tried before URL, in this order (a neighbour's
	// `lazytree serve --cache`, an HTTP cache).
	Mirrors []string
	// GPGVerify checks commit signatures; GPGVerifySummary the summary's.
	GPGVerify        bool
	GPGVerifySummary bool
	// SignVerify checks ed25519 signatures of commits and the summary.
	SignVerify   bool
	CollectionID string
	// MaxOfflineAge, when set (config key max-offline-age, e.g. "3d" or
	// "12h"), replaces Options.MaxOfflineAge for this remote.
	MaxOfflineAge time.Duration
	// Prefetch, when set (config key prefetch=), replaces the mount's
	// --prefetch mode for the refs of this remote.
	Prefetch string

	gpg     *sign.GPGKeyring
	ed25519 []ed25519.PublicKey
	// keys is the SHA-256 of the key files as read, to tell whether a
	// reloaded config changed them.
	keys [32]byte
}

// sameAs reports whether o is r with nothing changed: settings and keys.
func (r *Remote) sameAs(o *Remote) bool {
	return r.Name == o.Name && r.URL == o.URL && slices.Equal(r.Mirrors, o.Mirrors) &&
		r.GPGVerify == o.GPGVerify && r.GPGVerifySummary == o.GPGVerifySummary && r.SignVerify == o.SignVerify &&
		r.CollectionID == o.CollectionID && r.MaxOfflineAge == o.MaxOfflineAge && r.Prefetch == o.Prefetch && r.keys == o.keys
}

// Verifies reports whether any signature check is on.
func (r *Remote) Verifies() bool { return r.GPGVerify || r.GPGVerifySummary || r.SignVerify }

// URLs returns the mirrors in the order given, then the origin (URL): the
// order in which they are tried. A remote that verifies nothing takes
// its summary and refs from the origin only (see mirrorable).
func (r *Remote) URLs() []string { return append(slices.Clone(r.Mirrors), r.URL) }

// Config is the remotes section of $LAZYTREE_HOME/config plus the trusted
// keys under keys/<remote>/.
//
// The config file, the keys directory and every key file are owner-only
// (0600 files, 0700 directories): the config may hold URLs with
// credentials, and a keyring is the trust root of every verified tree.
type Config struct {
	home string
	kf   *ostree.KeyFile
	// problems are the config groups LoadConfig ignored, one sentence each.
	problems []string
}

// File and directory modes of what Config writes; see Config.
const (
	privateFileMode = 0o600
	privateDirMode  = 0o700
)

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
	for _, g := range c.kf.Groups() {
		name, ok := groupRemote(g)
		if !ok {
			continue
		}
		// The name becomes a path under keys/: a hand-edited or hostile
		// config must not make Remove or Add touch anything outside it.
		if err := ostree.ValidateRemoteName(name); err != nil {
			c.problems = append(c.problems, fmt.Sprintf("config group [%s] ignored: %v", g, err))
		}
	}
	return c, nil
}

// groupRemote returns the remote name of a [remote "NAME"] group.
func groupRemote(g string) (string, bool) {
	if strings.HasPrefix(g, `remote "`) && strings.HasSuffix(g, `"`) && len(g) > len(`remote "`) {
		return g[len(`remote "`) : len(g)-1], true
	}
	return "", false
}

// Problems lists the parts of the config file that LoadConfig ignored
// (remote groups whose name is not a valid remote name), one sentence
// each, so that cli can show them; nil when there are none.
func (c *Config) Problems() []string { return c.problems }

// KeyFile exposes the underlying keyfile for settings outside remotes.
func (c *Config) KeyFile() *ostree.KeyFile { return c.kf }

// Save writes the config atomically, owner-only. A home it has to create
// is owner-only too; an existing home keeps its mode.
func (c *Config) Save() error {
	if err := os.MkdirAll(c.home, privateDirMode); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := writeAtomic(filepath.Join(c.home, "config"), c.kf.Marshal()); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return nil
}

// Names lists the configured remotes with a valid name, sorted; the others
// are in Problems.
func (c *Config) Names() []string {
	var out []string
	for _, g := range c.kf.Groups() {
		if name, ok := groupRemote(g); ok && ostree.ValidateRemoteName(name) == nil {
			out = append(out, name)
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
	if v, ok := c.kf.String(g, "max-offline-age"); ok && v != "" {
		d, err := parseAge(v)
		if err != nil {
			return nil, fmt.Errorf("remote %s: max-offline-age: %w", name, err)
		}
		r.MaxOfflineAge = d
	}
	if v, ok := c.kf.String(g, "prefetch"); ok && v != "" {
		if !ValidPrefetch(v) {
			return nil, fmt.Errorf("remote %s: prefetch %q: want one of %s", name, v, strings.Join(PrefetchModes, ", "))
		}
		r.Prefetch = v
	}
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
	keyHash := sha256.New()
	if b, err := os.ReadFile(filepath.Join(keyDir, gpgKeyFile)); err == nil {
		keyHash.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		keyHash.Write(b)
		if r.gpg, err = sign.LoadGPGKeyring(b); err != nil {
			return nil, fmt.Errorf("remote %s: keyring: %w", name, err)
		}
	}
	keyHash.Write([]byte{0}) // the ed25519 file follows, length first
	if b, err := os.ReadFile(filepath.Join(keyDir, ed25519KeyFile)); err == nil {
		keyHash.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		keyHash.Write(b)
		if r.ed25519, err = sign.ParseEd25519PublicKeys(b); err != nil {
			return nil, fmt.Errorf("remote %s: ed25519 keys: %w", name, err)
		}
	}
	keyHash.Sum(r.keys[:0])
	if (r.GPGVerify || r.GPGVerifySummary) && r.gpg == nil {
		return nil, fmt.Errorf("remote %s: gpg-verify is on but no key was imported", name)
	}
	if r.SignVerify && len(r.ed25519) == 0 {
		return nil, fmt.Errorf("remote %s: sign-verify is on but no ed25519 key was given", name)
	}
	return r, nil
}

// parseAge reads a duration as Go writes them ("36h", "90m") or in whole
// days ("7d").
func parseAge(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 36500 {
			return 0, fmt.Errorf("%q is not a number of days", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (e.g. 7d, 36h)", v)
	}
	return d, nil
}

// AddOptions describe a new remote.
type AddOptions struct {
	URL     string
	Mirrors []string
	// GPGKeys are OpenPGP keys, binary or armored. Only their public parts
	// are stored: a secret-key export is accepted (as ostree's
	// --gpg-import accepts it) and its secret parts are dropped, with a
	// warning through Warn.
	GPGKeys      [][]byte
	Ed25519Keys  []byte // one base64 public key per line
	NoGPGVerify  bool
	CollectionID string
	// Replace allows overwriting an existing remote.
	Replace bool
	// Warn receives what the user should know about a remote that was
	// added anyway (secret key material that was dropped), one sentence
	// per call; nil drops the warnings.
	Warn func(msg string)
}

// CheckURL accepts only http and https URLs. Its errors name the URL
// without userinfo.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("url %q: %v", RedactURL(raw), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("url %q: only http and https URLs are supported", RedactURL(raw))
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
	secret := false
	for i, k := range o.GPGKeys {
		// sign.LoadGPGKeyring is the judge of what verifies: a key it
		// refuses is refused here, before anything is written; only the
		// public keys it kept are stored.
		kr, err := sign.LoadGPGKeyring(k)
		if err != nil {
			return fmt.Errorf("remote %s: gpg key: %w", name, err)
		}
		pub, err := kr.PublicKeys()
		if err != nil {
			return fmt.Errorf("remote %s: gpg key data %d: %w", name, i, err)
		}
		secret = secret || kr.HadSecret()
		keyring = append(keyring, pub...)
	}
	var edKeys []byte
	if len(o.Ed25519Keys) > 0 {
		keys, err := sign.ParseEd25519PublicKeys(o.Ed25519Keys)
		if err != nil || len(keys) == 0 {
			return fmt.Errorf("remote %s: ed25519 key: no valid public key (%v)", name, err)
		}
		// Written normalized, one key per line: nothing of the input but
		// the public keys themselves reaches the disk.
		for _, k := range keys {
			edKeys = append(edKeys, base64.StdEncoding.EncodeToString(k)+"\n"...)
		}
	}
	gpgOn := len(keyring) > 0
	if !gpgOn && len(edKeys) == 0 && !o.NoGPGVerify {
		return fmt.Errorf("remote %s: no key given: import one with --gpg-import or --sign-pubkey-file, or pass --no-gpg-verify to trust the network", name)
	}
	keysDir := filepath.Join(c.home, "keys")
	keyDir := filepath.Join(keysDir, name)
	if err := os.RemoveAll(keyDir); err != nil {
		return fmt.Errorf("remote %s: remove old keys: %w", name, err)
	}
	if gpgOn || len(edKeys) > 0 {
		if err := os.MkdirAll(keyDir, privateDirMode); err != nil {
			return fmt.Errorf("remote %s: %w", name, err)
		}
		// MkdirAll leaves existing directories alone: a keys/ made by an
		// older version is 0755.
		for _, d := range []string{keysDir, keyDir} {
			if err := os.Chmod(d, privateDirMode); err != nil {
				return fmt.Errorf("remote %s: %w", name, err)
			}
		}
	}
	if gpgOn {
		if err := writeAtomic(filepath.Join(keyDir, gpgKeyFile), keyring); err != nil {
			return fmt.Errorf("remote %s: write keyring: %w", name, err)
		}
	}
	if len(edKeys) > 0 {
		if err := writeAtomic(filepath.Join(keyDir, ed25519KeyFile), edKeys); err != nil {
			return fmt.Errorf("remote %s: write ed25519 keys: %w", name, err)
		}
	}
	if secret && o.Warn != nil {
		o.Warn(fmt.Sprintf("remote %s: the gpg key data holds secret key material: only the public keys were stored; keep the secret key file private", name))
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

// Remove deletes a remote and its keys. A group with an invalid name (one
// of Problems) is removed from the config only: such a name never becomes
// a path, so nothing on disk is touched for it.
func (c *Config) Remove(name string) error {
	if !c.kf.RemoveGroup(remoteGroup(name)) {
		return fmt.Errorf("remote %q: %w", name, ErrNoRemote)
	}
	if ostree.ValidateRemoteName(name) != nil {
		return nil
	}
	if err := os.RemoveAll(filepath.Join(c.home, "keys", name)); err != nil {
		return fmt.Errorf("remove remote %s: %w", name, err)
	}
	return nil
}

// writeAtomic replaces path with data, owner-only (privateFileMode): what
// Config writes is either a trust root or may carry credentials.
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
		err = os.Chmod(tmp.Name(), privateFileMode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
