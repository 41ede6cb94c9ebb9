package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/sandbox"
)

type runOptions struct {
	Remote, Branch, Arch, Commit string
	Command                      string
	Share, Unshare               []string
	Filesystems, Env             []string
	Devel                        bool
	// Grant grants the metadata's filesystems= and devices= (never
	// without it: a remote must not open the user's files by itself).
	Grant            bool
	Runtime, AppTree string
	// Mount is the lazy mount to run from (default: the running daemon's,
	// else root's /run/lazytree, else a daemon started now).
	Mount    string
	Prefetch string
}

// exitStatus is a command's exit status handed through cobra: Run returns
// it without printing anything.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run [flags] APP_ID [ARGS...] | run [flags] --runtime REF [--app-tree REF] -- CMD [ARGS...]",
		Short: "Start a Flatpak app (or a command in a runtime) from the lazy mount, in a sandbox",
		Long: `run finds app/APP_ID/ARCH/BRANCH in the configured remotes, reads its metadata,
finds its runtime, and starts the app's command in a namespace sandbox with the
runtime at /usr and the app at /app, both read lazily from the mount (a daemon
is started if none runs). Permissions come from the app's metadata ([Context]):
shared= and sockets= are granted, filesystems= and devices= only with --grant.
--share, --unshare, --filesystem and --env change them for this run. Flags go
before APP_ID: everything after it is the app's.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			code, err := runRun(cmd.Context(), g, o, args, dash, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
	f := c.Flags()
	// Everything after APP_ID belongs to the app.
	f.SetInterspersed(false)
	f.StringVar(&o.Remote, "remote", "", "the remote to take the app from (default: the only one that has it)")
	f.StringVar(&o.Branch, "branch", "", "the app's branch (default: the only one)")
	f.StringVar(&o.Arch, "arch", hostArch(), "the app's architecture")
	f.StringVar(&o.Commit, "commit", "", "run this commit of the app (a checksum) instead of the ref's")
	f.StringVar(&o.Command, "command", "", "the program to start instead of the metadata's command=")
	f.StringArrayVar(&o.Share, "share", nil, "share with the host: network or ipc")
	f.StringArrayVar(&o.Unshare, "unshare", nil, "do not share, even if the metadata asks: network or ipc")
	f.StringArrayVar(&o.Filesystems, "filesystem", nil, "bind a host path: /p, ~/p, home or xdg-*, with :ro, :rw or :create")
	f.StringArrayVar(&o.Env, "env", nil, "set K=V in the sandbox")
	f.BoolVar(&o.Devel, "devel", false, "allow ptrace, perf and personality (debugging)")
	f.BoolVar(&o.Grant, "grant", false, "grant the file system and device access the app's metadata asks for (see lazytree info)")
	f.StringVar(&o.Runtime, "runtime", "", "run a command in this runtime ref (REMOTE:REF or REF) instead of an app")
	f.StringVar(&o.AppTree, "app-tree", "", "with --runtime: a ref bound at /app")
	f.StringVar(&o.Mount, "mount", "", "the lazy mount to use (root with no daemon running: one is started there)")
	f.StringVar(&o.Prefetch, "prefetch", fetch.PrefetchNone, "prefetch mode of a daemon started by run")
	return c
}

// hostArch is Flatpak's name of this machine's architecture.
func hostArch() string {
	switch goruntime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i386"
	}
	return goruntime.GOARCH
}

// mountRef is one ref found on the mount.
type mountRef struct {
	Remote, Ref string
	Dir         string // its directory on the mount
	Commit      string
}

func (r mountRef) String() string { return r.Remote + ":" + r.Ref }

// runRun is `run`. It returns the command's exit status.
func runRun(ctx context.Context, g *globalOptions, o *runOptions, args []string, dash int, out, errw io.Writer) (int, error) {
	var appID string
	var cmdArgs []string
	switch {
	case o.Runtime != "":
		if dash > 0 {
			return 0, usagef("run --runtime takes no APP_ID: put the command after --")
		}
		if len(args) == 0 {
			return 0, usagef("run --runtime REF -- CMD: no command")
		}
		cmdArgs = args
	default:
		if o.AppTree != "" {
			return 0, usagef("--app-tree needs --runtime")
		}
		if len(args) == 0 || dash == 0 {
			return 0, usagef("run: no APP_ID")
		}
		appID, cmdArgs = args[0], args[1:]
		if err := validAppID(appID); err != nil {
			return 0, usagef("%v", err)
		}
	}
	for _, s := range append(slices.Clone(o.Share), o.Unshare...) {
		if s != "network" && s != "ipc" {
			return 0, usagef("--share/--unshare %q: want network or ipc", s)
		}
	}
	for _, kv := range o.Env {
		if err := sandbox.ValidEnv(kv); err != nil {
			return 0, usagef("--env: %v", err)
		}
	}
	if o.Commit != "" {
		if _, err := ostree.ParseChecksum(o.Commit); err != nil {
			return 0, usagef("--commit %q: %v", o.Commit, err)
		}
	}
	mp, err := findMount(ctx, g, o, errw)
	if err != nil {
		return 0, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return 0, err
	}
	spec := &sandbox.Spec{Home: home, Env: nil, Devel: o.Devel}
	var info flatpakInfo
	if appID == "" {
		rt, err := findRef(mp, o.Runtime, "")
		if err != nil {
			return 0, err
		}
		spec.Runtime = filepath.Join(rt.Dir, "files")
		info.runtime, info.runtimeRef = rt, rt.Ref
		if o.AppTree != "" {
			app, err := findRef(mp, o.AppTree, "")
			if err != nil {
				return 0, err
			}
			spec.App = filepath.Join(app.Dir, "files")
			info.app = app
		}
		spec.Command = cmdArgs
	} else {
		app, meta, err := findApp(mp, appID, o)
		if err != nil {
			return 0, err
		}
		for _, why := range meta.Ignored {
			fmt.Fprintf(errw, "lazytree run: metadata of %s: %s: not granted\n", EscapeLine(app.String()), EscapeLine(why))
		}
		rt, err := findRef(mp, "runtime/"+meta.Runtime, app.Remote)
		if err != nil {
			return 0, fmt.Errorf("runtime of %s: %w (the app's RuntimeRepo is never fetched: add the remote that has it)", appID, err)
		}
		command := meta.Command
		if o.Command != "" {
			command = o.Command
		}
		if command == "" {
			return 0, fmt.Errorf("%s: its metadata names no command; pass --command", appID)
		}
		spec.AppID, spec.App, spec.Runtime = appID, filepath.Join(app.Dir, "files"), filepath.Join(rt.Dir, "files")
		spec.Command = append([]string{command}, cmdArgs...)
		spec.Env = append(spec.Env, meta.Env...)
		spec.Sockets, spec.Share = meta.Context.Sockets, meta.Context.Shared
		var withheld, granted []string
		for _, d := range meta.Context.Devices {
			if o.Grant {
				spec.Devices = append(spec.Devices, d)
				granted = append(granted, "devices="+d)
			} else {
				withheld = append(withheld, "devices="+d)
			}
		}
		for _, fsEntry := range meta.Context.Filesystems {
			if !o.Grant {
				withheld = append(withheld, "filesystems="+fsEntry)
				continue
			}
			b, ok, why := resolveFilesystem(fsEntry, home)
			if !ok {
				fmt.Fprintf(errw, "lazytree run: filesystems=%s: %s: not granted\n", EscapeLine(fsEntry), EscapeLine(why))
				continue
			}
			// The app may have planted symlinks where it could write.
			b.NoSymlinks = true
			spec.Filesystems = append(spec.Filesystems, b)
			granted = append(granted, "filesystems="+fsEntry)
		}
		if len(withheld) > 0 {
			fmt.Fprintf(errw, "lazytree run: %s asks for %s: not granted without --grant\n", appID, EscapeLine(strings.Join(withheld, " ")))
		}
		if len(granted) > 0 {
			fmt.Fprintf(errw, "lazytree run: granted to %s: %s\n", appID, EscapeLine(strings.Join(granted, " ")))
		}
		info.app, info.runtime, info.meta, info.runtimeRef = app, rt, meta, "runtime/"+meta.Runtime
	}
	for _, s := range o.Share {
		if !slices.Contains(spec.Share, s) {
			spec.Share = append(spec.Share, s)
		}
	}
	spec.Share = slices.DeleteFunc(spec.Share, func(s string) bool { return slices.Contains(o.Unshare, s) })
	for _, fsEntry := range o.Filesystems {
		b, ok, why := resolveFilesystem(fsEntry, home)
		if !ok {
			return 0, usagef("--filesystem %s: %s", fsEntry, why)
		}
		spec.Filesystems = append(spec.Filesystems, b)
	}
	fillCommits(mp, &info.app, &info.runtime)
	spec.Env = append(spec.Env, o.Env...)
	// lazytree's own state (keys, config, the control socket) and the
	// mount are never shown to an app, whatever it binds.
	state, err := filepath.Abs(g.HomeDir())
	if err != nil {
		return 0, err
	}
	amp, err := filepath.Abs(mp)
	if err != nil {
		return 0, err
	}
	spec.Mask = []string{state, amp}
	info.share = spec.Share
	spec.FlatpakInfo = info.render(appID, o.Arch, spec)
	spec.Stdout, spec.Stderr = out, errw
	code, err := sandbox.Run(ctx, spec)
	if err != nil {
		// Its message can hold paths a remote chose: one line.
		return 0, errors.New(EscapeLine(err.Error()))
	}
	return code, nil
}

// validAppID checks an application ID the way Flatpak does: at least
// three dot-separated elements of [A-Za-z0-9_-], not starting with a digit.
func validAppID(id string) error {
	parts := strings.Split(id, ".")
	if len(id) > 255 || len(parts) < 2 {
		return fmt.Errorf("app id %q: want a reverse-DNS name such as org.example.App", id)
	}
	for _, p := range parts {
		if p == "" || p[0] >= '0' && p[0] <= '9' {
			return fmt.Errorf("app id %q: empty element or one starting with a digit", id)
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("app id %q: character %q not allowed", id, r)
			}
		}
	}
	return nil
}

// findMount returns the lazy mount run uses, starting a daemon when root
// and none runs.
func findMount(ctx context.Context, g *globalOptions, o *runOptions, errw io.Writer) (string, error) {
	home := g.HomeDir()
	if o.Mount != "" {
		if isLazyMount(o.Mount) {
			return o.Mount, nil
		}
		if os.Geteuid() != 0 || daemonRunning(home) {
			return "", fmt.Errorf("--mount %s: not a lazytree mount", o.Mount)
		}
		// Root with no daemon: start one there.
		if err := startDaemon(ctx, g, o.Mount, &mountOptions{Prefetch: o.Prefetch, Timeout: 30 * time.Second}, errw); err != nil {
			return "", err
		}
		return o.Mount, nil
	}
	if daemonRunning(home) {
		if mp, ok := daemonMountpoint(ctx, home); ok && isLazyMount(mp) {
			return mp, nil
		}
	}
	for _, mp := range []string{defaultMountpoint(), "/run/lazytree"} {
		if isLazyMount(mp) {
			return mp, nil
		}
	}
	if os.Geteuid() != 0 {
		return "", errors.New("no lazytree mount: have root start one (`lazytree mount`, shared at /run/lazytree) or pass --mount")
	}
	mp := defaultMountpoint()
	if err := startDaemon(ctx, g, mp, &mountOptions{Prefetch: o.Prefetch, Timeout: 30 * time.Second}, errw); err != nil {
		return "", err
	}
	return mp, nil
}

// isLazyMount reports whether mp is a lazytree mount: a FUSE file system
// with a .lazytree directory (not its status.json, which is rendered for
// every stat).
func isLazyMount(mp string) bool {
	var fs unix.Statfs_t
	err := unix.Statfs(mp, &fs)
	for err == unix.EINTR { // a FUSE request interrupted by a Go preemption signal
		err = unix.Statfs(mp, &fs)
	}
	if err != nil || fs.Type != fuseSuperMagic {
		return false
	}
	st, err := os.Lstat(filepath.Join(mp, ".lazytree"))
	return err == nil && st.IsDir()
}

// fuseSuperMagic is statfs's f_type of a FUSE mount.
const fuseSuperMagic = 0x65735546

// mountRemotes lists the remotes on the mount.
func mountRemotes(mp string) ([]string, error) {
	ents, err := os.ReadDir(mp)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// findRef finds one ref on the mount: "REMOTE:REF" exactly, or REF in
// prefer first, then in the only other remote that has it.
func findRef(mp, spec, prefer string) (mountRef, error) {
	remote, ref, ok := strings.Cut(spec, ":")
	if !ok {
		remote, ref = "", spec
	}
	if err := ostree.ValidateRef(ref); err != nil {
		return mountRef{}, usagef("ref %q: %v", spec, err)
	}
	var remotes []string
	if remote != "" {
		if err := ostree.ValidateRemoteName(remote); err != nil {
			return mountRef{}, usagef("remote %q: %v", remote, err)
		}
		remotes = []string{remote}
	} else {
		all, err := mountRemotes(mp)
		if err != nil {
			return mountRef{}, err
		}
		if prefer != "" && slices.Contains(all, prefer) {
			remotes = append(remotes, prefer)
		}
		for _, r := range all {
			if r != prefer {
				remotes = append(remotes, r)
			}
		}
	}
	var found []mountRef
	for _, r := range remotes {
		dir := filepath.Join(mp, r, ref)
		if st, err := os.Stat(filepath.Join(dir, "files")); err == nil && st.IsDir() {
			found = append(found, mountRef{Remote: r, Ref: ref, Dir: dir})
			if r == prefer {
				break
			}
		}
	}
	switch {
	case len(found) == 0:
		return mountRef{}, fmt.Errorf("%s: no configured remote has it", Escape(spec))
	case len(found) > 1 && found[0].Remote != prefer:
		return mountRef{}, fmt.Errorf("%s is in %d remotes (%s): choose one with REMOTE:REF", Escape(spec), len(found), joinRefs(found))
	}
	return found[0], nil
}

func joinRefs(rs []mountRef) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = Escape(r.String())
	}
	return strings.Join(s, ", ")
}

// findApp finds app/ID/ARCH/BRANCH on the mount and reads its metadata.
func findApp(mp, appID string, o *runOptions) (mountRef, *appMeta, error) {
	var remotes []string
	if o.Remote != "" {
		if err := ostree.ValidateRemoteName(o.Remote); err != nil {
			return mountRef{}, nil, usagef("--remote %q: %v", o.Remote, err)
		}
		all, err := mountRemotes(mp)
		if err != nil {
			return mountRef{}, nil, err
		}
		if !slices.Contains(all, o.Remote) {
			return mountRef{}, nil, fmt.Errorf("--remote %s: no such remote (lazytree remote list shows them)", Escape(o.Remote))
		}
		remotes = []string{o.Remote}
	} else {
		all, err := mountRemotes(mp)
		if err != nil {
			return mountRef{}, nil, err
		}
		remotes = all
	}
	var found []mountRef
	for _, r := range remotes {
		archDir := filepath.Join(mp, r, "app", appID, o.Arch)
		var branches []string
		if o.Branch != "" {
			branches = []string{o.Branch}
		} else if ents, err := os.ReadDir(archDir); err == nil {
			for _, e := range ents {
				branches = append(branches, e.Name())
			}
		}
		for _, b := range branches {
			ref := "app/" + appID + "/" + o.Arch + "/" + b
			if ostree.ValidateRef(ref) != nil {
				continue
			}
			dir := filepath.Join(mp, r, ref)
			if st, err := os.Stat(filepath.Join(dir, "metadata")); err == nil && st.Mode().IsRegular() {
				found = append(found, mountRef{Remote: r, Ref: ref, Dir: dir})
			}
		}
	}
	switch {
	case len(found) == 0:
		where := "any configured remote"
		if o.Remote != "" {
			where = "remote " + Escape(o.Remote)
		}
		// A remote that lists no refs may just be out of reach: say so
		// rather than let "not there" stand alone.
		var silent []string
		for _, r := range remotes {
			if ents, err := os.ReadDir(filepath.Join(mp, r)); err != nil || len(ents) == 0 {
				silent = append(silent, Escape(r))
			}
		}
		if len(silent) > 0 {
			where += fmt.Sprintf(" (%s listed no refs: unreachable or empty, see lazytree status)", strings.Join(silent, ", "))
		}
		return mountRef{}, nil, fmt.Errorf("app %s (%s%s) is not in %s", appID, o.Arch, branchSuffix(o.Branch), where)
	case len(found) > 1:
		return mountRef{}, nil, fmt.Errorf("app %s: %d matches (%s): choose with --remote or --branch", appID, len(found), joinRefs(found))
	}
	app := found[0]
	if o.Commit != "" {
		app.Dir, app.Commit = filepath.Join(mp, ".commits", o.Commit), o.Commit
		if st, err := os.Stat(filepath.Join(app.Dir, "files")); err != nil || !st.IsDir() {
			return mountRef{}, nil, fmt.Errorf("--commit %s: no configured remote has a verified commit by that checksum with a files/ tree", o.Commit)
		}
	}
	data, err := readBounded(filepath.Join(app.Dir, "metadata"), ostree.MaxKeyFileSize)
	if err != nil {
		return mountRef{}, nil, fmt.Errorf("metadata of %s: %w", Escape(app.String()), err)
	}
	meta, err := parseAppMeta(data, true)
	if err != nil {
		return mountRef{}, nil, fmt.Errorf("%s: %w", Escape(app.String()), err)
	}
	if meta.Name != "" && meta.Name != appID {
		// A commit (--commit) or ref of another app: its metadata must
		// not run with this app's data.
		return mountRef{}, nil, fmt.Errorf("%s: its metadata names app %s, not %s", Escape(app.String()), EscapeLine(meta.Name), appID)
	}
	return app, meta, nil
}

func branchSuffix(b string) string {
	if b == "" {
		return ""
	}
	return ", branch " + Escape(b)
}

// readBounded reads a regular file of at most max bytes, never through
// a symlink (a remote's tree could make metadata a link to a host file).
func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, max)
	}
	return b, nil
}

// fillCommits sets the Commit of each ref that has none to the commit
// the mount shows for it, from one read of its refs.json ("" when not
// listed).
func fillCommits(mp string, refs ...*mountRef) {
	b, err := readBounded(filepath.Join(mp, ".lazytree", "refs.json"), 64<<20)
	if err != nil {
		return
	}
	var doc map[string]map[string]string
	if json.Unmarshal(b, &doc) != nil {
		return
	}
	for _, r := range refs {
		if r.Commit != "" {
			continue
		}
		c := doc[r.Remote][r.Ref]
		if _, err := ostree.ParseChecksum(c); err == nil {
			r.Commit = c
		}
	}
}

// flatpakInfo is what /.flatpak-info says about a run.
type flatpakInfo struct {
	app, runtime mountRef
	runtimeRef   string
	meta         *appMeta
	share        []string
}

// render writes /.flatpak-info the way Flatpak does: [Application] with
// the name and runtime ref, [Instance] with paths, commits, branch and
// arch, then the granted [Context].
func (fi *flatpakInfo) render(appID, arch string, spec *sandbox.Spec) []byte {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, strings.NewReplacer("\n", " ", "\r", " ").Replace(v)) }
	name := appID
	if name == "" {
		name = strings.TrimPrefix(fi.runtime.Ref, "runtime/")
	}
	b.WriteString("[Application]\n")
	kv("name", name)
	kv("runtime", fi.runtimeRef)
	b.WriteString("\n[Instance]\n")
	kv("instance-id", strconv.FormatInt(time.Now().UnixNano()%1e10, 10))
	if fi.app.Ref != "" {
		kv("app-path", spec.App)
		kv("app-commit", fi.app.Commit)
		kv("app-extensions", "")
		parts := strings.Split(fi.app.Ref, "/")
		if len(parts) == 4 {
			kv("branch", parts[3])
		}
	}
	kv("arch", arch)
	kv("flatpak-version", "lazytree")
	kv("runtime-path", spec.Runtime)
	kv("runtime-commit", fi.runtime.Commit)
	kv("runtime-extensions", "")
	kv("session-bus-proxy", "false")
	kv("system-bus-proxy", "false")
	kv("devel", strconv.FormatBool(spec.Devel))
	b.WriteString("\n[Context]\n")
	kv("shared", joinList(fi.share))
	kv("sockets", joinList(spec.Sockets))
	kv("devices", joinList(spec.Devices))
	var fss []string
	for _, f := range spec.Filesystems {
		s := f.Path
		if f.ReadOnly {
			s += ":ro"
		}
		fss = append(fss, s)
	}
	kv("filesystems", joinList(fss))
	if len(spec.Env) > 0 {
		b.WriteString("\n[Environment]\n")
		env := slices.Clone(spec.Env)
		sort.Strings(env)
		for _, e := range env {
			k, v, _ := strings.Cut(e, "=")
			kv(k, v)
		}
	}
	return []byte(b.String())
}

func joinList(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, ";") + ";"
}
