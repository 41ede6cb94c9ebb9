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

	"github.com/spf13/cobra"
)

// Exit codes of the lazytree command (DESIGN.md, "CLI contract").
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// commands holds the constructors of the top-level verbs. Each verb's file
// appends its constructor in an init function, so verbs live in their own
// files and the root never needs editing when one is added.
var commands []func(*globalOptions) *cobra.Command

func register(f func(*globalOptions) *cobra.Command) { commands = append(commands, f) }

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
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "lazytree",
		Short:         "Use OSTree and Flatpak repositories before they are downloaded",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.Home, "home", "", "state directory (default $LAZYTREE_HOME, /var/lib/lazytree for root)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	for _, f := range commands {
		root.AddCommand(f(g))
	}
	return root
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
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "lazytree: %s\n", Escape(err.Error()))
	var u usageError
	if errors.As(err, &u) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitFailure
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// Escape makes a string safe to print on a terminal: control characters
// (which a hostile remote could use to rewrite the screen) become \xNN.
func Escape(s string) string {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			out = append(out, string(r)...)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			out = append(out, fmt.Sprintf("\\x%02x", r)...)
		default:
			out = append(out, string(r)...)
		}
	}
	return string(out)
}
