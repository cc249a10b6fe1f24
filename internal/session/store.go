// Package session owns the record of sessions through Vigil: who reached
// which target as which login, from where, with which token, when it
// started and ended and why, what moved, and where its recording is. The
// live registry (watchers, pause, terminate) will live here too. It does
// not relay bytes (the gateways) nor write recordings (package recording).
package session

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// States of a session.
const (
	StateActive = "active"
	StateEnded  = "ended"
	// StateInterrupted marks a session that was active when Vigil stopped
	// without ending it (a crash): its recording may be cut short.
	StateInterrupted = "interrupted"
)

// Session is one user session through a gateway.
type Session struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	User       string    `json:"user"`
	JTI        string    `json:"jti"`
	Target     string    `json:"target"`
	Login      string    `json:"login"`
	Source     string    `json:"source"`
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
	State      string    `json:"state"`
	EndReason  string    `json:"end_reason,omitempty"`
	ExitStatus int       `json:"exit_status"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
	// Recording is the recording file; Digest its SHA-256 once sealed.
	Recording string `json:"recording,omitempty"`
	Digest    string `json:"digest,omitempty"`
	// Commands lists exec commands and file operations, in order.
	Commands []string `json:"commands,omitempty"`
	// DisposedAt is when retention deleted the recording (package
	// retention); zero while it is kept.
	DisposedAt time.Time `json:"disposed_at,omitzero"`
	// BreakGlass flags a session that ran on a break-glass token (package
	// breakglass): reviewed after the incident.
	BreakGlass bool `json:"breakglass,omitempty"`
}

// ErrNotFound is returned for an unknown session.
var ErrNotFound = errors.New("session: no such session")

// NewID returns a new session ID.
func NewID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "s_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// Store keeps sessions in the state database.
type Store struct{ db *store.DB }

// NewStore returns the store over db.
func NewStore(db *store.DB) *Store { return &Store{db: db} }

// Start records s as active.
func (st *Store) Start(ctx context.Context, s *Session) error {
	_, err := st.db.ExecContext(ctx, `INSERT INTO sessions
		(id, kind, subject, jti, target, login, source, started_at, ended_at, state, end_reason, exit_status,
		 bytes_up, bytes_down, recording, digest, commands, breakglass)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, '', -1, 0, 0, $10, '', '[]', $11)`,
		s.ID, s.Kind, s.User, s.JTI, s.Target, s.Login, s.Source, store.Nanos(s.StartedAt), StateActive, s.Recording, boolInt(s.BreakGlass))
	if err != nil {
		return fmt.Errorf("session: start %s: %w", s.ID, err)
	}
	s.State, s.ExitStatus = StateActive, -1
	return nil
}

// End records how s ended.
func (st *Store) End(ctx context.Context, s *Session) error {
	cmds, _ := json.Marshal(s.Commands)
	if s.Commands == nil {
		cmds = []byte("[]")
	}
	s.State = StateEnded
	_, err := st.db.ExecContext(ctx, `UPDATE sessions SET ended_at = $2, state = $3, end_reason = $4, exit_status = $5,
		bytes_up = $6, bytes_down = $7, digest = $8, commands = $9 WHERE id = $1`,
		s.ID, store.Nanos(s.EndedAt), s.State, s.EndReason, s.ExitStatus, s.BytesUp, s.BytesDown, s.Digest, string(cmds))
	if err != nil {
		return fmt.Errorf("session: end %s: %w", s.ID, err)
	}
	return nil
}

// MarkInterrupted ends every session still active, for use at start-up:
// those were cut off by a crash. It returns their IDs.
func (st *Store) MarkInterrupted(ctx context.Context, now time.Time) ([]string, error) {
	active, err := st.List(ctx, true)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range active {
		if _, err := st.db.ExecContext(ctx, `UPDATE sessions SET state = $2, ended_at = $3, end_reason = $4 WHERE id = $1 AND state = $5`,
			s.ID, StateInterrupted, store.Nanos(now), "vigil stopped while the session was active", StateActive); err != nil {
			return ids, fmt.Errorf("session: mark %s interrupted: %w", s.ID, err)
		}
		ids = append(ids, s.ID)
	}
	return ids, nil
}

const columns = `id, kind, subject, jti, target, login, source, started_at, ended_at, state, end_reason, exit_status,
	bytes_up, bytes_down, recording, digest, commands, disposed_at, breakglass`

// boolInt is a bool for a BIGINT flag column.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func scan(row interface{ Scan(...any) error }) (Session, error) {
	var s Session
	var started, ended, disposed, bg int64
	var cmds string
	err := row.Scan(&s.ID, &s.Kind, &s.User, &s.JTI, &s.Target, &s.Login, &s.Source, &started, &ended, &s.State,
		&s.EndReason, &s.ExitStatus, &s.BytesUp, &s.BytesDown, &s.Recording, &s.Digest, &cmds, &disposed, &bg)
	if err != nil {
		return s, err
	}
	s.StartedAt, s.EndedAt, s.DisposedAt = store.Time(started), store.Time(ended), store.Time(disposed)
	s.BreakGlass = bg != 0
	json.Unmarshal([]byte(cmds), &s.Commands)
	return s, nil
}

// Get returns the session with id.
func (st *Store) Get(ctx context.Context, id string) (Session, error) {
	s, err := scan(st.db.QueryRowContext(ctx, `SELECT `+columns+` FROM sessions WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, fmt.Errorf("session: get %s: %w", id, err)
	}
	return s, nil
}

// List returns sessions, newest first; only active ones when activeOnly.
func (st *Store) List(ctx context.Context, activeOnly bool) ([]Session, error) {
	q := `SELECT ` + columns + ` FROM sessions`
	var args []any
	if activeOnly {
		q += ` WHERE state = $1`
		args = append(args, StateActive)
	}
	rows, err := st.db.QueryContext(ctx, q+` ORDER BY started_at DESC LIMIT 1000`, args...)
	if err != nil {
		return nil, fmt.Errorf("session: list: %w", err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		s, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("session: list: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
