// Package sshgw owns Vigil's SSH gateway: it accepts stock ssh, scp and
// sftp clients that present a Vigil token as their password, checks the
// token's grant for the requested target and login, logs in to the target
// with a credential from the vault that the user never sees, and relays
// the session faithfully while recording it.
//
// It does not verify tokens (package token), store targets (package
// vault), write recordings (package recording) or keep the session record
// (package session); it wires them onto the SSH connection.
//
// Files: server.go (listener, handshake, authentication), conn.go (one
// client connection: upstream login, session lifetime), channel.go (a
// session channel: request policy and the recorded relay), forward.go
// (direct-tcpip), sftp.go (SFTP operations for the record), hostkey.go
// (the gateway's host key, target host key pinning).
package sshgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/gateway"
	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
	"golang.org/x/crypto/ssh"
)

// Defaults for Config's durations.
const (
	// DefaultHandshakeTimeout bounds the SSH handshake including
	// authentication, so a client that stalls cannot hold a connection.
	DefaultHandshakeTimeout = 20 * time.Second
	// DefaultDialTimeout bounds the upstream connect and login.
	DefaultDialTimeout = 10 * time.Second
	// DefaultIdleTimeout ends a session with no traffic either way.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultKeepalive is how often both legs are probed.
	DefaultKeepalive = 30 * time.Second
	// DefaultExpiryWarning is how long before the token expires the user
	// is warned that the session will end.
	DefaultExpiryWarning = 5 * time.Minute
)

// Ciphers are what the gateway offers by default on both legs: AES-GCM
// only, hardware accelerated on the machines Vigil runs on. In SSH the
// client's preference order decides, and OpenSSH prefers ChaCha20 (which
// x/crypto implements without assembly) and then AES-CTR with an HMAC:
// offering either would make most clients pick it, at several times the
// CPU per byte relayed. Every OpenSSH since 6.2 and PuTTY since 0.76
// speak AES-GCM; Config.Ciphers can add "aes128-ctr" for older clients.
var Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}

// DefaultEnvAllow is the environment clients may pass (the rest is refused).
var DefaultEnvAllow = []string{"LANG", "LC_*", "TZ"}

// Config wires the gateway. Fields without a stated default are required.
type Config struct {
	// HostKey is the gateway's own host key.
	HostKey  ssh.Signer
	Verifier *token.Verifier
	Vault    *vault.Vault
	// Grants resolves stored role and user grants for tokens of external
	// identity providers, which carry no grants themselves.
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
	// EnforceOnBreakGlass applies rule actions (block, pause, terminate)
	// on break-glass sessions too (config breakglass.rules: enforce).
	// False, the default, reduces them to alerts there: an emergency is
	// never blocked, but every hit is audited and alerted.
	EnforceOnBreakGlass bool
	// Live is the registry live sessions join (watch, pause, terminate,
	// locks); nil means a registry of the gateway's own.
	Live  *session.Registry
	Audit audit.Sink
	// Unauthenticated takes the audit events of connections that did
	// not log in (refused logins, garbage); nil means Audit. Vigil puts a
	// gateway.Throttle there, so that anyone who can connect cannot
	// fill the audit log.
	Unauthenticated audit.Sink
	// RecordingsDir is where recordings are written.
	RecordingsDir string
	// RecordingKeys are the age recipients recordings are encrypted to
	// (and the identities that read them back for live catch-up).
	RecordingKeys *recording.Keys
	Log           *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Dial connects to targets; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeouts; zero means the Default* constant.
	HandshakeTimeout time.Duration
	DialTimeout      time.Duration
	IdleTimeout      time.Duration
	Keepalive        time.Duration
	ExpiryWarning    time.Duration
	// EnvAllow lists environment variable names (a trailing * matches a
	// prefix) clients may set; nil means DefaultEnvAllow.
	EnvAllow []string
	// Ciphers offered to clients and targets; nil means Ciphers.
	Ciphers []string
}

// Server is the SSH gateway.
type Server struct {
	cfg    Config
	sshCfg *ssh.ServerConfig

	// mu guards conns.
	mu    sync.Mutex
	conns map[*conn]struct{}
}

// New returns a gateway for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.HostKey == nil || cfg.Verifier == nil || cfg.Vault == nil || cfg.Sessions == nil || cfg.Audit == nil || cfg.Log == nil || cfg.RecordingsDir == "" {
		return nil, errors.New("sshgw: incomplete configuration")
	}
	if !cfg.RecordingKeys.CanEncrypt() {
		return nil, errors.New("sshgw: incomplete configuration: no recording keys to encrypt to")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Unauthenticated == nil {
		cfg.Unauthenticated = cfg.Audit
	}
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	for _, d := range []*time.Duration{&cfg.HandshakeTimeout, &cfg.DialTimeout, &cfg.IdleTimeout, &cfg.Keepalive, &cfg.ExpiryWarning} {
		if *d < 0 {
			return nil, errors.New("sshgw: negative timeout")
		}
	}
	setDefault(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.Keepalive, DefaultKeepalive)
	setDefault(&cfg.ExpiryWarning, DefaultExpiryWarning)
	if cfg.EnvAllow == nil {
		cfg.EnvAllow = DefaultEnvAllow
	}
	if cfg.Ciphers == nil {
		cfg.Ciphers = Ciphers
	}
	if cfg.Live == nil {
		cfg.Live = session.NewRegistry(cfg.Now)
	}
	s := &Server{cfg: cfg, conns: map[*conn]struct{}{}}
	s.sshCfg = &ssh.ServerConfig{
		Config:        ssh.Config{Ciphers: cfg.Ciphers},
		MaxAuthTries:  3,
		ServerVersion: "SSH-2.0-Vigil",
		PasswordCallback: func(md ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			return s.authenticate(md, string(password))
		},
		KeyboardInteractiveCallback: func(md ssh.ConnMetadata, challenge ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			answers, err := challenge("", "Vigil: paste your token (it is not echoed).", []string{"Token: "}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(answers) != 1 {
				return nil, errors.New("sshgw: expected one answer")
			}
			return s.authenticate(md, answers[0])
		},
	}
	s.sshCfg.AddHostKey(cfg.HostKey)
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// Serve accepts connections on ln until ctx ends, then closes the
// listener and every live session (recording and auditing their end)
// before returning.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return gateway.Serve(ctx, "sshgw", ln, func(nc net.Conn) { s.handle(ctx, nc) }, func() { s.closeAll(context.Cause(ctx)) })
}

// closeAll ends every live session (at shutdown), concurrently: each
// termination may wait a moment for its client.
func (s *Server) closeAll(cause error) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.terminate(&Ended{Reason: "gateway shutting down", Cause: cause})
		}()
	}
	wg.Wait()
}

// authResult is what authentication hands to the connection.
type authResult struct {
	id     *token.Identity
	target vault.Target
	login  string
	grant  token.Grant
	source netip.Addr
}

type authKey struct{}

// denied is returned to the client for every refusal: the reason is only
// in the audit log.
var denied = errors.New("permission denied")

// authenticate checks the token presented as the password against the
// requested LOGIN@TARGET. Every outcome is audited; the client learns
// nothing but success or "permission denied".
func (s *Server) authenticate(md ssh.ConnMetadata, raw string) (*ssh.Permissions, error) {
	ctx := context.Background()
	source := gateway.AddrOf(md.RemoteAddr())
	raw = strings.TrimSpace(raw)
	login, targetName := splitUser(md.User())
	deny := func(reason, detail string, id *token.Identity) (*ssh.Permissions, error) {
		e := gateway.Denial("ssh.auth", md.User(), targetName, source.String(), reason, detail, id)
		if err := s.cfg.Unauthenticated.Append(ctx, e); err != nil {
			s.cfg.Log.Error("audit append failed", "type", "ssh.auth", "err", err)
		}
		s.cfg.Log.Info("ssh auth denied", "reason", reason, "user", e.Actor, "target", targetName, "source", source)
		return nil, denied
	}
	id, err := s.cfg.Verifier.Verify(ctx, raw, source)
	if err != nil {
		var ve *token.VerifyError
		if errors.As(err, &ve) {
			return deny("token_"+string(ve.Reason), "", nil)
		}
		return deny("verification_unavailable", err.Error(), nil)
	}
	if targetName == "" {
		return deny("no_target", "username must be LOGIN@TARGET or TARGET", id)
	}
	grants, err := s.cfg.Grants.Effective(ctx, id, source, s.cfg.Now())
	if err != nil {
		return deny("grants_unavailable", err.Error(), id)
	}
	// The logins granted on the target; several grants for the same one
	// (from several roles, say) add up.
	var logins []string
	for _, g := range grants {
		if g.Target == targetName && (login == "" || g.Login == login) && !slices.Contains(logins, g.Login) {
			logins = append(logins, g.Login)
		}
	}
	switch {
	case len(logins) == 0:
		return deny("no_grant", fmt.Sprintf("no grant for %s@%s", login, targetName), id)
	case len(logins) > 1:
		return deny("ambiguous_login", "the token grants several logins; use LOGIN@TARGET", id)
	}
	g := token.Combined(grants, targetName, logins[0])
	t, err := s.cfg.Vault.Get(ctx, targetName)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && t.Kind != vault.KindSSH) {
		return deny("unknown_target", "", id)
	}
	if err != nil {
		return deny("vault_unavailable", err.Error(), id)
	}
	if t.Login != g.Login {
		return deny("no_credential", fmt.Sprintf("target %s has no credential for login %s", t.Name, g.Login), id)
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
	if err := s.cfg.Audit.Append(ctx, audit.Event{Type: "ssh.auth", Actor: id.Claims.Subject, Target: t.Name, Source: source.String(),
		Data: map[string]any{"outcome": "allowed", "login": g.Login, "jti": id.Claims.ID, "actions": g.Actions}}); err != nil {
		return deny("audit_unavailable", err.Error(), id)
	}
	return &ssh.Permissions{ExtraData: map[any]any{authKey{}: &authResult{id: id, target: t, login: g.Login, grant: g, source: source}}}, nil
}

// splitUser splits "LOGIN@TARGET" (LOGIN may itself contain '@' only if
// the target name does not; the last '@' separates) or "TARGET".
func splitUser(u string) (login, target string) {
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		return u[:i], u[i+1:]
	}
	return "", u
}

// handle runs one client connection from handshake to the end.
func (s *Server) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	source := gateway.AddrOf(nc.RemoteAddr())
	nc.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		// Authentication refusals were audited one by one; anything else
		// (garbage, a stalled or dropped handshake) is audited here.
		var authErr *ssh.ServerAuthError
		if !errors.As(err, &authErr) && !errors.Is(err, denied) {
			s.cfg.Unauthenticated.Append(ctx, audit.Event{Type: "ssh.handshake_failed", Source: source.String(), Data: map[string]any{"error": err.Error()}})
			s.cfg.Log.Debug("ssh handshake failed", "source", source, "err", err)
		}
		return
	}
	nc.SetDeadline(time.Time{})
	info, _ := sc.Permissions.ExtraData[authKey{}].(*authResult)
	if info == nil {
		sc.Close()
		return
	}
	c := newConn(ctx, s, sc, info)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.run(chans, reqs)
}
