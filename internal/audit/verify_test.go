package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
)

func testMasterKey(t testing.TB) *masterkey.Key {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	mk, err := masterkey.New(secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// signedLog returns a log with checkpoints every millisecond.
func signedLog(t testing.TB, db *store.DB) (*Log, *SigningKey) {
	t.Helper()
	ctx := context.Background()
	key, created, err := OpenSigningKey(ctx, db, testMasterKey(t), time.Now())
	if err != nil || !created {
		t.Fatalf("OpenSigningKey: created %v, err %v", created, err)
	}
	l, err := OpenWith(ctx, db, Options{Key: key, CheckpointEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return l, key
}

// waitSealed waits until a checkpoint covers the log's head.
func waitSealed(t testing.TB, db *store.DB, l *Log) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var max int64
		if err := db.QueryRowContext(context.Background(), `SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints`).Scan(&max); err != nil {
			t.Fatal(err)
		}
		if max == l.Head() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers event %d (last: %d)", l.Head(), max)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seedLog appends 30 events in three sealed batches (checkpoints at 10,
// 20 and 30 at least) and one session.end sealing a recording file; it returns the
// recordings directory.
func seedLog(t *testing.T, db *store.DB) (string, *SigningKey) {
	t.Helper()
	ctx := context.Background()
	l, key := signedLog(t, db)
	dir := t.TempDir()
	rec := filepath.Join(dir, "s_1.cast.age")
	body := []byte("not really a recording, but bytes with a digest")
	if err := os.WriteFile(rec, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	for batch := 0; batch < 3; batch++ {
		for i := 0; i < 10; i++ {
			ev := Event{Type: "ssh.exec", Actor: "alice", Target: "prod", Session: "s_1", Source: "10.0.0.5",
				Data: map[string]any{"command": fmt.Sprintf("echo %d-%d", batch, i)}}
			if batch == 2 && i == 9 {
				ev = Event{Type: "session.end", Actor: "alice", Target: "prod", Session: "s_1",
					Data: map[string]any{"recording": "/elsewhere/s_1.cast.age", "recording_sha256": hex.EncodeToString(sum[:])}}
			}
			if err := l.Append(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		waitSealed(t, db, l)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, key
}

func exec(t *testing.T, db *store.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rehashFrom recomputes hashes and links from seq on, as a careful forger
// would.
func rehashFrom(t *testing.T, db *store.DB, from int64) {
	t.Helper()
	ctx := context.Background()
	evs, err := Search(ctx, db, Query{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for _, ev := range evs {
		if ev.Seq >= from {
			ev.PrevHash = prev
			ev.Hash = Hash(prev, &ev)
			exec(t, db, `UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3`, ev.PrevHash, ev.Hash, ev.Seq)
		}
		prev = ev.Hash
	}
}

func TestVerifyDetectsEachTamperKind(t *testing.T) {
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *store.DB, dir string)
		kind   string
		seq    int64  // the first problem's seq; a checkpoint's when maxSeq is set
		maxSeq int64  // checkpoints fall where the timer fires: seq..maxSeq
		want   string // in the first problem's message
		// among: the problem need not be the first. Deleting the tail
		// leaves the events after the last surviving checkpoint unsealed
		// too, a problem of a lower seq, unless the checkpointer sealed
		// exactly the new last event (where its timer falls).
		among bool
	}{
		{name: "untouched"},
		{name: "edit a field", kind: ProblemModified, seq: 5, want: "event 5 (ssh.exec) does not match its hash",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `UPDATE audit_events SET actor = 'mallory' WHERE seq = 5`)
			}},
		{name: "edit data", kind: ProblemModified, seq: 7, want: "event 7",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `UPDATE audit_events SET data = '{"command":"echo harmless"}' WHERE seq = 7`)
			}},
		{name: "edit and rehash the rest", kind: ProblemCheckpointMismatch, seq: 5, maxSeq: 10, want: "the log was rewritten",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `UPDATE audit_events SET actor = 'mallory' WHERE seq = 5`)
				rehashFrom(t, db, 5)
			}},
		{name: "delete a middle row", kind: ProblemMissing, seq: 12, want: "events 12..12 are missing",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `DELETE FROM audit_events WHERE seq = 12`)
			}},
		{name: "delete the tail", kind: ProblemTruncated, seq: 25, maxSeq: 30, want: "but the log ends at 24", among: true,
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `DELETE FROM audit_events WHERE seq > 24`)
			}},
		{name: "swap two rows", kind: ProblemBrokenLink, seq: 15,
			tamper: func(t *testing.T, db *store.DB, _ string) {
				// Swap whole rows but keep each seq in place (seq is the
				// position): 15 and 16 trade content, hashes included.
				exec(t, db, `UPDATE audit_events SET seq = -1 WHERE seq = 15`)
				exec(t, db, `UPDATE audit_events SET seq = 15 WHERE seq = 16`)
				exec(t, db, `UPDATE audit_events SET seq = 16 WHERE seq = -1`)
			}},
		{name: "replace a checkpoint", kind: ProblemCheckpointInvalid, seq: 20, want: "signature does not verify",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				var c Checkpoint
				var tm int64
				if err := db.QueryRowContext(context.Background(), `SELECT seq, hash, time, kid FROM audit_checkpoints WHERE seq = 20`).Scan(&c.Seq, &c.Hash, &tm, &c.KID); err != nil {
					t.Fatal(err)
				}
				c.Time = store.Time(tm)
				sig := ed25519.Sign(otherPriv, checkpointMessage(c.Seq, c.Hash, c.Time, c.KID))
				exec(t, db, `UPDATE audit_checkpoints SET signature = $1 WHERE seq = 20`, base64.StdEncoding.EncodeToString(sig))
			}},
		{name: "checkpoint by an unknown key", kind: ProblemCheckpointInvalid, seq: 10, want: "unknown key",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `UPDATE audit_checkpoints SET kid = 'ak_0000000000000000' WHERE seq = 10`)
			}},
		{name: "planted key re-signs a rewritten chain", kind: ProblemCheckpointInvalid, seq: 1, maxSeq: 30, want: "unknown key",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `UPDATE audit_events SET actor = 'mallory' WHERE seq = 5`)
				rehashFrom(t, db, 5)
				evil := &SigningKey{KID: keyID(otherPub), priv: otherPriv}
				exec(t, db, `INSERT INTO audit_keys (kid, public_key, private_key, created_at, retired_at) VALUES ($1, $2, 'garbage', 0, 0)`,
					evil.KID, base64.StdEncoding.EncodeToString(otherPub))
				evs, _ := Search(context.Background(), db, Query{Limit: MaxLimit})
				exec(t, db, `DELETE FROM audit_checkpoints`)
				for _, ev := range evs {
					if ev.Seq%10 == 0 {
						if err := writeCheckpoint(context.Background(), db, evil.sign(ev.Seq, ev.Hash, time.Now())); err != nil {
							t.Fatal(err)
						}
					}
				}
			}},
		{name: "checkpoints deleted to hide a rewrite", kind: ProblemUnsealed, seq: 1, maxSeq: 11, want: "no checkpoint covers them",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `UPDATE audit_events SET actor = 'mallory' WHERE seq = 15`)
				rehashFrom(t, db, 15)
				exec(t, db, `DELETE FROM audit_checkpoints WHERE seq >= 10`)
			}},
		{name: "tail and its checkpoints deleted", kind: ProblemUnsealed, seq: 1, maxSeq: 21, want: "no checkpoint covers them",
			tamper: func(t *testing.T, db *store.DB, _ string) {
				exec(t, db, `DELETE FROM audit_events WHERE seq > 25`)
				exec(t, db, `DELETE FROM audit_checkpoints WHERE seq > 20`)
			}},
		{name: "flip one byte of a recording", kind: ProblemRecordingModified, seq: 30, want: "session s_1",
			tamper: func(t *testing.T, _ *store.DB, dir string) {
				path := filepath.Join(dir, "s_1.cast.age")
				b, _ := os.ReadFile(path)
				b[len(b)/2] ^= 1
				os.WriteFile(path, b, 0o600)
			}},
		{name: "delete a recording", kind: ProblemRecordingMissing, seq: 30, want: "no disposal is recorded",
			tamper: func(t *testing.T, _ *store.DB, dir string) {
				os.Remove(filepath.Join(dir, "s_1.cast.age"))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openDB(t)
			dir, key := seedLog(t, db)
			if tc.tamper != nil {
				tc.tamper(t, db, dir)
			}
			// Pinned key; a nanosecond of grace: the seeded events are
			// older than that, so any left unsealed is a break.
			rep, err := Verify(context.Background(), db, VerifyOptions{RecordingsDir: dir,
				Keys: map[string]ed25519.PublicKey{key.KID: key.Public()}, SealGrace: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			if tc.kind == "" {
				if !rep.OK || rep.Events != 30 || rep.Checkpoints < 3 || rep.Recordings != 1 || rep.Unsealed != 0 {
					t.Fatalf("untouched log: got %+v", rep)
				}
				return
			}
			if rep.OK || rep.First == nil {
				t.Fatalf("%s: verification passed: %+v", tc.name, rep)
			}
			maxSeq := max(tc.maxSeq, tc.seq)
			match := func(p Problem) bool {
				return p.Kind == tc.kind && p.Seq >= tc.seq && p.Seq <= maxSeq && strings.Contains(p.Message, tc.want)
			}
			switch {
			case tc.among && !slices.ContainsFunc(rep.Problems, match):
				t.Fatalf("problems: got %+v, want one of kind %s at %d containing %q", rep.Problems, tc.kind, tc.seq, tc.want)
			case !tc.among && !match(*rep.First):
				t.Fatalf("first problem: got %+v, want kind %s at %d containing %q", *rep.First, tc.kind, tc.seq, tc.want)
			}
		})
	}
}

func TestVerifyCorruptDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := signedLog(t, db)
	for i := 0; i < 3000; i++ {
		if err := l.Append(ctx, Event{Type: "t", Actor: fmt.Sprintf("actor-marker-%04d", i), Data: map[string]any{"pad": strings.Repeat("x", 200)}}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	var pageSize int
	db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize)
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite with garbage every page holding one event's actor: the
	// table's leaf page with that row is among them (the others are
	// index pages), so verification reads a corrupt page.
	marker := []byte("actor-marker-1500")
	hit := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			break
		}
		page := (off + i) / pageSize * pageSize
		for j := page; j < page+pageSize; j++ {
			b[j] = 0xA5
		}
		hit++
		off = page + pageSize
	}
	if hit == 0 {
		t.Fatal("the marker is not in the database file")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(ctx, "sqlite://"+path)
	if err != nil {
		return // refused at open: a precise error, nothing verified as good
	}
	defer db.Close()
	rep, err := Verify(ctx, db, VerifyOptions{})
	if err == nil && rep.OK {
		t.Fatalf("a corrupted database verified as intact: %+v", rep)
	}
}

func TestVerifyTimeRegressionIsAWarning(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, _ := signedLog(t, db)
	base := time.Now()
	for _, d := range []time.Duration{0, time.Second, -time.Hour, 2 * time.Second} {
		if err := l.Append(ctx, Event{Type: "t", Time: base.Add(d)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	rep, err := Verify(ctx, db, VerifyOptions{})
	if err != nil || !rep.OK || rep.TimeRegressions != 1 {
		t.Fatalf("got ok %v, regressions %d, err %v; want ok with 1 regression", rep.OK, rep.TimeRegressions, err)
	}
}

func TestSigningKeyReopens(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	mk := testMasterKey(t)
	k1, created, err := OpenSigningKey(ctx, db, mk, time.Now())
	if err != nil || !created {
		t.Fatal(created, err)
	}
	k2, created, err := OpenSigningKey(ctx, db, mk, time.Now())
	if err != nil || created || k2.KID != k1.KID {
		t.Fatalf("reopen: got %v %v %v", k2, created, err)
	}
	if _, _, err := OpenSigningKey(ctx, db, testMasterKey(t), time.Now()); err == nil {
		t.Fatal("a wrong master key unsealed the audit key")
	}
}

func TestTrustedKeysIgnorePlantedRows(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	mk := testMasterKey(t)
	key, _, err := OpenSigningKey(ctx, db, mk, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	exec(t, db, `INSERT INTO audit_keys (kid, public_key, private_key, created_at, retired_at) VALUES ($1, $2, 'Z2FyYmFnZQ==', 0, 1)`,
		keyID(pub), base64.StdEncoding.EncodeToString(pub))
	keys, err := TrustedKeys(ctx, db, mk)
	if err != nil || len(keys) != 1 || keys[key.KID] == nil {
		t.Fatalf("trusted keys: got %v (%v), want only %s", keys, err, key.KID)
	}
}

func TestVerifyPlantedRowBelowBoundary(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, key := signedLog(t, db)
	for i := 0; i < 10; i++ {
		l.Append(ctx, Event{Type: "t", Time: time.Now().Add(-time.Hour)})
	}
	if _, err := l.Archive(ctx, t.TempDir(), time.Now().Add(-time.Minute), 0, "admin", false); err != nil {
		t.Fatal(err)
	}
	waitSealed(t, db, l)
	l.Close()
	exec(t, db, `INSERT INTO audit_events (seq, time, type, actor, target, session, source, data, prev_hash, hash)
		VALUES (-1, 0, 'breakglass.review', 'mallory', '', '', '', '{"jti":"x"}', '', '')`)
	rep, err := Verify(ctx, db, VerifyOptions{Keys: map[string]ed25519.PublicKey{key.KID: key.Public()}})
	if err != nil || rep.OK || rep.First.Kind != ProblemArchiveBoundary || !strings.Contains(rep.First.Message, "at or below the archive boundary") {
		t.Fatalf("planted row below the boundary: err %v, first %+v", err, rep.First)
	}
}
