package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/sign"
)

// TestEd25519SignedExport signs a commit and the summary with ed25519 and
// checks both signatures with the test-vector public key.
func TestEd25519SignedExport(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, map[string]string{"a": "a\n", "b/c": "c\n"})
	pub := filepath.Join(dir, "pub")
	key := testutil.VectorPath(t, "keys/test-ed25519.secret.b64")
	lt(t, "init", "--repo", pub)
	sum := strings.TrimSpace(lt(t, "commit", "--repo", pub, "-b", "x", "--sign-key", key, src))
	lt(t, "export", "--repo", pub, "--sign-key", key)
	pubKeys, err := os.ReadFile(testutil.VectorPath(t, "keys/test-ed25519.pub.b64"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sign.ParseEd25519PublicKeys(pubKeys)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ostree.ParseChecksum(sum)
	commit, _ := os.ReadFile(filepath.Join(pub, ostree.ObjectPath(c, ostree.ObjCommit, true)))
	metaBytes, _ := os.ReadFile(filepath.Join(pub, ostree.ObjectPath(c, ostree.ObjCommitMeta, true)))
	meta, err := ostree.DecodeVarDict("commitmeta", metaBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := sign.VerifyEd25519(keys, commit, ostree.Signatures(meta, sign.KeyEd25519)); err != nil {
		t.Fatalf("commit signature: %v", err)
	}
	summary, _ := os.ReadFile(filepath.Join(pub, "summary"))
	sigBytes, _ := os.ReadFile(filepath.Join(pub, "summary.sig"))
	sigs, err := ostree.DecodeVarDict("summary.sig", sigBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := sign.VerifyEd25519(keys, summary, ostree.Signatures(sigs, sign.KeyEd25519)); err != nil {
		t.Fatalf("summary signature: %v", err)
	}
	summary[len(summary)/2] ^= 1
	if sign.VerifyEd25519(keys, summary, ostree.Signatures(sigs, sign.KeyEd25519)) == nil {
		t.Fatal("a flipped summary byte still verifies")
	}

	// A client trusting the ed25519 key pulls it.
	srv := testutil.ServeDir(t, pub)
	home := filepath.Join(dir, "home")
	lt(t, "--home", home, "remote", "add", "ed", srv.URL, "--sign-pubkey-file", testutil.VectorPath(t, "keys/test-ed25519.pub.b64"))
	if out := lt(t, "--home", home, "pull", "ed:x"); !strings.Contains(out, sum) {
		t.Fatalf("pull: %s", out)
	}
}

// TestRemoteAddFromFlatpakrepo adds the vector flatpak repo from its
// .flatpakrepo file (URL and inline key) and lists its refs.
func TestRemoteAddFromFlatpakrepo(t *testing.T) {
	dir := t.TempDir()
	srv := testutil.ServeDir(t, testutil.CopyVectorRepo(t, "flatpak-repo"))
	tmpl, err := os.ReadFile(testutil.VectorPath(t, "flatpak/example.flatpakrepo.in"))
	if err != nil {
		t.Fatal(err)
	}
	repoFile := filepath.Join(dir, "test.flatpakrepo")
	os.WriteFile(repoFile, []byte(strings.ReplaceAll(string(tmpl), "@URL@", srv.URL)), 0o644)
	home := filepath.Join(dir, "home")
	lt(t, "--home", home, "remote", "add", "fp", "--from", repoFile)
	show := lt(t, "--home", home, "remote", "show", "fp", "--json")
	var got map[string]any
	if err := json.Unmarshal([]byte(show), &got); err != nil {
		t.Fatal(err)
	}
	if got["url"] != srv.URL || got["verify"] != "gpg,gpg-summary" {
		t.Fatalf("remote show: %v", got)
	}
	out := lt(t, "--home", home, "ls-remote", "fp", "--json")
	var refs []map[string]any
	if err := json.Unmarshal([]byte(out), &refs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(refs) != 2 || refs[0]["ref"] != "app/org.example.Hello/x86_64/stable" || refs[0]["installed_size"] != float64(2048) {
		t.Fatalf("ls-remote: %s", out)
	}
	// A .flatpakref names its remote (SuggestRemoteName) and carries the key.
	refTmpl, err := os.ReadFile(testutil.VectorPath(t, "flatpak/example.flatpakref.in"))
	if err != nil {
		t.Fatal(err)
	}
	refFile := filepath.Join(dir, "hello.flatpakref")
	os.WriteFile(refFile, []byte(strings.ReplaceAll(string(refTmpl), "@URL@", srv.URL)), 0o644)
	out = lt(t, "--home", home, "remote", "add", "--from", refFile)
	name := strings.TrimPrefix(strings.TrimSpace(out), "added remote ")
	if name == "" || name == "fp" {
		t.Fatalf("remote add --from .flatpakref: %q", out)
	}
	if out := lt(t, "--home", home, "pull", name+":app/org.example.Hello/x86_64/stable"); !strings.Contains(out, "objects") {
		t.Fatalf("pull through the .flatpakref remote: %s", out)
	}
	// Errors: no key, bad name, missing file.
	if _, _, code := ltCode(t, "--home", home, "remote", "add", "nokey", srv.URL); code != 1 {
		t.Fatalf("remote add without a key: exit %d", code)
	}
	if _, _, code := ltCode(t, "--home", home, "remote", "add", "x", "--from", filepath.Join(dir, "missing")); code != 1 {
		t.Fatalf("remote add --from a missing file: exit %d", code)
	}
	if _, _, code := ltCode(t, "--home", home, "pull", "nocolon"); code != 2 {
		t.Fatalf("pull nocolon: exit %d, want 2", code)
	}
}

// TestFsckRepairRefetches corrupts a pulled object; fsck --repair drops it
// and fetches it again from the remote, verified.
func TestFsckRepairRefetches(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, map[string]string{"a.txt": strings.Repeat("repair me ", 50)})
	pub := filepath.Join(dir, "pub")
	lt(t, "init", "--repo", pub)
	lt(t, "commit", "--repo", pub, "-b", "x", src)
	lt(t, "export", "--repo", pub)
	srv := testutil.ServeDir(t, pub)
	home := filepath.Join(dir, "home")
	lt(t, "--home", home, "remote", "add", "r", srv.URL, "--no-gpg-verify")
	lt(t, "--home", home, "pull", "r:x")
	files, _ := filepath.Glob(filepath.Join(home, "objects", "*", "*.file"))
	if len(files) != 1 {
		t.Fatalf("%d content files in the cache", len(files))
	}
	b, _ := os.ReadFile(files[0])
	b[3] ^= 0xff
	os.WriteFile(files[0], b, 0o644)
	out, errOut, code := ltCode(t, "--home", home, "cache", "fsck", "--repair")
	if code != 0 || !strings.Contains(out, "fetched ") || !strings.Contains(out, "again") {
		t.Fatalf("fsck --repair: exit %d\n%s%s", code, out, errOut)
	}
	got, _ := os.ReadFile(files[0])
	if string(got) != strings.Repeat("repair me ", 50) {
		t.Fatal("the refetched object has the wrong bytes")
	}
	if out, _, code := ltCode(t, "--home", home, "cache", "fsck"); code != 0 {
		t.Fatalf("fsck after repair: exit %d\n%s", code, out)
	}
}

// TestRemoteMirrors: show and list --json give a remote's mirrors in the
// order they are tried, and the help of --mirror says they come first.
func TestRemoteMirrors(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	lt(t, "--home", home, "remote", "add", "r", "http://127.0.0.1:1/origin", "--mirror", "http://127.0.0.2:1/b", "--mirror", "http://127.0.0.3:1/a", "--no-gpg-verify")
	want := []string{"http://127.0.0.2:1/b", "http://127.0.0.3:1/a"}
	var shown struct {
		URL     string   `json:"url"`
		Mirrors []string `json:"mirrors"`
	}
	if err := json.Unmarshal([]byte(lt(t, "--home", home, "remote", "show", "r", "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	var listed []struct {
		Mirrors []string `json:"mirrors"`
	}
	if err := json.Unmarshal([]byte(lt(t, "--home", home, "remote", "list", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if shown.URL != "http://127.0.0.1:1/origin" || strings.Join(shown.Mirrors, " ") != strings.Join(want, " ") ||
		len(listed) != 1 || strings.Join(listed[0].Mirrors, " ") != strings.Join(want, " ") {
		t.Fatalf("show: %+v, list: %+v; want the mirrors %v in order", shown, listed, want)
	}
	if out := lt(t, "remote", "add", "--help"); !strings.Contains(out, "tried before URL") {
		t.Fatalf("remote add --help does not say mirrors are tried first: %s", out)
	}
}
