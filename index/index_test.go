package index

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// clock is a settable time source, so LRU order does not depend on how
// fast the machine is.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func openTest(t testing.TB, dir string) *DB {
	t.Helper()
	c := &clock{t: time.Unix(1700000000, 0)}
	db, err := Open(dir, Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sumOf(i int) Sum { return sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))) }

func fileID(i int) ObjectID { return ObjectID{Sum: sumOf(i), Type: TypeFile} }

func testHeader(i int) FileHeader {
	return FileHeader{UID: 1000, GID: 1000, Mode: 0o100644, Size: uint64(i), Raw: []byte(fmt.Sprintf("raw-header-%d", i))}
}

func addFile(t testing.TB, db *DB, i int, size int64) {
	t.Helper()
	h := testHeader(i)
	if _, err := db.AddObject(Object{ID: fileID(i), Size: size, Origin: "flathub"}, &h, nil); err != nil {
		t.Fatal(err)
	}
}

func checkClean(t *testing.T, db *DB) {
	t.Helper()
	problems, err := db.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("index check: %s", p)
	}
}

func lruOrder(t *testing.T, db *DB) []ObjectID {
	t.Helper()
	var out []ObjectID
	if err := db.LRU(context.Background(), func(id ObjectID, _ int64) bool {
		out = append(out, id)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParse(t *testing.T) {
	s := sumOf(1)
	if got, err := ParseSum(s.String()); err != nil || got != s {
		t.Errorf("ParseSum(String()) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "00", s.String()[:63] + "G", "A" + s.String()[1:], s.String() + "0", "../" + s.String()[3:]} {
		if _, err := ParseSum(bad); err == nil {
			t.Errorf("ParseSum(%q) succeeded", bad)
		}
	}
	id := ObjectID{Sum: s, Type: TypeCommitTombstone}
	if got, err := ParseObjectName(id.String()); err != nil || got != id {
		t.Errorf("ParseObjectName(%s) = %v, %v", id, got, err)
	}
	if _, err := ParseObjectName(s.String() + ".filez"); err == nil {
		t.Error("ParseObjectName accepted .filez")
	}
}

func TestObjectLifecycle(t *testing.T) {
	db := openTest(t, t.TempDir())
	for i := range 5 {
		addFile(t, db, i, int64(100*(i+1)))
	}
	o, err := db.Object(fileID(2))
	if err != nil {
		t.Fatal(err)
	}
	if o.State != StatePresent || o.Size != 300 || o.Origin != "flathub" || o.Pins != 0 || o.Access.IsZero() {
		t.Errorf("Object = %+v", o)
	}
	h, err := db.Header(sumOf(2))
	if err != nil {
		t.Fatal(err)
	}
	if want := testHeader(2); h.Mode != want.Mode || h.Size != want.Size || string(h.Raw) != string(want.Raw) {
		t.Errorf("Header = %+v, want %+v", h, want)
	}
	if _, err := db.Object(fileID(99)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Object(missing) err = %v, want ErrNotFound", err)
	}
	if added, err := db.AddObject(Object{ID: fileID(2), Size: 1}, &FileHeader{}, nil); err != nil || added {
		t.Errorf("second AddObject = %v, %v; want false, nil", added, err)
	}

	if got, want := lruOrder(t, db), []ObjectID{fileID(0), fileID(1), fileID(2), fileID(3), fileID(4)}; !slices.Equal(got, want) {
		t.Errorf("LRU = %v, want insertion order", got)
	}
	db.Touch(fileID(0))
	db.Touch(fileID(2))
	if got := lruOrder(t, db); got[0] != fileID(0) {
		t.Errorf("LRU moved before a flush: %v", got)
	}
	if err := db.FlushAccess(); err != nil {
		t.Fatal(err)
	}
	if got, want := lruOrder(t, db), []ObjectID{fileID(1), fileID(3), fileID(4), fileID(0), fileID(2)}; !slices.Equal(got, want) {
		t.Errorf("LRU after touch = %v, want %v", got, want)
	}
	checkClean(t, db)

	ev, err := db.Evict([]ObjectID{fileID(1), fileID(3), fileID(99)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 2 || ev[0].Size != 200 || ev[1].Size != 400 {
		t.Errorf("Evict = %+v", ev)
	}
	if _, err := db.Object(fileID(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("evicted object still there: %v", err)
	}
	if _, err := db.Header(sumOf(1)); err != nil {
		t.Errorf("header gone with eviction: %v", err)
	}
	if was, err := db.Drop(fileID(4)); err != nil || was.Size != 500 {
		t.Errorf("Drop = %+v, %v", was, err)
	}
	if _, err := db.Drop(fileID(4)); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Drop err = %v", err)
	}
	checkClean(t, db)
}

func TestMetadataObjects(t *testing.T) {
	db := openTest(t, t.TempDir())
	id := ObjectID{Sum: sumOf(7), Type: TypeDirTree}
	if _, err := db.AddObject(Object{ID: id, Size: 3}, nil, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddObject(Object{ID: ObjectID{Sum: sumOf(8), Type: TypeDirTree}, Size: 3}, &FileHeader{}, nil); err == nil {
		t.Error("AddObject of a dirtree with a header and no bytes succeeded")
	}
	got, err := db.Data(id)
	if err != nil || string(got) != "abc" {
		t.Errorf("Data = %q, %v", got, err)
	}
	if _, err := db.Data(ObjectID{Sum: sumOf(7), Type: TypeCommitMeta}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Data of another type = %v, want ErrNotFound", err)
	}
	if _, err := db.Evict([]ObjectID{id}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Data(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Data after eviction: %v", err)
	}
	checkClean(t, db)
}

func TestPins(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	for i := range 4 {
		addFile(t, db, i, 10)
	}
	c1, c2 := sumOf(1000), sumOf(1001)
	// c1 names 0, 1 and 10 (not stored); c2 names 1, 2 and 11.
	if err := db.PinRef(ctx, "flathub", "app/x", c1, []ObjectID{fileID(0), fileID(1), fileID(10), fileID(1)}); err != nil {
		t.Fatal(err)
	}
	if err := db.PinCommit(ctx, c2, []ObjectID{fileID(1), fileID(2), fileID(11)}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, db)
	if got := lruOrder(t, db); !slices.Equal(got, []ObjectID{fileID(3)}) {
		t.Errorf("LRU with pins = %v, want only the unpinned object", got)
	}
	o, _ := db.Object(fileID(1))
	if o.Pins != 2 {
		t.Errorf("pins of an object named twice = %d, want 2", o.Pins)
	}
	o, _ = db.Object(fileID(10))
	if o.State != StateAbsent || o.Pins != 1 {
		t.Errorf("pinned, never stored: %+v", o)
	}
	ev, _ := db.Evict([]ObjectID{fileID(0), fileID(1), fileID(2), fileID(3)})
	if len(ev) != 1 || ev[0].ID != fileID(3) {
		t.Errorf("Evict took %v, want only the unpinned object", ev)
	}
	// Storing a pinned object keeps its pins.
	h := testHeader(10)
	if _, err := db.AddObject(Object{ID: fileID(10), Size: 10}, &h, nil); err != nil {
		t.Fatal(err)
	}
	if o, _ := db.Object(fileID(10)); o.State != StatePresent || o.Pins != 1 {
		t.Errorf("stored pinned object = %+v", o)
	}
	// A dropped pinned object goes back to absent, keeping its pin.
	if _, err := db.Drop(fileID(10)); err != nil {
		t.Fatal(err)
	}
	if o, _ := db.Object(fileID(10)); o.State != StateAbsent || o.Pins != 1 {
		t.Errorf("dropped pinned object = %+v", o)
	}

	pins, err := db.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 2 {
		t.Fatalf("Pins = %+v", pins)
	}
	if p := pins[0]; p.Kind != PinRef || p.Remote != "flathub" || p.Ref != "app/x" || p.Commit != c1 || p.Objects != 3 || p.Present != 2 || p.PresentBytes != 20 {
		t.Errorf("ref pin = %+v", p)
	}

	// Moving the ref to c2's objects: 1 stays pinned throughout, 0 is
	// released, 10 (absent) disappears.
	if err := db.PinRef(ctx, "flathub", "app/x", c2, []ObjectID{fileID(1), fileID(2)}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, db)
	if o, _ := db.Object(fileID(0)); o.Pins != 0 || o.State != StatePresent {
		t.Errorf("object of the old commit = %+v", o)
	}
	if _, err := db.Object(fileID(10)); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent object of the old pin still recorded: %v", err)
	}
	if o, _ := db.Object(fileID(1)); o.Pins != 2 {
		t.Errorf("object in both = %+v", o)
	}

	if err := db.UnpinRef("flathub", "app/x"); err != nil {
		t.Fatal(err)
	}
	if err := db.UnpinRef("flathub", "app/x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second UnpinRef err = %v", err)
	}
	if err := db.UnpinCommit(c2); err != nil {
		t.Fatal(err)
	}
	checkClean(t, db)
	if pins, _ := db.Pins(ctx); len(pins) != 0 {
		t.Errorf("pins left: %+v", pins)
	}
	if got := lruOrder(t, db); len(got) != 3 {
		t.Errorf("LRU after unpinning = %v, want 0, 1, 2", got)
	}
}

func TestLargePinIsChunked(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	objs := make([]ObjectID, 3*chunkSize+17)
	for i := range objs {
		objs[i] = fileID(i)
	}
	if err := db.PinCommit(ctx, sumOf(-1), objs); err != nil {
		t.Fatal(err)
	}
	pins, _ := db.Pins(ctx)
	if len(pins) != 1 || pins[0].Objects != int64(len(objs)) {
		t.Errorf("Pins = %+v", pins)
	}
	checkClean(t, db)
	if err := db.UnpinCommit(sumOf(-1)); err != nil {
		t.Fatal(err)
	}
	checkClean(t, db)
	n := 0
	db.ScanObjects(ctx, 0, nil, func(Object) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d records left after unpinning", n)
	}
}

func TestPinCanceledRollsBack(t *testing.T) {
	db := openTest(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	objs := []ObjectID{fileID(1), fileID(2)}
	if err := db.PinCommit(ctx, sumOf(5), objs); !errors.Is(err, context.Canceled) {
		t.Errorf("PinCommit with a canceled ctx = %v", err)
	}
	if pins, _ := db.Pins(context.Background()); len(pins) != 0 {
		t.Errorf("pins after a canceled pin: %+v", pins)
	}
	checkClean(t, db)
}

// crash closes Badger without the clean shutdown, as a kill would.
func crash(db *DB) {
	close(db.stop)
	<-db.done
	db.bdb.Close()
	db.closeOnce.Do(func() {})
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if db.WasClean() {
		t.Error("a new index reports a clean previous session")
	}
	addFile(t, db, 1, 10)
	addFile(t, db, 2, 10)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !db.WasClean() {
		t.Error("WasClean false after Close")
	}
	// A pin interrupted after its first chunk: pending record and members.
	var pid uint64 = 77
	rec := pinRecord{Pin: Pin{Kind: PinCommit, Commit: sumOf(9)}, state: pinPending}
	if err := db.update(func(txn *badger.Txn) error { return txn.Set(pinKey(pid), encodePin(&rec)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.addMembers(pid, []ObjectID{fileID(1), fileID(3)}); err != nil {
		t.Fatal(err)
	}
	crash(db)

	db = openTest(t, dir)
	if db.WasClean() {
		t.Error("WasClean true after a crash")
	}
	checkClean(t, db)
	if o, _ := db.Object(fileID(1)); o.Pins != 0 {
		t.Errorf("interrupted pin not rolled back: %+v", o)
	}
	if _, err := db.Object(fileID(3)); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent record of the interrupted pin survived: %v", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open err = %v, want ErrLocked", err)
	}
}

func TestRefsSummariesProfiles(t *testing.T) {
	db := openTest(t, t.TempDir())
	now := time.Unix(1700000000, 5)
	if err := db.SetRef("flathub", "app/org.x/x86_64/stable", Ref{Commit: sumOf(1), Verified: now}); err != nil {
		t.Fatal(err)
	}
	// "a"+"bc" and "ab"+"c" must not collide.
	db.SetRef("a", "bc", Ref{Commit: sumOf(2)})
	db.SetRef("ab", "c", Ref{Commit: sumOf(3)})
	r, err := db.Ref("flathub", "app/org.x/x86_64/stable")
	if err != nil || r.Commit != sumOf(1) || !r.Verified.Equal(now) {
		t.Errorf("Ref = %+v, %v", r, err)
	}
	if r, _ := db.Ref("a", "bc"); r.Commit != sumOf(2) {
		t.Errorf("Ref(a, bc) = %v", r.Commit)
	}
	refs, err := db.Refs("a")
	if err != nil || len(refs) != 1 || refs["bc"].Commit != sumOf(2) {
		t.Errorf("Refs(a) = %v, %v", refs, err)
	}
	if _, err := db.Ref("flathub", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing ref err = %v", err)
	}
	if err := db.SetRef("", "x", Ref{}); err == nil {
		t.Error("empty remote accepted")
	}
	if err := db.DeleteRef("a", "bc"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Ref("a", "bc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted ref: %v", err)
	}

	big := make([]byte, 3<<20) // larger than the value threshold: lives in the value log
	big[12345] = 7
	if err := db.SetSummary("flathub", Summary{Data: big, Sig: []byte("sig"), Verified: now}); err != nil {
		t.Fatal(err)
	}
	s, err := db.Summary("flathub")
	if err != nil || len(s.Data) != len(big) || s.Data[12345] != 7 || string(s.Sig) != "sig" || !s.Verified.Equal(now) {
		t.Errorf("Summary = %d bytes, sig %q, %v, %v", len(s.Data), s.Sig, s.Verified, err)
	}

	entries := []string{"/usr/bin/app", "/usr/lib/libx.so", ""}
	if err := db.SetProfile(sumOf(1), entries); err != nil {
		t.Fatal(err)
	}
	got, err := db.Profile(sumOf(1))
	if err != nil || !slices.Equal(got, entries) {
		t.Errorf("Profile = %q, %v", got, err)
	}
	db.DeleteProfile(sumOf(1))
	if _, err := db.Profile(sumOf(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted profile: %v", err)
	}
}

func TestMeta(t *testing.T) {
	db := openTest(t, t.TempDir())
	if err := db.SetMeta(metaState, []byte("x")); err == nil {
		t.Error("SetMeta of a reserved name succeeded")
	}
	if err := db.SetMeta("objcache.usage", []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Meta("objcache.usage"); err != nil || string(v) != "\x01\x02" {
		t.Errorf("Meta = %q, %v", v, err)
	}
	if _, err := db.Meta("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Meta(missing) = %v", err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	o := Object{ID: fileID(1), State: StateAbsent, Size: 1 << 40, Origin: "r", Pins: 3,
		Added: time.Unix(5, 6), Access: time.Unix(7, 8)}
	got, err := decodeObject(o.ID, encodeObject(&o))
	if err != nil || got.Size != o.Size || got.Pins != 3 || !got.Added.Equal(o.Added) || !got.Access.Equal(o.Access) || got.Origin != "r" || got.State != o.State {
		t.Errorf("object round trip = %+v, %v", got, err)
	}
	h := FileHeader{UID: 1 << 31, GID: 2, Mode: 0o120777, Size: 1 << 33, Symlink: "../target", Raw: []byte{0, 0, 0, 9}}
	gh, err := decodeHeader(encodeHeader(&h))
	if err != nil || gh.UID != h.UID || gh.Size != h.Size || gh.Symlink != h.Symlink || string(gh.Raw) != string(h.Raw) {
		t.Errorf("header round trip = %+v, %v", gh, err)
	}
	p := pinRecord{Pin: Pin{Kind: PinRef, Remote: "rem", Ref: "ref", Commit: sumOf(2), Objects: 9}, state: pinComplete}
	gp, err := decodePin(encodePin(&p))
	if err != nil || gp.Pin != p.Pin || gp.state != p.state {
		t.Errorf("pin round trip = %+v, %v", gp, err)
	}
	// A later version may append fields.
	if _, err := decodeObject(o.ID, append(encodeObject(&o), 1, 2, 3)); err != nil {
		t.Errorf("trailing bytes refused: %v", err)
	}
	if _, err := decodeObject(o.ID, []byte{2}); !errors.Is(err, ErrBadRecord) {
		t.Errorf("unknown version: %v", err)
	}
}

// FuzzDecode checks that no value, however damaged, makes a decoder
// panic or allocate beyond the value's own size, and that every value a
// decoder accepts is a fixed point after one round: it re-encodes to
// bytes that decode to the same record, and those bytes re-encode to
// themselves. (The accepted bytes themselves need not come back: trailing
// bytes, for fields a later version appends, are allowed, and varints
// need not be minimal.)
func FuzzDecode(f *testing.F) {
	o := Object{ID: fileID(1), State: StatePresent, Size: 12, Origin: "flathub", Access: time.Unix(1, 0)}
	h := testHeader(3)
	p := pinRecord{Pin: Pin{Kind: PinRef, Remote: "r", Ref: "x"}, state: pinComplete}
	s := Summary{Data: []byte("d"), Sig: []byte("s")}
	f.Add(encodeObject(&o))
	f.Add(encodeHeader(&h))
	f.Add(encodePin(&p))
	f.Add(encodeSummary(&s))
	f.Add(encodeRef(Ref{Commit: sumOf(1)}))
	f.Add(encodeProfile([]string{"a", "bb"}, time.Unix(1, 0)))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		id := fileID(1)
		fuzzRoundTrip(t, "object", v,
			func(b []byte) (Object, error) { return decodeObject(id, b) },
			func(o Object) []byte { return encodeObject(&o) },
			func(a, b Object) bool { return a == b })
		fuzzRoundTrip(t, "header", v, decodeHeader,
			func(h FileHeader) []byte { return encodeHeader(&h) },
			func(a, b FileHeader) bool {
				return a.UID == b.UID && a.GID == b.GID && a.Mode == b.Mode && a.Size == b.Size &&
					a.Symlink == b.Symlink && bytes.Equal(a.Raw, b.Raw)
			})
		fuzzRoundTrip(t, "pin", v, decodePin,
			func(p pinRecord) []byte { return encodePin(&p) },
			func(a, b pinRecord) bool { return a == b })
		fuzzRoundTrip(t, "summary", v, decodeSummary,
			func(s Summary) []byte { return encodeSummary(&s) },
			func(a, b Summary) bool {
				return a.Verified == b.Verified && bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Sig, b.Sig)
			})
		fuzzRoundTrip(t, "ref", v, decodeRef, encodeRef, func(a, b Ref) bool { return a == b })
		type profile struct {
			entries []string
			updated time.Time
		}
		fuzzRoundTrip(t, "profile", v,
			func(b []byte) (profile, error) {
				e, u, err := decodeProfile(b)
				return profile{e, u}, err
			},
			func(p profile) []byte { return encodeProfile(p.entries, p.updated) },
			func(a, b profile) bool { return a.updated == b.updated && slices.Equal(a.entries, b.entries) })
		if entries, _, err := decodeProfile(v); err == nil && len(entries) > len(v) {
			t.Errorf("profile of %d bytes decoded to %d entries", len(v), len(entries))
		}
	})
}

// fuzzRoundTrip decodes v; if that is accepted, the record must survive
// encode and decode unchanged, and its encoding must be stable.
func fuzzRoundTrip[T any](t *testing.T, what string, v []byte, decode func([]byte) (T, error), encode func(T) []byte, equal func(a, b T) bool) {
	t.Helper()
	rec, err := decode(v)
	if err != nil {
		return
	}
	enc := encode(rec)
	again, err := decode(enc)
	if err != nil {
		t.Fatalf("%s %x accepted as %+v, but its re-encoding %x does not decode: %v", what, v, rec, enc, err)
	}
	if !equal(again, rec) {
		t.Fatalf("%s %x decodes to %+v, its re-encoding %x to %+v", what, v, rec, enc, again)
	}
	if enc2 := encode(again); !bytes.Equal(enc2, enc) {
		t.Fatalf("%s %x: encoding is not stable: %x, then %x", what, v, enc, enc2)
	}
}

// A kill between Badger creating a value-log or memtable file and sizing
// it leaves an empty file that Badger itself cannot open past.
func TestOpenAfterEmptyLogFiles(t *testing.T) {
	for _, ext := range []string{"vlog", "mem"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			addFile(t, db, 1, 10)
			crash(db)
			ents, _ := os.ReadDir(dir)
			maxFid := 0
			for _, e := range ents {
				var fid int
				if _, err := fmt.Sscanf(e.Name(), "%06d."+ext, &fid); err == nil && fid > maxFid {
					maxFid = fid
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d.%s", maxFid+1, ext)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			db = openTest(t, dir)
			if _, err := db.Object(fileID(1)); err != nil {
				t.Errorf("record lost: %v", err)
			}
			checkClean(t, db)
		})
	}
}

func TestHeaderCache(t *testing.T) {
	for _, size := range []int{0, 16, -1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			db, err := Open(t.TempDir(), Options{HeaderCache: size})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			// A header from a tree index, before the content.
			unverified := FileHeader{Mode: 0o100600, Raw: []byte("from the tree index")}
			if err := db.PutHeader(sumOf(1), unverified); err != nil {
				t.Fatal(err)
			}
			if h, err := db.Header(sumOf(1)); err != nil || h.Mode != 0o100600 {
				t.Fatalf("Header = %+v, %v", h, err)
			}
			// The content arrives with the header it was verified with,
			// which wins; a later PutHeader does not replace it.
			verified := FileHeader{Mode: 0o100644, Raw: []byte("verified")}
			if _, err := db.AddObject(Object{ID: fileID(1), Size: 1}, &verified, nil); err != nil {
				t.Fatal(err)
			}
			db.PutHeader(sumOf(1), unverified)
			h, err := db.Header(sumOf(1))
			if err != nil || h.Mode != 0o100644 || string(h.Raw) != "verified" {
				t.Fatalf("Header after AddObject = %+v, %v", h, err)
			}
			// Callers get copies.
			h.Raw[0] = 'X'
			if h, _ := db.Header(sumOf(1)); string(h.Raw) != "verified" {
				t.Errorf("the cache shares Raw with callers: %q", h.Raw)
			}
			// Many headers: the cache stays bounded and every lookup right.
			for i := 2; i < 200; i++ {
				h := testHeader(i)
				db.PutHeader(sumOf(i), h)
			}
			for i := 2; i < 200; i++ {
				if h, err := db.Header(sumOf(i)); err != nil || h.Size != uint64(i) {
					t.Fatalf("Header(%d) = %+v, %v", i, h, err)
				}
			}
			if db.headers != nil {
				n := 0
				for i := range db.headers.shards {
					n += len(db.headers.shards[i].m)
				}
				if size == 16 && n > 16 {
					t.Errorf("cache of 16 holds %d", n)
				}
			}
		})
	}
}

// TestAddObjectsLargeHeaders records a batch whose headers together pass
// Badger's transaction limit (15 % of the memtable): AddObjects records
// them all in smaller transactions instead of failing the batch.
func TestAddObjectsLargeHeaders(t *testing.T) {
	db := openTest(t, t.TempDir())
	const n = maxBatchTxn
	objs := make([]NewObject, n)
	for i := range objs {
		h := testHeader(i)
		// Just under the value threshold, so each stays in the LSM tree.
		h.Raw = bytes.Repeat([]byte{byte(i)}, valueThreshold-256)
		objs[i] = NewObject{Object: Object{ID: fileID(i), Size: 1}, Header: &h}
	}
	if total := n * (valueThreshold - 256); total < memTableSize*15/100 {
		t.Fatalf("the batch holds %d bytes of headers, under Badger's limit: the test proves nothing", total)
	}
	added, err := db.AddObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range added {
		if !ok {
			t.Fatalf("object %d not added", i)
		}
		h, err := db.Header(objs[i].ID.Sum)
		if err != nil || !bytes.Equal(h.Raw, objs[i].Header.Raw) {
			t.Fatalf("object %d: header %d bytes, %v", i, len(h.Raw), err)
		}
	}
	checkClean(t, db)
}
