package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
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
	a, err := l.Archive(ctx, dir, time.Now().Add(-90*24*time.Hour), 0, "admin", false)
	if err != nil {
		t.Fatal(err)
	}
	if a.FirstSeq != 1 || a.LastSeq != 30 || a.Events != 30 {
		t.Fatalf("archive: got %+v, want events 1..30", a)
	}
	if _, err := l.Archive(ctx, dir, time.Now().Add(-90*24*time.Hour), 0, "admin", false); err != ErrNothingToArchive {
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
	a, err := l.Archive(ctx, t.TempDir(), time.Now().Add(-time.Minute), 0, "admin", false)
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

func TestArchiveStopsAtForwarderCursor(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, _ := signedLog(t, db)
	defer l.Close()
	for i := 0; i < 20; i++ {
		if err := l.Append(ctx, Event{Type: "t", Time: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, db, `INSERT INTO audit_forward_cursors (sink, seq, updated_at) VALUES ('siem', 10, 0)`)
	if _, err := l.Archive(ctx, t.TempDir(), time.Now(), 0, "admin", false); !errors.Is(err, ErrBehindForwarder) {
		t.Fatalf("archive past a SIEM cursor: got %v, want ErrBehindForwarder", err)
	}
	a, err := l.Archive(ctx, t.TempDir(), time.Now(), 10, "admin", false)
	if err != nil || a.LastSeq != 10 {
		t.Fatalf("archive through the cursor: got %+v, %v", a, err)
	}
	if _, err := l.Archive(ctx, t.TempDir(), time.Now(), 0, "admin", true); err != nil {
		t.Fatalf("forced archive: %v", err)
	}
}

func TestUnsealedAtStartIsRecorded(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, err := Open(ctx, db, nil) // no key: nothing is sealed
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		l.Append(ctx, Event{Type: "t"})
	}
	l.Close()
	l2, key := signedLog(t, db)
	l2.Close()
	evs, err := Search(ctx, db, Query{Type: "audit.unsealed_at_start"})
	if err != nil || len(evs) != 1 || evs[0].Data["first_seq"] != float64(1) || evs[0].Data["last_seq"] != float64(3) {
		t.Fatalf("unsealed_at_start event: %v %+v", err, evs)
	}
	rep, err := Verify(ctx, db, VerifyOptions{Keys: map[string]ed25519.PublicKey{key.KID: key.Public()}, SealGrace: time.Nanosecond})
	if err != nil || !rep.OK || rep.Unsealed != 0 {
		t.Fatalf("verify: %v %+v", err, rep.First)
	}
}

// TestVerifyDuringArchive: a verification running while an archive
// prunes never reports the intact log as broken.
func TestVerifyDuringArchive(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, key := signedLog(t, db)
	defer l.Close()
	for i := 0; i < 3000; i++ {
		if err := l.Append(ctx, Event{Type: "t", Time: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	waitSealed(t, db, l)
	done := make(chan error, 1)
	go func() {
		_, err := l.Archive(ctx, t.TempDir(), time.Now().Add(-time.Minute), 0, "admin", false)
		done <- err
	}()
	keys := map[string]ed25519.PublicKey{key.KID: key.Public()}
	for i := 0; i < 20; i++ {
		rep, err := l.Verify(ctx, VerifyOptions{Keys: keys})
		if err != nil || !rep.OK {
			t.Fatalf("verify during archive: %v %+v", err, rep.First)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
