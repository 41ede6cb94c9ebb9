package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// Access profiles (DESIGN.md, "Fetch strategies"): the files the mount
// saw opened under a commit, in order, which --prefetch profile replays.
// `profile export` writes one as the JSON that `export --profile`
// publishes and `profile import` reads back, so a profile recorded on one
// machine speeds up the first start on another.

func newProfileCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "profile",
		Short: "Move access profiles (the files a commit's users opened) between caches and repos",
	}
	var out string
	exp := &cobra.Command{
		Use:   "export COMMIT|REMOTE:REF [-o FILE]",
		Short: "Write the access profile recorded for a commit (REMOTE:REF: its last verified commit)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			if out != "" {
				var buf bytes.Buffer
				if err := runProfileExport(cmd.Context(), g, args[0], &buf); err != nil {
					return err
				}
				return os.WriteFile(out, buf.Bytes(), 0o644)
			}
			return runProfileExport(cmd.Context(), g, args[0], w)
		},
	}
	exp.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of standard output")
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Record the access profile in FILE (as profile export writes it) for its commit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			return runProfileImport(cmd.Context(), g, f, cmd.OutOrStdout())
		},
	}
	c.AddCommand(exp, imp)
	return c
}

// profileArgs carry a profile command to the daemon.
type profileArgs struct {
	Spec    string `json:"spec,omitempty"`
	Profile []byte `json:"profile,omitempty"`
}

func runProfileExport(ctx context.Context, g *globalOptions, spec string, w io.Writer) error {
	if handled, err := callDaemon(ctx, g.HomeDir(), "profile-export", profileArgs{Spec: spec}, w); handled {
		return err
	}
	s, release, err := acquireCache(ctx, g.HomeDir())
	if err != nil {
		return err
	}
	defer release()
	return exportProfile(s.Index(), spec, nil, w)
}

// exportProfile writes the profile of the commit spec names. flush, when
// set, first saves what a running mount recorded.
func exportProfile(db *index.DB, spec string, flush func() error, w io.Writer) error {
	c, err := profileCommit(db, spec)
	if err != nil {
		return err
	}
	if flush != nil {
		if err := flush(); err != nil {
			return err
		}
	}
	paths, err := db.Profile(c)
	if err != nil {
		return fmt.Errorf("no access profile recorded for commit %s: %w", c, err)
	}
	b, err := (&treeindex.Profile{Commit: c, Paths: paths}).Encode()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// profileCommit resolves COMMIT or REMOTE:REF (the last commit verified
// for it here, without the network).
func profileCommit(db *index.DB, spec string) (ostree.Checksum, error) {
	if !strings.Contains(spec, ":") {
		c, err := ostree.ParseChecksum(spec)
		if err != nil {
			return c, usagef("%q: want a commit checksum or REMOTE:REF", spec)
		}
		return c, nil
	}
	remote, ref, err := splitRefspec(spec)
	if err != nil {
		return ostree.Checksum{}, err
	}
	refs, err := db.Refs(remote)
	if err != nil {
		return ostree.Checksum{}, err
	}
	r, ok := refs[ref]
	if !ok {
		return ostree.Checksum{}, fmt.Errorf("%s: no commit verified for it in this cache yet (mount or pull it first)", Escape(spec))
	}
	return r.Commit, nil
}

func runProfileImport(ctx context.Context, g *globalOptions, r io.Reader, w io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(r, treeindex.MaxProfileSize+1))
	if err != nil {
		return err
	}
	if handled, err := callDaemon(ctx, g.HomeDir(), "profile-import", profileArgs{Profile: data}, w); handled {
		return err
	}
	s, release, err := acquireCache(ctx, g.HomeDir())
	if errors.Is(err, errNoCache) {
		// A new machine's first step may well be the import: make the
		// cache that will use it.
		var st *objcache.Store
		if st, err = objcache.Open(ctx, g.HomeDir(), objcache.Options{}); err == nil {
			s, release = st, st.Close
		}
	}
	if err != nil {
		return err
	}
	defer release()
	return importProfile(data, func(c ostree.Checksum, paths []string) error { return s.Index().SetProfile(c, paths) }, w)
}

func importProfile(data []byte, set func(ostree.Checksum, []string) error, w io.Writer) error {
	p, err := treeindex.DecodeProfile(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := set(p.Commit, p.Paths); err != nil {
		return err
	}
	fmt.Fprintf(w, "imported %d paths for commit %s\n", len(p.Paths), p.Commit)
	return nil
}

// profileHandlers are the daemon's profile operations.
func profileHandlers(s *session, src *fetch.MountSource) map[string]controlHandler {
	return map[string]controlHandler{
		"profile-export": func(ctx context.Context, args json.RawMessage, w io.Writer) error {
			var a profileArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return err
			}
			return exportProfile(s.store.Index(), a.Spec, src.FlushProfiles, w)
		},
		"profile-import": func(ctx context.Context, args json.RawMessage, w io.Writer) error {
			var a profileArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return err
			}
			return importProfile(a.Profile, src.ImportProfile, w)
		},
	}
}
