// Package config owns Vigil's server configuration: its defaults (the
// embedded single-machine setup), the YAML file format, and validation.
// Flags and VIGIL_* environment variables are layered on top by the
// command line (cmd/vigil); this package does not read either.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/vigil-pam/vigil/internal/masking"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/monitor"
	"github.com/vigil-pam/vigil/internal/token"
	"go.yaml.in/yaml/v3"
)

// Config is the whole server configuration.
type Config struct {
	// Data is the data directory: database, keys, admin token.
	Data string `yaml:"data"`
	// HTTPAddr is the API and console listen address.
	HTTPAddr string `yaml:"http_addr"`
	// SSHAddr is the SSH gateway listen address.
	SSHAddr string `yaml:"ssh_addr"`
	// PGAddr is the PostgreSQL gateway listen address.
	PGAddr string `yaml:"pg_addr"`
	// Recordings is where recordings are stored: file://DIR; empty means
	// file://DATA/recordings.
	Recordings string `yaml:"recordings"`
	// Store is the state database URL; empty means sqlite://DATA/vigil.db.
	Store string `yaml:"store"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Token configures Vigil's own tokens.
	Token Token `yaml:"token"`
	// Issuers are the trusted external identity providers.
	Issuers []token.IssuerConfig `yaml:"issuers"`
	// SSH tunes the SSH gateway.
	SSH SSH `yaml:"ssh"`
	// PG tunes the PostgreSQL gateway.
	PG PG `yaml:"pg"`
	// Rules configures the real-time rules engine.
	Rules Rules `yaml:"rules"`
	// Alerts configures where alerts are sent besides the API.
	Alerts Alerts `yaml:"alerts"`
	// Audit configures checkpoints and SIEM forwarding of the audit trail.
	Audit Audit `yaml:"audit"`
	// Encryption configures how recordings are encrypted at rest.
	Encryption Encryption `yaml:"encryption"`
	// Retention configures how long recordings are kept.
	Retention Retention `yaml:"retention"`
	// BreakGlass configures emergency access.
	BreakGlass BreakGlass `yaml:"breakglass"`
	// Monitor configures token security monitoring: detectors, their
	// thresholds and severities (package monitor).
	Monitor monitor.Config `yaml:"monitor"`
}

// Break-glass rule policies (BreakGlass.Rules).
const (
	// BreakGlassAlertOnly reduces every rule action on a break-glass
	// session to an alert: an emergency is not blocked, but seen.
	BreakGlassAlertOnly = "alert_only"
	// BreakGlassEnforce applies rule actions as on any session.
	BreakGlassEnforce = "enforce"
)

// BreakGlass configures break-glass emergency access (package breakglass).
type BreakGlass struct {
	// Rules is how real-time rules act on break-glass sessions:
	// alert_only (the default) or enforce.
	Rules string `yaml:"rules"`
	// MaxFailures is how many wrong secrets in a row lock an account
	// (default 5).
	MaxFailures int `yaml:"max_failures"`
	// Lockout is how long a locked account refuses every secret, even the
	// right one (default 15m).
	Lockout time.Duration `yaml:"lockout"`
}

// Audit configures the audit trail beyond the database it lives in.
type Audit struct {
	// CheckpointEvery is the longest activity goes without a signed
	// checkpoint (default 1s).
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
	// UnauthenticatedPerSource bounds the audit events of connections
	// that did not log in (refused logins, garbage, stray cancel
	// requests) per source address and minute (default 60); the rest
	// are counted in one audit.suppressed event per source and minute.
	UnauthenticatedPerSource int `yaml:"unauthenticated_per_source"`
	// UnauthenticatedTotal is the same bound over all sources (default
	// 1000).
	UnauthenticatedTotal int `yaml:"unauthenticated_total"`
	// Forward sends every audit event, in order, to SIEM collectors.
	Forward []Forward `yaml:"forward"`
}

// Forward is one SIEM forwarding sink: exactly one of Syslog and Webhook.
type Forward struct {
	// Name identifies the sink and its persistent cursor.
	Name string `yaml:"name"`
	// Format of each event: "jsonl" (default) or "cef".
	Format string `yaml:"format"`
	// Syslog sends RFC 5424 messages over TCP or TLS.
	Syslog *SyslogSink `yaml:"syslog"`
	// Webhook POSTs batches of events, HMAC-signed.
	Webhook *Webhook `yaml:"webhook"`
}

// SyslogSink is an RFC 5424 collector reached over TCP (RFC 6587 octet
// counting) or TLS (RFC 5425).
type SyslogSink struct {
	// Addr is HOST:PORT of the collector.
	Addr string `yaml:"addr"`
	// TLS enables TLS; CAFile pins the collector's CA (default: system
	// roots), ServerName overrides the name checked in its certificate.
	TLS        bool   `yaml:"tls"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// Encryption configures the encryption of recordings at rest with age.
type Encryption struct {
	// Recipients are age public keys (age1…) recordings are encrypted to.
	// Empty means an identity kept in the data directory
	// (DATA/recordings.agekey), created on first start.
	Recipients []string `yaml:"recipients"`
	// IdentityFile holds age identities this server may decrypt with
	// (playback, export, live catch-up); empty with Recipients set means
	// the server cannot read recordings once written.
	IdentityFile string `yaml:"identity_file"`
}

// Retention configures recording retention.
type Retention struct {
	// Default is how long recordings are kept (default 90 days, "2160h").
	Default time.Duration `yaml:"default"`
	// Labels maps a target label ("env=prod") to its retention; the
	// longest matching label wins.
	Labels map[string]time.Duration `yaml:"labels"`
	// Every is how often expired recordings are swept (default 1h).
	Every time.Duration `yaml:"every"`
}

// Rules configures real-time rules.
type Rules struct {
	// File is a YAML file of custom rule packs; empty means built-in
	// packs only.
	File string `yaml:"file"`
	// Packs are enabled on targets that name none of their own, as pack
	// specs ("os-sensitive" or "os-sensitive=pause"); empty means none.
	Packs []string `yaml:"packs"`
}

// Alerts configures alert sinks.
type Alerts struct {
	// Webhooks receive every alert as a signed JSON POST.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one webhook sink.
type Webhook struct {
	// Name identifies the sink (its delivery cursor); default "webhook-N".
	Name string `yaml:"name"`
	// URL receives POSTs (https, or http on loopback).
	URL string `yaml:"url"`
	// SecretEnv names the environment variable holding the HMAC-SHA256
	// key that signs each body (header X-Vigil-Signature).
	SecretEnv string `yaml:"secret_env"`
	// MinSeverity drops alerts below it: low, medium, high or critical
	// (default low: everything).
	MinSeverity string `yaml:"min_severity"`
}

// SSH tunes the SSH gateway; zero values take the gateway's defaults.
type SSH struct {
	// HandshakeTimeout bounds the SSH handshake and login (default 20s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout ends sessions without traffic (default 30m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Keepalive probes both legs this often (default 30s).
	Keepalive time.Duration `yaml:"keepalive"`
	// ExpiryWarning warns the user this long before their token expires
	// (default 5m).
	ExpiryWarning time.Duration `yaml:"expiry_warning"`
	// EnvAllow lists environment variables clients may set (default LANG,
	// LC_*, TZ).
	EnvAllow []string `yaml:"env_allow"`
	// Ciphers offered on both legs (default AES-GCM only; add aes128-ctr
	// for clients older than OpenSSH 6.2 or PuTTY 0.76).
	Ciphers []string `yaml:"ciphers"`
}

// PG tunes the PostgreSQL gateway; zero values take the gateway's
// defaults.
type PG struct {
	// TLSCert and TLSKey are the gateway's certificate and key (PEM
	// files). Without them Vigil generates a self-signed certificate on
	// first start (stored in the state database) for localhost, the
	// loopback addresses and TLSHosts.
	TLSCert  string   `yaml:"tls_cert"`
	TLSKey   string   `yaml:"tls_key"`
	TLSHosts []string `yaml:"tls_hosts"`
	// AllowPlaintextLoopback lets clients on a loopback address connect
	// without TLS (sslmode=disable). Everyone else must use TLS: the
	// token travels as a cleartext password.
	AllowPlaintextLoopback bool `yaml:"allow_plaintext_loopback"`
	// StartupTimeout bounds TLS, login and the upstream connect (default
	// 20s).
	StartupTimeout time.Duration `yaml:"startup_timeout"`
	// IdleTimeout ends sessions without traffic (default 30m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ExpiryWarning warns the user this long before their token expires
	// (default 5m).
	ExpiryWarning time.Duration `yaml:"expiry_warning"`
	// MaxMessage caps one client message in bytes (default 64 MiB).
	MaxMessage int `yaml:"max_message"`
	// RecordRows caps the result rows per statement written into the
	// recording's transcript (default 1000; -1 records none). The
	// statement log always has the full counts.
	RecordRows int `yaml:"record_rows"`
	// Masking says which result values are masked before they reach the
	// client and the recording (default masking.Default(): secret-looking
	// column names, e-mail addresses, card numbers, national IDs, IBANs).
	Masking masking.Config `yaml:"masking"`
}

// Token configures issuing and signing.
type Token struct {
	// Issuer is the "iss" of Vigil's tokens.
	Issuer string `yaml:"issuer"`
	// Audience is the "aud" of Vigil's tokens.
	Audience string `yaml:"audience"`
	// Algorithm signs new keys: EdDSA, ES256 or RS256.
	Algorithm string `yaml:"algorithm"`
	// DefaultTTL is the lifetime of a token when none is asked for.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxTTL is the longest lifetime any token gets.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// RotateEvery rotates the signing key automatically; 0 turns it off.
	RotateEvery time.Duration `yaml:"rotate_every"`
	// VerifyCache bounds the verified-token cache; 0 means 4096, -1 off.
	VerifyCache int `yaml:"verify_cache"`
	// ClockSkew is the leeway on exp, nbf and iat (default 30s, at most 60s).
	ClockSkew time.Duration `yaml:"clock_skew"`
}

// Default returns the embedded default: everything on loopback, state in
// ./vigil-data.
func Default() Config {
	return Config{
		Data:     "./vigil-data",
		HTTPAddr: "127.0.0.1:8080",
		SSHAddr:  "127.0.0.1:2222",
		PGAddr:   "127.0.0.1:6432",
		LogLevel: "info",
		PG:       PG{Masking: masking.Default()},
		Token: Token{
			Issuer:     "vigil",
			Audience:   "vigil",
			Algorithm:  token.AlgEdDSA,
			DefaultTTL: token.DefaultTTL,
			MaxTTL:     token.DefaultMaxTTL,
			ClockSkew:  token.Leeway,
		},
		BreakGlass: BreakGlass{Rules: BreakGlassAlertOnly, MaxFailures: 5, Lockout: 15 * time.Minute},
		Monitor:    monitor.DefaultConfig(),
	}
}

// Load reads the YAML file at path over the defaults. Unknown keys are an
// error: a typo must not silently leave a security setting at its default.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config: %s: %w", path, err)
	}
	// Relative paths in the file are relative to the file.
	base := filepath.Dir(path)
	for i := range cfg.Issuers {
		if f := cfg.Issuers[i].JWKSFile; f != "" && !filepath.IsAbs(f) {
			cfg.Issuers[i].JWKSFile = filepath.Join(base, f)
		}
	}
	if f := cfg.Rules.File; f != "" && !filepath.IsAbs(f) {
		cfg.Rules.File = filepath.Join(base, f)
	}
	return cfg, nil
}

// StoreURL is the store URL, defaulting to SQLite in the data directory.
func (c *Config) StoreURL() string {
	if c.Store != "" {
		return c.Store
	}
	return "sqlite://" + filepath.Join(c.Data, "vigil.db")
}

// RecordingsDir is the local directory recordings are written to.
func (c *Config) RecordingsDir() (string, error) {
	if c.Recordings == "" {
		return filepath.Join(c.Data, "recordings"), nil
	}
	scheme, rest, ok := strings.Cut(c.Recordings, "://")
	switch {
	case ok && scheme == "file" && rest != "":
		return rest, nil
	case ok && scheme == "s3":
		return "", fmt.Errorf("config: recordings %q: the S3 store is not available in this version; use file://DIR", c.Recordings)
	}
	return "", fmt.Errorf("config: recordings %q: want file://DIR", c.Recordings)
}

// Validate checks values that do not need the outside world.
func (c *Config) Validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("data directory is empty"))
	}
	for name, addr := range map[string]string{"http_addr": c.HTTPAddr, "ssh_addr": c.SSHAddr, "pg_addr": c.PGAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if _, err := c.RecordingsDir(); err != nil {
		errs = append(errs, err)
	}
	if c.Audit.CheckpointEvery < 0 || c.Audit.CheckpointEvery > time.Minute {
		errs = append(errs, fmt.Errorf("audit.checkpoint_every %s: want 0 (default 1s) up to 1m", c.Audit.CheckpointEvery))
	}
	if c.Audit.UnauthenticatedPerSource < 0 || c.Audit.UnauthenticatedTotal < 0 {
		errs = append(errs, fmt.Errorf("audit.unauthenticated_per_source %d, unauthenticated_total %d: want 0 (the default) or more",
			c.Audit.UnauthenticatedPerSource, c.Audit.UnauthenticatedTotal))
	}
	if c.PG.IdleTimeout < 0 || c.PG.StartupTimeout < 0 || c.PG.ExpiryWarning < 0 || c.PG.MaxMessage < 0 || c.PG.RecordRows < -1 {
		errs = append(errs, errors.New("pg: durations and sizes must not be negative (record_rows: -1 records none)"))
	}
	if (c.PG.TLSCert == "") != (c.PG.TLSKey == "") {
		errs = append(errs, errors.New("pg: give both tls_cert and tls_key, or neither"))
	}
	if err := c.PG.Masking.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("pg.masking: %w", err))
	}
	if c.SSH.IdleTimeout < 0 || c.SSH.Keepalive < 0 || c.SSH.ExpiryWarning < 0 || c.SSH.HandshakeTimeout < 0 {
		errs = append(errs, errors.New("ssh durations must not be negative"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	t := c.Token
	if t.Issuer == "" || t.Audience == "" {
		errs = append(errs, errors.New("token.issuer and token.audience must be set"))
	}
	switch t.Algorithm {
	case token.AlgEdDSA, token.AlgES256, token.AlgRS256:
	default:
		errs = append(errs, fmt.Errorf("token.algorithm %q: want EdDSA, ES256 or RS256", t.Algorithm))
	}
	if t.MaxTTL <= 0 || t.DefaultTTL <= 0 || t.DefaultTTL > t.MaxTTL {
		errs = append(errs, fmt.Errorf("token ttls: need 0 < default_ttl (%s) <= max_ttl (%s)", t.DefaultTTL, t.MaxTTL))
	}
	if t.ClockSkew < 0 || t.ClockSkew > token.MaxLeeway {
		errs = append(errs, fmt.Errorf("token.clock_skew %s: 0 to %s", t.ClockSkew, token.MaxLeeway))
	}
	if t.RotateEvery < 0 || (t.RotateEvery > 0 && t.RotateEvery < time.Hour) {
		errs = append(errs, fmt.Errorf("token.rotate_every %s: 0 (off) or at least 1h", t.RotateEvery))
	}
	bg := c.BreakGlass
	if bg.Rules != BreakGlassAlertOnly && bg.Rules != BreakGlassEnforce {
		errs = append(errs, fmt.Errorf("breakglass.rules %q: want %s or %s", bg.Rules, BreakGlassAlertOnly, BreakGlassEnforce))
	}
	if bg.MaxFailures < 1 || bg.MaxFailures > 100 {
		errs = append(errs, fmt.Errorf("breakglass.max_failures %d: want 1 to 100", bg.MaxFailures))
	}
	if bg.Lockout < time.Second || bg.Lockout > 24*time.Hour {
		errs = append(errs, fmt.Errorf("breakglass.lockout %s: want 1s to 24h", bg.Lockout))
	}
	if err := c.Monitor.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
