package audit

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// An archive is a gzip-compressed file of JSON lines: a header line
// {"vigil_audit_archive": 1, "first_seq", "last_seq", "prev_hash",
// "kid", "public_key"}, one line per event {"seq", "time_ns", "type",
// "actor", "target", "session", "source", "data" (the stored canonical
// data, verbatim), "prev_hash", "hash"}, and a trailer line
// {"checkpoint": {...}} signed by the audit key over the last event. The
// chain inside an archive can be checked offline (VerifyArchive); the
// database keeps the archive's digest and boundary, so the live log
// verifies from the boundary on.

// archiveHeader is the first line of an archive.
type archiveHeader struct {
	Version   int    `json:"vigil_audit_archive"`
	FirstSeq  int64  `json:"first_seq"`
	LastSeq   int64  `json:"last_seq"`
	PrevHash  string `json:"prev_hash"`
	KID       string `json:"kid"`
	PublicKey string `json:"public_key"`
}

// archiveLine is one archived event.
type archiveLine struct {
	Seq      int64           `json:"seq"`
	TimeNs   int64           `json:"time_ns"`
	Type     string          `json:"type"`
	Actor    string          `json:"actor"`
	Target   string          `json:"target"`
	Session  string          `json:"session"`
	Source   string          `json:"source"`
	Data     json.RawMessage `json:"data"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// Archive describes one archive written by Log.Archive.
type Archive struct {
	ID        string    `json:"id"`
	FirstSeq  int64     `json:"first_seq"`
	LastSeq   int64     `json:"last_seq"`
	LastHash  string    `json:"last_hash"`
	File      string    `json:"file"`
	Digest    string    `json:"digest"`
	Events    int64     `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// ErrNothingToArchive is returned when no event is old enough.
var ErrNothingToArchive = errors.New("audit: no events to archive in that range")

// Archive moves the events up to the last one older than before (and at
// most through, when through > 0) into a sealed archive file in dir, then
// prunes them from the database. The archive is recorded first as an
// audit.archive event, so a failure later leaves the events in place and
// the log verifiable. by is the admin asking.
func (l *Log) Archive(ctx context.Context, dir string, before time.Time, through int64, by string) (Archive, error) {
	if l.opts.Key == nil {
		return Archive{}, errors.New("audit: archive needs the audit signing key")
	}
	var a Archive
	var boundary int64
	var prevHash string
	err := l.db.QueryRowContext(ctx, `SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1`).Scan(&boundary, &prevHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("audit: archive: read boundary: %w", err)
	}
	q := `SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE time < $1`
	args := []any{store.Nanos(before)}
	if through > 0 {
		q += ` AND seq <= $2`
		args = append(args, through)
	}
	var last int64
	if err := l.db.QueryRowContext(ctx, q, args...).Scan(&last); err != nil {
		return a, fmt.Errorf("audit: archive: find range: %w", err)
	}
	if last <= boundary {
		return a, ErrNothingToArchive
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, fmt.Errorf("audit: archive: %w", err)
	}
	a = Archive{ID: fmt.Sprintf("audit-%012d-%012d", boundary+1, last), FirstSeq: boundary + 1, LastSeq: last,
		CreatedAt: l.now(), CreatedBy: by}
	a.File = filepath.Join(dir, a.ID+".jsonl.gz")
	if err := l.writeArchive(ctx, &a, prevHash); err != nil {
		os.Remove(a.File)
		return a, err
	}
	if err := l.Append(ctx, Event{Type: "audit.archive", Actor: by, Data: map[string]any{"id": a.ID, "first_seq": a.FirstSeq,
		"last_seq": a.LastSeq, "last_hash": a.LastHash, "file": a.File, "sha256": a.Digest, "events": a.Events}}); err != nil {
		os.Remove(a.File)
		return a, err
	}
	err = l.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_archives (id, first_seq, last_seq, last_hash, file, digest, events, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, a.ID, a.FirstSeq, a.LastSeq, a.LastHash, a.File, a.Digest, a.Events,
			store.Nanos(a.CreatedAt), a.CreatedBy); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE seq <= $1`, a.LastSeq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM audit_fts WHERE rowid <= $1`, a.LastSeq); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM audit_checkpoints WHERE seq < $1`, a.LastSeq)
		return err
	})
	if err != nil {
		return a, fmt.Errorf("audit: archive: prune through %d: %w", a.LastSeq, err)
	}
	return a, nil
}

// writeArchive writes events a.FirstSeq..a.LastSeq to a.File with a
// checkpoint over the last, fsyncs it and fills in the digest.
func (l *Log) writeArchive(ctx context.Context, a *Archive, prevHash string) error {
	f, err := os.OpenFile(a.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 256<<10)
	gz := gzip.NewWriter(bw)
	enc := json.NewEncoder(gz)
	key := l.opts.Key
	if err := enc.Encode(archiveHeader{Version: 1, FirstSeq: a.FirstSeq, LastSeq: a.LastSeq, PrevHash: prevHash, KID: key.KID,
		PublicKey: base64.StdEncoding.EncodeToString(key.Public())}); err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	expect, prev := a.FirstSeq, prevHash
	for after := a.FirstSeq - 1; after < a.LastSeq; {
		rows, err := l.db.QueryContext(ctx, `SELECT seq, time, type, actor, target, session, source, data, prev_hash, hash
			FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`, after, a.LastSeq, verifyPage)
		if err != nil {
			return fmt.Errorf("audit: archive: read events: %w", err)
		}
		n := 0
		for rows.Next() {
			var ln archiveLine
			var data []byte
			if err := rows.Scan(&ln.Seq, &ln.TimeNs, &ln.Type, &ln.Actor, &ln.Target, &ln.Session, &ln.Source, &data, &ln.PrevHash, &ln.Hash); err != nil {
				rows.Close()
				return fmt.Errorf("audit: archive: read events: %w", err)
			}
			ln.Data = data
			n++
			after = ln.Seq
			// Only an intact chain is archived: the database copy is
			// about to go.
			if ln.Seq != expect || ln.PrevHash != prev ||
				!matchRow(ln.Hash, ln.PrevHash, ln.Seq, ln.TimeNs, ln.Type, ln.Actor, ln.Target, ln.Session, ln.Source, data) {
				rows.Close()
				return fmt.Errorf("audit: archive: the chain is broken at event %d; run vigil audit verify, nothing was archived", expect)
			}
			if err := enc.Encode(&ln); err != nil {
				rows.Close()
				return fmt.Errorf("audit: archive: %w", err)
			}
			expect, prev = ln.Seq+1, ln.Hash
			a.Events++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("audit: archive: read events: %w", err)
		}
		if n == 0 {
			break
		}
	}
	if expect != a.LastSeq+1 {
		return fmt.Errorf("audit: archive: events %d..%d are missing; run vigil audit verify, nothing was archived", expect, a.LastSeq)
	}
	a.LastHash = prev
	cp := key.sign(a.LastSeq, a.LastHash, l.now())
	// The boundary checkpoint stays in the database too: it is what the
	// live log is verified from.
	if err := writeCheckpoint(ctx, l.db, cp); err != nil {
		return err
	}
	if err := enc.Encode(map[string]Checkpoint{"checkpoint": cp}); err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: archive: sync %s: %w", a.File, err)
	}
	a.Digest = hex.EncodeToString(h.Sum(nil))
	return nil
}

// ArchiveReport is the outcome of VerifyArchive.
type ArchiveReport struct {
	OK       bool   `json:"ok"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	PrevHash string `json:"prev_hash"`
	LastHash string `json:"last_hash"`
	Events   int64  `json:"events"`
	KID      string `json:"kid"`
	SHA256   string `json:"sha256"`
	Problem  string `json:"problem,omitempty"`
}

// VerifyArchive checks an archive file offline: its chain from its first
// event to its last and the checkpoint over the last, signed by the key
// whose public half the archive names (compare its KID with the server's
// audit key; trusted, when pub is not nil, must be it). The file's SHA-256
// is reported to compare with the digest recorded in the audit.archive
// event.
func VerifyArchive(r io.Reader, trusted ed25519.PublicKey) (ArchiveReport, error) {
	var rep ArchiveReport
	h := sha256.New()
	gz, err := gzip.NewReader(io.TeeReader(r, h))
	if err != nil {
		return rep, fmt.Errorf("audit: archive: not a gzip file: %w", err)
	}
	dec := json.NewDecoder(gz)
	var hdr archiveHeader
	if err := dec.Decode(&hdr); err != nil || hdr.Version != 1 {
		return rep, errors.New("audit: archive: not a vigil audit archive (bad header)")
	}
	rep.FirstSeq, rep.LastSeq, rep.PrevHash, rep.KID = hdr.FirstSeq, hdr.LastSeq, hdr.PrevHash, hdr.KID
	pub, err := base64.StdEncoding.DecodeString(hdr.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize || keyID(pub) != hdr.KID {
		return rep, errors.New("audit: archive: header public key is malformed or does not match its kid")
	}
	if trusted != nil && !ed25519.PublicKey(pub).Equal(trusted) {
		rep.Problem = fmt.Sprintf("archive is signed by key %s, not by the trusted audit key %s", hdr.KID, keyID(trusted))
		return rep, nil
	}
	fail := func(format string, args ...any) (ArchiveReport, error) {
		rep.Problem = fmt.Sprintf(format, args...)
		return rep, nil
	}
	expect, prev := hdr.FirstSeq, hdr.PrevHash
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return rep, fmt.Errorf("audit: archive: truncated or corrupt after event %d: %w", expect-1, err)
		}
		var trailer struct {
			Checkpoint *Checkpoint `json:"checkpoint"`
		}
		if json.Unmarshal(raw, &trailer) == nil && trailer.Checkpoint != nil {
			c := *trailer.Checkpoint
			if expect != hdr.LastSeq+1 {
				return fail("archive ends at event %d, its header says %d", expect-1, hdr.LastSeq)
			}
			if c.Seq != hdr.LastSeq || c.Hash != prev {
				return fail("the closing checkpoint names event %d with another hash", c.Seq)
			}
			if err := c.Valid(map[string]ed25519.PublicKey{hdr.KID: pub}); err != nil {
				return fail("closing checkpoint: %v", err)
			}
			break
		}
		var ln archiveLine
		if err := json.Unmarshal(raw, &ln); err != nil {
			return fail("event after %d is malformed: %v", expect-1, err)
		}
		switch {
		case ln.Seq != expect:
			return fail("event %d is missing (found %d)", expect, ln.Seq)
		case ln.PrevHash != prev:
			return fail("event %d does not link to event %d", ln.Seq, ln.Seq-1)
		case !matchRow(ln.Hash, ln.PrevHash, ln.Seq, ln.TimeNs, ln.Type, ln.Actor, ln.Target, ln.Session, ln.Source, ln.Data):
			return fail("event %d does not match its hash: it was edited", ln.Seq)
		}
		expect, prev = ln.Seq+1, ln.Hash
		rep.Events++
	}
	io.Copy(io.Discard, gz)
	rep.LastHash = prev
	rep.SHA256 = hex.EncodeToString(h.Sum(nil))
	rep.OK = true
	return rep, nil
}

// Archives lists the archives written, oldest first.
func Archives(ctx context.Context, db *store.DB) ([]Archive, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, first_seq, last_seq, last_hash, file, digest, events, created_at, created_by
		FROM audit_archives ORDER BY last_seq`)
	if err != nil {
		return nil, fmt.Errorf("audit: list archives: %w", err)
	}
	defer rows.Close()
	out := []Archive{}
	for rows.Next() {
		var a Archive
		var t int64
		if err := rows.Scan(&a.ID, &a.FirstSeq, &a.LastSeq, &a.LastHash, &a.File, &a.Digest, &a.Events, &t, &a.CreatedBy); err != nil {
			return nil, fmt.Errorf("audit: list archives: %w", err)
		}
		a.CreatedAt = store.Time(t)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Archives lists the log's archives, oldest first.
func (l *Log) Archives(ctx context.Context) ([]Archive, error) { return Archives(ctx, l.db) }
