// Package vault owns Vigil's targets and their credentials: the servers
// and databases users reach through Vigil, the login Vigil uses there, the
// password or private key for it (sealed under the master key, never
// returned by any API, CLI, log line or error), and the pinned SSH host key.
// It does not decide who may reach a target (package policy) nor connect
// to one (the gateways).
package vault

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
	"golang.org/x/crypto/ssh"
)

// Target kinds.
const (
	KindSSH      = "ssh"
	KindPostgres = "pg"
)

// Credential kinds.
const (
	AuthKey      = "key"
	AuthPassword = "password"
)

// Target is a server or database reachable through Vigil, without its
// secret.
type Target struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Addr  string `json:"addr"`
	Login string `json:"login"`
	// Auth is how Vigil logs in: "key" or "password".
	Auth string `json:"auth"`
	// HostKey is the pinned SSH host key in authorized_keys format.
	HostKey string `json:"host_key,omitempty"`
	// HostKeyFingerprint is its SHA-256 fingerprint.
	HostKeyFingerprint string `json:"host_key_fingerprint,omitempty"`
	// Database is the database name on a PostgreSQL target.
	Database string `json:"database,omitempty"`
	// TLS is how Vigil reaches a PostgreSQL target: "disable",
	// "require" or "verify-full"; empty means verify-full when TLSCA is
	// set, else require.
	TLS string `json:"tls,omitempty"`
	// TLSCA is the PEM CA certificate a PostgreSQL target's certificate
	// is checked against (verify-full); empty means the system roots.
	TLSCA  string            `json:"tls_ca,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// FailOpen lets a session continue unrecorded when its recording
	// fails mid-session. The default (false) ends the session.
	FailOpen bool `json:"fail_open"`
	// RulePacks are the real-time rule packs enabled on the target, as
	// specs ("os-sensitive" or "os-sensitive=pause"); empty means the
	// server's default packs.
	RulePacks []string  `json:"rule_packs,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// Credential is what Vigil presents to a target. Never log or return it.
type Credential struct {
	Password string
	Signer   ssh.Signer
}

// ErrNotFound is returned for an unknown target.
var ErrNotFound = errors.New("vault: no such target")

// ErrExists is returned when adding a target whose name is taken.
var ErrExists = errors.New("vault: target already exists")

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// Validate checks a target before it is stored (not its secret).
func (t *Target) Validate() error {
	if !nameRE.MatchString(t.Name) {
		return fmt.Errorf("vault: target name %q: letters, digits, '.', '_', '-', at most 63", t.Name)
	}
	if t.Kind != KindSSH && t.Kind != KindPostgres {
		return fmt.Errorf("vault: target kind %q: want ssh or pg", t.Kind)
	}
	if _, port, err := net.SplitHostPort(t.Addr); err != nil || port == "" {
		return fmt.Errorf("vault: target address %q: want HOST:PORT", t.Addr)
	}
	if t.Login == "" || strings.ContainsAny(t.Login, "@ \t\r\n") {
		return fmt.Errorf("vault: login %q: required, without '@' or spaces", t.Login)
	}
	if t.Auth != AuthKey && t.Auth != AuthPassword {
		return fmt.Errorf("vault: auth %q: want key or password", t.Auth)
	}
	if t.Kind == KindPostgres && (t.Auth != AuthPassword || t.Database == "") {
		return errors.New("vault: a pg target needs --database and a password")
	}
	switch t.TLS {
	case "", "disable", "require", "verify-full":
	default:
		return fmt.Errorf("vault: tls mode %q: want disable, require or verify-full", t.TLS)
	}
	if (t.TLS != "" || t.TLSCA != "") && t.Kind != KindPostgres {
		return errors.New("vault: tls settings apply to pg targets only")
	}
	if t.TLSCA != "" {
		if t.TLS == "disable" || t.TLS == "require" {
			return fmt.Errorf("vault: a CA certificate is only checked with tls verify-full, not %s", t.TLS)
		}
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(t.TLSCA)) {
			return errors.New("vault: the tls CA is not a PEM certificate")
		}
	}
	if t.HostKey != "" {
		if _, err := ParseHostKey(t.HostKey); err != nil {
			return err
		}
	}
	for k := range t.Labels {
		if k == "" || strings.ContainsAny(k, "=, ") {
			return fmt.Errorf("vault: label key %q", k)
		}
	}
	return nil
}

// ParseHostKey parses a host key in authorized_keys or known_hosts line form.
func ParseHostKey(s string) (ssh.PublicKey, error) {
	s = strings.TrimSpace(s)
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err == nil {
		return k, nil
	}
	if _, _, k, _, _, err := ssh.ParseKnownHosts([]byte(s)); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("vault: host key %q is not an SSH public key line", truncate(s, 40))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Vault stores targets.
type Vault struct {
	db  *store.DB
	mk  *masterkey.Key
	now func() time.Time
}

// New returns the vault over db, sealing with mk; now may be nil.
func New(db *store.DB, mk *masterkey.Key, now func() time.Time) *Vault {
	if now == nil {
		now = time.Now
	}
	return &Vault{db: db, mk: mk, now: now}
}

func secretAAD(name string) []byte { return []byte("vigil/target-secret/" + name) }

// checkSecret parses secret for auth, so a bad key file is refused at add
// time with an error that does not repeat it.
func checkSecret(auth string, secret []byte) error {
	if len(secret) == 0 {
		return errors.New("vault: the credential is empty")
	}
	if auth == AuthKey {
		if _, err := ssh.ParsePrivateKey(secret); err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return errors.New("vault: the private key is passphrase-protected; store an unencrypted key (Vigil seals it)")
			}
			return errors.New("vault: the key file is not an unencrypted SSH private key")
		}
	}
	return nil
}

// Add stores t with its secret sealed. t.HostKey must already be pinned
// for SSH targets (the API fetches it on trust-on-first-use).
func (v *Vault) Add(ctx context.Context, t Target, secret []byte) (Target, error) {
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	if t.Kind == KindSSH && t.HostKey == "" {
		return Target{}, errors.New("vault: an ssh target needs a pinned host key")
	}
	if err := checkSecret(t.Auth, secret); err != nil {
		return Target{}, err
	}
	t.CreatedAt = v.now().UTC()
	labels, _ := json.Marshal(t.Labels)
	sealed := base64.StdEncoding.EncodeToString(v.mk.Seal(secret, secretAAD(t.Name)))
	failOpen := 0
	if t.FailOpen {
		failOpen = 1
	}
	res, err := v.db.ExecContext(ctx, `INSERT INTO targets
		(name, kind, addr, login, auth, secret, host_key, database, labels, fail_open, created_at, created_by, rule_packs, tls, tls_ca)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (name) DO NOTHING`,
		t.Name, t.Kind, t.Addr, t.Login, t.Auth, sealed, t.HostKey, t.Database, string(labels), failOpen,
		store.Nanos(t.CreatedAt), t.CreatedBy, strings.Join(t.RulePacks, ","), t.TLS, t.TLSCA)
	if err != nil {
		return Target{}, fmt.Errorf("vault: add %s: %w", t.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Target{}, ErrExists
	}
	return v.withFingerprint(t), nil
}

func (v *Vault) withFingerprint(t Target) Target {
	if k, err := ParseHostKey(t.HostKey); err == nil && t.HostKey != "" {
		t.HostKeyFingerprint = ssh.FingerprintSHA256(k)
	}
	return t
}

// SetRulePacks replaces the rule packs enabled on target name (the caller
// has validated them).
func (v *Vault) SetRulePacks(ctx context.Context, name string, packs []string) error {
	res, err := v.db.ExecContext(ctx, `UPDATE targets SET rule_packs = $2 WHERE name = $1`, name, strings.Join(packs, ","))
	if err != nil {
		return fmt.Errorf("vault: set rule packs of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

const targetColumns = `name, kind, addr, login, auth, host_key, database, labels, fail_open, created_at, created_by, rule_packs, tls, tls_ca`

func scanTarget(row interface{ Scan(...any) error }) (Target, error) {
	var t Target
	var labels, packs string
	var failOpen, created int64
	if err := row.Scan(&t.Name, &t.Kind, &t.Addr, &t.Login, &t.Auth, &t.HostKey, &t.Database, &labels, &failOpen, &created, &t.CreatedBy, &packs, &t.TLS, &t.TLSCA); err != nil {
		return Target{}, err
	}
	if packs != "" {
		t.RulePacks = strings.Split(packs, ",")
	}
	json.Unmarshal([]byte(labels), &t.Labels)
	t.FailOpen = failOpen != 0
	t.CreatedAt = store.Time(created)
	return t, nil
}

// Get returns the target called name.
func (v *Vault) Get(ctx context.Context, name string) (Target, error) {
	t, err := scanTarget(v.db.QueryRowContext(ctx, `SELECT `+targetColumns+` FROM targets WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Target{}, ErrNotFound
	}
	if err != nil {
		return Target{}, fmt.Errorf("vault: get %s: %w", name, err)
	}
	return v.withFingerprint(t), nil
}

// List returns all targets by name.
func (v *Vault) List(ctx context.Context) ([]Target, error) {
	rows, err := v.db.QueryContext(ctx, `SELECT `+targetColumns+` FROM targets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("vault: list: %w", err)
	}
	defer rows.Close()
	out := []Target{}
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("vault: list: %w", err)
		}
		out = append(out, v.withFingerprint(t))
	}
	return out, rows.Err()
}

// Remove deletes the target called name with its secret.
func (v *Vault) Remove(ctx context.Context, name string) error {
	res, err := v.db.ExecContext(ctx, `DELETE FROM targets WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("vault: remove %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Credential opens the target's sealed secret. Only a gateway about to
// log in calls it; the result must not outlive that login.
func (v *Vault) Credential(ctx context.Context, t Target) (Credential, error) {
	var sealed string
	err := v.db.QueryRowContext(ctx, `SELECT secret FROM targets WHERE name = $1`, t.Name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return Credential{}, ErrNotFound
	}
	if err != nil {
		return Credential{}, fmt.Errorf("vault: credential of %s: %w", t.Name, err)
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return Credential{}, fmt.Errorf("vault: credential of %s is corrupt", t.Name)
	}
	secret, err := v.mk.Open(raw, secretAAD(t.Name))
	if err != nil {
		return Credential{}, fmt.Errorf("vault: credential of %s: %w", t.Name, err)
	}
	if t.Auth == AuthPassword {
		return Credential{Password: string(secret)}, nil
	}
	signer, err := ssh.ParsePrivateKey(secret)
	if err != nil {
		return Credential{}, fmt.Errorf("vault: credential of %s: stored key does not parse", t.Name)
	}
	return Credential{Signer: signer}, nil
}
