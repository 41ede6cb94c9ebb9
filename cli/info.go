package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lazytree/lazytree/fetch"
)

func newInfoCmd(g *globalOptions) *cobra.Command {
	// A daemon info starts (root, none running) prefetches nothing, as
	// run's does by default.
	o := &runOptions{Prefetch: fetch.PrefetchNone}
	c := &cobra.Command{
		Use:   "info APP_ID",
		Short: "Show an app's ref, commit, runtime, command and permissions (read from the lazy mount)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInfo(cmd.Context(), g, o, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := c.Flags()
	f.StringVar(&o.Remote, "remote", "", "the remote to look in (default: the only one that has the app)")
	f.StringVar(&o.Branch, "branch", "", "the app's branch (default: the only one)")
	f.StringVar(&o.Arch, "arch", hostArch(), "the app's architecture")
	f.StringVar(&o.Mount, "mount", "", "the lazy mount to use")
	bindJSON(c, &g.JSON)
	return c
}

// runInfo is `info`: what run would start, and with which permissions.
// Every string from the remote is escaped (CVE-2023-28101 hid
// permissions behind terminal escape codes).
func runInfo(ctx context.Context, g *globalOptions, o *runOptions, appID string, w, errw io.Writer) error {
	if err := validAppID(appID); err != nil {
		return usagef("%v", err)
	}
	mp, err := findMount(ctx, g, o, errw)
	if err != nil {
		return err
	}
	app, meta, err := findApp(mp, appID, o)
	if err != nil {
		return err
	}
	rt, rtErr := findRef(mp, "runtime/"+meta.Runtime, app.Remote)
	fillCommits(mp, &app, &rt)
	if g.JSON {
		doc := map[string]any{"remote": app.Remote, "ref": app.Ref, "commit": app.Commit, "metadata": meta}
		if rtErr == nil {
			doc["runtime_ref"] = rt.String()
			doc["runtime_commit"] = rt.Commit
		} else {
			doc["runtime_error"] = rtErr.Error()
		}
		return writeJSON(w, doc)
	}
	line := func(k, v string) { fmt.Fprintf(w, "%-16s %s\n", k+":", EscapeLine(v)) }
	line("ref", app.String())
	line("commit", app.Commit)
	line("name", meta.Name)
	line("command", meta.Command)
	if rtErr == nil {
		line("runtime", rt.String())
		line("runtime commit", rt.Commit)
	} else {
		line("runtime", "runtime/"+meta.Runtime+" (not found: "+rtErr.Error()+")")
	}
	fmt.Fprintln(w, "permissions:")
	perm := func(k string, v []string) {
		if len(v) == 0 {
			v = []string{"(none)"}
		}
		fmt.Fprintf(w, "  %-12s %s\n", k, EscapeLine(strings.Join(v, ", ")))
	}
	perm("shared", meta.Context.Shared)
	perm("sockets", meta.Context.Sockets)
	perm("devices", meta.Context.Devices)
	perm("filesystems", meta.Context.Filesystems) // granted only with run --grant
	perm("features", meta.Context.Features)
	perm("environment", meta.Env)
	for _, why := range meta.Ignored {
		fmt.Fprintf(w, "  not granted: %s\n", EscapeLine(why))
	}
	return nil
}
