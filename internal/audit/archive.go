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

// pruneBatch bounds one pruning transaction: the write lock is never held
// long enough to make appends wait out the store's busy timeout.
const pruneBatch = 5000

// ErrBehindForwarder is returned when an archive would prune events a
// SIEM sink has not received yet.
var ErrBehindForwarder = errors.New("audit: a SIEM sink has not received these events yet")

// Archive moves the events up to the last one older than before (and at
// most through, when through > 0) into a sealed archive file in dir, then
// prunes them from the database. Without force it stops at the events
// every SIEM sink has received. The archive file is complete and synced
// before it is announced by an audit.archive event; the archive record is
// then written and the events pruned in small batches (an interrupted
// prune is finished by the next Archive; verification reports it
// meanwhile). by is the admin asking.
func (l *Log) Archive(ctx context.Context, dir string, before time.Time, through int64, by string, force bool) (Archive, error) {
	if l.opts.Key == nil {
		return Archive{}, errors.New("audit: archive needs the audit signing key")
	}
	// Verification and archiving exclude each other: a verification
	// must not see the boundary move under it.
	l.archiveMu.Lock()
	defer l.archiveMu.Unlock()
	var a Archive
	var boundary int64
	var prevHash string
	err := l.db.QueryRowContext(ctx, `SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1`).Scan(&boundary, &prevHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("audit: archive: read boundary: %w", err)
	}
	if boundary > 0 {
		// Finish a prune an earlier archive left (a crash, a store error).
		if err := l.prune(context.WithoutCancel(ctx), boundary); err != nil {
			return a, err
		}
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
	if !force {
		var sink string
		var cursor int64
		err := l.db.QueryRowContext(ctx, `SELECT sink, seq FROM audit_forward_cursors ORDER BY seq LIMIT 1`).Scan(&sink, &cursor)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return a, fmt.Errorf("audit: archive: read SIEM cursors: %w", err)
		}
		if err == nil && cursor < last {
			return a, fmt.Errorf("%w: sink %s has events through %d, the archive would end at %d; wait, archive --through %d, or force it",
				ErrBehindForwarder, sink, cursor, last, cursor)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, fmt.Errorf("audit: archive: %w", err)
	}
	a = Archive{ID: fmt.Sprintf("audit-%012d-%012d", boundary+1, last), FirstSeq: boundary + 1, LastSeq: last,
		CreatedAt: l.now(), CreatedBy: by}
	a.File = filepath.Join(dir, a.ID+".jsonl.gz")
	if err := l.writeArchive(ctx, &a, prevHash); err != nil {
		return a, err
	}
	// From here on the archive is carried through whatever the caller's
	// context does.
	ctx = context.WithoutCancel(ctx)
	if err := l.Append(ctx, Event{Type: "audit.archive", Actor: by, Data: map[string]any{"id": a.ID, "first_seq": a.FirstSeq,
		"last_seq": a.LastSeq, "last_hash": a.LastHash, "file": a.File, "sha256": a.Digest, "events": a.Events}}); err != nil {
		os.Remove(a.File)
		return a, err
	}
	if _, err := l.db.ExecContext(ctx, `INSERT INTO audit_archives (id, first_seq, last_seq, last_hash, file, digest, events, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, a.ID, a.FirstSeq, a.LastSeq, a.LastHash, a.File, a.Digest, a.Events,
		store.Nanos(a.CreatedAt), a.CreatedBy); err != nil {
		// Announced but not recorded: the file stays (the event names
		// it); the events stay too, and verification is unaffected.
		return a, fmt.Errorf("audit: archive: record %s: %w", a.ID, err)
	}
	if err := l.prune(ctx, a.LastSeq); err != nil {
		return a, err
	}
	return a, nil
}

// prune deletes the events through last (and their full-text rows and
// older checkpoints) in batches.
func (l *Log) prune(ctx context.Context, last int64) error {
	for {
		var n int64
		err := l.db.Tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE seq IN
				(SELECT seq FROM audit_events WHERE seq <= $1 ORDER BY seq LIMIT $2)`, last, pruneBatch)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			if _, err := tx.ExecContext(ctx, `DELETE FROM audit_fts WHERE rowid IN
				(SELECT rowid FROM audit_fts WHERE rowid <= $1 ORDER BY rowid LIMIT $2)`, last, pruneBatch); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: archive: prune through %d: %w", last, err)
		}
		if n < pruneBatch {
			break
		}
	}
	if _, err := l.db.ExecContext(ctx, `DELETE FROM audit_fts WHERE rowid <= $1`, last); err != nil {
		return fmt.Errorf("audit: archive: prune full text through %d: %w", last, err)
	}
	if _, err := l.db.ExecContext(ctx, `DELETE FROM audit_checkpoints WHERE seq < $1`, last); err != nil {
		return fmt.Errorf("audit: archive: prune checkpoints before %d: %w", last, err)
	}
	return nil
}

// writeArchive writes events a.FirstSeq..a.LastSeq to a.File with a
// checkpoint over the last, fsyncs it and fills in the digest.
func (l *Log) writeArchive(ctx context.Context, a *Archive, prevHash string) error {
	// Written under a temporary name and renamed once complete: a file
	// with the archive's name is always whole.
	f, err := os.CreateTemp(filepath.Dir(a.File), "."+filepath.Base(a.File)+".*")
	if err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	tmp := f.Name()
	defer func() {
		f.Close()
		os.Remove(tmp)
	}()
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
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	if err := os.Rename(tmp, a.File); err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	syncDir(filepath.Dir(a.File))
	a.Digest = hex.EncodeToString(h.Sum(nil))
	return nil
}

// syncDir makes a rename in dir durable (best effort: some file systems
// cannot sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
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
	if dec.More() {
		return fail("data follows the closing checkpoint")
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
