package cli

import (
	"context"
	"os"
	"testing"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/internal/sourcetest"
	"github.com/lazytree/lazytree/internal/testutil"
	"github.com/lazytree/lazytree/objcache"
)

// TestFetchSourceConformance runs the fusefs.Source suite over the
// daemon's source (fetch.MountSource behind mountSource), fetching the
// vector repo over HTTP with its signatures checked.
func TestFetchSourceConformance(t *testing.T) {
	srv := testutil.ServeDir(t, testutil.CopyVectorRepo(t, "repo"))
	home := t.TempDir()
	cfg, err := fetch.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(testutil.VectorPath(t, testutil.GPGPublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Add("v", fetch.AddOptions{URL: srv.URL, GPGKeys: [][]byte{key}, CollectionID: testutil.VectorCollectionID}); err != nil {
		t.Fatal(err)
	}
	store, err := objcache.Open(context.Background(), home, objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	src := fetch.NewSource(fetch.New(store, cfg, fetch.Options{}), fetch.SourceOptions{})
	defer src.Close()
	sourcetest.Run(t, mountSource{src}, sourcetest.Vector(t, "v"))
}
