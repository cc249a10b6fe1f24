package pggw

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/vault"
)

// Upstream TLS modes of a PostgreSQL target (vault.Target.TLS).
const (
	// TLSDisable connects in the clear.
	TLSDisable = "disable"
	// TLSRequire encrypts without checking the server's certificate; the
	// credential then goes only by SCRAM with channel binding, which a
	// man in the middle cannot relay or read.
	TLSRequire = "require"
	// TLSVerifyFull checks the certificate against the target's CA (or
	// the system roots) and the host name. The default when the target
	// has a CA.
	TLSVerifyFull = "verify-full"
)

// upstreamError is a failed upstream login: reason for the audit log,
// userMsg for the client (never the credential).
type upstreamError struct {
	reason  string
	userMsg string
	state   string // SQLSTATE for the client; "" means connection_failure
	err     error
}

func (e *upstreamError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

func (e *upstreamError) code() string {
	if e.state == "" {
		return stateConnectionFailure
	}
	return e.state
}

// passParams are the client's startup parameters passed to the database;
// the others (options, role, session_authorization, the read-only
// settings, replication) are dropped: they could undo what Vigil
// enforces.
var passParams = map[string]bool{
	"application_name": true, "client_encoding": true, "DateStyle": true, "TimeZone": true,
	"extra_float_digits": true, "IntervalStyle": true, "search_path": true, "lc_messages": true,
	"lc_monetary": true, "lc_numeric": true, "lc_time": true, "bytea_output": true, "statement_timeout": true,
	"lock_timeout": true, "idle_in_transaction_session_timeout": true, "geqo": true, "jit": true,
}

// tlsConfig returns how Vigil reaches t: nil for TLSDisable.
func tlsConfig(t vault.Target, host string) (*tls.Config, error) {
	mode := t.TLS
	if mode == "" {
		mode = TLSRequire
		if t.TLSCA != "" {
			mode = TLSVerifyFull
		}
	}
	switch mode {
	case TLSDisable:
		return nil, nil
	case TLSRequire:
		return &tls.Config{InsecureSkipVerify: true, ServerName: host, MinVersion: tls.VersionTLS12}, nil
	case TLSVerifyFull:
		cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if t.TLSCA != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(t.TLSCA)) {
				return nil, errors.New("the target's CA certificate is not valid PEM")
			}
			cfg.RootCAs = pool
		}
		return cfg, nil
	}
	return nil, fmt.Errorf("unknown TLS mode %q", mode)
}

// authPolicy is how Vigil lets the database ask for its credential:
// over a verified TLS connection any way the server asks (its identity
// is proven); otherwise only by SCRAM, which never reveals the password,
// and with TLS only with channel binding, so a man in the middle that
// ends the TLS cannot relay the exchange either. A server that asks for
// the password in the clear or by MD5 is refused.
func authPolicy(tc *tls.Config) (requireAuth, channelBinding string) {
	switch {
	case tc == nil:
		return "scram-sha-256", "disable"
	case tc.InsecureSkipVerify:
		return "scram-sha-256", "require"
	}
	return "", "prefer"
}

// connectUpstream logs in to the target as the grant's login with the
// vault's credential, reads which columns are masked by name (into
// info.masked) and hijacks the connection. A read-only session starts
// with default_transaction_read_only on.
func (s *Server) connectUpstream(ctx context.Context, info *authInfo, params map[string]string) (*pgconn.HijackedConn, error) {
	t := info.target
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	fail := func(reason, userMsg, state string, err error) (*pgconn.HijackedConn, error) {
		return nil, &upstreamError{reason: reason, userMsg: userMsg, state: state, err: err}
	}
	cred, err := s.cfg.Vault.Credential(ctx, t)
	if err != nil {
		return fail("credential", "Vigil cannot open the credential for "+t.Name, "", err)
	}
	host, portStr, err := net.SplitHostPort(t.Addr)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil {
		return fail("address", "the address of "+t.Name+" is not valid", "", fmt.Errorf("address %q", t.Addr))
	}
	tc, err := tlsConfig(t, host)
	if err != nil {
		return fail("tls_config", "Vigil's TLS settings for "+t.Name+" are not valid", "", err)
	}
	cfg, err := pgconn.ParseConfig("")
	if err != nil {
		return fail("config", "the connection to "+t.Name+" failed", "", err)
	}
	// ParseConfig also reads the PG* environment of Vigil's process: every
	// setting it could take from there is set here.
	cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password = host, uint16(port), t.Database, info.login, cred.Password
	cfg.TLSConfig, cfg.Fallbacks, cfg.SSLNegotiation, cfg.SSLCertMode = tc, nil, "", "disable"
	cfg.KerberosSrvName, cfg.KerberosSpn, cfg.OAuthTokenProvider = "", "", nil
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	cfg.RequireAuth, cfg.ChannelBinding = authPolicy(tc)
	cfg.ConnectTimeout = s.cfg.DialTimeout
	cfg.DialFunc = pgconn.DialFunc(s.cfg.Dial)
	cfg.ValidateConnect, cfg.AfterConnect, cfg.OnNotice, cfg.OnNotification, cfg.OnPgError = nil, nil, nil, nil, nil
	cfg.RuntimeParams = map[string]string{}
	for k, v := range params {
		if passParams[k] {
			cfg.RuntimeParams[k] = v
		}
	}
	// Vigil's SQL checks read statements as UTF-8 with standard
	// conforming strings: the session starts that way whatever the
	// role's or database's defaults say.
	if enc := cfg.RuntimeParams["client_encoding"]; enc == "" || strings.EqualFold(enc, "auto") {
		cfg.RuntimeParams["client_encoding"] = "UTF8"
	}
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "vigil"
	}
	if info.readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && (pe.Code == stateInvalidPassword || pe.Code == stateInvalidAuthSpec):
			return fail("credential_refused", t.Name+" refused Vigil's credential for "+info.login, stateRejectedConnection, errors.New(pe.Error()))
		case errors.As(err, &pe):
			return fail("refused", t.Name+" refused the connection: "+pe.Message, pe.Code, errors.New(pe.Error()))
		case strings.Contains(err.Error(), "tls") || strings.Contains(err.Error(), "x509") || strings.Contains(err.Error(), "certificate"):
			return fail("tls", "the TLS connection to "+t.Name+" failed", "", scrub(err, cred.Password))
		default:
			return fail("unreachable", "cannot reach "+t.Name, "", scrub(err, cred.Password))
		}
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return fail("connect", "the connection to "+t.Name+" failed", "", scrub(err, cred.Password))
	}
	if s.cfg.Masking.MasksColumns() {
		if info.masked, err = maskedColumns(ctx, pc, s.cfg.Masking); err != nil {
			pc.Close(context.Background())
			msg := "Vigil cannot read which columns of " + t.Name + " to mask"
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				msg += ": " + pe.Message
			}
			return fail("catalog", msg, "", scrub(err, cred.Password))
		}
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return fail("connect", "the connection to "+t.Name+" failed", "", err)
	}
	return hj, nil
}

// scrub returns err with the credential, should a driver ever quote it,
// replaced.
func scrub(err error, secret string) error {
	msg := err.Error()
	if secret != "" && strings.Contains(msg, secret) {
		msg = strings.ReplaceAll(msg, secret, "[redacted]")
	}
	return errors.New(msg)
}

// cancelUpstream asks the database to cancel the session's running
// statement, with the upstream's own key (the client only ever sees
// Vigil's). Like libpq before PostgreSQL 17 it sends the request in the
// clear; the server answers nothing.
func (c *conn) cancelUpstream(from netip.Addr) {
	t := c.info.target
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.s.cfg.DialTimeout)
	defer cancel()
	err := func() error {
		nc, err := c.s.cfg.Dial(ctx, "tcp", t.Addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(c.s.cfg.DialTimeout))
		if err := writeMsg(nc, &pgproto3.CancelRequest{ProcessID: c.info.up.PID, SecretKey: c.info.up.SecretKey}); err != nil {
			return err
		}
		io.Copy(io.Discard, nc) // the server closes when it has the request
		return nil
	}()
	data := map[string]any{"from": from.String()}
	if err != nil {
		data["error"] = err.Error()
	}
	c.audit("db.cancel", data)
}
