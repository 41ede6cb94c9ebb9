package fetchtest

import (
	"slices"
	"testing"
	"time"
)

func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		path    string
		want    bool
	}{
		{"", "/anything/at/all", true},
		{"/summary", "/summary", true},
		{"summary", "/summary", true},
		{"/summary", "/summary.sig", false},
		{"/objects/", "/objects/ab/cd.filez", true},
		{"/objects/", "/objectsX", false},
		{"/objects/*/*.filez", "/objects/ab/cd.filez", true},
		{"/objects/*/*.filez", "/objects/ab/cd.dirtree", false},
		{"/objects/*", "/objects/ab/cd.filez", false},
		{"/objects/**", "/objects/ab/cd.filez", true},
		{"**.commit", "/objects/ab/cd.commit", true},
		{"**.commit", "/objects/ab/cd.commitmeta", false},
		{"/deltas/**/superblock", "/deltas/ab/cdef/superblock", true},
		{"/objects/a?/*", "/objects/ab/x", true},
		{"/objects/a?/*", "/objects/a/x", false},
		{"/objects/[0-9a]b/*", "/objects/ab/x", true},
		{"/objects/[0-9]b/*", "/objects/ab/x", false},
		{"/objects/[!0-9]b/*", "/objects/ab/x", true},
		{"/objects/[^a]b/*", "/objects/ab/x", false},
		{"/a[*]b", "/a*b", true},
		{`/a\*b`, "/a*b", true},
		{`/a\*b`, "/axb", false},
		{"/a.b", "/axb", false},
		{"/deltas/*+*/0", "/deltas/a+b/0", true},
		{"/x/[]]", "/x/]", true},
		{"/x/[a-]", "/x/-", true},
	} {
		p, err := compilePattern(tc.pattern)
		if err != nil {
			t.Errorf("compile %q: %v", tc.pattern, err)
			continue
		}
		if got := p.match(tc.path); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
	for _, bad := range []string{"/[", "/a[b", `/a\`, "/[a/b]", `/[a\`} {
		if _, err := compilePattern(bad); err == nil {
			t.Errorf("compiled %q", bad)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		h      string
		size   int64
		off, n int64
		res    rangeResult
	}{
		{"bytes=0-0", 10, 0, 1, rangeOK},
		{"bytes=0-", 10, 0, 10, rangeOK},
		{"BYTES = 2-3", 10, 2, 2, rangeOK},
		{"bytes=-3", 10, 7, 3, rangeOK},
		{"bytes=-30", 10, 0, 10, rangeOK},
		{"bytes=9-100", 10, 9, 1, rangeOK},
		{"bytes=10-", 10, 0, 0, rangeUnsatisfiable},
		{"bytes=0-", 0, 0, 0, rangeUnsatisfiable},
		{"bytes=-1", 0, 0, 0, rangeUnsatisfiable},
		{"bytes=-0", 10, 0, 0, rangeUnsatisfiable},
		{"bytes=3-2", 10, 0, 0, rangeIgnored},
		{"bytes=a-2", 10, 0, 0, rangeIgnored},
		{"bytes=-a", 10, 0, 0, rangeIgnored},
		{"bytes=--1", 10, 0, 0, rangeIgnored},
		{"bytes=1", 10, 0, 0, rangeIgnored},
		{"bytes=0-1,2-3", 10, 0, 0, rangeIgnored},
		{"bytes", 10, 0, 0, rangeIgnored},
		{"lines=0-1", 10, 0, 0, rangeIgnored},
		{"bytes=99999999999999999999-", 10, 0, 0, rangeIgnored},
	} {
		off, n, res := parseRange(tc.h, tc.size)
		if off != tc.off || n != tc.n || res != tc.res {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", tc.h, tc.size, off, n, res, tc.off, tc.n, tc.res)
		}
	}
}

func TestDrawIsDeterministicAndSpread(t *testing.T) {
	c1, err := compile(Options{Seed: 1, Latency: 10 * time.Millisecond, Jitter: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := compile(Options{Seed: 2})
	if c1.draw("k", "/p", 3) != c1.draw("k", "/p", 3) {
		t.Fatal("a draw changed between calls")
	}
	if c1.draw("k", "/p", 3) == c2.draw("k", "/p", 3) || c1.draw("k", "/p", 3) == c1.draw("k", "/p", 4) ||
		c1.draw("k", "/p", 3) == c1.draw("j", "/p", 3) || c1.draw("k", "/p", 3) == c1.draw("k", "/q", 3) {
		t.Fatal("draws for different inputs collide")
	}
	// Uniformity, coarsely: ten buckets of 10,000 draws over distinct
	// attempts each get 10% ± 1.5%.
	var buckets [10]int
	const n = 100000
	for i := range n {
		buckets[int(unit(c1.draw("k", "/objects/ab/cd.filez", i))*10)]++
	}
	for i, b := range buckets {
		if b < n/10*85/100 || b > n/10*115/100 {
			t.Fatalf("bucket %d holds %d of %d draws", i, b, n)
		}
	}
	for i := range 100 {
		d := c1.delay("/p", i)
		if d < 10*time.Millisecond || d >= 15*time.Millisecond {
			t.Fatalf("delay %v outside [10ms, 15ms)", d)
		}
		if d != c1.delay("/p", i) {
			t.Fatal("jitter is not reproducible")
		}
	}
}

func TestCut(t *testing.T) {
	c, err := compile(Options{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after, n, want int64
	}{
		{0, 100, 0},
		{10, 100, 10},
		{100, 100, 99},
		{1000, 100, 99},
		{10, 0, 0},
		{Seeded, 0, 0},
	} {
		r := rule{Rule: Rule{P: 1, After: tc.after}, fault: FaultTruncate}
		if got := r.cut(c, "/p", 0, tc.n); got != tc.want {
			t.Errorf("cut(After %d, n %d) = %d, want %d", tc.after, tc.n, got, tc.want)
		}
	}
	r := rule{Rule: Rule{P: 1, After: Seeded}, fault: FaultTruncate}
	for i := range 1000 {
		if got := r.cut(c, "/p", i, 7); got < 0 || got >= 7 {
			t.Fatalf("seeded cut %d outside [0, 7)", got)
		}
	}
}

func TestChunk(t *testing.T) {
	for _, tc := range []struct {
		rates []int64
		want  int
	}{
		{[]int64{0, 0}, 64 << 10},
		{[]int64{1 << 30, 0}, 64 << 10},
		{[]int64{1 << 20, 0}, (1 << 20) / 100},
		{[]int64{1 << 20, 100 << 10}, (100 << 10) / 100},
		{[]int64{1000, 0}, 512},
	} {
		if got := chunk(tc.rates...); got != tc.want {
			t.Errorf("chunk(%v) = %d, want %d", tc.rates, got, tc.want)
		}
	}
}

func TestLostChunks(t *testing.T) {
	hit := func(o Options) []int64 {
		c, err := compile(o)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for i := range int64(2000) {
			if c.lost("/objects/ab/cd.filez", 3, i) {
				out = append(out, i)
			}
		}
		return out
	}
	a := hit(Options{Loss: 0.3, Seed: 1})
	if b := hit(Options{Loss: 0.3, Seed: 1}); !slices.Equal(a, b) {
		t.Fatal("the same seed lost other chunks")
	}
	if b := hit(Options{Loss: 0.3, Seed: 2}); slices.Equal(a, b) {
		t.Fatal("another seed lost the same chunks")
	}
	// 600 expected; the bounds are about 5 standard deviations wide.
	if len(a) < 500 || len(a) > 700 {
		t.Fatalf("lost %d of 2000 chunks at 0.3", len(a))
	}
	if n := len(hit(Options{Loss: 1})); n != 2000 {
		t.Fatalf("lost %d of 2000 chunks at 1", n)
	}
	if n := len(hit(Options{})); n != 0 {
		t.Fatalf("lost %d chunks at 0", n)
	}
	c, _ := compile(Options{Loss: 0.1})
	if c.lossStall != defaultLossStall {
		t.Fatalf("LossStall 0 means %v, want %v", c.lossStall, defaultLossStall)
	}
}
