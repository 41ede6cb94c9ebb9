package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/delta"
	"github.com/lazytree/lazytree/ostree/repo"
	"github.com/lazytree/lazytree/ostree/sign"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

func newInitCmd(g *globalOptions) *cobra.Command {
	o := &initOptions{}
	c := &cobra.Command{
		Use:   "init --repo DIR [--collection-id ID]",
		Short: "Create an OSTree archive repository to publish from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(o, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&o.Repo, "repo", "", "repository directory")
	c.Flags().StringVar(&o.CollectionID, "collection-id", "", "collection id (binds commits to it)")
	return c
}

// initOptions are init's flags.
type initOptions struct{ Repo, CollectionID string }

// runInit is `init`.
func runInit(o *initOptions, w io.Writer) error {
	if o.Repo == "" {
		return usagef("init: --repo is required")
	}
	if _, err := repo.Init(o.Repo, o.CollectionID); err != nil {
		return err
	}
	fmt.Fprintf(w, "initialised archive repository %s\n", o.Repo)
	return nil
}

// signOptions are the signing flags shared by commit and export.
type signOptions struct {
	GPGKeyFiles []string
	SignKeys    []string
}

func (o *signOptions) add(c *cobra.Command) {
	c.Flags().StringArrayVar(&o.GPGKeyFiles, "gpg-sign", nil, "sign with the GPG secret key in FILE (armored or binary, no passphrase)")
	c.Flags().StringArrayVar(&o.SignKeys, "sign-key", nil, "sign with the ed25519 secret key in FILE (base64, as ostree sign --keys-file takes)")
}

func (o *signOptions) signer() (*repo.Signer, error) {
	s := &repo.Signer{}
	if len(o.GPGKeyFiles) > 1 || len(o.SignKeys) > 1 {
		return nil, usagef("one --gpg-sign and one --sign-key at most")
	}
	for _, f := range o.GPGKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("gpg key: %w", err)
		}
		gs, err := sign.LoadGPGSigner(b)
		if err != nil {
			return nil, fmt.Errorf("gpg key %s: %w", f, err)
		}
		s.GPG = gs
	}
	for _, f := range o.SignKeys {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("ed25519 key: %w", err)
		}
		k, err := sign.ParseEd25519Secret(b)
		if err != nil {
			return nil, fmt.Errorf("ed25519 key %s: %w", f, err)
		}
		s.Ed25519 = k
	}
	return s, nil
}

type commitOptions struct {
	Repo       string
	Branch     string
	Subject    string
	Body       string
	Metadata   []string
	Timestamp  string
	Orphan     bool
	BindRefs   []string
	NoBindings bool
	Sign       signOptions
}

func newCommitCmd(g *globalOptions) *cobra.Command {
	o := &commitOptions{}
	c := &cobra.Command{
		Use:   "commit --repo DIR --branch REF [flags] SRC_DIR",
		Short: "Commit a directory tree to a branch of an archive repository",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := runCommit(cmd.Context(), o, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Checksum)
			return nil
		},
	}
	c.Flags().StringVar(&o.Repo, "repo", "", "repository directory")
	c.Flags().StringVarP(&o.Branch, "branch", "b", "", "branch (ref) to commit to")
	c.Flags().StringVarP(&o.Subject, "subject", "s", "", "one-line subject")
	c.Flags().StringVar(&o.Body, "body", "", "full description")
	c.Flags().StringArrayVar(&o.Metadata, "add-metadata-string", nil, "add KEY=VALUE string metadata")
	c.Flags().StringVar(&o.Timestamp, "timestamp", "", "commit time: @UNIXSECONDS or RFC 3339 (default now)")
	c.Flags().BoolVar(&o.Orphan, "orphan", false, "make a commit without a parent")
	c.Flags().StringArrayVar(&o.BindRefs, "bind-ref", nil, "also allow the commit to be pulled as REF (ostree.ref-binding)")
	c.Flags().BoolVar(&o.NoBindings, "no-bindings", false, "do not bind the commit to its refs or collection")
	o.Sign.add(c)
	return c
}

func runCommit(ctx context.Context, o *commitOptions, src string) (*repo.CommitResult, error) {
	if o.Repo == "" || o.Branch == "" {
		return nil, usagef("commit: --repo and --branch are required")
	}
	opts := repo.CommitOptions{Branch: o.Branch, Subject: o.Subject, Body: o.Body, Orphan: o.Orphan, BindRefs: o.BindRefs, NoBindings: o.NoBindings}
	for _, m := range o.Metadata {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" {
			return nil, usagef("commit: --add-metadata-string %q: want KEY=VALUE", m)
		}
		opts.Metadata = append(opts.Metadata, repo.KV{Key: k, Value: v})
	}
	if o.Timestamp != "" {
		ts, err := parseTimestamp(o.Timestamp)
		if err != nil {
			return nil, usageError{err}
		}
		opts.Timestamp = ts
	}
	s, err := o.Sign.signer()
	if err != nil {
		return nil, err
	}
	opts.Signer = s
	r, err := repo.Open(o.Repo)
	if err != nil {
		return nil, err
	}
	return r.CommitDir(ctx, src, opts)
}

func parseTimestamp(s string) (time.Time, error) {
	if strings.HasPrefix(s, "@") {
		n, err := strconv.ParseInt(s[1:], 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("timestamp %q: want @UNIXSECONDS", s)
		}
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: want @UNIXSECONDS or RFC 3339", s)
	}
	return t, nil
}

type exportOptions struct {
	Repo      string
	Deltas    bool
	TreeIndex bool
	Profiles  []string
	Sign      signOptions
}

func newExportCmd(g *globalOptions) *cobra.Command {
	o := &exportOptions{}
	c := &cobra.Command{
		Use:   "export --repo DIR [--gpg-sign KEYFILE] [--sign-key FILE] [--deltas] [--tree-index] [--profile FILE]...",
		Short: "Write the summary and its signatures (and deltas, tree indexes, profiles) so clients can pull",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&o.Repo, "repo", "", "repository directory")
	c.Flags().BoolVar(&o.Deltas, "deltas", false, "generate static deltas for every ref (from scratch and from its parent)")
	c.Flags().BoolVar(&o.TreeIndex, "tree-index", false, "write a tree index for every ref's commit and name it in the signed summary")
	c.Flags().StringArrayVar(&o.Profiles, "profile", nil, "publish the access profile in FILE (JSON) with the refs of its commit")
	o.Sign.add(c)
	return c
}

// runExport is `export`.
func runExport(ctx context.Context, o *exportOptions, w io.Writer) error {
	if o.Repo == "" {
		return usagef("export: --repo is required")
	}
	s, err := o.Sign.signer()
	if err != nil {
		return err
	}
	r, err := repo.Open(o.Repo)
	if err != nil {
		return err
	}
	eo := repo.ExportOptions{Signer: s, TreeIndex: o.TreeIndex, Profiles: o.Profiles,
		TreeIndexOptions: treeindex.BuildOptions{Scan: treeindex.ZranScan}}
	if o.Deltas {
		eo.Deltas = generateDelta
	}
	res, err := r.Export(ctx, eo)
	if err != nil {
		return err
	}
	signed := "unsigned"
	if res.Signed {
		signed = "signed"
	}
	fmt.Fprintf(w, "summary: %d refs, %d static deltas, %d bytes, %s\n", res.Refs, res.Deltas, res.SummarySize, signed)
	if o.TreeIndex || len(o.Profiles) > 0 {
		fmt.Fprintf(w, "tree indexes: %d refs, profiles: %d refs\n", res.TreeIndexes, res.Profiles)
	}
	return nil
}

// generateDelta makes static deltas with package delta for repo.Export.
func generateDelta(ctx context.Context, objs *repo.Objects, from *ostree.Checksum, to ostree.Checksum,
	writePart func(ctx context.Context, i int, data []byte) error) ([]byte, error) {
	_, sb, err := delta.Generate(ctx, objs, from, to, writePart, delta.GenerateOptions{})
	return sb, err
}
