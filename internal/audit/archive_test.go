package audit

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

func TestArchivePruneAndVerify(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, key := signedLog(t, db)
	old := time.Now().Add(-100 * 24 * time.Hour)
	for i := 0; i < 50; i++ {
		when := old
		if i >= 30 {
			when = time.Now()
		}
		if err := l.Append(ctx, Event{Type: "ssh.exec", Time: when.Add(time.Duration(i) * time.Second), Data: map[string]any{"command": "ls", "n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	a, err := l.Archive(ctx, dir, time.Now().Add(-90*24*time.Hour), 0, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if a.FirstSeq != 1 || a.LastSeq != 30 || a.Events != 30 {
		t.Fatalf("archive: got %+v, want events 1..30", a)
	}
	if _, err := l.Archive(ctx, dir, time.Now().Add(-90*24*time.Hour), 0, "admin"); err != ErrNothingToArchive {
		t.Fatalf("second archive of the same range: got %v, want ErrNothingToArchive", err)
	}
	waitSealed(t, db, l)
	rep, err := Verify(ctx, db, VerifyOptions{})
	if err != nil || !rep.OK || rep.ArchivedThrough != 30 || rep.FirstSeq != 31 || rep.ArchivesChecked != 1 {
		t.Fatalf("verify after archive: err %v, report %+v first %+v", err, rep, rep.First)
	}
	if evs, _ := l.Search(ctx, Query{Text: "ls"}); len(evs) != 20 {
		t.Fatalf("full text after prune: got %d events, want the 20 left", len(evs))
	}

	raw, err := os.ReadFile(a.File)
	if err != nil {
		t.Fatal(err)
	}
	arep, err := VerifyArchive(bytes.NewReader(raw), key.Public())
	if err != nil || !arep.OK || arep.Events != 30 || arep.SHA256 != a.Digest || arep.LastHash != a.LastHash {
		t.Fatalf("VerifyArchive: err %v, %+v (want 30 events, digest %s)", err, arep, a.Digest)
	}
	// Tampering with the archive file is caught by both checks.
	raw[len(raw)/2] ^= 0x20
	if err := os.WriteFile(a.File, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if arep, err := VerifyArchive(bytes.NewReader(raw), key.Public()); err == nil && arep.OK {
		t.Fatal("a modified archive verified")
	}
	if rep, err := Verify(ctx, db, VerifyOptions{}); err != nil || rep.OK {
		t.Fatalf("verify with a modified archive file: err %v, ok %v", err, rep.OK)
	}
	os.Remove(a.File)
	if rep, _ := Verify(ctx, db, VerifyOptions{}); !rep.OK || rep.ArchivesOffline != 1 {
		t.Fatalf("archive moved offline: got ok %v, offline %d", rep.OK, rep.ArchivesOffline)
	}
	// Hiding the pruning by deleting the archive record is caught.
	exec(t, db, `DELETE FROM audit_archives`)
	if rep, _ := Verify(ctx, db, VerifyOptions{}); rep.OK || rep.First.Kind != ProblemMissing {
		t.Fatalf("archive record deleted: got %+v", rep.First)
	}
}

func TestArchiveEverythingThenReopen(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, key := signedLog(t, db)
	for i := 0; i < 5; i++ {
		if err := l.Append(ctx, Event{Type: "t", Time: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := l.Archive(ctx, t.TempDir(), time.Now().Add(-time.Minute), 0, "admin")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	// Only the audit.archive event is left in the database: a reopened
	// log continues the chain after it, across the archive boundary.
	l2, err := OpenWith(ctx, db, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if l2.Head() != a.LastSeq+1 {
		t.Fatalf("head after reopen: got %d, want %d", l2.Head(), a.LastSeq+1)
	}
	if err := l2.Append(ctx, Event{Type: "after"}); err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if rep, err := Verify(ctx, db, VerifyOptions{}); err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep.First)
	}
}
