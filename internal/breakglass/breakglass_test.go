package breakglass

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/token"
)

func TestExchange(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	secrets := e.arm(t, "ops", false, "web1", "db1")
	if len(secrets) != 1 {
		t.Fatalf("got %d secrets, want 1", len(secrets))
	}
	iss, err := e.svc.Exchange(ctx, request("ops", secrets[0]))
	if err != nil {
		t.Fatal(err)
	}

	// The token is Vigil's own, marked bg, for the person, scoped to the
	// target's login with the interactive actions, for the asked TTL.
	id, err := e.verifier.Verify(ctx, iss.Token, netip.MustParseAddr("192.0.2.7"))
	if err != nil {
		t.Fatal(err)
	}
	c := id.Claims
	wantGrants := []token.Grant{{Target: "web1", Login: "root", Actions: []string{"shell", "exec", "sftp"}}}
	if !c.BreakGlass || c.Subject != "carol" || !reflect.DeepEqual(c.Grants, wantGrants) || id.Admin || len(c.Roles) != 0 {
		t.Fatalf("got claims %+v, want a bg token for carol with grants %+v", c, wantGrants)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != 20*time.Minute {
		t.Fatalf("got lifetime %s, want 20m", got)
	}

	// Audited in the shape the breakglass report reads, before return.
	uses := e.events(t, EventUse)
	if len(uses) != 1 {
		t.Fatalf("got %d breakglass.use events, want 1", len(uses))
	}
	ev := uses[0]
	if ev.Actor != "carol" || ev.Target != "web1" || ev.Source != "192.0.2.7" || ev.Data["jti"] != c.ID ||
		ev.Data["account"] != "ops" || ev.Data["reason"] != "database down, IdP unreachable" || ev.Data["ttl_s"] != float64(1200) {
		t.Fatalf("got use event %+v", ev)
	}

	// A critical alert, linked to the use.
	as := e.alertsOf(t, "breakglass.use")
	if len(as) != 1 || as[0].Severity != alert.Critical || as[0].Actor != "carol" || as[0].Target != "web1" || as[0].Data["jti"] != c.ID {
		t.Fatalf("got alerts %+v, want one critical breakglass.use alert", as)
	}
	u, err := e.svc.Use(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u.AlertID != as[0].ID || u.User != "carol" || u.Login != "root" || u.TTL != 20*time.Minute || !u.ExpiresAt.Equal(c.ExpiresAt.Time) {
		t.Fatalf("got use %+v", u)
	}

	// The account is spent.
	accts, err := e.svc.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(accts) != 1 || accts[0].Armed || accts[0].UsedJTI != c.ID {
		t.Fatalf("got accounts %+v, want ops spent by %s", accts, c.ID)
	}

	// A PostgreSQL target is refused (no gateway serves it yet) without
	// spending the secret; no TTL means the default, within the cap.
	secrets = e.arm(t, "dba", false, "db1", "web1")
	req := request("dba", secrets[0])
	req.Target, req.TTL = "db1", 0
	var inv *InvalidError
	if _, err := e.svc.Exchange(ctx, req); !errors.As(err, &inv) {
		t.Fatalf("exchange for a PostgreSQL target: got %v, want an invalid request", err)
	}
	req.Target = "web1"
	iss, err = e.svc.Exchange(ctx, req)
	if err != nil {
		t.Fatalf("the refused PostgreSQL exchange spent the secret: %v", err)
	}
	if got := iss.Claims.ExpiresAt.Sub(iss.Claims.IssuedAt.Time); got != DefaultTTL {
		t.Fatalf("got lifetime %s, want the default %s", got, DefaultTTL)
	}
}

func TestExchangeBadInput(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1", "web2")[0]
	delete(e.svc.cfg.Targets.(targets), "web2") // covered by the account, but gone

	var invalidErr *InvalidError
	isInvalid := func(err error) bool { return errors.As(err, &invalidErr) }
	tests := []struct {
		name   string
		mutate func(*ExchangeRequest)
		is     func(error) bool
		reason string
	}{
		{"no reason", func(r *ExchangeRequest) { r.Reason = "  " }, isInvalid, "invalid_request"},
		{"reason on two lines", func(r *ExchangeRequest) { r.Reason = "a\nb" }, isInvalid, "invalid_request"},
		{"no user", func(r *ExchangeRequest) { r.User = "" }, isInvalid, "invalid_request"},
		{"user with spaces", func(r *ExchangeRequest) { r.User = "carol smith" }, isInvalid, "invalid_request"},
		{"no secret", func(r *ExchangeRequest) { r.Secrets = nil }, isInvalid, "invalid_request"},
		{"three secrets", func(r *ExchangeRequest) { r.Secrets = []string{secret, secret, secret} }, isInvalid, "invalid_request"},
		{"negative ttl", func(r *ExchangeRequest) { r.TTL = -time.Minute }, isInvalid, "invalid_request"},
		{"target not covered", func(r *ExchangeRequest) { r.Target = "db1" }, isInvalid, "target_not_allowed"},
		{"unknown target", func(r *ExchangeRequest) { r.Target = "web2" }, isInvalid, "unknown_target"},
		{"ttl over the account's cap", func(r *ExchangeRequest) { r.TTL = 2 * time.Hour }, isInvalid, "ttl_over_cap"},
		{"unknown account", func(r *ExchangeRequest) { r.Account = "nope" }, func(err error) bool { return errors.Is(err, ErrDenied) }, "unknown_account"},
		{"wrong secret", func(r *ExchangeRequest) { r.Secrets = []string{mustSecret(t)} }, func(err error) bool { return errors.Is(err, ErrDenied) }, "wrong_secret"},
		{"malformed secret", func(r *ExchangeRequest) { r.Secrets = []string{"hunter2"} }, func(err error) bool { return errors.Is(err, ErrDenied) }, "wrong_secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request("ops", secret)
			tc.mutate(&req)
			iss, err := e.svc.Exchange(ctx, req)
			if iss != nil || !tc.is(err) {
				t.Fatalf("got %v, %v; want the refusal", iss, err)
			}
			denied := e.events(t, EventDenied)
			last := denied[len(denied)-1]
			if last.Data["reason"] != tc.reason || last.Data["outcome"] != "denied" {
				t.Fatalf("got last denial %+v, want reason %s", last.Data, tc.reason)
			}
		})
	}
	// None of that spent the secret.
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); err != nil {
		t.Fatalf("got %v, want the secret still good", err)
	}
	if len(e.events(t, EventUse)) != 1 {
		t.Fatal("a refused request was recorded as a use")
	}
}

func TestExchangeIsSingleUse(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	first, err := e.svc.Exchange(ctx, request("ops", secret))
	if err != nil {
		t.Fatal(err)
	}
	// Replayed: refused with a clear error, audited and alerted.
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("got %v, want ErrReplayed", err)
	}
	replays := e.events(t, EventReplay)
	if len(replays) != 1 || replays[0].Data["jti"] != first.Claims.ID || replays[0].Data["account"] != "ops" {
		t.Fatalf("got replay events %+v", replays)
	}
	if as := e.alertsOf(t, "breakglass.replay"); len(as) != 1 || as[0].Severity != alert.Critical {
		t.Fatalf("got replay alerts %+v, want one critical", as)
	}
	// A replay is not a wrong secret: no failure counted.
	if accts, _ := e.svc.Accounts(ctx); accts[0].Failures != 0 {
		t.Fatalf("got %d failures after a replay, want 0", accts[0].Failures)
	}

	// Re-armed: new secrets work once more; the spent one is just wrong.
	armed, err := e.svc.Init(ctx, InitRequest{Name: "ops", Rearm: true, By: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if armed.Account.Generation != 2 || !armed.Account.Armed || !slices.Equal(armed.Account.Targets, []string{"web1"}) {
		t.Fatalf("got re-armed account %+v", armed.Account)
	}
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); !errors.Is(err, ErrDenied) {
		t.Fatalf("old secret after re-arm: got %v, want ErrDenied", err)
	}
	if _, err := e.svc.Exchange(ctx, request("ops", armed.Secrets[0])); err != nil {
		t.Fatalf("new secret: got %v", err)
	}
	if rearms := e.events(t, EventRearm); len(rearms) != 1 || rearms[0].Actor != "root" || rearms[0].Data["generation"] != float64(2) {
		t.Fatalf("got rearm events %+v", rearms)
	}

	// init of an existing account, re-arm of a missing one.
	if _, err := e.svc.Init(ctx, InitRequest{Name: "ops", Targets: []string{"web1"}, By: "root"}); !errors.Is(err, ErrExists) {
		t.Fatalf("init twice: got %v, want ErrExists", err)
	}
	if _, err := e.svc.Init(ctx, InitRequest{Name: "nope", Rearm: true, By: "root"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("re-arm unknown: got %v, want ErrNotFound", err)
	}
}

// TestExchangeRace: many exchanges of one secret at once, from different
// places; exactly one wins the compare-and-swap.
func TestExchangeRace(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.arm(t, "ops", false, "web1")[0]
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			req := request("ops", secret)
			req.Source = netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
			_, errs[i] = e.svc.Exchange(context.Background(), req)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, ErrReplayed), errors.As(err, new(*RateLimitedError)):
			// Lost the race, or held back by the per-account limit
			// (attempts take a token before they are checked).
		default:
			t.Fatalf("got %v, want success, ErrReplayed or rate limited", err)
		}
	}
	if won != 1 || len(e.events(t, EventUse)) != 1 {
		t.Fatalf("got %d winners and %d use events, want 1 and 1", won, len(e.events(t, EventUse)))
	}
}

func TestLockout(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxFailures, c.Lockout = 3, 10*time.Minute
		c.SourceLimit = Limit{Burst: 100, Every: time.Second}
		c.AccountLimit = Limit{Burst: 100, Every: time.Second}
	})
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	for i := 1; i <= 3; i++ {
		_, err := e.svc.Exchange(ctx, request("ops", mustSecret(t)))
		var locked *LockedError
		switch {
		case i < 3 && !errors.Is(err, ErrDenied):
			t.Fatalf("wrong secret %d: got %v, want ErrDenied", i, err)
		case i == 3 && (!errors.As(err, &locked) || !locked.Until.Equal(e.clock.now().Add(10*time.Minute))):
			t.Fatalf("wrong secret %d: got %v, want locked for 10m", i, err)
		}
	}
	// Every wrong secret is audited and alerted (one high alert, counted).
	if denied := e.events(t, EventDenied); len(denied) != 3 || denied[2].Data["failures"] != float64(3) {
		t.Fatalf("got denials %+v", denied)
	}
	if as := e.alertsOf(t, "breakglass.wrong_secret"); len(as) != 1 || as[0].Severity != alert.High || as[0].Count != 3 {
		t.Fatalf("got wrong-secret alerts %+v, want one high alert counted 3 times", as)
	}
	if locks := e.events(t, EventLock); len(locks) != 1 {
		t.Fatalf("got %d lockout events, want 1", len(locks))
	}
	if as := e.alertsOf(t, "breakglass.lockout"); len(as) != 1 || as[0].Severity != alert.Critical {
		t.Fatalf("got lockout alerts %+v, want one critical", as)
	}
	// Locked: even the right secret is refused, until the lockout ends.
	var locked *LockedError
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); !errors.As(err, &locked) {
		t.Fatalf("right secret while locked: got %v, want LockedError", err)
	}
	e.clock.add(10 * time.Minute)
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); err != nil {
		t.Fatalf("after the lockout: got %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxFailures = 100
		c.SourceLimit = Limit{Burst: 2, Every: time.Minute}
	})
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	for range 2 {
		if _, err := e.svc.Exchange(ctx, request("ops", mustSecret(t))); !errors.Is(err, ErrDenied) {
			t.Fatalf("got %v, want ErrDenied", err)
		}
	}
	// The source is out of tries: refused before any secret is checked.
	var limited *RateLimitedError
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); !errors.As(err, &limited) || limited.RetryAfter != time.Minute {
		t.Fatalf("got %v, want rate limited for 1m", err)
	}
	// Another address is not held up.
	other := request("ops", mustSecret(t))
	other.Source = netip.MustParseAddr("198.51.100.1")
	if _, err := e.svc.Exchange(ctx, other); !errors.Is(err, ErrDenied) {
		t.Fatalf("other source: got %v, want ErrDenied", err)
	}
	e.clock.add(time.Minute)
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); err != nil {
		t.Fatalf("after a minute: got %v", err)
	}
	if denied := e.events(t, EventDenied); denied[2].Data["reason"] != "rate_limited_source" {
		t.Fatalf("got %+v, want the rate limit audited", denied[2].Data)
	}
}

func TestTwoPersonRule(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFailures = 100 })
	ctx := context.Background()
	secrets := e.arm(t, "ops", true, "web1")
	if len(secrets) != 2 || secrets[0] == secrets[1] {
		t.Fatalf("got secrets %v, want two different ones", secrets)
	}
	a, b := secrets[0], secrets[1]
	tests := []struct {
		name    string
		secrets []string
		want    error
	}{
		{"first holder alone", []string{a}, ErrTwoPerson},
		{"second holder alone", []string{b}, ErrTwoPerson},
		{"one secret twice", []string{a, a}, ErrDenied},
		{"one right, one wrong", []string{a, mustSecret(t)}, ErrDenied},
		{"both, in order", []string{a, b}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Exchange(ctx, request("ops", tc.secrets...))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// One holder alone is not a wrong secret; one right and one wrong is.
	if accts, _ := e.svc.Accounts(ctx); accts[0].Failures != 0 || accts[0].Armed {
		t.Fatalf("got %+v, want spent with failures reset by the success", accts[0])
	}
	if denied := e.events(t, EventDenied); denied[3].Data["detail"] != "secret 2 of 2 wrong" {
		t.Fatalf("got %+v, want which secret was wrong on record", denied[3].Data)
	}
	// Both, the other way round, on a fresh arming.
	armed, err := e.svc.Init(ctx, InitRequest{Name: "ops", Rearm: true, By: "root"})
	if err != nil || len(armed.Secrets) != 2 {
		t.Fatalf("re-arm: %v, %d secrets; want 2", err, len(armed.Secrets))
	}
	if _, err := e.svc.Exchange(ctx, request("ops", armed.Secrets[1], armed.Secrets[0])); err != nil {
		t.Fatalf("both, reversed: got %v", err)
	}
}

func TestExpire(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	iss, err := e.svc.Exchange(ctx, request("ops", secret))
	if err != nil {
		t.Fatal(err)
	}
	jti := iss.Claims.ID
	e.live.sessions = []*session.Live{
		{Info: session.Session{ID: "s_bg", JTI: jti}, Issuer: "vigil"},
		{Info: session.Session{ID: "s_other", JTI: "other"}, Issuer: "vigil"},
		{Info: session.Session{ID: "s_foreign", JTI: jti}, Issuer: "https://idp.example.com/"},
	}
	next, err := e.svc.ExpireDue(ctx)
	if err != nil || !next.Equal(iss.Claims.ExpiresAt.Time) {
		t.Fatalf("before exp: got next %v, %v; want %v", next, err, iss.Claims.ExpiresAt.Time)
	}
	if e.revs.IsRevoked("vigil", jti) || len(e.live.ended) != 0 {
		t.Fatal("revoked before its time")
	}

	e.clock.add(20 * time.Minute)
	if next, err := e.svc.ExpireDue(ctx); err != nil || !next.IsZero() {
		t.Fatalf("at exp: got next %v, %v; want none", next, err)
	}
	// Revoked at exp: the clock skew leeway no longer keeps it valid.
	var ve *token.VerifyError
	if _, err := e.verifier.Verify(ctx, iss.Token, netip.Addr{}); !errors.As(err, &ve) || ve.Reason != token.ReasonRevoked {
		t.Fatalf("got %v, want revoked", err)
	}
	if want := []string{"s_bg by vigil: break-glass access expired"}; !slices.Equal(e.live.ended, want) {
		t.Fatalf("got ended %v, want %v", e.live.ended, want)
	}
	exp := e.events(t, EventExpire)
	if len(exp) != 1 || exp[0].Data["jti"] != jti || exp[0].Data["ended_sessions"] != float64(1) || exp[0].Target != "web1" {
		t.Fatalf("got expire events %+v", exp)
	}
	// Once only.
	if _, err := e.svc.ExpireDue(ctx); err != nil || len(e.events(t, EventExpire)) != 1 {
		t.Fatalf("second round: %v, %d expire events; want 1", err, len(e.events(t, EventExpire)))
	}
	if u, _ := e.svc.Use(ctx, jti); !u.ExpiredAt.Equal(e.clock.now()) {
		t.Fatalf("got expired at %v, want %v", u.ExpiredAt, e.clock.now())
	}
}

// TestRunRevokesAtExpiry runs the loop on the real clock.
func TestRunRevokesAtExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Now = time.Now })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	secret := e.arm(t, "ops", false, "web1")[0]
	req := request("ops", secret)
	req.TTL = 2 * time.Second
	iss, err := e.svc.Exchange(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !e.revs.IsRevoked("vigil", iss.Claims.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the token was not revoked at its expiry")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Now().Before(iss.Claims.ExpiresAt.Time) {
		t.Fatal("revoked before its expiry")
	}
}

func TestReview(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	iss, err := e.svc.Exchange(ctx, request("ops", secret))
	if err != nil {
		t.Fatal(err)
	}
	jti := iss.Claims.ID
	var invalidErr *InvalidError
	tests := []struct {
		name, jti, by, note string
		is                  func(error) bool
	}{
		{"by the user", jti, "carol", "all fine", func(err error) bool { return errors.Is(err, ErrSelfReview) }},
		{"without a note", jti, "root", " ", func(err error) bool { return errors.As(err, &invalidErr) }},
		{"unknown use", "nope", "root", "x", func(err error) bool { return errors.Is(err, ErrUseNotFound) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.svc.Review(ctx, tc.jti, tc.by, tc.note, "10.0.0.1"); !tc.is(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if unacked, _ := e.alerts.List(ctx, alert.Filter{Kind: AlertKind, Unacked: true}); len(unacked) != 1 {
		t.Fatalf("got %d unacknowledged alerts before the review, want the use's", len(unacked))
	}
	if unrev, _ := e.svc.Uses(ctx, UseFilter{Unreviewed: true}); len(unrev) != 1 {
		t.Fatalf("got %d unreviewed uses, want 1", len(unrev))
	}

	u, err := e.svc.Review(ctx, jti, "root", "disk full on web1, justified", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if u.ReviewedBy != "root" || u.Note != "disk full on web1, justified" || !u.Reviewed() {
		t.Fatalf("got %+v", u)
	}
	rv := e.events(t, EventReview)
	if len(rv) != 1 || rv[0].Actor != "root" || rv[0].Data["jti"] != jti || rv[0].Data["note"] != "disk full on web1, justified" {
		t.Fatalf("got review events %+v", rv)
	}
	a, _ := e.alerts.Get(ctx, u.AlertID)
	if !a.Acked() || a.AckedBy != "root" {
		t.Fatalf("got alert %+v, want acknowledged by the reviewer", a)
	}
	if unrev, _ := e.svc.Uses(ctx, UseFilter{Unreviewed: true}); len(unrev) != 0 {
		t.Fatalf("got %d unreviewed uses after the review, want 0", len(unrev))
	}
	if _, err := e.svc.Review(ctx, jti, "sec", "again", ""); !errors.Is(err, ErrReviewed) {
		t.Fatalf("second review: got %v, want ErrReviewed", err)
	}
}

// failingSink fails the appends of one event type.
type failingSink struct {
	audit.Sink
	typ string
}

func (f failingSink) Append(ctx context.Context, ev audit.Event) error {
	if ev.Type == f.typ {
		return errors.New("disk full")
	}
	return f.Sink.Append(ctx, ev)
}

// TestExchangeUndoneWhenNotRecorded: a use that cannot be audited is not
// granted; its token is revoked and the secret stays good.
func TestExchangeUndoneWhenNotRecorded(t *testing.T) {
	var sink *failingSink
	e := newEnv(t, func(c *Config) {
		sink = &failingSink{Sink: c.Audit, typ: EventUse}
		c.Audit = sink
	})
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	iss, err := e.svc.Exchange(ctx, request("ops", secret))
	if iss != nil || err == nil {
		t.Fatalf("got %v, %v; want a failure", iss, err)
	}
	aborts := e.events(t, EventAbort)
	if len(aborts) != 1 {
		t.Fatalf("got %d abort events, want 1", len(aborts))
	}
	if jti, _ := aborts[0].Data["jti"].(string); !e.revs.IsRevoked("vigil", jti) {
		t.Fatal("the unrecorded token was not revoked")
	}
	if uses, _ := e.svc.Uses(ctx, UseFilter{}); len(uses) != 0 {
		t.Fatalf("got %d uses, want the unrecorded one deleted", len(uses))
	}
	sink.typ = ""
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); err != nil {
		t.Fatalf("once the audit log works again: got %v", err)
	}
}

// TestWebhookGetsTheAlert: a signed webhook receiver on loopback gets the
// critical break-glass alert.
func TestWebhookGetsTheAlert(t *testing.T) {
	e := newEnv(t, nil)
	secretKey := []byte("webhook-secret")
	got := make(chan alert.Alert, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := alert.VerifySignature(secretKey, r.Header.Get(alert.HeaderTimestamp), r.Header.Get(alert.HeaderSignature), body, time.Now(), 0); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var a alert.Alert
		json.Unmarshal(body, &a)
		got <- a
	}))
	defer srv.Close()
	d, err := alert.NewDispatcher(e.alerts, []alert.Sink{&alert.Webhook{SinkName: "soc", URL: srv.URL, Secret: secretKey, Min: alert.Critical}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// A new sink gets the alerts raised once its cursor exists.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alert_cursors WHERE sink = 'soc'`).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dispatcher did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}

	secret := e.arm(t, "ops", false, "web1")[0]
	iss, err := e.svc.Exchange(ctx, request("ops", secret))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.Kind != AlertKind || a.Rule != "breakglass.use" || a.Severity != alert.Critical || a.Data["jti"] != iss.Claims.ID || a.Actor != "carol" {
			t.Fatalf("got alert %+v", a)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the webhook did not receive the break-glass alert")
	}
}

// TestExchangeOneAtATimePerSource: a burst of wrong secrets from one
// source is refused at once (no queue of Argon2id work), and only the
// attempts actually checked count towards the lockout.
func TestExchangeOneAtATimePerSource(t *testing.T) {
	e := newEnv(t, nil)
	e.arm(t, "ops", false, "web1")
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = e.svc.Exchange(context.Background(), request("ops", "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH"))
		})
	}
	wg.Wait()
	limited := 0
	for _, err := range errs {
		var rl *RateLimitedError
		if errors.As(err, &rl) {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("30 concurrent attempts from one source were all checked")
	}
	if checked := n - limited; checked > 5 {
		t.Fatalf("%d attempts from one source reached the hash check, want at most the burst of 5", checked)
	}
}

// TestRecreatedAccountWorks: an account removed and created again under
// the same name is usable (its generations continue past the old uses').
func TestRecreatedAccountWorks(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	secret := e.arm(t, "ops", false, "web1")[0]
	if _, err := e.svc.Exchange(ctx, request("ops", secret)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, "ops", "root", ""); err != nil {
		t.Fatal(err)
	}
	secret = e.arm(t, "ops", false, "web1")[0]
	req := request("ops", secret)
	req.Source = netip.MustParseAddr("192.0.2.99")
	if _, err := e.svc.Exchange(ctx, req); err != nil {
		t.Fatalf("exchange on the recreated account: %v", err)
	}
}
