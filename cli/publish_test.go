package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/treeindex"
)

// lt runs a lazytree command line in process and returns its stdout; it
// fails the test on a non-zero exit.
func lt(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := ltCode(t, args...)
	if code != 0 {
		t.Fatalf("lazytree %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func ltCode(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := Run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// commonArgs are the commit options both tools get in the checksum test:
// everything lazytree supports that changes the commit checksum.
func commonArgs(c testutil.VectorCommit) []string {
	args := []string{"-b", c.Branch, "--timestamp=@" + itoa(c.Timestamp), "-s", c.Subject}
	for _, r := range c.BindRefs {
		args = append(args, "--bind-ref="+r)
	}
	for _, kv := range c.MetadataStrings {
		args = append(args, "--add-metadata-string="+kv[0]+"="+kv[1])
	}
	return args
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestCommitChecksumMatchesOstree commits the test-vector trees (C1, then
// its child C2) with lazytree and with the real ostree, with the same
// metadata and timestamps, and requires identical commit checksums.
func TestCommitChecksumMatchesOstree(t *testing.T) {
	ostreeBin := testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	tree1, tree2 := filepath.Join(dir, "tree1"), filepath.Join(dir, "tree2")
	testutil.BuildVectorTree(t, tree1)
	testutil.BuildVectorTree2(t, tree2)
	ours, theirs := filepath.Join(dir, "ours"), filepath.Join(dir, "theirs")
	lt(t, "init", "--repo", ours, "--collection-id", testutil.VectorCollectionID)
	testutil.Run(t, "", nil, ostreeBin, testutil.OstreeInitArgs(theirs)...)

	for i, step := range []struct {
		c    testutil.VectorCommit
		tree string
	}{{testutil.VectorC1(), tree1}, {testutil.VectorC2(), tree2}} {
		args := commonArgs(step.c)
		got := strings.TrimSpace(lt(t, append(append([]string{"commit", "--repo", ours}, args...), "--body", step.c.Body, step.tree)...))
		oargs := append([]string{"commit", "--repo=" + theirs}, args...)
		if step.c.Body != "" {
			oargs = append(oargs, "-m", step.c.Body)
		}
		want := strings.TrimSpace(testutil.Run(t, "", nil, ostreeBin, append(oargs, step.tree)...))
		if got != want {
			t.Fatalf("commit %d: lazytree %s, ostree %s", i+1, got, want)
		}
		t.Logf("commit %d: both %s", i+1, got)
	}
	out := testutil.Run(t, "", nil, ostreeBin, "fsck", "--repo="+ours)
	if !strings.Contains(out, "no errors") {
		t.Fatalf("ostree fsck: %s", out)
	}
}

func TestCommitRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "ok"), []byte("ok"), 0o644)
	fifo := filepath.Join(src, "sub", "pipe")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	lt(t, "init", "--repo", filepath.Join(dir, "r"))
	_, errOut, code := ltCode(t, "commit", "--repo", filepath.Join(dir, "r"), "-b", "x", src)
	if code != 1 || !strings.Contains(errOut, fifo) || !strings.Contains(errOut, "fifo") {
		t.Fatalf("commit with a fifo: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "r", "refs/heads/x")); err == nil {
		t.Fatal("ref written despite the error")
	}
	if _, _, code := ltCode(t, "commit", "--repo", filepath.Join(dir, "r"), src); code != 2 {
		t.Fatalf("commit without --branch: exit %d, want 2", code)
	}
	if _, _, code := ltCode(t, "commit", "--repo", filepath.Join(dir, "r"), "-b", "../x", filepath.Join(dir, "r")); code != 1 {
		t.Fatalf("commit to ref ../x: exit %d, want 1", code)
	}
}

// writeWrongKey writes a freshly generated public key that signed nothing.
func writeWrongKey(t *testing.T, path string) {
	t.Helper()
	e, err := openpgp.NewEntity("Wrong Key", "", "wrong@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPublishedRepoAcceptedByOstree publishes the test-vector tree with
// lazytree init/commit/export, GPG-signed, and checks it with the real
// ostree: fsck, a pull over HTTP with gpg-verify and gpg-verify-summary,
// and a checkout identical to the source. A client trusting another key
// must fail.
func TestPublishedRepoAcceptedByOstree(t *testing.T) {
	ostreeBin := testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	testutil.BuildVectorTree(t, src)
	pub := filepath.Join(dir, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "test/ref", "-s", "published by lazytree", "--gpg-sign", secret, src)
	lt(t, "export", "--repo", pub, "--gpg-sign", secret)
	if out := testutil.Run(t, "", nil, ostreeBin, "fsck", "--repo="+pub); !strings.Contains(out, "no errors") {
		t.Fatalf("ostree fsck: %s", out)
	}
	srv := testutil.ServeDir(t, pub)

	client := filepath.Join(dir, "client")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare")
	testutil.Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
		"--gpg-import="+testutil.VectorPath(t, testutil.GPGPublicKeyFile), "origin", srv.URL)
	testutil.Run(t, "", nil, ostreeBin, "pull", "--repo="+client, "origin", "test/ref")
	show := testutil.Run(t, "", nil, ostreeBin, "show", "--repo="+client, "origin:test/ref")
	if !strings.Contains(show, "Good signature") {
		t.Fatalf("ostree show: no good signature:\n%s", show)
	}
	co := filepath.Join(dir, "co")
	testutil.Run(t, "", nil, ostreeBin, "checkout", "--repo="+client, "origin:test/ref", co)
	if err := testutil.TreeDiff(src, co, testutil.DiffOptions{IgnoreRootMode: true}); err != nil {
		t.Fatalf("checkout differs from the source: %v", err)
	}

	// The same pull trusting a different key fails.
	wrong := filepath.Join(dir, "wrong.gpg")
	writeWrongKey(t, wrong)
	client2 := filepath.Join(dir, "client2")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client2, "--mode=bare")
	testutil.Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client2, "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
		"--gpg-import="+wrong, "origin", srv.URL)
	if out, err := testutil.RunErr(t, "", nil, ostreeBin, "pull", "--repo="+client2, "origin", "test/ref"); err == nil {
		t.Fatalf("pull trusting the wrong key succeeded:\n%s", out)
	} else if !strings.Contains(out, "public key not found") && !strings.Contains(strings.ToLower(out), "signature") {
		t.Fatalf("pull with the wrong key failed for another reason:\n%s", out)
	}
	// Commit signature checked on its own (summary verification off).
	client3 := filepath.Join(dir, "client3")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client3, "--mode=bare")
	testutil.Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client3, "--set=gpg-verify=true", "--set=gpg-verify-summary=false",
		"--gpg-import="+wrong, "origin", srv.URL)
	if out, err := testutil.RunErr(t, "", nil, ostreeBin, "pull", "--repo="+client3, "origin", "test/ref"); err == nil {
		t.Fatalf("pull with a wrongly keyed commit signature succeeded:\n%s", out)
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.Contains(name, "/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlatpakInstallsPublishedApp commits a Flatpak runtime and app with
// lazytree, exports signed, and installs the app (pulling in its runtime)
// with the real flatpak; with the wrong key the install fails.
func TestFlatpakInstallsPublishedApp(t *testing.T) {
	flatpak := testutil.RequireTool(t, "flatpak")
	dir := t.TempDir()
	rt, app := filepath.Join(dir, "runtime"), filepath.Join(dir, "app")
	writeTree(t, rt, map[string]string{
		"metadata":                 "[Runtime]\nname=org.example.Platform\nruntime=org.example.Platform/x86_64/1.0\nsdk=org.example.Sdk/x86_64/1.0\n",
		"files/lib/libexample.txt": "runtime lib\n",
	})
	writeTree(t, app, map[string]string{
		"metadata":        "[Application]\nname=org.example.Hello\nruntime=org.example.Platform/x86_64/1.0\nsdk=org.example.Sdk/x86_64/1.0\ncommand=hello\n\n[Context]\nshared=network;\n",
		"files/bin/hello": "#!/bin/sh\necho Hello from lazytree\n",
		"files/share/applications/org.example.Hello.desktop":  "[Desktop Entry]\nType=Application\nName=Hello\nExec=hello\n",
		"export/share/applications/org.example.Hello.desktop": "[Desktop Entry]\nType=Application\nName=Hello\nExec=hello\n",
	})
	pub := filepath.Join(dir, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "runtime/org.example.Platform/x86_64/1.0", "--gpg-sign", secret, rt)
	lt(t, "commit", "--repo", pub, "-b", "app/org.example.Hello/x86_64/stable", "--gpg-sign", secret, app)
	// With tree indexes: flatpak must ignore the extra per-ref keys and
	// files.
	if out := lt(t, "export", "--repo", pub, "--gpg-sign", secret, "--tree-index"); !strings.Contains(out, "tree indexes: 2 refs") {
		t.Fatalf("export: %s", out)
	}
	srv := testutil.ServeDir(t, pub)

	install := func(key string) (string, error) {
		home := filepath.Join(dir, "home-"+filepath.Base(key))
		os.MkdirAll(home, 0o700)
		env := []string{"HOME=" + home, "XDG_DATA_HOME=" + home + "/data", "XDG_CONFIG_HOME=" + home + "/config",
			"XDG_CACHE_HOME=" + home + "/cache", "FLATPAK_SYSTEM_DIR=" + home + "/system", "FLATPAK_USER_DIR=" + home + "/user",
			"DBUS_SESSION_BUS_ADDRESS=disabled:", "LC_ALL=C.UTF-8"}
		// flatpak verifies the summary signature already at remote-add.
		if out, err := testutil.RunErr(t, "", env, flatpak, "remote-add", "--user", "--gpg-import="+key, "lt", srv.URL); err != nil {
			return out, err
		}
		out, err := testutil.RunErr(t, "", env, flatpak, "install", "--user", "-y", "--noninteractive", "lt", "org.example.Hello")
		if err != nil {
			return out, err
		}
		info := testutil.Run(t, "", env, flatpak, "info", "--user", "org.example.Hello")
		return out + info, nil
	}
	out, err := install(testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	if err != nil {
		t.Fatalf("flatpak install: %v\n%s", err, out)
	}
	if !strings.Contains(out, "org.example.Platform") || !strings.Contains(out, "stable") {
		t.Fatalf("flatpak info does not show the app and its runtime:\n%s", out)
	}
	wrong := filepath.Join(dir, "wrong.gpg")
	writeWrongKey(t, wrong)
	if out, err := install(wrong); err == nil {
		t.Fatalf("flatpak install trusting the wrong key succeeded:\n%s", out)
	} else if !strings.Contains(out, "public key not found") {
		t.Fatalf("flatpak with the wrong key failed for another reason:\n%s", out)
	}
}

// TestExportDeltasAcceptedByOstree publishes two commits with static
// deltas; the real ostree pulls each with --require-static-deltas (from
// scratch, then from the first commit), and lazytree's pull uses them too.
// The server's log must show each client fetching exactly the delta it
// should, its superblock and every part, and nothing else under deltas/.
func TestExportDeltasAcceptedByOstree(t *testing.T) {
	ostreeBin := testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	testutil.BuildVectorTree(t, src)
	pub := filepath.Join(dir, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "d/ref", "--gpg-sign", secret, src)
	if out := lt(t, "export", "--repo", pub, "--gpg-sign", secret, "--deltas"); !strings.Contains(out, "1 static deltas") {
		t.Fatalf("export: %s", out)
	}
	c1 := readRefChecksum(t, pub, "d/ref")
	srv := testutil.ServeDir(t, pub)
	client := filepath.Join(dir, "client")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare")
	testutil.Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--set=gpg-verify-summary=true",
		"--gpg-import="+testutil.VectorPath(t, testutil.GPGPublicKeyFile), "o", srv.URL)
	testutil.Run(t, "", nil, ostreeBin, "pull", "--repo="+client, "--require-static-deltas", "o", "d/ref")
	checkDeltaRequests(t, "ostree pull from scratch", srv.Log, pub, deltaDir(nil, c1))

	// A second commit: the delta from the first is generated and used.
	os.WriteFile(filepath.Join(src, "README"), []byte("changed\n"), 0o644)
	lt(t, "commit", "--repo", pub, "-b", "d/ref", "--gpg-sign", secret, src)
	if out := lt(t, "export", "--repo", pub, "--gpg-sign", secret, "--deltas"); !strings.Contains(out, "2 static deltas") {
		t.Fatalf("export: %s", out)
	}
	c2 := readRefChecksum(t, pub, "d/ref")
	srv.Log.Reset()
	testutil.Run(t, "", nil, ostreeBin, "pull", "--repo="+client, "--require-static-deltas", "o", "d/ref")
	checkDeltaRequests(t, "ostree pull from the first commit", srv.Log, pub, deltaDir(c1, c2))
	co := filepath.Join(dir, "co")
	testutil.Run(t, "", nil, ostreeBin, "checkout", "--repo="+client, "o:d/ref", co)
	if err := testutil.TreeDiff(src, co, testutil.DiffOptions{IgnoreRootMode: true}); err != nil {
		t.Fatal(err)
	}
	if out := testutil.Run(t, "", nil, ostreeBin, "fsck", "--repo="+client); !strings.Contains(out, "no errors") {
		t.Fatalf("fsck: %s", out)
	}
	// lazytree's own pull, fresh: the scratch delta to the second commit.
	home := filepath.Join(dir, "home")
	lt(t, "--home", home, "remote", "add", "o", srv.URL, "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	srv.Log.Reset()
	lt(t, "--home", home, "pull", "o:d/ref")
	checkDeltaRequests(t, "lazytree pull", srv.Log, pub, deltaDir(nil, c2))
}

// readRefChecksum reads the commit checksum a ref of the repository at
// repo points at, as raw bytes.
func readRefChecksum(t *testing.T, repo, ref string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "refs/heads", ref))
	if err != nil {
		t.Fatal(err)
	}
	c, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(c) != 32 {
		t.Fatalf("ref %s: %q is not a checksum (%v)", ref, b, err)
	}
	return c
}

// deltaDir is the directory of the static delta from (nil: from scratch)
// to, written out from ostree's layout rather than taken from our code:
// deltas/ + the first two characters of ostree's modified base64 of the
// checksum (standard base64, '/' as '_', no padding) + / + the rest, with
// "-" and the to-checksum's base64 after the from-checksum.
func deltaDir(from, to []byte) string {
	b64 := func(c []byte) string {
		return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(c), "/", "_")
	}
	t := b64(to)
	if from == nil {
		return "deltas/" + t[:2] + "/" + t[2:]
	}
	f := b64(from)
	return "deltas/" + f[:2] + "/" + f[2:] + "-" + t
}

// checkDeltaRequests requires that the requests under /deltas/ in log are
// exactly the superblock and every part of the delta in repo/delta, each
// answered 200: the client used that delta and fetched all of it.
func checkDeltaRequests(t *testing.T, who string, log *testutil.RequestLog, repo, delta string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repo, delta))
	if err != nil {
		t.Fatalf("%s: the export did not write %s: %v", who, delta, err)
	}
	want := map[string]bool{}
	parts := 0
	for _, e := range ents {
		want["/"+delta+"/"+e.Name()] = true
		if e.Name() != "superblock" {
			parts++
		}
	}
	if !want["/"+delta+"/superblock"] || parts == 0 {
		t.Fatalf("%s: %s holds %d entries, want a superblock and at least one part", who, delta, len(ents))
	}
	for i := range parts {
		if p := fmt.Sprintf("/%s/%d", delta, i); !want[p] {
			t.Fatalf("%s: part %d of %s missing from the export (parts are numbered from 0)", who, i, delta)
		}
	}
	t.Logf("%s: want %s: superblock and %d parts", who, delta, parts)
	got := map[string]bool{}
	for _, r := range log.Requests() {
		if !strings.HasPrefix(r.Path, "/deltas/") {
			continue
		}
		if !want[r.Path] {
			t.Errorf("%s: requested %s, not part of %s", who, r.Path, delta)
			continue
		}
		if r.Status != http.StatusOK {
			t.Errorf("%s: %s %s answered %d", who, r.Method, r.Path, r.Status)
		}
		got[r.Path] = true
	}
	for p := range want {
		if !got[p] {
			t.Errorf("%s: never requested %s; requests: %v", who, p, log.Paths())
		}
	}
}

// TestExportTreeIndexAcceptedByOstree publishes a GPG-signed commit with
// a tree index and a profile: the summary names both, the stored objects
// hash to those names and decode, and the real ostree still pulls the
// ref (verifying the summary signature) into a fresh bare-user repo that
// fsck finds clean, with a checkout identical to the source.
func TestExportTreeIndexAcceptedByOstree(t *testing.T) {
	ostreeBin := testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	testutil.BuildVectorTree(t, src)
	pub := filepath.Join(dir, "pub")
	secret := testutil.VectorPath(t, testutil.GPGSecretKeyFile)
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "test/ref", "--gpg-sign", secret, src)
	commit := hex.EncodeToString(readRefChecksum(t, pub, "test/ref"))
	profile := filepath.Join(dir, "profile.json")
	if err := os.WriteFile(profile, []byte(`{"version":1,"commit":"`+commit+`","paths":["bin/hello.sh","README"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := lt(t, "export", "--repo", pub, "--gpg-sign", secret, "--tree-index", "--profile", profile)
	if !strings.Contains(out, "signed") || !strings.Contains(out, "tree indexes: 1 refs, profiles: 1 refs") {
		t.Fatalf("export: %s", out)
	}
	b, err := os.ReadFile(filepath.Join(pub, "summary"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ostree.DecodeSummary(b)
	if err != nil {
		t.Fatal(err)
	}
	ref, ok := s.Ref("test/ref")
	if !ok {
		t.Fatal("summary lacks test/ref")
	}
	idx, ok1 := ref.TreeIndex()
	prof, ok2 := ref.Profile()
	if !ok1 || !ok2 {
		t.Fatalf("summary ref metadata lacks %s or %s", ostree.RefTreeIndex, ostree.RefProfile)
	}
	ib, err := os.ReadFile(filepath.Join(pub, ostree.TreeIndexPath(idx)))
	if err != nil {
		t.Fatal(err)
	}
	if x, err := treeindex.Decode(ib); err != nil || ostree.Sum(ib) != idx || x.Commit.String() != commit {
		t.Fatalf("stored tree index: %v", err)
	}
	pb, err := os.ReadFile(filepath.Join(pub, ostree.ProfilePath(prof)))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := treeindex.DecodeProfile(bytes.NewReader(pb)); err != nil || ostree.Sum(pb) != prof || len(p.Paths) != 2 {
		t.Fatalf("stored profile: %v", err)
	}

	srv := testutil.ServeDir(t, pub)
	client := filepath.Join(dir, "client")
	testutil.Run(t, "", nil, ostreeBin, "init", "--repo="+client, "--mode=bare-user")
	testutil.Run(t, "", nil, ostreeBin, "remote", "add", "--repo="+client, "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
		"--gpg-import="+testutil.VectorPath(t, testutil.GPGPublicKeyFile), "origin", srv.URL)
	testutil.Run(t, "", nil, ostreeBin, "pull", "--repo="+client, "origin", "test/ref")
	if out := testutil.Run(t, "", nil, ostreeBin, "fsck", "--repo="+client); !strings.Contains(out, "no errors") {
		t.Fatalf("ostree fsck: %s", out)
	}
	// A bare-user checkout hardlinks objects that carry user.ostreemeta
	// and keeps owners, setuid and xattrs there; fsck checked those.
	co := filepath.Join(dir, "co")
	testutil.Run(t, "", nil, ostreeBin, "checkout", "--repo="+client, "-U", "origin:test/ref", co)
	if err := testutil.TreeDiff(src, co, testutil.DiffOptions{IgnoreRootMode: true, IgnoreOwner: true, MaskSpecialBits: true, IgnoreXattrs: true}); err != nil {
		t.Fatalf("checkout differs from the source: %v", err)
	}
	if out := testutil.Run(t, "", nil, ostreeBin, "summary", "--repo="+pub, "--view"); !strings.Contains(out, "test/ref") {
		t.Fatalf("ostree summary --view: %s", out)
	}

	// A profile of a commit no ref points at is refused, naming the file.
	stray := filepath.Join(dir, "stray.json")
	os.WriteFile(stray, []byte(`{"version":1,"commit":"`+strings.Repeat("0", 64)+`","paths":[]}`), 0o644)
	if _, errOut, code := ltCode(t, "export", "--repo", pub, "--profile", stray); code != 1 || !strings.Contains(errOut, stray) {
		t.Fatalf("export with a stray profile: exit %d, %q", code, errOut)
	}
}
