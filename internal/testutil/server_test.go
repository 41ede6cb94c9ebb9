package testutil

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestServeDir(t *testing.T) {
	root := t.TempDir()
	w := treeWriter{root: filepath.Join(root, "srv")}
	w.mkdir("objects/ab")
	w.file("config", 0o644, []byte("[core]\nrepo_version=1\n"))
	w.file("objects/ab/cdef.filez", 0o644, []byte("0123456789"))
	w.symlink("../secret", "escape")
	if w.err != nil {
		t.Fatal(w.err)
	}
	if err := os.WriteFile(filepath.Join(root, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := ServeDir(t, filepath.Join(root, "srv"))
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %s, want http://127.0.0.1:PORT", srv.URL)
	}

	tests := []struct {
		method, path, rng string
		status            int
		body              string
	}{
		{"GET", "/config", "", 200, "[core]\nrepo_version=1\n"},
		{"GET", "/objects/ab/cdef.filez", "bytes=2-4", 206, "234"},
		{"HEAD", "/config", "", 200, ""},
		{"GET", "/missing", "", 404, ""},
		{"GET", "/objects/ab", "", 404, ""},
		{"GET", "/objects/ab/", "", 404, ""},
		{"GET", "/", "", 404, ""},
		{"GET", "/objects/../config", "", 404, ""},
		{"GET", "/escape", "", 404, ""},
		{"PUT", "/config", "", 405, ""},
	}
	for _, tc := range tests {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Set the path directly: URL parsing would clean "..".
		req.URL.Path, req.URL.RawPath = tc.path, tc.path
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if tc.status < 300 && string(body) != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, body, tc.body)
		}
	}

	var wantPaths []string
	for _, tc := range tests {
		wantPaths = append(wantPaths, tc.path)
	}
	if got := srv.Log.Paths(); !slices.Equal(got, wantPaths) {
		t.Errorf("logged paths %q, want %q", got, wantPaths)
	}
	reqs := srv.Log.Requests()
	if reqs[1].Range != "bytes=2-4" || reqs[1].Status != 206 || reqs[3].Status != 404 || reqs[9].Method != "PUT" {
		t.Errorf("logged requests %+v", reqs)
	}
	if n := srv.Log.Count("/config"); n != 3 { // GET, HEAD, PUT
		t.Errorf("Count(/config) = %d, want 3", n)
	}
	srv.Log.Reset()
	if n := len(srv.Log.Paths()); n != 0 {
		t.Errorf("%d paths after Reset", n)
	}
}

// TestServeDirOstreePull is the server's real use: the ostree client pulls
// and verifies the signed test-vector repo from it.
func TestServeDirOstreePull(t *testing.T) {
	ostree := RequireTool(t, "ostree")
	srv := ServeDir(t, CopyVectorRepo(t, "repo"))
	client := filepath.Join(t.TempDir(), "client")
	Run(t, "", nil, ostree, "init", "--repo="+client, "--mode=bare-user")
	Run(t, "", nil, ostree, "remote", "add", "--repo="+client, "--set=gpg-verify-summary=true",
		"--gpg-import="+VectorPath(t, filepath.FromSlash(GPGPublicKeyFile)), "origin", srv.URL)
	Run(t, "", nil, ostree, "pull", "--repo="+client, "--disable-static-deltas", "origin", "exampleos/x86_64/stable")
	got := strings.TrimSpace(Output(t, "", nil, ostree, "rev-parse", "--repo="+client, "origin:exampleos/x86_64/stable"))
	if got != C2Checksum {
		t.Errorf("pulled %s, want %s", got, C2Checksum)
	}
	paths := srv.Log.Paths()
	for _, want := range []string{"/summary.sig", "/summary", "/config"} {
		if !slices.Contains(paths, want) {
			t.Errorf("the pull did not request %s; log: %q", want, paths)
		}
	}
}
