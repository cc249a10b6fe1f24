package breakglass

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
)

// testParams make Argon2id cheap in tests; production uses DefaultParams.
var testParams = Params{Time: 1, MemoryKiB: 64, Threads: 1}

// clock is a settable test clock.
type clock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// targets is a fixed set of targets.
type targets map[string]vault.Target

func (ts targets) Get(_ context.Context, name string) (vault.Target, error) {
	if t, ok := ts[name]; ok {
		return t, nil
	}
	return vault.Target{}, vault.ErrNotFound
}

// liveSessions records what EndMatching was asked to end, among sessions.
type liveSessions struct {
	// mu guards sessions and ended.
	mu       sync.Mutex
	sessions []*session.Live
	ended    []string
}

func (l *liveSessions) EndMatching(match func(*session.Live) bool, by, reason string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.sessions {
		if match(s) {
			l.ended = append(l.ended, s.Info.ID+" by "+by+": "+reason)
			n++
		}
	}
	return n
}

// env is a Service over a real store, audit log, alert store, keyring and
// verifier, with a test clock.
type env struct {
	svc      *Service
	db       *store.DB
	audit    *audit.Log
	alerts   *alert.Store
	verifier *token.Verifier
	revs     *token.Revocations
	live     *liveSessions
	clock    *clock
}

func newEnv(t *testing.T, tweak func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{t: time.Now().Truncate(time.Second)}
	log, err := audit.Open(ctx, db, c.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	secret := make([]byte, 32)
	rand.Read(secret)
	mk, _ := masterkey.New(secret, "test")
	kr, _, err := token.OpenKeyring(ctx, db, mk, token.KeyringConfig{MaxTTL: token.DefaultMaxTTL})
	if err != nil {
		t.Fatal(err)
	}
	revs, err := token.OpenRevocations(ctx, db, c.now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: "vigil", Audience: "vigil", MaxTTL: token.DefaultMaxTTL,
		Keyring: kr, Revocations: revs, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := alert.NewStore(db, c.now, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	live := &liveSessions{}
	cfg := Config{
		DB: db, Signer: token.NewSigner(kr, token.IssuerSettings{Issuer: "vigil", Audience: "vigil", Now: c.now}),
		Targets: targets{
			"web1": {Name: "web1", Kind: vault.KindSSH, Login: "root"},
			"web2": {Name: "web2", Kind: vault.KindSSH, Login: "ops"},
			"db1":  {Name: "db1", Kind: vault.KindPostgres, Login: "app"},
		},
		Audit: log, Alerts: alerts, Revocations: revs, Live: live, Issuer: "vigil",
		Params: testParams, Now: c.now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, db: db, audit: log, alerts: alerts, verifier: v, revs: revs, live: live, clock: c}
}

// arm creates an account and returns its secrets.
func (e *env) arm(t *testing.T, name string, twoPerson bool, targets ...string) []string {
	t.Helper()
	armed, err := e.svc.Init(context.Background(), InitRequest{Name: name, Targets: targets, TwoPerson: twoPerson, By: "root"})
	if err != nil {
		t.Fatal(err)
	}
	return armed.Secrets
}

// request is a valid exchange for account name on web1.
func request(name string, secrets ...string) ExchangeRequest {
	return ExchangeRequest{Account: name, Secrets: secrets, User: "carol", Target: "web1", Reason: "database down, IdP unreachable",
		TTL: 20 * time.Minute, Source: netip.MustParseAddr("192.0.2.7")}
}

// events returns the audit events of type typ, oldest first.
func (e *env) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	evs, err := e.audit.Search(context.Background(), audit.Query{Type: typ, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// alertsOf returns the alerts with rule, newest first.
func (e *env) alertsOf(t *testing.T, rule string) []alert.Alert {
	t.Helper()
	all, err := e.alerts.List(context.Background(), alert.Filter{Kind: AlertKind, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []alert.Alert
	for _, a := range all {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}
