package monitor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/token"
	"go.yaml.in/yaml/v3"
)

// verifierEnv is a real keyring, signer, revocation list and verifier
// on the monitor env's database and clock.
type verifierEnv struct {
	*env
	kr     *token.Keyring
	signer *token.Signer
	revs   *token.Revocations
	v      *token.Verifier
}

func newVerifierEnv(t testing.TB, observe token.Observer, e *env) *verifierEnv {
	t.Helper()
	ctx := context.Background()
	secret := make([]byte, masterkey.Size)
	rand.Read(secret)
	mk, err := masterkey.New(secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	ve := &verifierEnv{env: e}
	if ve.kr, _, err = token.OpenKeyring(ctx, e.db, mk, token.KeyringConfig{MaxTTL: token.DefaultMaxTTL, Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if ve.revs, err = token.OpenRevocations(ctx, e.db, e.clock.Now); err != nil {
		t.Fatal(err)
	}
	ve.signer = token.NewSigner(ve.kr, token.IssuerSettings{Issuer: "vigil", Audience: "vigil", Now: e.clock.Now})
	if ve.v, err = token.NewVerifier(token.VerifierConfig{Issuer: "vigil", Audience: "vigil", MaxTTL: token.DefaultMaxTTL,
		Keyring: ve.kr, Revocations: ve.revs, Now: e.clock.Now, Observe: observe}); err != nil {
		t.Fatal(err)
	}
	return ve
}

func (ve *verifierEnv) issue(t testing.TB, req token.Request) (string, *token.Claims) {
	t.Helper()
	raw, c, err := ve.signer.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return raw, c
}

// TestEndToEnd runs real verifications through token.Observers into a
// running monitor and expects each attack's alert, without the token in
// any of them.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t, nil)
	var recorded int
	record := func(context.Context, *token.Attempt) error { recorded++; return nil }
	ve := newVerifierEnv(t, token.Observers(record, e.m.Observe), e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.m.Run(ctx) }()

	var tokens []string
	verify := func(raw, src string) error {
		tokens = append(tokens, raw)
		_, err := ve.v.Verify(context.Background(), raw, netip.MustParseAddr(src))
		return err
	}
	b64 := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	raw, claims := ve.issue(t, token.Request{Subject: "alice"})
	parts := strings.Split(raw, ".")
	kid := ve.kr.List()[0].KID
	steps := []struct {
		name   string
		raw    string
		src    string
		reason token.Reason
		rule   string
	}{
		{"accepted", raw, office, token.ReasonOK, ""},
		{"same token from home", raw, home, token.ReasonOK, DetectorSourceChange},
		{"alg none", b64(map[string]any{"alg": "none", "kid": kid, "typ": token.TypVigil}) + "." + parts[1] + ".", attacker, token.ReasonAlgNone, DetectorAlg},
		{"jku", b64(map[string]any{"alg": token.AlgEdDSA, "kid": kid, "typ": token.TypVigil, "jku": "https://evil.example/jwks"}) + "." + parts[1] + "." + parts[2], attacker, token.ReasonKeyReference, DetectorHeaderInjection},
		{"unknown kid", b64(map[string]any{"alg": token.AlgEdDSA, "kid": "../../keys/k1", "typ": token.TypVigil}) + "." + parts[1] + "." + parts[2], attacker, token.ReasonUnknownKID, DetectorUnknownKID},
	}
	// Ten tampered signatures from one source.
	for i := 0; i < 10; i++ {
		sig := []byte(parts[2])
		// Another base64url character, so the encoding stays canonical.
		sig[i] = map[bool]byte{true: 'B', false: 'A'}[sig[i] == 'A']
		steps = append(steps, struct {
			name   string
			raw    string
			src    string
			reason token.Reason
			rule   string
		}{"tampered", parts[0] + "." + parts[1] + "." + string(sig), attacker, token.ReasonBadSignature, DetectorSignatureBurst})
	}
	for _, s := range steps {
		err := verify(s.raw, s.src)
		var ve *token.VerifyError
		if got := token.ReasonOK; err != nil {
			if !errors.As(err, &ve) {
				t.Fatalf("%s: got %v, want a VerifyError", s.name, err)
			}
			got = ve.Reason
			if got != s.reason {
				t.Fatalf("%s: got %v, want %v", s.name, got, s.reason)
			}
		}
	}
	if err := ve.revs.Revoke(context.Background(), token.Revocation{Issuer: "vigil", JTI: claims.ID, ExpiresAt: claims.ExpiresAt.Time}); err != nil {
		t.Fatal(err)
	}
	verify(raw, office)
	bg, _ := ve.issue(t, token.Request{Subject: "oncall", BreakGlass: true})
	if err := verify(bg, home); err != nil {
		t.Fatalf("break-glass token: %v", err)
	}
	old, _ := ve.issue(t, token.Request{Subject: "bob"})
	e.clock.Set(t0.Add(2 * time.Hour))
	verify(old, office)

	cancel()
	<-done
	if recorded != len(tokens) {
		t.Errorf("got %d recorded verifications, want %d: the recorder runs first", recorded, len(tokens))
	}
	all := e.alerts(t, "")
	for _, rule := range []string{DetectorSourceChange, DetectorAlg, DetectorHeaderInjection, DetectorUnknownKID,
		DetectorSignatureBurst, DetectorRevokedReuse, DetectorBreakGlass, DetectorExpiredReplay} {
		if got := e.alerts(t, rule); len(got) == 0 {
			t.Errorf("no %s alert; got %v", rule, summaries(all))
		}
	}
	// Evidence never holds a token, nor its signature.
	for _, a := range all {
		b, _ := json.Marshal(a)
		for _, raw := range tokens {
			p := strings.Split(raw, ".")
			if bytes.Contains(b, []byte(raw)) || (len(p) == 3 && len(p[2]) > 20 && bytes.Contains(b, []byte(p[2]))) {
				t.Errorf("alert %q contains a token", a.Summary)
			}
		}
	}
}

func TestKeyAge(t *testing.T) {
	day := 24 * time.Hour
	key := func(age time.Duration, active bool) token.KeyInfo {
		k := token.KeyInfo{KID: "kid-old", Alg: token.AlgEdDSA, CreatedAt: t0.Add(-age), Active: active}
		if !active {
			k.RetiredAt = t0.Add(-time.Hour)
		}
		return k
	}
	tests := []struct {
		name  string
		keys  []token.KeyInfo
		calls []time.Duration // clock offsets of the calls
		want  int
	}{
		{"active key past the policy", []token.KeyInfo{key(100*day, true)}, []time.Duration{0}, 1},
		{"young key is quiet", []token.KeyInfo{key(10*day, true)}, []time.Duration{0}, 0},
		{"retired old key is quiet", []token.KeyInfo{key(100*day, false)}, []time.Duration{0}, 0},
		{"every minute is one warning a day", []token.KeyInfo{key(100*day, true)}, []time.Duration{0, time.Minute, 2 * time.Minute, time.Hour}, 1},
		{"repeated the next day", []token.KeyInfo{key(100*day, true)}, []time.Duration{0, day}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			for _, off := range tc.calls {
				e.clock.Set(t0.Add(off))
				if err := e.m.KeyAge(context.Background(), tc.keys); err != nil {
					t.Fatal(err)
				}
			}
			got := e.alerts(t, DetectorKeyAge)
			if len(got) != tc.want {
				t.Fatalf("got %d key_age alerts %v, want %d", len(got), summaries(got), tc.want)
			}
			if tc.want > 0 && (got[0].Target != "kid-old" || got[0].Severity != alert.Medium || got[0].Data["age_days"] != float64(100)) {
				t.Errorf("got %+v, want medium for kid-old, 100 days", got[0])
			}
		})
	}
}

// TestKeyAgeKeyring checks KeyAge on a real keyring's List.
func TestKeyAgeKeyring(t *testing.T) {
	e := newEnv(t, nil)
	ve := newVerifierEnv(t, nil, e)
	e.clock.Set(t0.Add(91 * 24 * time.Hour))
	if err := e.m.KeyAge(context.Background(), ve.kr.List()); err != nil {
		t.Fatal(err)
	}
	if got := e.alerts(t, DetectorKeyAge); len(got) != 1 || got[0].Target != ve.kr.List()[0].KID {
		t.Fatalf("got %v, want one key_age alert for the active key", summaries(got))
	}
}

func TestAudited(t *testing.T) {
	e := newEnv(t, nil)
	log, err := audit.Open(context.Background(), e.db, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	e.m.sink = Audited(e.st, log)
	revoked := signedRefusal(t0, token.ReasonRevoked, "alice", attacker)
	e.feed(revoked)
	// A repeat merged by the store is not audited again.
	e.m.raise(context.Background(), &pending{detector: DetectorRevokedReuse, alert: e.alerts(t, "")[0]})
	evs, err := audit.Search(context.Background(), e.db, audit.Query{Type: EventAlert})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("got %d %s events, want 1", len(evs), EventAlert)
	}
	ev := evs[0]
	if ev.Actor != "alice" || ev.Source != attacker || ev.Data["rule"] != DetectorRevokedReuse || ev.Data["jti"] != "jti-alice" || ev.Data["alert_id"] == nil {
		t.Errorf("got event %+v, want alice's revoked_reuse evidence", ev)
	}
}

func TestLearnBaseline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UnusualHours.LearnFor = 35 * 24 * time.Hour })
	log, err := audit.Open(context.Background(), e.db, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	hist := officeHistory("alice", 4, time.UTC)
	ancient := hist[0].Time.AddDate(0, -3, 0)
	appendEvents(t, log, append([]audit.Event{
		{Time: ancient, Type: EventSessionStart, Actor: "alice"},
		{Time: hist[0].Time, Type: "session.end", Actor: "alice"},
	}, sessionStarts(hist)...))
	n, err := e.m.LearnBaseline(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(hist) {
		t.Errorf("got %d events learned, want %d (not the session end, not the one past learn_for)", n, len(hist))
	}
	e.feed(ok(time.Date(2026, 11, 24, 11, 0, 0, 0, time.UTC), "alice", office, "j1"),
		ok(time.Date(2026, 11, 24, 23, 0, 0, 0, time.UTC), "alice", office, "j2"))
	got := e.alerts(t, DetectorUnusualHours)
	if len(got) != 1 || got[0].Data["local_time"] != "Tue 23:00" {
		t.Fatalf("got %v, want one alert for Tuesday 23:00", summaries(got))
	}
}

// sessionStarts are the session.start events of accepted attempts.
func sessionStarts(as []token.Attempt) []audit.Event {
	out := make([]audit.Event, len(as))
	for i, a := range as {
		out[i] = audit.Event{Time: a.Time, Type: EventSessionStart, Actor: a.Subject, Source: a.Source,
			Data: map[string]any{"kind": "ssh", "jti": a.JTI}}
	}
	return out
}

// appendEvents appends evs concurrently (the log commits them in groups).
func appendEvents(t testing.TB, log *audit.Log, evs []audit.Event) {
	t.Helper()
	const workers = 32
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			var err error
			for i := w; i < len(evs); i += workers {
				if err = log.Append(context.Background(), evs[i]); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; empty for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero config", func(c *Config) { *c = Config{} }, ""},
		{"bad severity", func(c *Config) { c.RevokedReuse.Severity = "urgent" }, "revoked_reuse.severity"},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, "queue_size"},
		{"IPv4 prefix too long", func(c *Config) { c.SourceChange.IPv4Prefix = 33 }, "source_change.ipv4_prefix"},
		{"share out of range", func(c *Config) { c.UnusualHours.MinShare = 1.5 }, "unusual_hours.min_share"},
		{"unknown time zone", func(c *Config) { c.UnusualHours.TimeZones = map[string]string{"alice": "Mars/Olympus"} }, "time_zones[alice]"},
		{"negative burst window", func(c *Config) { c.SignatureBurst.Window = -time.Second }, "signature_burst.window"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "monitor: ") {
				t.Errorf("got %q, want the monitor: prefix", err)
			}
			if _, nerr := New(c, &flaky{}, nil, nil, nil); (nerr == nil) != (err == nil) {
				t.Errorf("New: got %v, want %v", nerr, err)
			}
		})
	}
}

// exampleYAML is the configuration example of the README.
const exampleYAML = `
enabled: true
queue_size: 4096
dedup_window: 1h
summary_every: 15m
max_alerts_per_minute: 20
max_tracked: 100000
alg_none: {enabled: true, severity: high, allowed: [EdDSA, ES256, RS256]}
signature_burst: {enabled: true, threshold: 10, window: 1m, ipv4_prefix: 32, ipv6_prefix: 64}
unknown_kid: {enabled: true, storm_threshold: 20, storm_window: 1m, storm_severity: high}
expired_replay: {enabled: true, grace: 10m}
revoked_reuse: {enabled: true, severity: high}
source_change: {enabled: true, ipv4_prefix: 24, ipv6_prefix: 64}
lifetime_policy:
  enabled: true
  max_lifetime: 12h
  by_issuer: {"https://idp.example.com": 24h}
header_injection: {enabled: true, max_kid_length: 128}
breakglass_use: {enabled: true, severity: critical}
unusual_hours:
  enabled: true
  min_events: 20
  min_days: 7
  min_share: 0.01
  spread_hours: 1
  time_zone: Europe/Paris
  time_zones: {alice: America/New_York}
  ignore: [backup-bot, admin]
key_age: {enabled: true, max_age: 2160h, every: 24h}
`

// TestConfigYAML decodes the README example strictly, as config.Load
// does, over the defaults; a detector left out keeps its defaults.
func TestConfigYAML(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(c Config) bool
	}{
		{"README example", exampleYAML, func(c Config) bool {
			return c.BreakGlass.Severity == alert.Critical && c.Lifetime.ByIssuer["https://idp.example.com"] == 24*time.Hour &&
				c.UnusualHours.TimeZones["alice"] == "America/New_York" && c.KeyAge.MaxAge == 90*24*time.Hour
		}},
		{"partial section keeps the rest", "signature_burst: {threshold: 20}\n", func(c Config) bool {
			return c.SignatureBurst.Threshold == 20 && c.SignatureBurst.Enabled && c.SignatureBurst.Window == time.Minute && c.Enabled
		}},
		{"detector off", "unusual_hours: {enabled: false}\n", func(c Config) bool {
			return !c.UnusualHours.Enabled && c.UnusualHours.MinEvents == defaultMinEvents
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("got %+v", c)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Enabled = false })
	a := with(refused(t0, token.ReasonAlgNone, "mallory", attacker), func(a *token.Attempt) { a.Alg = "none" })
	if err := e.m.Observe(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.m.Run(ctx)
	if err := e.m.KeyAge(context.Background(), []token.KeyInfo{{KID: "k", CreatedAt: t0.AddDate(-1, 0, 0), Active: true}}); err != nil {
		t.Fatal(err)
	}
	if got := e.alerts(t, ""); len(got) != 0 {
		t.Errorf("got %v from a disabled monitor, want none", summaries(got))
	}
}
