package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/objcache"
	"github.com/lazytree/lazytree/ostree"
)

// newProfileHome makes a cache with paths recorded for commit (none when
// paths is nil).
func newProfileHome(t *testing.T, commit ostree.Checksum, paths []string) string {
	t.Helper()
	home := t.TempDir()
	s, err := objcache.Open(context.Background(), home, objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if paths != nil {
		if err := s.Index().SetProfile(commit, paths); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return home
}

// TestProfileExportImport: a profile exported from one cache and
// imported into another is the same list, in order; hostile files are
// refused and change nothing.
func TestProfileExportImport(t *testing.T) {
	ctx := context.Background()
	c := ostree.Checksum{1, 2, 3}
	paths := []string{"files/bin/python3.11", "files/lib/x86_64-linux-gnu/libc.so.6", "files/lib/python3.11/os.py"}
	from := newProfileHome(t, c, paths)
	var out bytes.Buffer
	if err := runProfileExport(ctx, &globalOptions{Home: from}, c.String(), &out); err != nil {
		t.Fatal(err)
	}
	to := newProfileHome(t, c, nil)
	var msg bytes.Buffer
	if err := runProfileImport(ctx, &globalOptions{Home: to}, bytes.NewReader(out.Bytes()), &msg); err != nil {
		t.Fatal(err)
	}
	s, err := objcache.Open(ctx, to, objcache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Index().Profile(c)
	s.Close()
	if err != nil || !slices.Equal(got, paths) {
		t.Fatalf("imported profile %q (%v), want %q", got, err, paths)
	}
	for _, bad := range []string{
		strings.Replace(out.String(), "files/bin/python3.11", "../../etc/shadow", 1),
		strings.Replace(out.String(), "files/bin/python3.11", "/etc/shadow", 1),
		`{"version":1,"commit":"zz","paths":[]}`,
		"not json",
	} {
		if err := runProfileImport(ctx, &globalOptions{Home: to}, strings.NewReader(bad), &msg); err == nil {
			t.Fatalf("imported a hostile profile: %.80s", bad)
		}
	}
	// A new machine imports before anything made its cache.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if err := runProfileImport(ctx, &globalOptions{Home: fresh}, bytes.NewReader(out.Bytes()), &msg); err != nil {
		t.Fatalf("import into a home without a cache: %v", err)
	}
	var again bytes.Buffer
	if err := runProfileExport(ctx, &globalOptions{Home: fresh}, c.String(), &again); err != nil || again.String() != out.String() {
		t.Fatalf("export after import into a fresh home: %v\n%s", err, again.String())
	}
	// A commit with nothing recorded is an error, not an empty profile.
	if err := runProfileExport(ctx, &globalOptions{Home: to}, ostree.Checksum{9}.String(), &out); err == nil {
		t.Fatal("exported a profile nobody recorded")
	}
}
