package fetch_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/testutil"
)

func TestReadRemoteFile(t *testing.T) {
	for _, name := range []string{"example.flatpakrepo.in", "example.flatpakref.in"} {
		b, err := os.ReadFile(testutil.VectorPath(t, "flatpak/"+name))
		if err != nil {
			t.Fatal(err)
		}
		rf, err := fetch.ReadRemoteFile(bytes.NewReader(bytes.ReplaceAll(b, []byte("@URL@"), []byte("http://127.0.0.1:1/repo"))))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rf.URL != "http://127.0.0.1:1/repo" || len(rf.GPGKey) == 0 {
			t.Fatalf("%s: %+v", name, rf)
		}
	}
	for _, bad := range []string{
		"[Flatpak Repo]\nVersion=2\nUrl=http://x/\n",
		"[Flatpak Repo]\nGPGKey=!!!\nUrl=http://x/\n",
		"[Flatpak Repo]\nTitle=no url\n",
		"[Something Else]\nUrl=http://x/\n",
	} {
		if _, err := fetch.ReadRemoteFile(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzReadRemoteFile: whatever a .flatpakrepo holds, parsing ends with an
// error or with a URL.
func FuzzReadRemoteFile(f *testing.F) {
	f.Add([]byte("[Flatpak Repo]\nUrl=http://x/\nGPGKey=AAAA\n"))
	f.Add([]byte("[Flatpak Ref]\nName=org.x.App\nUrl=http://x/\nSuggestRemoteName=x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rf, err := fetch.ReadRemoteFile(bytes.NewReader(b))
		if err == nil && rf.URL == "" {
			t.Fatal("accepted without a URL")
		}
	})
}
