package pggw

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/gateway"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
)

// maxPassword caps the password message: a token is a few KiB.
const maxPassword = 16 << 10

// authInfo is what a successful login hands to the session.
type authInfo struct {
	id       *token.Identity
	target   vault.Target
	login    string
	readOnly bool
	source   netip.Addr
	// up is the upstream connection, logged in and hijacked.
	up *pgconn.HijackedConn
	// masked are the database's columns masked by name, by their
	// sources in a RowDescription (maskedColumns); nil if masking has no
	// column patterns.
	masked map[columnSource]string
}

// login asks for the password (the token), checks it, the grant, the
// target and the locks, and logs in to the database. Every refusal is
// audited (db.auth) and answered with one FATAL ErrorResponse; token and
// grant faults all look alike to the client (28P01, no detail).
func (s *Server) login(ctx context.Context, cl *client) (*authInfo, error) {
	user, database := cl.params["user"], cl.params["database"]
	if database == "" {
		database = user // libpq's default
	}
	deny := func(reason, detail string, id *token.Identity) (*authInfo, error) {
		e := gateway.Denial("db.auth", clip(user, 128), clip(database, 128), cl.source.String(), reason, detail, id)
		if err := s.cfg.Unauthenticated.Append(ctx, e); err != nil {
			s.cfg.Log.Error("audit append failed", "type", "db.auth", "err", err)
		}
		s.cfg.Log.Info("pg auth denied", "reason", reason, "user", e.Actor, "target", database, "source", cl.source)
		writeMsg(cl.nc, pgError("FATAL", stateInvalidPassword, fmt.Sprintf("password authentication failed for user %q", user), ""))
		return nil, errors.New(reason)
	}
	if err := writeMsg(cl.nc, &pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return nil, err
	}
	mr := &msgReader{r: cl.r, max: maxPassword}
	typ, body, err := mr.next()
	if err != nil {
		var tl *errTooLarge
		if errors.As(err, &tl) {
			return deny("malformed_password", "password message too large", nil)
		}
		// The client hung up at the password prompt: psql does that to
		// ask the user for a password, and reconnects.
		s.cfg.Unauthenticated.Append(ctx, audit.Event{Type: "db.auth", Target: clip(database, 128), Source: cl.source.String(),
			Data: map[string]any{"outcome": "abandoned", "user": clip(user, 128)}})
		return nil, err
	}
	raw, _, ok := cstring(body)
	if typ != 'p' || !ok {
		return deny("malformed_password", fmt.Sprintf("expected a password message, got %q", typ), nil)
	}
	raw = strings.TrimSpace(raw)
	id, err := s.cfg.Verifier.Verify(ctx, raw, cl.source)
	if err != nil {
		var ve *token.VerifyError
		if errors.As(err, &ve) {
			return deny("token_"+string(ve.Reason), "", nil)
		}
		return deny("verification_unavailable", err.Error(), nil)
	}
	grants, err := s.cfg.Grants.Effective(ctx, id, cl.source, s.cfg.Now())
	if err != nil {
		return deny("grants_unavailable", err.Error(), id)
	}
	found, readOnly := token.QueryAccess(grants, database, user)
	if !found {
		return deny("no_grant", fmt.Sprintf("no query grant for %s on %s", clip(user, 64), clip(database, 64)), id)
	}
	t, err := s.cfg.Vault.Get(ctx, database)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && t.Kind != vault.KindPostgres) {
		return deny("unknown_target", "", id)
	}
	if err != nil {
		return deny("vault_unavailable", err.Error(), id)
	}
	if t.Login != user {
		return deny("no_credential", fmt.Sprintf("target %s has no credential for login %s", t.Name, clip(user, 64)), id)
	}
	if s.cfg.Locks != nil {
		lock, err := s.cfg.Locks.Locked(ctx, id.Claims.Subject, t.Name)
		if err != nil {
			return deny("locks_unavailable", err.Error(), id)
		}
		if lock != nil {
			return deny("locked", lock.ID+": "+lock.Reason, id)
		}
	}
	data := map[string]any{"outcome": "allowed", "login": user, "jti": id.Claims.ID, "read_only": readOnly,
		"tls": cl.tls, "protocol": fmt.Sprintf("3.%d", cl.version&0xffff)}
	if err := s.cfg.Audit.Append(ctx, audit.Event{Type: "db.auth", Actor: id.Claims.Subject, Target: t.Name, Source: cl.source.String(), Data: data}); err != nil {
		return deny("audit_unavailable", err.Error(), id)
	}
	info := &authInfo{id: id, target: t, login: user, readOnly: readOnly, source: cl.source}
	up, err := s.connectUpstream(ctx, info, cl.params)
	if err != nil {
		var ue *upstreamError
		if !errors.As(err, &ue) {
			ue = &upstreamError{reason: "connect", userMsg: "the connection to " + t.Name + " failed", err: err}
		}
		s.cfg.Audit.Append(ctx, audit.Event{Type: "session.upstream_failed", Actor: id.Claims.Subject, Target: t.Name, Source: cl.source.String(),
			Data: map[string]any{"reason": ue.reason, "error": ue.err.Error(), "addr": t.Addr, "kind": "pg"}})
		writeMsg(cl.nc, pgError("FATAL", ue.code(), ue.userMsg, ""))
		return nil, err
	}
	info.up = up
	return info, nil
}
