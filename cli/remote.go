package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
)

type remoteAddOptions struct {
	GPGImport    []string
	SignPubkey   []string
	NoGPGVerify  bool
	Mirrors      []string
	CollectionID string
	From         string
	Replace      bool
	// warn receives the warnings of a remote that was added anyway (see
	// fetch.AddOptions.Warn); nil drops them.
	warn io.Writer
}

func newRemoteCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{Use: "remote", Short: "Manage remotes"}
	o := &remoteAddOptions{}
	add := &cobra.Command{
		Use:   "add NAME URL | add [NAME] --from FILE.flatpakrepo|FILE.flatpakref",
		Short: "Add a remote (a key is required unless --no-gpg-verify)",
		Args:  cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.warn = cmd.ErrOrStderr()
			name, err := runRemoteAdd(cmd.Context(), g, o, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added remote %s\n", name)
			return nil
		},
	}
	add.Flags().StringArrayVar(&o.GPGImport, "gpg-import", nil, "trust the GPG public key(s) in FILE")
	add.Flags().StringArrayVar(&o.SignPubkey, "sign-pubkey-file", nil, "trust the ed25519 public keys in FILE (one base64 key per line)")
	add.Flags().BoolVar(&o.NoGPGVerify, "no-gpg-verify", false, "do not verify signatures (trust the network)")
	add.Flags().StringArrayVar(&o.Mirrors, "mirror", nil, "mirror URL (a lazytree serve --cache node, an HTTP cache), tried before URL in the order given; without signature checks the summary and refs still come from URL")
	add.Flags().StringVar(&o.CollectionID, "collection-id", "", "require commits bound to this collection id")
	add.Flags().StringVar(&o.From, "from", "", "take URL and key from a .flatpakrepo or .flatpakref file")
	add.Flags().BoolVar(&o.Replace, "if-exists-replace", false, "replace a remote of the same name")

	list := &cobra.Command{
		Use: "list", Short: "List remotes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRemoteList(cmd.Context(), g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a remote's settings", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRemoteShow(cmd.Context(), g, args[0], cmd.OutOrStdout())
		},
	}
	remove := &cobra.Command{
		Use: "remove NAME", Short: "Remove a remote and its keys", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRemoteRemove(cmd.Context(), g, args[0])
		},
	}
	for _, sub := range []*cobra.Command{list, show} {
		bindJSON(sub, &g.JSON)
	}
	c.AddCommand(add, list, show, remove)
	return c
}

// printConfigProblems shows the config groups fetch ignored, so that a
// remote that vanished from the list is explained.
func printConfigProblems(w io.Writer, cfg *fetch.Config) {
	for _, p := range cfg.Problems() {
		fmt.Fprintf(w, "lazytree: warning: %s\n", Escape(p))
	}
}

// displayURL is a remote URL as its owner may see it: the user name kept
// and the password masked (user:xxxxx@), so that a terminal, a screen
// share or a pasted `remote show` does not give the secret away. Errors,
// logs and status drop the userinfo entirely (fetch.RedactURL).
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return fetch.RedactURL(raw)
	}
	return u.Redacted()
}

func remoteJSON(r *fetch.Remote) map[string]any {
	var verify []string
	if r.GPGVerify {
		verify = append(verify, "gpg")
	}
	if r.GPGVerifySummary {
		verify = append(verify, "gpg-summary")
	}
	if r.SignVerify {
		verify = append(verify, "ed25519")
	}
	if len(verify) == 0 {
		verify = []string{"none"}
	}
	mirrors := make([]string, len(r.Mirrors))
	for i, m := range r.Mirrors {
		mirrors[i] = displayURL(m)
	}
	return map[string]any{"name": r.Name, "url": displayURL(r.URL), "mirrors": mirrors, "verify": strings.Join(verify, ","), "collection_id": r.CollectionID}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runRemoteAdd(ctx context.Context, g *globalOptions, o *remoteAddOptions, args []string) (string, error) {
	var name, rawURL string
	add := fetch.AddOptions{Mirrors: o.Mirrors, NoGPGVerify: o.NoGPGVerify, CollectionID: o.CollectionID, Replace: o.Replace}
	if o.warn != nil {
		add.Warn = func(msg string) { fmt.Fprintf(o.warn, "lazytree: warning: %s\n", Escape(msg)) }
	}
	if o.From != "" {
		if len(args) > 1 {
			return "", usagef("remote add --from takes at most a NAME")
		}
		f, err := os.Open(o.From)
		if err != nil {
			return "", err
		}
		defer f.Close()
		rf, err := fetch.ReadRemoteFile(f)
		if err != nil {
			return "", fmt.Errorf("%s: %w", o.From, err)
		}
		rawURL = rf.URL
		if rf.GPGKey != nil {
			add.GPGKeys = append(add.GPGKeys, rf.GPGKey)
		}
		if add.CollectionID == "" {
			add.CollectionID = rf.CollectionID
		}
		switch {
		case len(args) == 1:
			name = args[0]
		case rf.SuggestedName != "":
			name = rf.SuggestedName
		default:
			return "", usagef("remote add --from %s: give a NAME", o.From)
		}
	} else {
		if len(args) != 2 {
			return "", usagef("remote add needs NAME and URL")
		}
		name, rawURL = args[0], args[1]
	}
	add.URL = rawURL
	for _, p := range o.GPGImport {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		add.GPGKeys = append(add.GPGKeys, b)
	}
	for _, p := range o.SignPubkey {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		add.Ed25519Keys = append(add.Ed25519Keys, append(b, '\n')...)
	}
	cfg, err := fetch.LoadConfig(g.HomeDir())
	if err != nil {
		return "", err
	}
	if err := cfg.Add(name, add); err != nil {
		return "", err
	}
	if err := cfg.Save(); err != nil {
		return "", err
	}
	return name, reloadDaemon(ctx, g)
}

// reloadDaemon tells a running daemon that the remotes changed, so a new
// remote appears in the mount without a restart.
func reloadDaemon(ctx context.Context, g *globalOptions) error {
	_, err := callDaemon(ctx, g.HomeDir(), "reload", nil, io.Discard)
	return err
}

func newLsRemoteCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "ls-remote NAME",
		Short: "List a remote's refs, commits, timestamps and sizes from its verified summary",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLsRemote(cmd.Context(), g, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	bindJSON(c, &g.JSON)
	return c
}

// sizeOrUnknown is formatBytes for a size a summary may not state (Flatpak's
// xa.cache): zero there means unknown, shown as "-".
func sizeOrUnknown(n uint64) string {
	if n == 0 {
		return "-"
	}
	return formatBytes(int64(n))
}

// runRemoteList is `remote list`.
func runRemoteList(ctx context.Context, g *globalOptions, w, errw io.Writer) error {
	cfg, err := fetch.LoadConfig(g.HomeDir())
	if err != nil {
		return err
	}
	var rows []map[string]any
	for _, n := range cfg.Names() {
		r, err := cfg.Remote(n)
		if err != nil {
			rows = append(rows, map[string]any{"name": n, "error": err.Error()})
			continue
		}
		rows = append(rows, remoteJSON(r))
	}
	if g.JSON {
		// rows stays a list (scripts index it); ignored config
		// groups are rows with "ignored" set.
		for _, p := range cfg.Problems() {
			rows = append(rows, map[string]any{"ignored": true, "error": p})
		}
		return writeJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tVERIFY")
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", Escape(fmt.Sprint(row["name"])), Escape(fmt.Sprint(row["url"])), Escape(fmt.Sprint(row["verify"])))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printConfigProblems(errw, cfg)
	return nil
}

// runRemoteShow is `remote show NAME`.
func runRemoteShow(ctx context.Context, g *globalOptions, name string, w io.Writer) error {
	cfg, err := fetch.LoadConfig(g.HomeDir())
	if err != nil {
		return err
	}
	r, err := cfg.Remote(name)
	if err != nil {
		return err
	}
	if g.JSON {
		return writeJSON(w, remoteJSON(r))
	}
	row := remoteJSON(r)
	for _, k := range []string{"name", "url", "mirrors", "verify", "collection_id"} {
		fmt.Fprintf(w, "%-14s %s\n", k+":", Escape(fmt.Sprint(row[k])))
	}
	return nil
}

// runRemoteRemove is `remote remove NAME`.
func runRemoteRemove(ctx context.Context, g *globalOptions, name string) error {
	cfg, err := fetch.LoadConfig(g.HomeDir())
	if err != nil {
		return err
	}
	if err := cfg.Remove(name); err != nil {
		return err
	}
	if err := cfg.Save(); err != nil {
		return err
	}
	return reloadDaemon(ctx, g)
}

// runLsRemote is `ls-remote NAME`.
func runLsRemote(ctx context.Context, g *globalOptions, name string, w, errw io.Writer) error {
	s, err := openSession(ctx, g)
	if err != nil {
		return err
	}
	defer s.Close()
	refs, err := s.fetcher.Refs(ctx, name)
	if err != nil {
		return err
	}
	if st := s.fetcher.RemoteStatus(name); st.Offline {
		fmt.Fprintf(errw, "remote %s is offline (%s): refs from its summary verified at %s\n",
			Escape(name), Escape(st.Cause), st.SummaryVerified.UTC().Format(time.RFC3339))
	}
	if g.JSON {
		if refs == nil {
			refs = []fetch.RefInfo{}
		}
		return writeJSON(w, refs)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tCOMMIT\tDATE\tDOWNLOAD\tINSTALLED")
	for _, r := range refs {
		date := ""
		if r.Timestamp > 0 {
			date = time.Unix(int64(r.Timestamp), 0).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", Escape(r.Name), r.CommitHex[:12], date, sizeOrUnknown(r.DownloadSize), sizeOrUnknown(r.InstalledSize))
	}
	return tw.Flush()
}
