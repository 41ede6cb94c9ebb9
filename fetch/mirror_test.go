package fetch_test

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/ostree"
)

// mirrorSetup is one published repo served twice, by a mirror (a cache
// node) and by the origin, and a fetcher whose remote "r" has the origin
// as its URL and the mirror as its only mirror.
type mirrorSetup struct {
	p              *publisher
	commit         ostree.Checksum // what "ref" points at
	mirror, origin *fetchtest.Server
	e              *env
}

var mirrorDay = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// newMirrorSetup publishes "ref" and serves it with the given faults on
// each side. signed makes the remote verify GPG signatures; otherwise it
// verifies nothing (--no-gpg-verify).
func newMirrorSetup(t *testing.T, mirrorOpts, originOpts fetchtest.Options, signed bool, opts fetch.Options) *mirrorSetup {
	t.Helper()
	p := bigPublisher(t, 20)
	c := p.commit("ref", "mirror", mirrorDay)
	p.export(mirrorDay)
	s := &mirrorSetup{p: p, commit: c, mirror: serve(t, p.r.Dir, mirrorOpts), origin: serve(t, p.r.Dir, originOpts)}
	add := fetch.AddOptions{Mirrors: []string{s.mirror.URL()}}
	if signed {
		add.GPGKeys = [][]byte{vectorKey(t)}
	} else {
		add.NoGPGVerify = true
	}
	if opts.HTTP.Retries == 0 {
		opts.HTTP.Retries = 1 // a dead URL is given up on quickly
	}
	s.e = newEnv(t, s.origin.URL(), add, opts)
	return s
}

// urls returns the status of the mirror and of the origin, checking that
// status lists exactly those two, mirror first, and marks one in use.
func (s *mirrorSetup) urls(t *testing.T) (mirror, origin fetch.URLStatus) {
	t.Helper()
	st := s.e.fetcher.RemoteStatus("r")
	if len(st.URLs) != 2 {
		t.Fatalf("status lists %d URLs, want the mirror and the origin: %+v", len(st.URLs), st.URLs)
	}
	mirror, origin = st.URLs[0], st.URLs[1]
	if mirror.URL != s.mirror.URL() || mirror.Role != fetch.RoleMirror || origin.URL != s.origin.URL() || origin.Role != fetch.RoleOrigin {
		t.Fatalf("status URLs %+v, want the mirror %s then the origin %s", st.URLs, s.mirror.URL(), s.origin.URL())
	}
	if mirror.InUse == origin.InUse {
		t.Fatalf("status URLs %+v: want exactly one in use", st.URLs)
	}
	return mirror, origin
}

// TestMirrorFirst: with both URLs healthy, the mirror serves every object
// and the origin none. A signed remote takes its summary from the mirror
// too; one that verifies nothing takes it from the origin.
func TestMirrorFirst(t *testing.T) {
	for _, signed := range []bool{true, false} {
		name := "signed"
		if !signed {
			name = "unsigned"
		}
		t.Run(name, func(t *testing.T) {
			s := newMirrorSetup(t, fetchtest.Options{}, fetchtest.Options{}, signed, fetch.Options{})
			if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
				t.Fatal(err)
			}
			if n := s.origin.Count("/objects/"); n != 0 {
				t.Fatalf("the origin served %d objects with a healthy mirror: %v", n, s.origin.Paths())
			}
			if s.mirror.Count("/objects/") == 0 {
				t.Fatal("the mirror served no object")
			}
			// The origin is asked only for what the mirror does not have
			// (the repo has no static deltas), and for nothing at all of
			// a signed remote's that the mirror has.
			lacks := map[string]bool{}
			for _, r := range s.mirror.Log() {
				if r.Status == 404 {
					lacks[r.Path] = true
				}
			}
			for _, r := range s.origin.Log() {
				if signed && !lacks[r.Path] {
					t.Fatalf("the origin of a signed remote was asked for %s, which the mirror has", r.Path)
				}
			}
			if !signed {
				if s.mirror.Count("/summary") != 0 || s.origin.Count("/summary") == 0 {
					t.Fatalf("the summary of an unsigned remote came from the mirror: mirror %v, origin %v", s.mirror.Paths(), s.origin.Paths())
				}
			}
			mirror, origin := s.urls(t)
			if !mirror.InUse || mirror.Requests == 0 || mirror.Bytes == 0 || mirror.Failures != 0 {
				t.Fatalf("mirror status %+v", mirror)
			}
			if origin.Failures != 0 || int(origin.Requests) != len(s.origin.Log()) {
				t.Fatalf("origin status %+v, the origin saw %d requests", origin, len(s.origin.Log()))
			}
		})
	}
}

// TestMirrorFailover: the mirror answers 503 to everything; the origin
// serves the pull and status shows the switch.
func TestMirrorFailover(t *testing.T) {
	s := newMirrorSetup(t, fetchtest.Options{Status5xx: fetchtest.Rule{P: 1}, ErrorStatuses: []int{503}}, fetchtest.Options{}, true, fetch.Options{})
	if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatalf("pull with a dead mirror: %v", err)
	}
	if s.origin.Count("/objects/") == 0 {
		t.Fatal("the origin served no object")
	}
	mirror, origin := s.urls(t)
	if mirror.InUse || !origin.InUse {
		t.Fatalf("after the mirror failed: mirror %+v, origin %+v", mirror, origin)
	}
	if mirror.Failures == 0 || !strings.Contains(mirror.LastError, "503") || mirror.LastFailure.IsZero() {
		t.Fatalf("mirror status does not show its failures: %+v", mirror)
	}
	if origin.Requests == 0 || origin.Bytes == 0 || origin.Failures != 0 {
		t.Fatalf("origin status %+v", origin)
	}
	if st := s.e.fetcher.HTTPStats(); st.Failovers == 0 {
		t.Fatalf("no failover counted: %+v", st)
	}
}

// TestOriginDownMirrorServes: failover goes both ways. Once the mirror
// failed the origin is in use; when the origin goes down and the mirror
// is back, the next pull moves to the mirror (before FailbackAfter).
func TestOriginDownMirrorServes(t *testing.T) {
	down := fetchtest.Options{Status5xx: fetchtest.Rule{P: 1}, ErrorStatuses: []int{503}}
	s := newMirrorSetup(t, down, fetchtest.Options{}, true, fetch.Options{})
	if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatal(err)
	}
	if mirror, _ := s.urls(t); mirror.InUse {
		t.Fatalf("the failing mirror is still in use: %+v", mirror)
	}
	if err := s.origin.SetOptions(down); err != nil {
		t.Fatal(err)
	}
	if err := s.mirror.SetOptions(fetchtest.Options{}); err != nil {
		t.Fatal(err)
	}
	s.p.commit("ref", "second", mirrorDay.Add(time.Hour))
	s.p.export(mirrorDay.Add(time.Hour))
	s.mirror.Reset()
	if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatalf("pull with the origin down: %v", err)
	}
	if s.mirror.Count("/objects/") == 0 {
		t.Fatal("the mirror served no object of the second pull")
	}
	mirror, origin := s.urls(t)
	if !mirror.InUse || origin.Failures == 0 || !strings.Contains(origin.LastError, "503") {
		t.Fatalf("after the origin failed: mirror %+v, origin %+v", mirror, origin)
	}
}

// TestMirrorFailback: after FailbackAfter, a client that moved to the
// origin tries the mirror again.
func TestMirrorFailback(t *testing.T) {
	const failback = 200 * time.Millisecond
	s := newMirrorSetup(t, fetchtest.Options{Status5xx: fetchtest.Rule{P: 1}, ErrorStatuses: []int{503}}, fetchtest.Options{}, true,
		fetch.Options{HTTP: fetch.HTTPOptions{FailbackAfter: failback}})
	if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatal(err)
	}
	if s.origin.Count("/objects/") == 0 {
		t.Fatal("the origin served nothing while the mirror was down")
	}
	if err := s.mirror.SetOptions(fetchtest.Options{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * failback)
	if mirror, _ := s.urls(t); !mirror.InUse {
		t.Fatalf("the mirror is not in use again after %s: %+v", failback, mirror)
	}
	s.p.commit("ref", "second", mirrorDay.Add(time.Hour))
	s.p.export(mirrorDay.Add(time.Hour))
	s.mirror.Reset()
	s.origin.Reset()
	if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatal(err)
	}
	if s.mirror.Count("/objects/") == 0 || s.origin.Count("/objects/") != 0 {
		t.Fatalf("after the fail-back: mirror %v, origin %v", s.mirror.Paths(), s.origin.Paths())
	}
}

// TestMirrorNotFound: a mirror (a cache node) that lacks files is not
// failing: the origin serves what it lacks and the mirror stays in use.
// A file the origin lacks too is not found, after one request to each.
func TestMirrorNotFound(t *testing.T) {
	s := newMirrorSetup(t, fetchtest.Options{NotFound: fetchtest.Rule{P: 1, Paths: "/objects/**.filez"}}, fetchtest.Options{}, true, fetch.Options{})
	if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
		t.Fatalf("pull from a mirror that lacks the content: %v", err)
	}
	if s.origin.Count("/objects/**.filez") == 0 || s.origin.Count("/objects/**.dirtree") != 0 {
		t.Fatalf("the origin should serve the content only: %v", s.origin.Paths())
	}
	mirror, _ := s.urls(t)
	if !mirror.InUse || mirror.NotFound == 0 || mirror.Failures != 0 {
		t.Fatalf("mirror status %+v: want it in use, with 404s and no failures", mirror)
	}
	var missing ostree.Checksum
	missing[0] = 0x42
	path := "/" + ostree.ObjectPath(missing, ostree.ObjFile, true)
	err := s.e.fetcher.FetchContent(ctxT(t), "r", missing)
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("fetch of an object nobody has: %v, want not found", err)
	}
	if s.mirror.Count(path) != 1 || s.origin.Count(path) != 1 {
		t.Fatalf("the missing object was asked %d times of the mirror and %d of the origin, want once each", s.mirror.Count(path), s.origin.Count(path))
	}
}

// TestMirrorCorruptObject: a mirror that serves damaged objects is left
// for the origin; the pull succeeds and nothing damaged is stored. The
// first damaged object is the commit (every object damaged) or a content
// object (only those damaged).
func TestMirrorCorruptObject(t *testing.T) {
	for _, paths := range []string{"/objects/", "/objects/**.filez"} {
		t.Run(paths, func(t *testing.T) {
			s := newMirrorSetup(t, fetchtest.Options{Seed: 3, Corrupt: fetchtest.Rule{P: 1, Paths: paths}}, fetchtest.Options{}, true,
				fetch.Options{HTTP: fetch.HTTPOptions{Retries: -1}})
			if _, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil); err != nil {
				t.Fatalf("pull from a mirror that corrupts objects: %v", err)
			}
			if s.origin.Count(paths) == 0 {
				t.Fatalf("the origin served nothing of %s", paths)
			}
			mirror, origin := s.urls(t)
			if mirror.Failures == 0 || !strings.Contains(mirror.LastError, "checksum") || !origin.InUse {
				t.Fatalf("after damaged objects: mirror %+v, origin %+v", mirror, origin)
			}
			rep, err := s.e.store.Fsck(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked == 0 || len(rep.Corrupt) != 0 || len(rep.Missing) != 0 {
				t.Fatalf("cache after the pull: %+v", rep)
			}
		})
	}
}

// TestUnsignedRemoteIgnoresMirrorSummary: a mirror of a remote that
// verifies nothing serves a summary that points the ref at another
// commit; the client never asks the mirror for it and resolves the
// origin's commit.
func TestUnsignedRemoteIgnoresMirrorSummary(t *testing.T) {
	other := newPublisher(t, "")
	evil := other.commit("ref", "not the publisher's", mirrorDay.Add(time.Hour))
	other.export(mirrorDay.Add(time.Hour))
	summary := mustRead(t, other.path("summary"))
	sig := mustRead(t, other.path("summary.sig"))
	ref := mustRead(t, other.path("refs/heads/ref"))
	override := func(path string) ([]byte, bool) {
		switch {
		case path == "/summary":
			return summary, true
		case path == "/summary.sig":
			return sig, true
		case strings.HasPrefix(path, "/refs/"):
			return ref, true
		}
		return nil, false
	}
	s := newMirrorSetup(t, fetchtest.Options{Override: override}, fetchtest.Options{}, false, fetch.Options{})
	want := s.commit
	got, err := s.e.fetcher.ResolveRef(ctxT(t), "r", "ref")
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got == evil {
		t.Fatalf("ref resolved to %s, want the origin's %s (the mirror's is %s)", got, want, evil)
	}
	res, err := s.e.fetcher.Pull(ctxT(t), "r", "ref", nil)
	if err != nil || res.Commit != want {
		t.Fatalf("pull: %v, %+v", err, res)
	}
	for _, p := range s.mirror.Paths() {
		if !strings.HasPrefix(p, "/objects/") && !strings.HasPrefix(p, "/deltas/") && !strings.HasPrefix(p, "/delta-indexes/") {
			t.Fatalf("the mirror of an unsigned remote was asked for %s", p)
		}
	}
	if s.mirror.Count("/objects/") == 0 {
		t.Fatal("the mirror served no object: the test proves little")
	}
	// Without a summary at the origin, refs/heads comes from the origin
	// too.
	if err := os.Remove(s.p.path("summary")); err != nil {
		t.Fatal(err)
	}
	os.Remove(s.p.path("summary.sig"))
	e2 := newEnv(t, s.origin.URL(), fetch.AddOptions{NoGPGVerify: true, Mirrors: []string{s.mirror.URL()}}, fetch.Options{})
	got, err = e2.fetcher.ResolveRef(ctxT(t), "r", "ref")
	if err != nil || got != want {
		t.Fatalf("ref from refs/heads: %s, %v; want the origin's %s", got, err, want)
	}
}

// TestMirrorBadSummaryAsksOrigin: a mirror of a signed remote serves a
// summary that does not verify (random bytes, then the publisher's older
// summary, a replay): the client takes the origin's, which is the last
// word, and the mirror's is recorded as a failure.
func TestMirrorBadSummaryAsksOrigin(t *testing.T) {
	var mu sync.Mutex
	var summary, sig []byte
	override := func(path string) ([]byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case path == "/summary" && summary != nil:
			return summary, true
		case path == "/summary.sig" && sig != nil:
			return sig, true
		}
		return nil, false
	}
	const failback = 200 * time.Millisecond
	s := newMirrorSetup(t, fetchtest.Options{Override: override}, fetchtest.Options{}, true, fetch.Options{HTTP: fetch.HTTPOptions{FailbackAfter: failback}})
	oldSummary, oldSig := mustRead(t, s.p.path("summary")), mustRead(t, s.p.path("summary.sig"))
	c2 := s.p.commit("ref", "second", mirrorDay.Add(time.Hour))
	s.p.export(mirrorDay.Add(time.Hour))

	mu.Lock()
	summary = []byte("not a summary at all")
	mu.Unlock()
	got, err := s.e.fetcher.ResolveRef(ctxT(t), "r", "ref")
	if err != nil || got != c2 {
		t.Fatalf("ref through a mirror with a garbage summary: %s, %v; want the origin's %s", got, err, c2)
	}
	if s.origin.Count("/summary") == 0 {
		t.Fatal("the origin was not asked for the summary")
	}
	if m, _ := s.urls(t); m.Failures == 0 {
		t.Fatalf("the mirror's garbage summary was not counted against it: %+v", m)
	}

	// The publisher's own older summary and signature: they verify, but
	// go back in time.
	mu.Lock()
	summary, sig = oldSummary, oldSig
	mu.Unlock()
	time.Sleep(2 * failback)
	if m, _ := s.urls(t); !m.InUse {
		t.Fatalf("the mirror is not in use again after %s: %+v", failback, m)
	}
	s.origin.Reset()
	if _, err := s.e.fetcher.Summary(ctxT(t), "r", true); err != nil {
		t.Fatalf("refresh through a mirror replaying an old summary: %v", err)
	}
	if got, err := s.e.fetcher.ResolveRef(ctxT(t), "r", "ref"); err != nil || got != c2 {
		t.Fatalf("after the replay: %s, %v; want %s", got, err, c2)
	}
	if s.origin.Count("/summary") == 0 {
		t.Fatal("the origin was not asked for the summary after the mirror's replay")
	}
	var recorded []string
	for _, r := range s.e.fetcher.Stats().RecentErrors() {
		recorded = append(recorded, r.Object+": "+r.Cause)
	}
	if len(recorded) < 2 || !strings.Contains(strings.Join(recorded, "\n"), "replay") {
		t.Fatalf("the mirror's bad summaries are not among the recorded failures: %q", recorded)
	}
}

// TestOriginBadSummaryFetchedOnce: when the origin itself serves a
// summary that does not verify (no mirror had a part in it), it is asked
// once, not again "from the origin", and no mirror is blamed.
func TestOriginBadSummaryFetchedOnce(t *testing.T) {
	garbage := func(path string) ([]byte, bool) {
		if path == "/summary" {
			return []byte("not a summary at all"), true
		}
		return nil, false
	}
	// The mirror is down (404 for everything): the origin serves all.
	s := newMirrorSetup(t, fetchtest.Options{NotFound: fetchtest.Rule{P: 1}}, fetchtest.Options{Override: garbage}, true, fetch.Options{})
	if _, err := s.e.fetcher.ResolveRef(ctxT(t), "r", "ref"); err == nil {
		t.Fatal("a garbage summary from the origin was accepted")
	}
	if n := s.origin.Count("/summary"); n != 1 {
		t.Fatalf("the origin was asked %d times for the summary, want once", n)
	}
	if m, _ := s.urls(t); m.Failures != 0 {
		t.Fatalf("the mirror, which served nothing, was blamed: %+v", m)
	}
}
