package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

type docsOptions struct {
	Man, Completions string
}

func newDocsCmd(g *globalOptions) *cobra.Command {
	o := &docsOptions{}
	c := &cobra.Command{
		Use:   "docs (--man DIR | --completions DIR)",
		Short: "Write man pages or shell completions (what make install installs)",
		Long: `Write a man page for every command (lazytree.1, lazytree-mount.1, ...) into
the --man directory, and completion scripts for bash, zsh and fish
(lazytree.bash, _lazytree, lazytree.fish) into the --completions
directory. Both are generated from the commands themselves, so they
always match this binary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Man == "" && o.Completions == "" {
				return usagef("docs: give --man DIR, --completions DIR or both")
			}
			root := cmd.Root()
			if o.Man != "" {
				if err := os.MkdirAll(o.Man, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "LAZYTREE", Section: "1", Source: "lazytree", Manual: "lazytree manual"}
				root.DisableAutoGenTag = true
				if err := doc.GenManTree(root, hdr, o.Man); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "man pages in %s\n", o.Man)
			}
			if o.Completions != "" {
				if err := os.MkdirAll(o.Completions, 0o755); err != nil {
					return err
				}
				for name, gen := range map[string]func(string) error{
					"lazytree.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
					"_lazytree":     root.GenZshCompletionFile,
					"lazytree.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
				} {
					if err := gen(filepath.Join(o.Completions, name)); err != nil {
						return fmt.Errorf("completions %s: %w", name, err)
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "completions in %s\n", o.Completions)
			}
			return nil
		},
	}
	c.Flags().StringVar(&o.Man, "man", "", "directory for the man pages")
	c.Flags().StringVar(&o.Completions, "completions", "", "directory for the bash, zsh and fish completions")
	return c
}
