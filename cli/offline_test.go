package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/internal/testutil"
)

// TestLsRemoteShowsOffline: with the remote unreachable, ls-remote lists
// the refs of the last verified summary and says that it is offline.
func TestLsRemoteShowsOffline(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(testutil.CopyVectorRepo(t, "repo"))))
	defer srv.Close()
	home := dir + "/home"
	lt(t, "--home", home, "remote", "add", "r", srv.URL, "--gpg-import", testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	online, errOut, code := ltCode(t, "--home", home, "ls-remote", "r")
	if code != 0 || strings.Contains(errOut, "offline") {
		t.Fatalf("online ls-remote: exit %d: %s", code, errOut)
	}
	srv.Close()
	offline, errOut, code := ltCode(t, "--home", home, "ls-remote", "r")
	if code != 0 {
		t.Fatalf("offline ls-remote: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "remote r is offline") {
		t.Fatalf("offline ls-remote does not say so: %q", errOut)
	}
	if offline != online {
		t.Fatalf("offline refs differ:\n%s\nonline:\n%s", offline, online)
	}
}
