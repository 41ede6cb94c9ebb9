package repo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/ostree"
)

// Repo is an OSTree archive repository on disk.
type Repo struct {
	Dir          string
	Config       *ostree.KeyFile
	CollectionID string
}

// Init creates an archive repository in dir (which may exist but must not
// already hold a repository).
func Init(dir, collectionID string) (*Repo, error) {
	if collectionID != "" {
		if err := ostree.ValidateCollectionID(collectionID); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
		return nil, fmt.Errorf("init %s: a repository already exists there", dir)
	}
	for _, d := range []string{"objects", "refs/heads", "refs/remotes", "refs/mirrors", "tmp", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	kf := ostree.NewKeyFile()
	kf.Set("core", "repo_version", "1")
	kf.Set("core", "mode", "archive-z2")
	if collectionID != "" {
		kf.Set("core", "collection-id", collectionID)
	}
	if err := writeFileAtomic(filepath.Join(dir, "config"), kf.Marshal(), 0o644); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	return &Repo{Dir: dir, Config: kf, CollectionID: collectionID}, nil
}

// Open opens an existing archive repository.
func Open(dir string) (*Repo, error) {
	f, err := os.Open(filepath.Join(dir, "config"))
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	defer f.Close()
	kf, err := ostree.ParseKeyFile(f)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: config: %w", dir, err)
	}
	if v, _ := kf.String("core", "repo_version"); v != "1" {
		return nil, fmt.Errorf("open repository %s: repo_version %q, want 1", dir, v)
	}
	if m, _ := kf.String("core", "mode"); m != "archive-z2" && m != "archive" {
		return nil, fmt.Errorf("open repository %s: mode %q is not archive", dir, m)
	}
	r := &Repo{Dir: dir, Config: kf}
	r.CollectionID, _ = kf.String("core", "collection-id")
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	return r, nil
}

func (r *Repo) objPath(c ostree.Checksum, t ostree.ObjectType) string {
	return filepath.Join(r.Dir, ostree.ObjectPath(c, t, true))
}

// HasObject reports whether an object is stored.
func (r *Repo) HasObject(c ostree.Checksum, t ostree.ObjectType) bool {
	_, err := os.Lstat(r.objPath(c, t))
	return err == nil
}

// ReadObject returns the bytes of a stored object (for content objects,
// the .filez bytes).
func (r *Repo) ReadObject(c ostree.Checksum, t ostree.ObjectType) ([]byte, error) {
	b, err := os.ReadFile(r.objPath(c, t))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ostree.ObjectName(c, t), err)
	}
	return b, nil
}

// WriteMetadata stores a metadata object and returns its checksum. Detached
// metadata is named after its commit and must use WriteCommitMeta.
func (r *Repo) WriteMetadata(t ostree.ObjectType, data []byte) (ostree.Checksum, error) {
	if !t.IsMeta() || t == ostree.ObjCommitMeta {
		return ostree.Checksum{}, fmt.Errorf("write metadata: bad object type %s", t)
	}
	c := ostree.Sum(data)
	if r.HasObject(c, t) {
		return c, nil
	}
	return c, r.writeObjectFile(r.objPath(c, t), data)
}

// WriteCommitMeta replaces the detached metadata of a commit.
func (r *Repo) WriteCommitMeta(commit ostree.Checksum, data []byte) error {
	return r.writeObjectFile(r.objPath(commit, ostree.ObjCommitMeta), data)
}

// ReadCommitMeta returns a commit's detached metadata, or nil if it has none.
func (r *Repo) ReadCommitMeta(commit ostree.Checksum) ([]any, error) {
	b, err := os.ReadFile(r.objPath(commit, ostree.ObjCommitMeta))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ostree.DecodeVarDict("commitmeta", b)
}

func (r *Repo) writeObjectFile(dst string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(r.Dir, "tmp"), "obj-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	return r.finishTemp(tmp, dst)
}

// finishTemp closes tmp, makes it world-readable and renames it to dst.
func (r *Repo) finishTemp(tmp *os.File, dst string) error {
	name := tmp.Name()
	err := tmp.Chmod(0o644)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
	}
	if err == nil {
		err = os.Rename(name, dst)
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

// ReadCommit reads and decodes a stored commit.
func (r *Repo) ReadCommit(c ostree.Checksum) (*ostree.Commit, []byte, error) {
	b, err := r.ReadObject(c, ostree.ObjCommit)
	if err != nil {
		return nil, nil, err
	}
	if ostree.Sum(b) != c {
		return nil, nil, &ostree.ChecksumError{Object: ostree.ObjectName(c, ostree.ObjCommit), Got: ostree.Sum(b), Want: c}
	}
	cm, err := ostree.DecodeCommit(b)
	return cm, b, err
}

// ResolveRef returns the commit refs/heads/<ref> points at; ok is false if
// the ref does not exist.
func (r *Repo) ResolveRef(ref string) (c ostree.Checksum, ok bool, err error) {
	if err := ostree.ValidateRef(ref); err != nil {
		return c, false, err
	}
	b, err := os.ReadFile(filepath.Join(r.Dir, "refs/heads", ref))
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	c, err = ostree.ParseChecksum(strings.TrimSpace(string(b)))
	if err != nil {
		return c, false, fmt.Errorf("ref %s: %w", ref, err)
	}
	return c, true, nil
}

// SetRef points refs/heads/<ref> at commit. The repository is synced first
// so that the ref never names an object that a crash could lose.
func (r *Repo) SetRef(ref string, commit ostree.Checksum) error {
	if err := ostree.ValidateRef(ref); err != nil {
		return err
	}
	if !r.HasObject(commit, ostree.ObjCommit) {
		return fmt.Errorf("set ref %s: commit %s is not in the repository", ref, commit)
	}
	if err := r.Sync(); err != nil {
		return err
	}
	p := filepath.Join(r.Dir, "refs/heads", ref)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(p, []byte(commit.String()+"\n"), 0o644)
}

// Refs lists refs/heads, sorted.
func (r *Repo) Refs() (map[string]ostree.Checksum, error) {
	out := map[string]ostree.Checksum{}
	root := filepath.Join(r.Dir, "refs/heads")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		ref := filepath.ToSlash(rel)
		c, ok, err := r.ResolveRef(ref)
		if err != nil {
			return err
		}
		if ok {
			out[ref] = c
		}
		return nil
	})
	return out, err
}

// SortedRefs returns the ref names of m in byte order.
func SortedRefs(m map[string]ostree.Checksum) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Sync flushes the file system holding the repository.
func (r *Repo) Sync() error {
	f, err := os.Open(r.Dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
