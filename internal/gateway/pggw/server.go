// Package pggw owns Vigil's PostgreSQL gateway: it accepts stock
// PostgreSQL clients (psql, pgbench, JDBC, pgx, DBeaver) that present a
// Vigil token as their password, with dbname naming the target and user
// the login; checks the token's grant (the query action, optionally
// read-only); logs in to the database with the vault's credential (SCRAM,
// TLS) that the user never sees; and relays the session while capturing
// every statement (simple and extended protocol) with its timing, row
// count and outcome, applying SQL rules (a blocked statement never
// reaches the database) and masking sensitive values in results.
//
// It speaks the wire protocol with pgproto3's message types: the startup
// phase (SSLRequest and TLS, PostgreSQL 17 direct TLS, GSSENC refused,
// protocol 3.0 and 3.2, CancelRequest) is Vigil's own; the upstream login
// is pgconn's, after which the connection is hijacked and relayed message
// by message, the messages Vigil does not need to look at passing through
// as raw frames.
//
// Files: server.go (listener, startup negotiation, TLS), auth.go (the
// token, the grant, the target), upstream.go (the database login,
// cancellation), conn.go (one session's lifetime), relay.go (the two
// message pumps), track.go (which response answers which request, the
// statement log), guard.go (rules, read-only, blocking), transcript.go
// (the recording), tls.go (the gateway's certificate).
package pggw

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/gateway"
	"github.com/vigil-pam/vigil/internal/masking"
	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/querylog"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
)

// Defaults for Config's limits.
const (
	// DefaultStartupTimeout bounds everything before the session starts:
	// TLS, the startup packet, the password and the upstream login.
	DefaultStartupTimeout = 20 * time.Second
	// DefaultDialTimeout bounds the upstream connect and login.
	DefaultDialTimeout = 10 * time.Second
	// DefaultIdleTimeout ends a session with no traffic either way.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultExpiryWarning is how long before the token expires the user
	// is warned that the session will end.
	DefaultExpiryWarning = 5 * time.Minute
	// DefaultMaxMessage caps one client message (a query, a bind, a
	// chunk of COPY data). PostgreSQL's own limit is 1 GiB.
	DefaultMaxMessage = 64 << 20
	// DefaultRecordRows caps the result rows each statement writes into
	// the recording's transcript; the statement log has every count.
	DefaultRecordRows = 1000
)

// QueryLog stores the statement log; *querylog.Writer implements it.
type QueryLog interface {
	Append(ctx context.Context, e querylog.Entry) error
}

// Alerter raises alerts; *alert.Store implements it.
type Alerter = gateway.Alerter

// Config wires the gateway. Fields without a stated default are required.
type Config struct {
	// Certificate is the gateway's TLS certificate.
	Certificate tls.Certificate
	// AllowPlaintextLoopback lets clients on a loopback address log in
	// without TLS. Everyone else must use TLS: the token is sent as a
	// cleartext password.
	AllowPlaintextLoopback bool
	Verifier               *token.Verifier
	Vault                  *vault.Vault
	// Grants resolves stored grants for tokens of external issuers.
	Grants *policy.Grants
	// Locks bars users and targets; nil means no locks (tests).
	Locks    *policy.Locks
	Sessions *session.Store
	// Rules is the real-time rules engine; nil means no rules (tests).
	Rules *rules.Engine
	// DefaultRulePacks apply to targets that enable none of their own.
	DefaultRulePacks []string
	// Alerts receives rule hits as alerts; nil means audit events only.
	Alerts Alerter
	// EnforceOnBreakGlass applies rule actions on break-glass sessions
	// too; by default they are reduced to alerts there.
	EnforceOnBreakGlass bool
	// Masking says which result values are masked.
	Masking *masking.Masker
	// QueryLog receives every statement.
	QueryLog QueryLog
	// Live is the registry live sessions join; nil means the gateway's own.
	Live  *session.Registry
	Audit audit.Sink
	// Unauthenticated takes the audit events of connections that did
	// not log in (refused logins, garbage); nil means Audit. Vigil puts a
	// gateway.Throttle there, so that anyone who can connect cannot
	// fill the audit log.
	Unauthenticated audit.Sink
	// RecordingsDir is where recordings are written, encrypted to
	// RecordingKeys.
	RecordingsDir string
	RecordingKeys *recording.Keys
	Log           *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Dial connects to targets; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Limits; zero means the Default* constant.
	StartupTimeout time.Duration
	DialTimeout    time.Duration
	IdleTimeout    time.Duration
	ExpiryWarning  time.Duration
	MaxMessage     int
	// RecordRows caps the rows per statement in the transcript; negative
	// records none.
	RecordRows int
}

// Server is the PostgreSQL gateway.
type Server struct {
	cfg    Config
	tlsCfg *tls.Config

	// mu guards conns and keys.
	mu    sync.Mutex
	conns map[*conn]struct{}
	// keys maps the process IDs handed to clients to their sessions, for
	// CancelRequest.
	keys map[uint32]*conn
}

// New returns a gateway for cfg.
func New(cfg Config) (*Server, error) {
	if len(cfg.Certificate.Certificate) == 0 || cfg.Verifier == nil || cfg.Vault == nil || cfg.Sessions == nil || cfg.Audit == nil ||
		cfg.Log == nil || cfg.RecordingsDir == "" || cfg.QueryLog == nil {
		return nil, errors.New("pggw: incomplete configuration")
	}
	if !cfg.RecordingKeys.CanEncrypt() {
		return nil, errors.New("pggw: incomplete configuration: no recording keys to encrypt to")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Unauthenticated == nil {
		cfg.Unauthenticated = cfg.Audit
	}
	if cfg.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	for _, d := range []*time.Duration{&cfg.StartupTimeout, &cfg.DialTimeout, &cfg.IdleTimeout, &cfg.ExpiryWarning} {
		if *d < 0 {
			return nil, errors.New("pggw: negative timeout")
		}
	}
	setDefault(&cfg.StartupTimeout, DefaultStartupTimeout)
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.ExpiryWarning, DefaultExpiryWarning)
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.RecordRows == 0 {
		cfg.RecordRows = DefaultRecordRows
	}
	if cfg.Masking == nil {
		m, err := masking.New(masking.Config{})
		if err != nil {
			return nil, fmt.Errorf("pggw: masking: %w", err)
		}
		cfg.Masking = m
	}
	if cfg.Live == nil {
		cfg.Live = session.NewRegistry(cfg.Now)
	}
	s := &Server{cfg: cfg, conns: map[*conn]struct{}{}, keys: map[uint32]*conn{}}
	s.tlsCfg = &tls.Config{
		Certificates: []tls.Certificate{cfg.Certificate},
		MinVersion:   tls.VersionTLS12,
		// PostgreSQL 17 clients send ALPN "postgresql"; direct TLS
		// requires it (see negotiate).
		NextProtos: []string{"postgresql"},
	}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// Serve accepts connections on ln until ctx ends, then closes the
// listener and ends every live session (recording and auditing their end)
// before returning.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return gateway.Serve(ctx, "pggw", ln, func(nc net.Conn) { s.handle(ctx, nc) }, s.closeAll)
}

// closeAll ends every live session, at shutdown, all at once: each may
// wait up to notifyTimeout on a client that does not read.
func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.terminate(&ended{reason: "gateway shutting down", code: stateAdminShutdown}) })
	}
	wg.Wait()
}

// client is the client side of a connection during startup.
type client struct {
	nc     net.Conn // the raw or TLS connection
	r      *bufio.Reader
	source netip.Addr
	tls    bool
	direct bool // TLS without SSLRequest
	// params are the startup parameters; version the protocol version
	// the session speaks (3.0 or 3.2).
	params  map[string]string
	version uint32
}

// startupError is a refusal during startup: audited with reason, the
// client gets an ErrorResponse with code and msg (when it can still
// read one).
type startupError struct {
	reason string
	code   string
	msg    string
	err    error
}

func (e *startupError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

// handle runs one client connection from the first byte to the end.
func (s *Server) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	cl := &client{nc: nc, r: bufio.NewReaderSize(nc, 8192), source: gateway.AddrOf(nc.RemoteAddr())}
	nc.SetDeadline(s.cfg.Now().Add(s.cfg.StartupTimeout))
	err := s.negotiate(ctx, cl)
	if err != nil {
		if errors.Is(err, errCancelHandled) {
			return
		}
		var se *startupError
		if !errors.As(err, &se) {
			se = &startupError{reason: "startup_failed", err: err}
		}
		data := map[string]any{"reason": se.reason}
		if se.err != nil {
			data["error"] = se.err.Error()
		}
		if u := cl.params["user"]; u != "" {
			data["user"] = clip(u, 128)
		}
		s.cfg.Unauthenticated.Append(ctx, audit.Event{Type: "db.startup_failed", Target: clip(cl.params["database"], 128), Source: cl.source.String(), Data: data})
		s.cfg.Log.Debug("pg startup failed", "source", cl.source, "reason", se.reason, "err", se.err)
		if se.code != "" {
			writeMsg(cl.nc, pgError("FATAL", se.code, se.msg, ""))
		}
		return
	}
	info, err := s.login(ctx, cl)
	if err != nil {
		return // refused and audited; the client was told
	}
	c := newConn(ctx, s, cl, info)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		if s.keys[c.key.pid] == c {
			delete(s.keys, c.key.pid)
		}
		s.mu.Unlock()
	}()
	c.run()
}

// errCancelHandled ends a connection that carried a CancelRequest.
var errCancelHandled = errors.New("cancel request handled")

// negotiate runs the startup phase up to the StartupMessage: TLS (after
// an SSLRequest, or direct), GSSAPI encryption refused, a CancelRequest
// served. It leaves cl.params and cl.version set.
func (s *Server) negotiate(ctx context.Context, cl *client) error {
	for range 4 {
		first, err := cl.r.Peek(1)
		if err != nil {
			return &startupError{reason: "no_startup", err: err}
		}
		if first[0] == tlsHandshakeByte {
			if cl.tls {
				return &startupError{reason: "protocol_violation", err: errors.New("TLS handshake inside TLS")}
			}
			if err := s.startTLS(cl, true); err != nil {
				return err
			}
			continue
		}
		body, err := readStartup(cl.r)
		if err != nil {
			return &startupError{reason: "malformed_startup", code: stateProtocolViolation, msg: "invalid startup packet", err: err}
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == codeSSLRequest:
			if cl.tls {
				return &startupError{reason: "protocol_violation", code: stateProtocolViolation, msg: "SSLRequest inside TLS", err: errors.New("SSLRequest inside TLS")}
			}
			if cl.r.Buffered() > 0 {
				// Bytes sent after the SSLRequest before our answer would be
				// read as if they came over TLS (CVE-2021-23214).
				return &startupError{reason: "protocol_violation", err: errors.New("data after SSLRequest before the answer")}
			}
			if _, err := cl.nc.Write([]byte{'S'}); err != nil {
				return &startupError{reason: "client_gone", err: err}
			}
			if err := s.startTLS(cl, false); err != nil {
				return err
			}
		case code == codeGSSENCRequest:
			// Vigil does not speak GSSAPI encryption: 'N' makes libpq
			// carry on with an SSLRequest or in the clear.
			if _, err := cl.nc.Write([]byte{'N'}); err != nil {
				return &startupError{reason: "client_gone", err: err}
			}
		case code == codeCancelRequest:
			s.cancel(ctx, cl, body)
			return errCancelHandled
		case code>>16 == 3:
			return s.startupMessage(cl, code, body)
		default:
			return &startupError{reason: "unsupported_protocol", code: stateFeatureNotSupp,
				msg: fmt.Sprintf("unsupported frontend protocol %d.%d: Vigil speaks 3.0 to 3.2", code>>16, code&0xffff)}
		}
	}
	return &startupError{reason: "protocol_violation", code: stateProtocolViolation, msg: "too many startup packets"}
}

// readStartup reads one length-prefixed startup packet (without a type
// byte) and returns its body.
func readStartup(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:]))) - 4
	if n < 4 || n > maxStartupPacket {
		return nil, fmt.Errorf("startup packet length %d", n+4)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// startTLS runs the TLS handshake on cl. A direct handshake (no
// SSLRequest) must negotiate ALPN "postgresql", as PostgreSQL requires:
// anything else speaking TLS at the port (a browser, a scanner) is
// refused.
func (s *Server) startTLS(cl *client, direct bool) error {
	raw := &prefixConn{Conn: cl.nc, r: cl.r}
	tc := tls.Server(raw, s.tlsCfg)
	if err := tc.Handshake(); err != nil {
		reason := "tls_failed"
		if direct {
			reason = "tls_without_sslrequest"
		}
		return &startupError{reason: reason, err: err}
	}
	if direct && tc.ConnectionState().NegotiatedProtocol != "postgresql" {
		tc.Close()
		return &startupError{reason: "tls_without_sslrequest",
			err: errors.New(`a TLS connection without SSLRequest must negotiate ALPN "postgresql"`)}
	}
	cl.nc, cl.r, cl.tls, cl.direct = tc, bufio.NewReaderSize(tc, 8192), true, direct
	return nil
}

// prefixConn reads through r (which may hold bytes already read off
// Conn) and writes to Conn.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// startupMessage parses the StartupMessage: the protocol version and
// the parameters. A 3.x client newer than 3.2, or one asking for
// protocol options, is told what Vigil speaks (NegotiateProtocolVersion).
func (s *Server) startupMessage(cl *client, version uint32, body []byte) error {
	params := map[string]string{}
	var unknown []string
	rest := body[4:]
	for len(rest) > 0 && rest[0] != 0 {
		k, r, ok := cstring(rest)
		if !ok {
			return &startupError{reason: "malformed_startup", code: stateProtocolViolation, msg: "invalid startup packet layout"}
		}
		v, r, ok := cstring(r)
		if !ok {
			return &startupError{reason: "malformed_startup", code: stateProtocolViolation, msg: "invalid startup packet layout"}
		}
		rest = r
		if strings.HasPrefix(k, "_pq_.") {
			unknown = append(unknown, k)
			continue
		}
		params[k] = v
	}
	cl.params = params
	cl.version = version
	if minor := version & 0xffff; minor > 2 || len(unknown) > 0 {
		cl.version = min(version, pgproto3.ProtocolVersion32)
		if err := writeMsg(cl.nc, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: cl.version & 0xffff, UnrecognizedOptions: unknown}); err != nil {
			return &startupError{reason: "client_gone", err: err}
		}
	}
	if cl.version != pgproto3.ProtocolVersion30 && cl.version != pgproto3.ProtocolVersion32 {
		return &startupError{reason: "unsupported_protocol", code: stateFeatureNotSupp, msg: "unsupported frontend protocol 3.1"}
	}
	if params["replication"] != "" && params["replication"] != "false" && params["replication"] != "off" && params["replication"] != "0" {
		return &startupError{reason: "replication_refused", code: stateFeatureNotSupp, msg: "Vigil does not relay replication connections"}
	}
	if enc := params["client_encoding"]; unsafeEncoding(enc) {
		return &startupError{reason: "unsafe_encoding", code: stateFeatureNotSupp,
			msg: fmt.Sprintf("client_encoding %s is not supported through Vigil: use UTF8", clip(enc, 32))}
	}
	if !cl.tls && !(s.cfg.AllowPlaintextLoopback && cl.source.IsLoopback()) {
		return &startupError{reason: "tls_required", code: stateInvalidAuthSpec,
			msg: "Vigil requires TLS: connect with sslmode=require (the token is sent as the password)"}
	}
	return nil
}

// unsafeEncoding reports whether a client encoding can carry a
// backslash or quote as the second byte of a character (PostgreSQL's
// client-only encodings): SQL in it reads differently to Vigil's checks
// than to the database.
func unsafeEncoding(enc string) bool {
	// PostgreSQL compares encoding names by their letters and digits only.
	var b strings.Builder
	for _, r := range strings.ToLower(enc) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
		}
	}
	switch b.String() {
	case "sjis", "shiftjis", "shiftjis2004", "mskanji", "big5", "gbk", "uhc", "gb18030", "johab",
		"win932", "win936", "win949", "win950", "windows932", "windows936", "windows949", "windows950",
		"cp932", "cp936", "cp949", "cp950", "tcvn", "tcvn5712", "abc", "vscii":
		return true
	}
	return false
}

// backendKey is the process ID and secret a client is given for
// CancelRequest: Vigil's own, mapped to the upstream's.
type backendKey struct {
	pid    uint32
	secret []byte
}

// newKey gives c a fresh key for a session on protocol version, unique
// among the live sessions, and registers c under it.
func (s *Server) newKey(c *conn, version uint32) {
	n := 4
	if version >= pgproto3.ProtocolVersion32 {
		n = 32 // 3.2 allows up to 256 bytes; 256 bits is plenty
	}
	k := backendKey{secret: make([]byte, n)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var b [4]byte
		rand.Read(b[:])
		k.pid = binary.BigEndian.Uint32(b[:]) & 0x7fffffff
		if _, taken := s.keys[k.pid]; !taken && k.pid != 0 {
			break
		}
	}
	rand.Read(k.secret)
	c.key = k // under s.mu: cancel reads it under s.mu too
	s.keys[k.pid] = c
}

// cancel serves a CancelRequest: the session holding the process ID
// and secret has its running statement cancelled upstream. As in
// PostgreSQL, the requester gets no answer either way; both outcomes are
// audited.
func (s *Server) cancel(ctx context.Context, cl *client, body []byte) {
	if len(body) < 12 {
		s.cfg.Unauthenticated.Append(ctx, audit.Event{Type: "db.cancel_refused", Source: cl.source.String(), Data: map[string]any{"reason": "malformed"}})
		return
	}
	pid := binary.BigEndian.Uint32(body[4:8])
	secret := body[8:]
	s.mu.Lock()
	c := s.keys[pid]
	ok := c != nil && subtle.ConstantTimeCompare(secret, c.key.secret) == 1
	s.mu.Unlock()
	if !ok {
		s.cfg.Unauthenticated.Append(ctx, audit.Event{Type: "db.cancel_refused", Source: cl.source.String(), Data: map[string]any{"reason": "unknown_key"}})
		return
	}
	c.cancelUpstream(cl.source)
}

// clip shortens s to n bytes for the audit log.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
