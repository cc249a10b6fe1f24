// Package querylog owns the statement log of database sessions: one
// structured entry per SQL statement a session sent through the
// PostgreSQL gateway, with its outcome, searchable by session, user,
// target, source, time, outcome and statement text.
//
// Entries are stored in the state database in three tables. The columns
// that are constant in a session (its user, target, login, database and
// client address) are stored once per session, in query_sessions (a
// session whose entries disagree on them has a row per combination). The
// rest of each entry is a row of queries, which refers to its session's
// row by query_session_id; its id orders the log and is the entry's
// Stored.ID. The statements are full-text indexed in queries_fts, under
// the same ids. (Before schema migration 9, every row of queries held the
// session's columns, with an index each for user, target and source.)
//
// Entries are written in the background by a Writer (group commit: one
// transaction per batch of whatever is queued, at most one every
// CommitInterval) that applies backpressure rather than drop a statement,
// retries a failing store, and reports the failure to its callers once it
// has lasted FailAfter so the gateway can fail closed.
//
// It does not capture statements or decide what to block (the gateway and
// the rules engine do), it never sees parameter values (only their
// number), and it does not prune old entries.
package querylog

import (
	"encoding/json"
	"time"
)

// Outcomes of a statement, in Entry.Outcome.
const (
	// OutcomeOK: the server completed the statement.
	OutcomeOK = "ok"
	// OutcomeError: the server answered with an error (SQLState, Error).
	OutcomeError = "error"
	// OutcomeBlocked: Vigil refused the statement (Rule) and never sent it.
	OutcomeBlocked = "blocked"
	// OutcomeCancelled: the statement was cancelled before it completed
	// (a cancel request, or the session terminated).
	OutcomeCancelled = "cancelled"
	// OutcomeIncomplete: the session ended before the statement's outcome
	// was known.
	OutcomeIncomplete = "incomplete"
)

// outcomes are the valid values of Entry.Outcome.
var outcomes = []string{OutcomeOK, OutcomeError, OutcomeBlocked, OutcomeCancelled, OutcomeIncomplete}

// Entry is one statement a database session sent, with its outcome. The
// zero value is not a valid entry: Session, Seq and Outcome are required.
type Entry struct {
	// Session is the ID of the database session.
	Session string `json:"session"`
	// Seq is the statement's number within the session, from 1; (Session,
	// Seq) identifies an entry.
	Seq int64 `json:"seq"`
	// Time is when the statement was sent; Writer.Append sets it when zero.
	Time time.Time `json:"time"`
	// User is the Vigil user (the token's subject).
	User string `json:"user"`
	// Target is the target's name.
	Target string `json:"target"`
	// Login is the database role the session runs as.
	Login string `json:"login"`
	// Database is the database the session is connected to.
	Database string `json:"database"`
	// Source is the client's address.
	Source string `json:"source"`
	// Protocol is how the statement was sent: "simple", "extended" or
	// "function".
	Protocol string `json:"protocol"`
	// Statement is the SQL text.
	Statement string `json:"statement"`
	// Params is the number of bound parameters (values are never stored).
	Params int `json:"params,omitempty"`
	// Duration is from sending the statement to its outcome; in JSON it is
	// an integer number of microseconds, duration_us.
	Duration time.Duration `json:"duration_us"`
	// Rows is the number of rows returned or affected.
	Rows int64 `json:"rows"`
	// Tag is the CommandComplete tag, e.g. "SELECT 5".
	Tag string `json:"tag,omitempty"`
	// Outcome is one of OutcomeOK, OutcomeError, OutcomeBlocked,
	// OutcomeCancelled and OutcomeIncomplete.
	Outcome string `json:"outcome"`
	// SQLState is the error's SQLSTATE code when the server answered with
	// an error.
	SQLState string `json:"sqlstate,omitempty"`
	// Error is the error message, from the server or from Vigil.
	Error string `json:"error,omitempty"`
	// Rule is the rule that blocked (or flagged) the statement.
	Rule string `json:"rule,omitempty"`
	// Masked is the number of values Vigil masked in the result.
	Masked int `json:"masked,omitempty"`
}

// Stored is an entry as stored, with its ID: increasing in the order
// entries were stored, the cursor for paging (Query.After, Result.Next).
type Stored struct {
	ID int64 `json:"id"`
	Entry
}

// entryFields is Entry without its JSON methods, for them to build on.
type entryFields Entry

// MarshalJSON encodes e with its Duration as integer microseconds.
func (e Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		entryFields
		Duration int64 `json:"duration_us"`
	}{entryFields(e), e.Duration.Microseconds()})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (e *Entry) UnmarshalJSON(b []byte) error {
	v := struct {
		*entryFields
		Duration int64 `json:"duration_us"`
	}{entryFields: (*entryFields)(e)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	e.Duration = time.Duration(v.Duration) * time.Microsecond
	return nil
}

// MarshalJSON encodes s as its entry with an "id" field. (Without it the
// embedded Entry's MarshalJSON would be promoted and drop the ID.)
func (s Stored) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID int64 `json:"id"`
		entryFields
		Duration int64 `json:"duration_us"`
	}{s.ID, entryFields(s.Entry), s.Duration.Microseconds()})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *Stored) UnmarshalJSON(b []byte) error {
	if err := s.Entry.UnmarshalJSON(b); err != nil {
		return err
	}
	var id struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return err
	}
	s.ID = id.ID
	return nil
}
