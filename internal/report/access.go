package report

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// Recording availability in AccessRow.Recording.
const (
	// RecordingAvailable: recorded and not disposed of by retention.
	RecordingAvailable = "available"
	// RecordingDisposed: recorded, then deleted by retention.
	RecordingDisposed = "disposed"
	// RecordingNone: the session record names no recording.
	RecordingNone = "none"
)

// AccessRow is one session: who accessed what, when, for how long, how it
// ended, and with which recording.
type AccessRow struct {
	Session string `json:"session"`
	User    string `json:"user"`
	Target  string `json:"target"`
	Login   string `json:"login"`
	// Kind is the gateway: "ssh" (or "pg").
	Kind    string    `json:"kind"`
	Source  string    `json:"source"`
	Started time.Time `json:"started"`
	// Ended is zero while the session is active.
	Ended time.Time `json:"ended,omitzero"`
	// DurationS is the session's length in seconds; for an active
	// session, its length so far.
	DurationS float64 `json:"duration_s"`
	// State is active, ended or interrupted (Vigil stopped under it).
	State     string `json:"state"`
	EndReason string `json:"end_reason"`
	// ExitStatus is the remote command's, -1 when there was none.
	ExitStatus int   `json:"exit_status"`
	BytesUp    int64 `json:"bytes_up"`
	BytesDown  int64 `json:"bytes_down"`
	// Recording is RecordingAvailable, RecordingDisposed or
	// RecordingNone; RecordingDisposedAt says when it was disposed of.
	Recording           string    `json:"recording"`
	RecordingDisposedAt time.Time `json:"recording_disposed_at,omitzero"`
	// RecordingSHA256 is the digest sealed into the audit chain at the
	// session's end; empty for a session that is active, was
	// interrupted, or had no recording.
	RecordingSHA256 string `json:"recording_sha256"`
	// BreakGlass reports whether the session ran on a break-glass token
	// (its JTI is that of a breakglass.use event).
	BreakGlass bool   `json:"break_glass"`
	JTI        string `json:"jti"`
}

var accessColumns = []string{"SESSION", "USER", "TARGET", "LOGIN", "KIND", "SOURCE", "STARTED", "ENDED", "DURATION",
	"STATE", "END REASON", "EXIT", "BYTES UP", "BYTES DOWN", "RECORDING", "DISPOSED", "RECORDING SHA256", "BREAK-GLASS", "JTI"}

func (a AccessRow) cells() []string {
	exit := ""
	if a.ExitStatus >= 0 {
		exit = strconv.Itoa(a.ExitStatus)
	}
	return []string{a.Session, a.User, a.Target, a.Login, a.Kind, a.Source, cellTime(a.Started), cellTime(a.Ended),
		cellSeconds(a.DurationS), a.State, a.EndReason, exit, strconv.FormatInt(a.BytesUp, 10), strconv.FormatInt(a.BytesDown, 10),
		a.Recording, cellTime(a.RecordingDisposedAt), a.RecordingSHA256, yesNo(a.BreakGlass), a.JTI}
}

// Access returns every session started at or after since, oldest first.
func (r *Reporter) Access(ctx context.Context, since time.Time) ([]AccessRow, error) {
	bg, err := r.breakglassJTIs(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	rows, err := r.db.QueryContext(ctx, `SELECT id, kind, subject, jti, target, login, source, started_at, ended_at,
		state, end_reason, exit_status, bytes_up, bytes_down, recording, digest, disposed_at
		FROM sessions WHERE started_at >= $1 ORDER BY started_at, id`, store.Nanos(since))
	if err != nil {
		return nil, fmt.Errorf("report: access: %w", err)
	}
	defer rows.Close()
	out := []AccessRow{}
	for rows.Next() {
		var a AccessRow
		var started, ended, disposed int64
		var recording string
		if err := rows.Scan(&a.Session, &a.Kind, &a.User, &a.JTI, &a.Target, &a.Login, &a.Source, &started, &ended,
			&a.State, &a.EndReason, &a.ExitStatus, &a.BytesUp, &a.BytesDown, &recording, &a.RecordingSHA256, &disposed); err != nil {
			return nil, fmt.Errorf("report: access: %w", err)
		}
		a.Started, a.Ended, a.RecordingDisposedAt = store.Time(started), store.Time(ended), store.Time(disposed)
		end := a.Ended
		if end.IsZero() {
			end = now
		}
		if d := end.Sub(a.Started); d > 0 {
			a.DurationS = d.Seconds()
		}
		switch {
		case disposed != 0:
			a.Recording = RecordingDisposed
		case recording == "":
			a.Recording = RecordingNone
		default:
			a.Recording = RecordingAvailable
		}
		a.BreakGlass = a.JTI != "" && bg[a.JTI]
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: access: %w", err)
	}
	return out, nil
}
