package audit

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/vigil-pam/vigil/internal/store"
)

// Kinds of verification problems.
const (
	// ProblemModified: an event's content does not match its hash.
	ProblemModified = "modified"
	// ProblemBrokenLink: an event's prev_hash is not its predecessor's
	// hash (an event edited with its hash recomputed, replaced, or moved).
	ProblemBrokenLink = "broken_link"
	// ProblemMissing: seq numbers skip (events deleted).
	ProblemMissing = "missing"
	// ProblemTruncated: a checkpoint names an event beyond the log's end.
	ProblemTruncated = "truncated"
	// ProblemCheckpointInvalid: a checkpoint's signature does not verify
	// (forged, or signed by a key that is not Vigil's audit key).
	ProblemCheckpointInvalid = "checkpoint_invalid"
	// ProblemCheckpointMismatch: the event a checkpoint names has another
	// hash now (the chain was rewritten from there on).
	ProblemCheckpointMismatch = "checkpoint_mismatch"
	// ProblemRecordingModified: a recording's bytes differ from the
	// digest sealed into its session.end event.
	ProblemRecordingModified = "recording_modified"
	// ProblemRecordingMissing: a sealed recording is gone without a
	// recorded disposal.
	ProblemRecordingMissing = "recording_missing"
	// ProblemArchiveBoundary: the log does not continue from the last
	// archive's boundary.
	ProblemArchiveBoundary = "archive_boundary"
	// ProblemUnsealed: old events are not covered by any checkpoint.
	ProblemUnsealed = "unsealed"
)

// maxProblems bounds the problems listed in a report (all are counted).
const maxProblems = 100

// verifyPage is how many events one query reads.
const verifyPage = 20000

// Problem is one broken link.
type Problem struct {
	Kind    string `json:"kind"`
	Seq     int64  `json:"seq,omitempty"`
	Session string `json:"session,omitempty"`
	Message string `json:"message"`
}

// Report is the outcome of a verification.
type Report struct {
	// OK is true when no problem was found.
	OK bool `json:"ok"`
	// Events is how many events were checked, FirstSeq..LastSeq.
	Events   int64  `json:"events"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	Head     string `json:"head,omitempty"`
	// ArchivedThrough is the last seq moved to an archive (0: none).
	ArchivedThrough int64 `json:"archived_through,omitempty"`
	// Checkpoints counts the checkpoints checked; LastCheckpoint is the
	// newest; Unsealed counts events after it (a truncation of those
	// alone is not detectable from this database).
	Checkpoints    int         `json:"checkpoints"`
	LastCheckpoint *Checkpoint `json:"last_checkpoint,omitempty"`
	Unsealed       int64       `json:"unsealed"`
	// ArchivesChecked counts archive files re-hashed against their
	// recorded digest; ArchivesOffline those not at their recorded path
	// (moved to cold storage: check them with vigil audit verify-archive).
	ArchivesChecked int `json:"archives_checked,omitempty"`
	ArchivesOffline int `json:"archives_offline,omitempty"`
	// Recordings counts sealed recordings checked, RecordingsDisposed
	// those disposed of by retention (with a recorded disposal).
	Recordings         int `json:"recordings"`
	RecordingsDisposed int `json:"recordings_disposed"`
	// TimeRegressions counts events older than their predecessor (clock
	// steps backwards): not a break, but worth knowing.
	TimeRegressions int64 `json:"time_regressions"`
	// First is the first problem found in log order; Problems lists up to
	// 100, ProblemCount counts them all.
	First        *Problem  `json:"first_problem,omitempty"`
	Problems     []Problem `json:"problems"`
	ProblemCount int       `json:"problem_count"`
	Duration     float64   `json:"duration_s"`
}

func (r *Report) add(p Problem) {
	r.ProblemCount++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	}
}

// VerifyOptions say what to check besides the chain and checkpoints.
type VerifyOptions struct {
	// RecordingsDir, when set, is where sealed recordings are looked up
	// (by file name, so a moved directory still verifies) and re-hashed.
	RecordingsDir string
	// Now is the clock for the report's duration; nil means time.Now.
	Now func() time.Time
	// Keys are the audit public keys trusted to sign checkpoints (from
	// TrustedKeys, or pinned by an auditor). Nil means every key in the
	// database's audit_keys table: only for tests and offline tools,
	// since whoever can write the database can add a key there.
	Keys map[string]ed25519.PublicKey
	// SealGrace is how old an event may be without a checkpoint covering
	// it before verification calls it a break (checkpoints deleted, or a
	// crash before sealing, which the next start records); zero means one
	// minute.
	SealGrace time.Duration
}

// sealedRecording is a recording digest sealed into a session.end event.
type sealedRecording struct {
	seq     int64
	session string
	path    string
	digest  string
}

// Verify checks the whole log in db: every event's hash, every link,
// seq continuity from the archive boundary, every checkpoint's signature
// against the audit public keys and against the event it names, and
// (with opts.RecordingsDir) the digest of every sealed recording. A
// database error (a corrupt page) is returned as an error; tampering is
// reported in the Report.
func Verify(ctx context.Context, db *store.DB, opts VerifyOptions) (Report, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	rep := Report{Problems: []Problem{}}
	keys := opts.Keys
	if keys == nil {
		var err error
		if keys, err = PublicKeys(ctx, db); err != nil {
			return rep, err
		}
	}
	grace := opts.SealGrace
	if grace <= 0 {
		grace = time.Minute
	}
	// The boundary: where the log continues after archives were pruned.
	var boundary int64
	var prev string
	err := db.QueryRowContext(ctx, `SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1`).Scan(&boundary, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return rep, fmt.Errorf("audit: verify: read archives: %w", err)
	}
	rep.ArchivedThrough = boundary
	cps, err := Checkpoints(ctx, db, boundary, 1<<62)
	if err != nil {
		return rep, err
	}
	for i := range cps {
		if err := cps[i].Valid(keys); err != nil {
			rep.add(Problem{Kind: ProblemCheckpointInvalid, Seq: cps[i].Seq,
				Message: fmt.Sprintf("checkpoint at event %d: %v", cps[i].Seq, err)})
		}
	}
	if boundary > 0 {
		// The archive boundary must be sealed by a checkpoint over the
		// archive's last event (Archive writes one).
		if i, ok := slices.BinarySearchFunc(cps, boundary, func(c Checkpoint, seq int64) int { return cmp.Compare(c.Seq, seq) }); !ok || cps[i].Hash != prev {
			rep.add(Problem{Kind: ProblemArchiveBoundary, Seq: boundary,
				Message: fmt.Sprintf("no valid checkpoint seals the archive boundary at event %d", boundary)})
		}
		if err := checkArchiveFiles(ctx, db, &rep); err != nil {
			return rep, err
		}
		// Nothing may remain at or below the boundary: such rows are
		// outside the verified chain yet searched and reported.
		var below int64
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE seq <= $1`, boundary).Scan(&below); err != nil {
			return rep, fmt.Errorf("audit: verify: %w", err)
		}
		if below > 0 {
			rep.add(Problem{Kind: ProblemArchiveBoundary, Seq: boundary,
				Message: fmt.Sprintf("%d event(s) at or below the archive boundary %d are still in the database: an unfinished archive (run it again) or planted rows", below, boundary)})
		}
	}
	rep.Checkpoints = len(cps)
	if len(cps) > 0 {
		last := cps[len(cps)-1]
		rep.LastCheckpoint = &last
	}
	var top int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&top); err != nil {
		return rep, fmt.Errorf("audit: verify: read log end: %w", err)
	}
	// The range is split among the cores: each part is read and hashed
	// on its own connection, and the parts are joined in order after.
	parts := runtime.GOMAXPROCS(0)
	if top-boundary < 4*verifyPage {
		parts = 1
	}
	spans := make([]span, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for k := range spans {
		lo := boundary + (top-boundary)*int64(k)/int64(parts)
		hi := boundary + (top-boundary)*int64(k+1)/int64(parts)
		wg.Go(func() { errs[k] = spans[k].verify(ctx, db, lo, hi, cps) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	expect, prev := boundary+1, prev
	var lastTime int64
	var recs []sealedRecording
	var archived []Archive
	disposed := map[string]bool{}
	first := true
	for k := range spans {
		sp := &spans[k]
		if sp.events == 0 {
			continue
		}
		if first {
			rep.FirstSeq = sp.firstSeq
		}
		switch {
		case sp.firstSeq != expect && first && boundary > 0:
			rep.add(Problem{Kind: ProblemArchiveBoundary, Seq: sp.firstSeq,
				Message: fmt.Sprintf("the log starts at event %d but the last archive ends at %d: events %d..%d are missing", sp.firstSeq, boundary, expect, sp.firstSeq-1)})
		case sp.firstSeq != expect:
			rep.add(Problem{Kind: ProblemMissing, Seq: expect,
				Message: fmt.Sprintf("events %d..%d are missing (deleted)", expect, sp.firstSeq-1)})
		case sp.firstPrev != prev:
			rep.add(brokenLink(sp.firstSeq))
		}
		first = false
		if sp.firstTime < lastTime {
			rep.TimeRegressions++
		}
		for _, p := range sp.problems {
			rep.add(p)
		}
		rep.ProblemCount += sp.problemCount - len(sp.problems)
		rep.Events += sp.events
		rep.TimeRegressions += sp.timeRegressions
		recs = append(recs, sp.recs...)
		archived = append(archived, sp.archives...)
		for _, s := range sp.disposed {
			disposed[s] = true
		}
		expect, prev, lastTime = sp.lastSeq+1, sp.lastHash, sp.lastTime
	}
	rep.LastSeq, rep.Head = expect-1, prev
	cpi := 0
	for cpi < len(cps) && cps[cpi].Seq <= rep.LastSeq {
		cpi++
	}
	for ; cpi < len(cps); cpi++ {
		c := cps[cpi]
		rep.add(Problem{Kind: ProblemTruncated, Seq: c.Seq,
			Message: fmt.Sprintf("a checkpoint of %s covers event %d but the log ends at %d: events were deleted from the end", c.Time.UTC().Format(time.RFC3339), c.Seq, rep.LastSeq)})
	}
	sealedTo := boundary
	for _, c := range cps {
		if c.Seq <= rep.LastSeq {
			sealedTo = max(sealedTo, c.Seq)
		}
	}
	rep.Unsealed = rep.LastSeq - sealedTo
	if rep.Unsealed > 0 && len(keys) > 0 {
		// Checkpoints follow activity within a second: old events
		// without one mean checkpoints were deleted (to hide a rewrite
		// or a truncation) or a crash the next start did not record.
		var t int64
		if err := db.QueryRowContext(ctx, `SELECT time FROM audit_events WHERE seq = $1`, sealedTo+1).Scan(&t); err == nil &&
			store.Time(t).Before(start.Add(-grace)) {
			rep.add(Problem{Kind: ProblemUnsealed, Seq: sealedTo + 1,
				Message: fmt.Sprintf("events %d..%d are older than %s and no checkpoint covers them: checkpoints were deleted (a rewrite or truncation hidden), or sealing failed", sealedTo+1, rep.LastSeq, grace)})
		}
	}
	if boundary > 0 {
		checkArchiveEvent(ctx, db, &rep, archived)
	}
	if opts.RecordingsDir != "" {
		for _, r := range recs {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("audit: verify: %w", err)
			}
			checkRecording(ctx, db, &rep, opts.RecordingsDir, r, disposed[r.session])
		}
	}
	// Problems in log order: the first is the first broken link.
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(rep.Problems) > 0 {
		rep.First = &rep.Problems[0]
	}
	rep.OK = rep.ProblemCount == 0
	rep.Duration = now().Sub(start).Seconds()
	return rep, nil
}

// archiveEvent reads the archive an audit.archive event describes.
func archiveEvent(data []byte) Archive {
	var d struct {
		ID       string `json:"id"`
		LastSeq  int64  `json:"last_seq"`
		LastHash string `json:"last_hash"`
		SHA256   string `json:"sha256"`
	}
	json.Unmarshal(data, &d)
	return Archive{ID: d.ID, LastSeq: d.LastSeq, LastHash: d.LastHash, Digest: d.SHA256}
}

// checkArchiveEvent ties the latest archive record to the audit.archive
// event that announced it, which follows the boundary in the verified
// chain: a record planted to hide deleted events has no such event.
func checkArchiveEvent(ctx context.Context, db *store.DB, rep *Report, events []Archive) {
	as, err := Archives(ctx, db)
	if err != nil || len(as) == 0 {
		return
	}
	last := as[len(as)-1]
	for _, e := range events {
		if e.ID == last.ID && e.LastSeq == last.LastSeq && e.LastHash == last.LastHash && e.Digest == last.Digest {
			return
		}
	}
	rep.add(Problem{Kind: ProblemArchiveBoundary, Seq: last.LastSeq,
		Message: fmt.Sprintf("archive %s (through event %d) is not announced by a matching audit.archive event in the log: the archive record is forged or the log after it was rewritten", last.ID, last.LastSeq)})
}

// checkArchiveFiles re-hashes the archive files still at their recorded
// paths.
func checkArchiveFiles(ctx context.Context, db *store.DB, rep *Report) error {
	as, err := Archives(ctx, db)
	if err != nil {
		return err
	}
	next := int64(1)
	for _, a := range as {
		if a.FirstSeq != next {
			rep.add(Problem{Kind: ProblemArchiveBoundary, Seq: a.FirstSeq,
				Message: fmt.Sprintf("archive %s starts at event %d, but the archives before it end at %d", a.ID, a.FirstSeq, next-1)})
		}
		next = a.LastSeq + 1
		f, err := os.Open(a.File)
		if err != nil {
			rep.ArchivesOffline++
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		rep.ArchivesChecked++
		if got := hex.EncodeToString(h.Sum(nil)); err != nil || got != a.Digest {
			rep.add(Problem{Kind: ProblemArchiveBoundary, Seq: a.LastSeq,
				Message: fmt.Sprintf("archive %s (%s) does not match the digest recorded when it was written", a.ID, a.File)})
		}
	}
	return nil
}

// sealedIn extracts the recording digest a session.end event seals.
func sealedIn(seq int64, session string, data []byte) (sealedRecording, bool) {
	var d struct {
		Path   string `json:"recording"`
		Digest string `json:"recording_sha256"`
	}
	if json.Unmarshal(data, &d) != nil || d.Path == "" || d.Digest == "" {
		return sealedRecording{}, false
	}
	return sealedRecording{seq: seq, session: session, path: d.Path, digest: d.Digest}, true
}

func checkRecording(ctx context.Context, db *store.DB, rep *Report, dir string, r sealedRecording, disposed bool) {
	path := filepath.Join(dir, filepath.Base(r.path))
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !disposed {
			// A retention sweep may have disposed of it while this
			// verification ran (its event is after the range read).
			var n int
			db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE type = 'recording.disposed' AND session = $1`, r.session).Scan(&n)
			disposed = n > 0
		}
		if errors.Is(err, os.ErrNotExist) && disposed {
			rep.RecordingsDisposed++
			return
		}
		rep.Recordings++
		rep.add(Problem{Kind: ProblemRecordingMissing, Seq: r.seq, Session: r.session,
			Message: fmt.Sprintf("recording of session %s (%s) sealed by event %d cannot be read and no disposal is recorded: %v", r.session, path, r.seq, err)})
		return
	}
	defer f.Close()
	rep.Recordings++
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		rep.add(Problem{Kind: ProblemRecordingMissing, Seq: r.seq, Session: r.session,
			Message: fmt.Sprintf("recording of session %s (%s) cannot be read: %v", r.session, path, err)})
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.digest {
		rep.add(Problem{Kind: ProblemRecordingModified, Seq: r.seq, Session: r.session,
			Message: fmt.Sprintf("recording of session %s (%s) has SHA-256 %.16s…, event %d sealed %.16s…: the file was modified", r.session, path, got, r.seq, r.digest)})
	}
}

// view is b as a string without a copy, for comparisons and hashing
// only: it is valid until the next Scan reuses b.
func view(b sql.RawBytes) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func brokenLink(seq int64) Problem {
	return Problem{Kind: ProblemBrokenLink, Seq: seq,
		Message: fmt.Sprintf("event %d does not link to event %d: its prev_hash is not that event's hash (edited and rehashed, replaced or moved)", seq, seq-1)}
}

// span is the verification of the events with seq in (lo, hi]: its own
// links, hashes and the checkpoints that fall in it; the links between
// spans are checked when they are joined.
type span struct {
	events              int64
	firstSeq, lastSeq   int64
	firstPrev, lastHash string
	firstTime, lastTime int64
	timeRegressions     int64
	problems            []Problem
	problemCount        int
	recs                []sealedRecording
	disposed            []string
	archives            []Archive
}

func (sp *span) add(p Problem) {
	sp.problemCount++
	if len(sp.problems) < maxProblems {
		sp.problems = append(sp.problems, p)
	}
}

func (sp *span) verify(ctx context.Context, db *store.DB, lo, hi int64, cps []Checkpoint) error {
	cpi, _ := slices.BinarySearchFunc(cps, lo+1, func(c Checkpoint, seq int64) int { return cmp.Compare(c.Seq, seq) })
	var (
		seq, t                                                    int64
		typ, actor, target, session, source, data, prevHash, hash sql.RawBytes
		expect                                                    int64
		prev                                                      string
	)
	for after := lo; after < hi; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("audit: verify: %w", err)
		}
		rows, err := db.QueryContext(ctx, `SELECT seq, time, type, actor, target, session, source, data, prev_hash, hash
			FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`, after, hi, verifyPage)
		if err != nil {
			return fmt.Errorf("audit: verify: read events after %d: %w", after, err)
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(&seq, &t, &typ, &actor, &target, &session, &source, &data, &prevHash, &hash); err != nil {
				rows.Close()
				return fmt.Errorf("audit: verify: read event after %d: %w", after, err)
			}
			n++
			after = seq
			if sp.events == 0 {
				sp.firstSeq, sp.firstPrev, sp.firstTime = seq, string(prevHash), t
			} else {
				if seq != expect {
					sp.add(Problem{Kind: ProblemMissing, Seq: expect,
						Message: fmt.Sprintf("events %d..%d are missing (deleted)", expect, seq-1)})
				} else if view(prevHash) != prev {
					sp.add(brokenLink(seq))
				}
				if t < sp.lastTime {
					sp.timeRegressions++
				}
			}
			sp.events++
			if !matchRow(view(hash), view(prevHash), seq, t, view(typ), view(actor), view(target), view(session), view(source), data) {
				sp.add(Problem{Kind: ProblemModified, Seq: seq, Session: string(session),
					Message: fmt.Sprintf("event %d (%s) does not match its hash: it was edited", seq, typ)})
			}
			for ; cpi < len(cps) && cps[cpi].Seq <= seq; cpi++ {
				// A checkpoint inside a gap names a deleted event,
				// reported as missing.
				if c := cps[cpi]; c.Seq == seq && c.Hash != view(hash) {
					sp.add(Problem{Kind: ProblemCheckpointMismatch, Seq: seq,
						Message: fmt.Sprintf("checkpoint of %s says event %d had hash %.16s…, it has %.16s… now: the log was rewritten from there", c.Time.UTC().Format(time.RFC3339), seq, c.Hash, hash)})
				}
			}
			switch view(typ) {
			case "session.end":
				if r, ok := sealedIn(seq, string(session), data); ok {
					sp.recs = append(sp.recs, r)
				}
			case "recording.disposed":
				sp.disposed = append(sp.disposed, string(session))
			case "audit.archive":
				sp.archives = append(sp.archives, archiveEvent(data))
			}
			prev, expect, sp.lastTime = string(hash), seq+1, t
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("audit: verify: read events after %d: %w", after, err)
		}
		if n < verifyPage {
			break
		}
	}
	sp.lastSeq, sp.lastHash = expect-1, prev
	return nil
}

// VerifyCheckpoint checks one checkpoint against the audit keys in db
// (for archives and exported checkpoints).
func VerifyCheckpoint(ctx context.Context, db *store.DB, c Checkpoint) error {
	keys, err := PublicKeys(ctx, db)
	if err != nil {
		return err
	}
	return c.Valid(keys)
}

// Verify is Verify over the log's database. Events appended while it
// runs may or may not be included.
func (l *Log) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	l.archiveMu.RLock()
	defer l.archiveMu.RUnlock()
	return Verify(ctx, l.db, opts)
}
