package treeindex

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/lazytree/lazytree/ostree"
)

func TestProfileRoundTrip(t *testing.T) {
	p := &Profile{Commit: ostree.Sum([]byte("c")), Paths: []string{"files/bin/python3", "files/lib/libpython3.so", "metadata", "files/ünï"}}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"commit":"` + p.Commit.String() + `","paths":["files/bin/python3","files/lib/libpython3.so","metadata","files/ünï"]}` + "\n"
	if string(b) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", b, want)
	}
	q, err := DecodeProfile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if q.Commit != p.Commit || strings.Join(q.Paths, "|") != strings.Join(p.Paths, "|") {
		t.Fatalf("decoded %+v", q)
	}
}

func TestDecodeProfileHostile(t *testing.T) {
	c := `"commit":"` + strings.Repeat("ab", 32) + `"`
	many := make([]string, MaxProfilePaths+1)
	for i := range many {
		many[i] = `"f` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `/` + strings.Repeat("y", i/26%50) + `"`
	}
	for _, tc := range []struct{ name, doc string }{
		{"empty", ``},
		{"not json", `hello`},
		{"version 2", `{"version":2,` + c + `,"paths":[]}`},
		{"no version", `{` + c + `,"paths":[]}`},
		{"bad commit", `{"version":1,"commit":"ABC","paths":[]}`},
		{"upper-case commit", `{"version":1,"commit":"` + strings.Repeat("AB", 32) + `","paths":[]}`},
		{"unknown key", `{"version":1,` + c + `,"paths":[],"extra":1}`},
		{"trailing", `{"version":1,` + c + `,"paths":[]} {}`},
		{"absolute", `{"version":1,` + c + `,"paths":["/etc/passwd"]}`},
		{"dotdot", `{"version":1,` + c + `,"paths":["files/../../etc"]}`},
		{"dot", `{"version":1,` + c + `,"paths":["files/./x"]}`},
		{"empty path", `{"version":1,` + c + `,"paths":[""]}`},
		{"double slash", `{"version":1,` + c + `,"paths":["files//x"]}`},
		{"trailing slash", `{"version":1,` + c + `,"paths":["files/"]}`},
		{"nul", `{"version":1,` + c + `,"paths":["files/a\u0000b"]}`},
		{"duplicate", `{"version":1,` + c + `,"paths":["a","a"]}`},
		{"long path", `{"version":1,` + c + `,"paths":["` + strings.Repeat("a/", MaxProfilePathLen/2) + `a"]}`},
		{"paths not strings", `{"version":1,` + c + `,"paths":[1]}`},
		{"too many paths", `{"version":1,` + c + `,"paths":[` + strings.Join(many, ",") + `]}`},
		{"too large", `{"version":1,` + c + `,"paths":["` + strings.Repeat("a", MaxProfileSize) + `"]}`},
		{"invalid utf-8", "{\"version\":1," + c + ",\"paths\":[\"\xff\"]}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeProfile(strings.NewReader(tc.doc))
			if !errors.Is(err, ErrBadProfile) {
				t.Fatalf("got %v, want an error matching ErrBadProfile", err)
			}
		})
	}
}
