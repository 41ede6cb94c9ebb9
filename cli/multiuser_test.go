package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/internal/testutil"
)

// The refs of the multi-user test's remote "r".
const (
	muStable = "os/x86_64/stable" // read by both users, pinned by root
	muOther  = "os/x86_64/other"  // opened by nobody before the lookup test
	muApp    = "org.lazytree.MultiUser"
)

var (
	muStableFiles = map[string]string{"top.txt": "top\n", "a/b/target.txt": "the target\n", "c/d/e.txt": strings.Repeat("e", 100<<10)}
	muOtherFiles  = map[string]string{"other.txt": "other\n", "sub/deep.txt": strings.Repeat("deep ", 30<<10)}
)

// TestMultiUser: one root daemon, whose home no other user can read (as
// /var/lib/lazytree), serves two created users: both read through its
// mount and look up refs through it, sharing its cache; both run the same
// app from it with data the other cannot see; and neither may change its
// remotes, pins or cache, nor stop it.
func TestMultiUser(t *testing.T) {
	requireFuse(t)
	base := publicDir(t)
	ltBin := publicLazytree(t, base)
	a := createRunAs(t, filepath.Join(base, "home-a"))
	b := createRunAs(t, filepath.Join(base, "home-b"))

	pub := filepath.Join(base, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	srcs := map[string]string{muStable: filepath.Join(base, "src-stable"), muOther: filepath.Join(base, "src-other")}
	writeTree(t, srcs[muStable], muStableFiles)
	writeTree(t, srcs[muOther], muOtherFiles)
	srcs["runtime/"+testutil.SandboxRuntimeRef] = filepath.Join(base, "runtime")
	if err := testutil.BuildSandboxRuntime(srcs["runtime/"+testutil.SandboxRuntimeRef], testutil.SandboxRuntimeOptions{}); err != nil {
		t.Fatal(err)
	}
	appRef := "app/" + muApp + "/" + testutil.FlatpakArch() + "/stable"
	srcs[appRef] = filepath.Join(base, "app")
	if err := testutil.BuildSandboxApp(srcs[appRef], testutil.SandboxApp{ID: muApp}); err != nil {
		t.Fatal(err)
	}
	for ref, src := range srcs {
		lt(t, "commit", "--repo", pub, "-b", ref, "--gpg-sign", secret, src)
	}
	lt(t, "export", "--repo", pub, "--gpg-sign", secret)
	srv, err := fetchtest.New(pub, fetchtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)

	home := filepath.Join(base, "state")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	lt(t, "--home", home, "remote", "add", "r", srv.URL(), "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	m := &mounted{home: home, mp: filepath.Join(base, "mnt"), srv: srv, pub: pub}
	m.runDaemon(t, mountOptions{})
	lt(t, "--home", home, "pin", "r:"+muStable)
	if _, _, code := a.exec(t, nil, "cat", filepath.Join(home, "config")); code == 0 {
		t.Fatalf("user %s reads the root daemon's config: the home is not private", a.name)
	}

	t.Run("read", func(t *testing.T) {
		for _, who := range []runAs{a, b} {
			if got := readTreeAs(t, who, filepath.Join(m.mp, "r", muStable)); !reflect.DeepEqual(got, muStableFiles) {
				t.Errorf("%s reads %s as %v, want %v", who.name, muStable, keys(got), keys(muStableFiles))
			}
		}
	})

	t.Run("refs", func(t *testing.T) {
		for _, who := range []runAs{a, b} {
			for dir, want := range map[string]string{"r": "app\nos\nruntime\n", "r/os/x86_64": "other\nstable\n"} {
				if out, errb, code := who.exec(t, nil, "ls", filepath.Join(m.mp, dir)); code != 0 || out != want {
					t.Errorf("%s: ls %s: exit %d, %q%s; want %q", who.name, dir, code, out, errb, want)
				}
			}
		}
		// A ref nobody opened: A's lookup resolves it through the daemon,
		// which fetches it; B's read is served by the daemon's cache.
		waitQuiet(srv)
		srv.Reset()
		if got := readTreeAs(t, a, filepath.Join(m.mp, "r", muOther)); !reflect.DeepEqual(got, muOtherFiles) {
			t.Fatalf("%s reads %s as %v, want %v", a.name, muOther, keys(got), keys(muOtherFiles))
		}
		waitQuiet(srv)
		if n := srv.Count("/objects/**.filez"); n != len(muOtherFiles) {
			t.Errorf("%s's first read of %s fetched %d content objects, want %d: %v", a.name, muOther, n, len(muOtherFiles), srv.Paths())
		}
		before := cacheUsage(t, home)
		srv.Reset()
		if got := readTreeAs(t, b, filepath.Join(m.mp, "r", muOther)); !reflect.DeepEqual(got, muOtherFiles) {
			t.Fatalf("%s reads %s as %v, want %v", b.name, muOther, keys(got), keys(muOtherFiles))
		}
		waitQuiet(srv)
		if n := srv.Count("/objects/"); n != 0 {
			t.Errorf("%s's read after %s's fetched %d objects again: %v", b.name, a.name, n, srv.Paths())
		}
		if after := cacheUsage(t, home); after != before {
			t.Errorf("%s's read changed the cache from %+v to %+v: each object should be held once", b.name, before, after)
		}
	})

	t.Run("run", func(t *testing.T) {
		data := func(who runAs) string { return filepath.Join(who.home, ".var", "app", muApp, "data") }
		// Each writes its file, lists its data and looks for the other's;
		// A runs again after B, so that each looks after the other wrote.
		for _, p := range [][2]runAs{{a, b}, {b, a}, {a, b}} {
			me, other := p[0], p[1]
			script := `d=~/.var/app/` + muApp + `/data; echo "$1" > "$d/from-$1"; ls -A "$d"; cat "$2/from-$3" 2>/dev/null || echo hidden`
			out, errb, code := me.exec(t, nil, ltBin, "run", "--mount", m.mp, "--command", "sh", muApp, "-c", script, "sh", me.name, data(other), other.name)
			if want := "from-" + me.name + "\nhidden\n"; code != 0 || out != want {
				t.Errorf("run as %s: exit %d, %q, stderr %q; want %q", me.name, code, out, errb, want)
			}
		}
		for _, p := range [][2]runAs{{a, b}, {b, a}} {
			me, other := p[0], p[1]
			for _, path := range []string{data(me), filepath.Join(data(me), "from-"+me.name)} {
				st, err := os.Stat(path)
				if err != nil {
					t.Errorf("%s: %v", me.name, err)
					continue
				}
				if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != int(me.cred.Uid) {
					t.Errorf("%s belongs to uid %d, want %s's %d", path, uid, me.name, me.cred.Uid)
				}
				if st.IsDir() && st.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s has mode %v: other users can enter it", path, st.Mode().Perm())
				}
			}
			if out, _, code := other.exec(t, nil, "cat", filepath.Join(data(me), "from-"+me.name)); code == 0 {
				t.Errorf("%s reads %s's app data on the host: %q", other.name, me.name, out)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		cfg, err := os.ReadFile(filepath.Join(home, "config"))
		if err != nil {
			t.Fatal(err)
		}
		pins := lt(t, "--home", home, "pins", "--json")
		usage := cacheUsage(t, home)
		for _, c := range []struct {
			args []string
			what string // the refused command, as the message names it first
		}{
			{[]string{"remote", "add", "evil", srv.URL(), "--no-gpg-verify"}, "remote add"},
			{[]string{"remote", "remove", "r"}, "remote remove"},
			{[]string{"pin", "r:" + muOther}, "pin"},
			{[]string{"unpin", "r:" + muStable}, "unpin"},
			{[]string{"cache", "gc", "--to", "0"}, "cache gc"},
			{[]string{"mount", "--refresh"}, "mount"},
			{[]string{"unmount", m.mp}, "unmount"},
			// Reading root's cache is refused as clearly (status.json on
			// the mount is every user's view of the daemon).
			{[]string{"pins"}, "pins"},
		} {
			out, errb, code := a.exec(t, nil, ltBin, append([]string{"--home", home}, c.args...)...)
			oneLine := strings.HasPrefix(errb, "lazytree: "+c.what+": ") && strings.Count(errb, "\n") == 1
			if code != 1 || !oneLine || !strings.Contains(errb, "only root") || strings.Contains(errb, "goroutine") {
				t.Errorf("%s as %s: exit %d, stdout %q, stderr %q; want exit 1 and one line naming %q and that only root or the daemon's user may do it",
					strings.Join(c.args, " "), a.name, code, out, errb, c.what)
			}
		}
		if after, _ := os.ReadFile(filepath.Join(home, "config")); string(after) != string(cfg) {
			t.Errorf("config changed:\n%s\nwas:\n%s", after, cfg)
		}
		if after := lt(t, "--home", home, "pins", "--json"); after != pins {
			t.Errorf("pins changed:\n%s\nwere:\n%s", after, pins)
		}
		if after := cacheUsage(t, home); after.Objects < usage.Objects || after.Bytes < usage.Bytes {
			t.Errorf("cache shrank from %+v to %+v", usage, after)
		}
		select {
		case <-m.done:
			t.Fatalf("the daemon stopped: %v", m.err)
		default:
		}
		if got := readTreeAs(t, b, filepath.Join(m.mp, "r", muStable)); !reflect.DeepEqual(got, muStableFiles) {
			t.Errorf("after the refusals %s reads %s as %v", b.name, muStable, keys(got))
		}
	})
}

// readTreeAs reads every regular file under dir as who, in a child, and
// returns path (relative, slash-separated) -> content.
func readTreeAs(t *testing.T, who runAs, dir string) map[string]string {
	t.Helper()
	script := `cd "$1" && find . -type f | LC_ALL=C sort | while IFS= read -r f; do printf '%s\0' "${f#./}"; cat "$f" || exit 1; printf '\0'; done`
	out, errb, code := who.exec(t, nil, "sh", "-c", script, "sh", dir)
	if code != 0 {
		t.Fatalf("read %s as %s: exit %d: %s", dir, who.name, code, errb)
	}
	files := map[string]string{}
	parts := strings.Split(out, "\x00")
	for i := 0; i+1 < len(parts); i += 2 {
		files[parts[i]] = parts[i+1]
	}
	return files
}

// keys describes a tree read by readTreeAs: its paths and sizes.
func keys(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"("+itoa(int64(len(v)))+" B)")
	}
	slices.Sort(out)
	return out
}

// cacheUsage is what `cache stats --json` (as root) says the cache holds.
func cacheUsage(t *testing.T, home string) (u struct{ Objects, Bytes int64 }) {
	t.Helper()
	if err := json.Unmarshal([]byte(lt(t, "--home", home, "cache", "stats", "--json")), &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// waitQuiet waits (up to 15 s) until srv has seen no request for half a
// second: background fetches a read started have ended.
func waitQuiet(srv *fetchtest.Server) {
	n := len(srv.Log())
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		m := len(srv.Log())
		if m == n {
			return
		}
		n = m
	}
}
