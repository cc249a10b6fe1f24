package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations are applied in order, each once, each in its own transaction.
// Never edit a migration that has shipped: append a new one.
var migrations = []string{
	// 1: foundation — metadata, signing keys, revocations, audit, grants.
	`CREATE TABLE meta (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE signing_keys (
		kid           TEXT PRIMARY KEY,
		alg           TEXT NOT NULL,
		private_key   TEXT NOT NULL,
		created_at    BIGINT NOT NULL,
		retired_at    BIGINT NOT NULL DEFAULT 0,
		publish_until BIGINT NOT NULL DEFAULT 0
	);
	CREATE TABLE revoked_tokens (
		issuer     TEXT NOT NULL,
		jti        TEXT NOT NULL,
		revoked_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		revoked_by TEXT NOT NULL,
		reason     TEXT NOT NULL,
		PRIMARY KEY (issuer, jti)
	);
	CREATE TABLE audit_events (
		seq       BIGINT PRIMARY KEY,
		time      BIGINT NOT NULL,
		type      TEXT NOT NULL,
		actor     TEXT NOT NULL,
		target    TEXT NOT NULL,
		session   TEXT NOT NULL,
		source    TEXT NOT NULL,
		data      TEXT NOT NULL,
		prev_hash TEXT NOT NULL,
		hash      TEXT NOT NULL
	);
	CREATE INDEX audit_events_type_time ON audit_events (type, time);
	CREATE INDEX audit_events_actor_time ON audit_events (actor, time);
	CREATE TABLE grants (
		id         TEXT PRIMARY KEY,
		subject    TEXT NOT NULL,
		role       TEXT NOT NULL,
		target     TEXT NOT NULL,
		login      TEXT NOT NULL,
		actions    TEXT NOT NULL,
		max_ttl    BIGINT NOT NULL,
		time_window TEXT NOT NULL,
		source_cidrs TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		created_by TEXT NOT NULL
	);
	CREATE INDEX grants_subject ON grants (subject);
	CREATE INDEX grants_role ON grants (role);`,
	// 2: targets with sealed credentials; sessions.
	`CREATE TABLE targets (
		name        TEXT PRIMARY KEY,
		kind        TEXT NOT NULL,
		addr        TEXT NOT NULL,
		login       TEXT NOT NULL,
		auth        TEXT NOT NULL,
		secret      TEXT NOT NULL,
		host_key    TEXT NOT NULL,
		database    TEXT NOT NULL,
		labels      TEXT NOT NULL,
		fail_open   BIGINT NOT NULL,
		created_at  BIGINT NOT NULL,
		created_by  TEXT NOT NULL
	);
	CREATE TABLE sessions (
		id          TEXT PRIMARY KEY,
		kind        TEXT NOT NULL,
		subject     TEXT NOT NULL,
		jti         TEXT NOT NULL,
		target      TEXT NOT NULL,
		login       TEXT NOT NULL,
		source      TEXT NOT NULL,
		started_at  BIGINT NOT NULL,
		ended_at    BIGINT NOT NULL,
		state       TEXT NOT NULL,
		end_reason  TEXT NOT NULL,
		exit_status BIGINT NOT NULL,
		bytes_up    BIGINT NOT NULL,
		bytes_down  BIGINT NOT NULL,
		recording   TEXT NOT NULL,
		digest      TEXT NOT NULL,
		commands    TEXT NOT NULL
	);
	CREATE INDEX sessions_started ON sessions (started_at);`,
	// 3: locks on users and targets.
	`CREATE TABLE locks (
		id         TEXT PRIMARY KEY,
		subject    TEXT NOT NULL,
		target     TEXT NOT NULL,
		reason     TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		created_by TEXT NOT NULL
	);`,
	// 4: alerts (rule hits, monitor findings) and per-sink delivery
	// cursors; rule packs enabled per target.
	`CREATE TABLE alerts (
		id          BIGINT PRIMARY KEY,
		time        BIGINT NOT NULL,
		last_time   BIGINT NOT NULL,
		severity    TEXT NOT NULL,
		kind        TEXT NOT NULL,
		rule        TEXT NOT NULL,
		actor       TEXT NOT NULL,
		target      TEXT NOT NULL,
		session     TEXT NOT NULL,
		source      TEXT NOT NULL,
		summary     TEXT NOT NULL,
		data        TEXT NOT NULL,
		dedup_key   TEXT NOT NULL,
		count       BIGINT NOT NULL,
		acked_by    TEXT NOT NULL,
		acked_at    BIGINT NOT NULL,
		ack_note    TEXT NOT NULL
	);
	CREATE INDEX alerts_dedup ON alerts (dedup_key, last_time);
	CREATE TABLE alert_cursors (
		sink       TEXT PRIMARY KEY,
		delivered  BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	ALTER TABLE targets ADD COLUMN rule_packs TEXT NOT NULL DEFAULT '';`,
	// 5: tamper evidence (audit signing keys, signed checkpoints, archive
	// boundaries), search (more indexes, full text), SIEM forwarding
	// cursors, recording retention and legal holds.
	`CREATE TABLE audit_keys (
		kid         TEXT PRIMARY KEY,
		public_key  TEXT NOT NULL,
		private_key TEXT NOT NULL,
		created_at  BIGINT NOT NULL,
		retired_at  BIGINT NOT NULL
	);
	CREATE TABLE audit_checkpoints (
		seq       BIGINT PRIMARY KEY,
		hash      TEXT NOT NULL,
		time      BIGINT NOT NULL,
		kid       TEXT NOT NULL,
		signature TEXT NOT NULL
	);
	CREATE TABLE audit_archives (
		id         TEXT PRIMARY KEY,
		first_seq  BIGINT NOT NULL,
		last_seq   BIGINT NOT NULL,
		last_hash  TEXT NOT NULL,
		file       TEXT NOT NULL,
		digest     TEXT NOT NULL,
		events     BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		created_by TEXT NOT NULL
	);
	CREATE INDEX audit_events_time ON audit_events (time);
	CREATE INDEX audit_events_target_time ON audit_events (target, time);
	CREATE INDEX audit_events_session ON audit_events (session, seq);
	CREATE INDEX audit_events_source_time ON audit_events (source, time);
	CREATE VIRTUAL TABLE audit_fts USING fts5(text, content='', contentless_delete=1);
	CREATE TABLE audit_forward_cursors (
		sink       TEXT PRIMARY KEY,
		seq        BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE legal_holds (
		id          TEXT PRIMARY KEY,
		session     TEXT NOT NULL,
		target      TEXT NOT NULL,
		subject     TEXT NOT NULL,
		reason      TEXT NOT NULL,
		created_at  BIGINT NOT NULL,
		created_by  TEXT NOT NULL,
		released_at BIGINT NOT NULL,
		released_by TEXT NOT NULL
	);
	ALTER TABLE sessions ADD COLUMN disposed_at BIGINT NOT NULL DEFAULT 0;
	CREATE INDEX sessions_subject ON sessions (subject, started_at);`,
	// 6: break-glass accounts (secrets as Argon2id hashes, single use per
	// arming, persisted failure count and lockout), their uses (with the
	// post-incident review) and the break-glass flag on sessions. The
	// unique (account, generation) index backs the single-use
	// compare-and-swap: one use per arming, whatever races.
	`CREATE TABLE breakglass_accounts (
		name         TEXT PRIMARY KEY,
		targets      TEXT NOT NULL,
		max_ttl      BIGINT NOT NULL,
		two_person   BIGINT NOT NULL,
		hashes       TEXT NOT NULL,
		generation   BIGINT NOT NULL,
		armed        BIGINT NOT NULL,
		failures     BIGINT NOT NULL,
		locked_until BIGINT NOT NULL,
		used_jti     TEXT NOT NULL,
		used_at      BIGINT NOT NULL,
		armed_at     BIGINT NOT NULL,
		armed_by     TEXT NOT NULL,
		created_at   BIGINT NOT NULL,
		created_by   TEXT NOT NULL
	);
	CREATE TABLE breakglass_uses (
		jti         TEXT PRIMARY KEY,
		account     TEXT NOT NULL,
		generation  BIGINT NOT NULL,
		subject     TEXT NOT NULL,
		target      TEXT NOT NULL,
		login       TEXT NOT NULL,
		reason      TEXT NOT NULL,
		ttl         BIGINT NOT NULL,
		time        BIGINT NOT NULL,
		expires_at  BIGINT NOT NULL,
		source      TEXT NOT NULL,
		alert_id    BIGINT NOT NULL,
		expired_at  BIGINT NOT NULL,
		reviewed_by TEXT NOT NULL,
		reviewed_at BIGINT NOT NULL,
		note        TEXT NOT NULL
	);
	CREATE UNIQUE INDEX breakglass_uses_arming ON breakglass_uses (account, generation);
	CREATE INDEX breakglass_uses_expiry ON breakglass_uses (expired_at, expires_at);
	ALTER TABLE sessions ADD COLUMN breakglass BIGINT NOT NULL DEFAULT 0;`,
	// 7: the PostgreSQL gateway's statement log (one row per statement a
	// database session sent, with its outcome; parameter values are never
	// stored, only their number) with full-text search over the
	// statement, and how Vigil reaches a PostgreSQL target over TLS.
	`CREATE TABLE queries (
		id          INTEGER PRIMARY KEY,
		session     TEXT NOT NULL,
		seq         BIGINT NOT NULL,
		time        BIGINT NOT NULL,
		subject     TEXT NOT NULL,
		target      TEXT NOT NULL,
		login       TEXT NOT NULL,
		database    TEXT NOT NULL,
		source      TEXT NOT NULL,
		protocol    TEXT NOT NULL,
		statement   TEXT NOT NULL,
		params      BIGINT NOT NULL,
		duration_us BIGINT NOT NULL,
		rows        BIGINT NOT NULL,
		tag         TEXT NOT NULL,
		outcome     TEXT NOT NULL,
		sqlstate    TEXT NOT NULL,
		error       TEXT NOT NULL,
		rule        TEXT NOT NULL,
		masked      BIGINT NOT NULL
	);
	CREATE UNIQUE INDEX queries_session ON queries (session, seq);
	CREATE INDEX queries_time ON queries (time);
	CREATE INDEX queries_target ON queries (target, time);
	CREATE INDEX queries_subject ON queries (subject, time);
	CREATE INDEX queries_source ON queries (source, time);
	CREATE VIRTUAL TABLE queries_fts USING fts5(statement, content='', contentless_delete=1);
	ALTER TABLE targets ADD COLUMN tls TEXT NOT NULL DEFAULT '';
	ALTER TABLE targets ADD COLUMN tls_ca TEXT NOT NULL DEFAULT '';`,
	// 8: the statement log's full-text index merges its segments three
	// at a time rather than FTS5's default four. The writer now indexes
	// a transaction's entries at once, a segment per transaction; with
	// four, a search checking a few rows against the index (text with a
	// session or a user) had more segments to look in and took half as
	// long again. The merging costs the writer a few percent (querylog's
	// BenchmarkAppendSchema, as-is against fts-automerge4). The setting
	// is kept in queries_fts_config; the index is not rewritten.
	`INSERT INTO queries_fts (queries_fts, rank) VALUES ('automerge', 3);`,
	// 9: the statement log keeps what is constant in a database session
	// (session, user, target, login, database, client address) once per
	// session, in query_sessions, rather than on each statement's row;
	// queries refers to it by query_session_id. Storing a statement then
	// updates one index for them, queries_query_session, rather than
	// three (queries_subject, queries_target, queries_source), and rows
	// are narrower: a sixth less of the writer's CPU for a pgbench
	// stream, half for many sessions at once (querylog's
	// BenchmarkAppendSchema, pgbench-unique and mixed200). A session
	// whose entries disagree on those columns (which the gateway never
	// writes) has a query_sessions row for each combination.
	//
	// queries is rebuilt (SQLite's create, copy, drop, rename) keeping
	// each row's id, which is its rowid in queries_fts; the full-text
	// index is not touched. The old table's pages are left free in the
	// file, for later writes: the file does not shrink (VACUUM would).
	//
	// Applied again to its own result (a store whose schema_migrations
	// lost its last rows: querylog's TestUpgradeFromSchema7 re-applies
	// migrations 8 and 9), the migration changes no data. SQL cannot
	// ask whether a column exists, so queries_before_9 names both
	// layouts' columns and lets the NATURAL LEFT JOIN pick: it joins on
	// the columns queries and the one-row d both have, which match
	// nothing (they are NULL in d), so every row of queries is kept
	// once; a column both have is queries' own, one only d has is NULL.
	// Under migration 7's layout, query_session_id is NULL and the user
	// etc. are the row's; under this one, it is the row's. The sessions
	// are numbered in the order of their first entries, as the writer
	// numbers them (INSERT OR IGNORE in ID order: quicker than a GROUP
	// BY, which sorts every row). A million entries take some eight
	// seconds, and the write-ahead log grows to the size of the new
	// table and its indexes.
	`CREATE TABLE IF NOT EXISTS query_sessions (
		id       INTEGER PRIMARY KEY,
		session  TEXT NOT NULL,
		subject  TEXT NOT NULL,
		target   TEXT NOT NULL,
		login    TEXT NOT NULL,
		database TEXT NOT NULL,
		source   TEXT NOT NULL
	);
	CREATE UNIQUE INDEX IF NOT EXISTS query_sessions_tuple
		ON query_sessions (session, subject, target, login, database, source);
	CREATE INDEX IF NOT EXISTS query_sessions_subject ON query_sessions (subject);
	CREATE INDEX IF NOT EXISTS query_sessions_target ON query_sessions (target);
	CREATE INDEX IF NOT EXISTS query_sessions_source ON query_sessions (source);
	CREATE TEMP VIEW queries_before_9 AS
		SELECT q.id, q.session, q.seq, q.time, subject, target, login, database, source, query_session_id,
			q.protocol, q.statement, q.params, q.duration_us, q.rows, q.tag, q.outcome, q.sqlstate, q.error,
			q.rule, q.masked
		FROM queries q NATURAL LEFT JOIN (SELECT NULL AS subject, NULL AS target, NULL AS login,
			NULL AS database, NULL AS source, NULL AS query_session_id) d;
	INSERT OR IGNORE INTO query_sessions (session, subject, target, login, database, source)
		SELECT session, subject, target, login, database, source FROM queries_before_9
		WHERE query_session_id IS NULL ORDER BY id;
	CREATE TABLE queries_9 (
		id               INTEGER PRIMARY KEY,
		session          TEXT NOT NULL,
		seq              BIGINT NOT NULL,
		time             BIGINT NOT NULL,
		query_session_id BIGINT NOT NULL,
		protocol         TEXT NOT NULL,
		statement        TEXT NOT NULL,
		params           BIGINT NOT NULL,
		duration_us      BIGINT NOT NULL,
		rows             BIGINT NOT NULL,
		tag              TEXT NOT NULL,
		outcome          TEXT NOT NULL,
		sqlstate         TEXT NOT NULL,
		error            TEXT NOT NULL,
		rule             TEXT NOT NULL,
		masked           BIGINT NOT NULL
	);
	INSERT INTO queries_9 (id, session, seq, time, query_session_id, protocol, statement, params, duration_us,
		rows, tag, outcome, sqlstate, error, rule, masked)
		SELECT o.id, o.session, o.seq, o.time, COALESCE(o.query_session_id, s.id), o.protocol, o.statement,
			o.params, o.duration_us, o.rows, o.tag, o.outcome, o.sqlstate, o.error, o.rule, o.masked
		FROM queries_before_9 o LEFT JOIN query_sessions s ON o.query_session_id IS NULL
			AND s.session = o.session AND s.subject = o.subject AND s.target = o.target
			AND s.login = o.login AND s.database = o.database AND s.source = o.source
		ORDER BY o.id;
	DROP VIEW queries_before_9;
	DROP TABLE queries;
	ALTER TABLE queries_9 RENAME TO queries;
	CREATE UNIQUE INDEX queries_session ON queries (session, seq);
	CREATE INDEX queries_time ON queries (time);
	CREATE INDEX queries_query_session ON queries (query_session_id, time);`,
}

// SchemaVersion is the schema version this binary migrates to.
var SchemaVersion = len(migrations)

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var current int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("store: migrate: read version: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("store: database schema version %d is newer than this binary's %d; upgrade vigil", current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, v, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return nil
}

// Meta returns the value stored under name in the meta table, and whether it exists.
func (db *DB) Meta(ctx context.Context, name string) (string, bool, error) {
	var v string
	err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = $1`, name).Scan(&v)
	if err == sql.ErrNoRows {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: meta %s: %w", name, err)
	}
	return v, true, nil
}

// SetMetaOnce stores value under name unless the name already exists.
func (db *DB) SetMetaOnce(ctx context.Context, name, value string) error {
	if _, err := db.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
		return fmt.Errorf("store: meta %s: %w", name, err)
	}
	return nil
}
