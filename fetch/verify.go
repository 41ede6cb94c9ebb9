package fetch

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/sign"
)

// ErrVerify is matched by every refusal to trust what a remote served:
// bad or missing signatures, bindings, downgrades, replays.
var ErrVerify = errors.New("verification failed")

// VerifyError says which check refused which object of which remote.
type VerifyError struct {
	Remote string
	Object string
	Check  string // "gpg signature", "ed25519 signature", "ref binding", "collection binding", "downgrade", "future timestamp", "summary replay", "summary expired", "checksum", "size"
	Err    error
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("remote %s: %s: %s check failed: %v", e.Remote, e.Object, e.Check, e.Err)
}

// Is matches ErrVerify, and ostree.ErrCorrupt for checksum and size failures.
func (e *VerifyError) Is(target error) bool {
	return target == ErrVerify || (target == ostree.ErrCorrupt && (e.Check == "checksum" || e.Check == "size"))
}

func (e *VerifyError) Unwrap() error { return e.Err }

// objectError names remote and object in err, once: a verification
// failure already names both.
func objectError(remote, object string, err error) error {
	var ve *VerifyError
	if errors.As(err, &ve) && ve.Remote == remote && ve.Object == object {
		return err
	}
	return fmt.Errorf("remote %s: %s: %w", remote, object, err)
}

// signature reports whether a signature check failed (which detached
// metadata from the remote itself may still satisfy).
func (e *VerifyError) signature() bool {
	return e.Check == "gpg signature" || e.Check == "ed25519 signature"
}

// verifySignatures checks detached signatures (commitmeta or summary.sig)
// over data with the remote's keys. gpg and ed say which schemes are
// required.
func (r *Remote) verifySignatures(object string, data []byte, dict []any, gpg, ed bool) error {
	if gpg {
		sigs := ostree.Signatures(dict, sign.KeyGPG)
		if len(sigs) == 0 {
			return &VerifyError{r.Name, object, "gpg signature", errors.New("unsigned, but the remote requires a GPG signature")}
		}
		if _, err := r.gpg.Verify(data, sigs); err != nil {
			return &VerifyError{r.Name, object, "gpg signature", err}
		}
	}
	if ed {
		sigs := ostree.Signatures(dict, sign.KeyEd25519)
		if len(sigs) == 0 {
			return &VerifyError{r.Name, object, "ed25519 signature", errors.New("unsigned, but the remote requires an ed25519 signature")}
		}
		if err := sign.VerifyEd25519(r.ed25519, data, sigs); err != nil {
			return &VerifyError{r.Name, object, "ed25519 signature", err}
		}
	}
	return nil
}

// checkBindings applies ostree's ref and collection binding rules: a
// commit bound to refs may only be used as one of them; a remote with a
// collection id requires both bindings.
func (r *Remote) checkBindings(object, ref string, c *ostree.Commit) error {
	refs, hasRefs := c.MetaStrings(ostree.MetaRefBinding)
	if r.CollectionID != "" {
		coll, ok := c.MetaString(ostree.MetaCollectionBinding)
		if !ok {
			return &VerifyError{r.Name, object, "collection binding", fmt.Errorf("commit has no collection binding, remote requires %q", r.CollectionID)}
		}
		if coll != r.CollectionID {
			return &VerifyError{r.Name, object, "collection binding", fmt.Errorf("commit is bound to collection %q, remote is %q", coll, r.CollectionID)}
		}
		if !hasRefs {
			return &VerifyError{r.Name, object, "ref binding", errors.New("commit has no ref binding")}
		}
	}
	if ref != "" && (hasRefs || r.Verifies()) {
		if !hasRefs {
			return &VerifyError{r.Name, object, "ref binding", fmt.Errorf("commit has no ref binding, requested as %s", ref)}
		}
		if !slices.Contains(refs, ref) {
			return &VerifyError{r.Name, object, "ref binding", fmt.Errorf("commit is bound to %v, not to the requested ref %s", refs, ref)}
		}
	}
	return nil
}

// checkTime refuses commits from the future and older commits for a ref
// than the last one verified.
func checkTime(remote, object string, c *ostree.Commit, sum ostree.Checksum, lastSum ostree.Checksum, lastTS uint64, hasLast bool, now time.Time, skew time.Duration) error {
	if c.Timestamp > uint64(now.Add(skew).Unix()) {
		return &VerifyError{remote, object, "future timestamp", fmt.Errorf("commit is dated %s, more than %s ahead of now", time.Unix(int64(c.Timestamp), 0).UTC().Format(time.RFC3339), skew)}
	}
	if !hasLast || lastSum == sum {
		return nil
	}
	if c.Timestamp < lastTS {
		return &VerifyError{remote, object, "downgrade", fmt.Errorf("commit is dated %s, older than %s of the last verified commit %s",
			time.Unix(int64(c.Timestamp), 0).UTC().Format(time.RFC3339), time.Unix(int64(lastTS), 0).UTC().Format(time.RFC3339), lastSum)}
	}
	if c.Timestamp == lastTS {
		return &VerifyError{remote, object, "downgrade", fmt.Errorf("a different commit %s has the same timestamp", lastSum)}
	}
	return nil
}
