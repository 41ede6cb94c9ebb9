package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"unicode"

	"github.com/spf13/cobra"
)

// Exit codes of the lazytree command (DESIGN.md, "CLI contract").
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// commands are the constructors of the top-level verbs, in the order of
// the CLI contract (DESIGN.md).
var commands = []func(*globalOptions) *cobra.Command{
	newRemoteCmd, newLsRemoteCmd,
	newMountCmd, newUnmountCmd,
	newPinsCmd,
	newCacheCmd,
	newStatusCmd,
	newDocsCmd,
	newProfileCmd,
	newInitCmd, newCommitCmd, newExportCmd, newServeCmd,
	newRunCmd, newInfoCmd,
	newDemoCmd,
	newBenchCmd,
}

// globalOptions are the flags every verb shares.
type globalOptions struct {
	Home string
	JSON bool
}

// HomeDir returns the lazytree state directory: --home, then
// $LAZYTREE_HOME, then /var/lib/lazytree for root or
// $XDG_DATA_HOME/lazytree for other users.
func (g *globalOptions) HomeDir() string {
	if g.Home != "" {
		return g.Home
	}
	if h := os.Getenv("LAZYTREE_HOME"); h != "" {
		return h
	}
	if os.Geteuid() == 0 {
		return "/var/lib/lazytree"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "lazytree")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "lazytree")
}

// usageError marks errors that should exit with code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// NewRootCommand builds the lazytree command tree.
func NewRootCommand() *cobra.Command {
	root, _ := newRootCommand()
	return root
}

// newRootCommand is NewRootCommand and the global options its flags set.
func newRootCommand() (*cobra.Command, *globalOptions) {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "lazytree",
		Short:         "Use OSTree and Flatpak repositories before they are downloaded",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.Home, "home", "", "state directory (default $LAZYTREE_HOME, /var/lib/lazytree for root)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	// A verb that does not exist reaches the root as an argument: a usage
	// error by type. (Cobra adds help, completion and __complete while it
	// executes, so a lookup before Execute would not know them.)
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	for _, f := range commands {
		root.AddCommand(f(g))
	}
	root.AddCommand(refCommands(g)...)
	typedArgErrors(root)
	return root, g
}

// typedArgErrors makes every command's argument check return a
// usageError, so that the exit code follows from the error's type, not
// from its text.
func typedArgErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		typedArgErrors(sub)
	}
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, os.Stdout, os.Stderr)
}

// Run executes one command line with the given output streams and returns
// its exit code. Tests call it in process.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, g := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	err = explainForeignHome(err, g.HomeDir(), strings.TrimPrefix(cmd.CommandPath(), root.Name()+" "))
	var st exitStatus
	if errors.As(err, &st) {
		// run: the sandboxed command's own status, already explained by
		// its own output.
		return int(st)
	}
	fmt.Fprintf(stderr, "lazytree: %s\n", Escape(err.Error()))
	var u usageError
	if errors.As(err, &u) {
		return ExitUsage
	}
	return ExitFailure
}

// Escape makes a string safe to print on a terminal: control characters
// (which a hostile remote could use to rewrite the screen) become \xNN,
// and Unicode format characters (bidirectional overrides, zero-width
// marks) and line separators \uNNNN.
func Escape(s string) string { return escape(s, true) }

// EscapeLine is Escape for a value that must stay on one line: newlines
// and tabs are escaped too, so a remote's string cannot forge lines of
// output (a permission list, say).
func EscapeLine(s string) string { return escape(s, false) }

func escape(s string, keepLines bool) string {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case keepLines && (r == '\n' || r == '\t'):
			out = append(out, string(r)...)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			out = append(out, fmt.Sprintf("\\x%02x", r)...)
		case r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r):
			out = append(out, fmt.Sprintf("\\u%04x", r)...)
		default:
			out = append(out, string(r)...)
		}
	}
	return string(out)
}

// bindJSON gives c the --json flag every listing command has (DESIGN.md,
// "CLI contract"), into p.
func bindJSON(c *cobra.Command, p *bool) {
	c.Flags().BoolVar(p, "json", false, "print JSON")
}
