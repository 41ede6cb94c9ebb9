package index

import (
	"context"
	"testing"
)

func TestReplaceData(t *testing.T) {
	db := openTest(t, t.TempDir())
	id := ObjectID{Sum: sumOf(1), Type: TypeCommitMeta}

	// Not there yet: added.
	old, replaced, err := db.ReplaceData(Object{ID: id, Size: 3, Origin: "a"}, []byte("abc"))
	if err != nil || replaced || old != 0 {
		t.Fatalf("first ReplaceData = %d, %v, %v; want 0, false, nil", old, replaced, err)
	}
	first, _ := db.Object(id)

	// There: replaced, with its size, origin and LRU entry in step.
	old, replaced, err = db.ReplaceData(Object{ID: id, Size: 5, Origin: "b"}, []byte("hello"))
	if err != nil || !replaced || old != 3 {
		t.Fatalf("second ReplaceData = %d, %v, %v; want 3, true, nil", old, replaced, err)
	}
	if got, err := db.Data(id); err != nil || string(got) != "hello" {
		t.Errorf("Data = %q, %v", got, err)
	}
	o, _ := db.Object(id)
	if o.State != StatePresent || o.Size != 5 || o.Origin != "b" || !o.Added.Equal(first.Added) {
		t.Errorf("record = %+v; want present, size 5, origin b, added %v", o, first.Added)
	}
	var lruSize int64
	db.LRU(context.Background(), func(got ObjectID, size int64) bool {
		if got == id {
			lruSize = size
		}
		return true
	})
	if lruSize != 5 {
		t.Errorf("LRU size = %d, want 5", lruSize)
	}

	// Pinned: pins kept.
	if err := db.PinCommit(context.Background(), sumOf(99), []ObjectID{id}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.ReplaceData(Object{ID: id, Size: 2, Origin: "b"}, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if o, _ := db.Object(id); o.Pins != 1 || o.Size != 2 {
		t.Errorf("pinned record after replace = %+v", o)
	}
	checkClean(t, db)

	// Content-addressed types are refused.
	for _, typ := range []ObjType{TypeFile, TypeDirTree, TypeDirMeta, TypeCommit} {
		if _, _, err := db.ReplaceData(Object{ID: ObjectID{Sum: sumOf(2), Type: typ}, Size: 1}, []byte("x")); err == nil {
			t.Errorf("ReplaceData of a %s succeeded", typ)
		}
	}
	if _, _, err := db.ReplaceData(Object{ID: ObjectID{Sum: sumOf(2), Type: TypeCommitTombstone}, Size: 0}, []byte{}); err != nil {
		t.Errorf("ReplaceData of an empty tombstone = %v", err)
	}
	checkClean(t, db)
}
