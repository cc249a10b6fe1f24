package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/breakglass"
	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
	"golang.org/x/crypto/ssh"
)

// bgEnv is an API server with break-glass wired: targets web1 (ssh, root)
// and web2; admins "root" and "carol".
type bgEnv struct {
	srv               *httptest.Server
	audit             *audit.Log
	admin, carolAdmin string
}

func newBreakGlassEnv(t *testing.T, maxFailures int) *bgEnv {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})
	vlt := vault.New(f.db, f.mk, nil)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(key, "")
	hostPub, _ := ssh.NewPublicKey(key.Public())
	for _, name := range []string{"web1", "web2"} {
		if _, err := vlt.Add(ctx, vault.Target{Name: name, Kind: vault.KindSSH, Addr: "127.0.0.1:22", Login: "root", Auth: vault.AuthKey,
			HostKey: string(ssh.MarshalAuthorizedKey(hostPub))}, pem.EncodeToMemory(block)); err != nil {
			t.Fatal(err)
		}
	}
	alerts, err := alert.NewStore(f.db, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	live := session.NewRegistry(nil)
	bg, err := breakglass.New(breakglass.Config{DB: f.db, Signer: f.signer, Targets: vlt, Audit: f.log, Alerts: alerts, Revocations: f.revs,
		Live: live, Issuer: "vigil", MaxFailures: maxFailures, Lockout: time.Hour,
		Params: breakglass.Params{Time: 1, MemoryKiB: 64, Threads: 1}, Log: f.logger})
	if err != nil {
		t.Fatal(err)
	}
	s := f.server(nil)
	s.Grants, s.Vault, s.Sessions, s.Live, s.Alerts, s.BreakGlass = policy.NewGrants(f.db, nil), vlt, session.NewStore(f.db), live, alerts, bg
	e := &bgEnv{srv: serve(t, s), audit: f.log, admin: f.admin}
	e.carolAdmin, _, _ = f.signer.Issue(token.Request{Subject: "carol", Roles: []string{token.RoleAdmin}})
	return e
}

// call is the package's call on this server.
func (e *bgEnv) call(t *testing.T, method, path, tok, body string, out any) (int, APIError) {
	t.Helper()
	return call(t, e.srv.URL, method, path, tok, body, out)
}

func (e *bgEnv) arm(t *testing.T, body string) []string {
	t.Helper()
	var armed breakglass.Armed
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass/accounts", e.admin, body, &armed); status != http.StatusCreated {
		t.Fatalf("init: got %d %+v", status, apiErr)
	}
	return armed.Secrets
}

func exchangeBody(account, target, reason, ttl string, secrets ...string) string {
	b, _ := json.Marshal(BreakGlassRequest{Account: account, Secrets: secrets, User: "carol", Target: target, Reason: reason, TTL: ttl})
	return string(b)
}

func TestBreakGlassAPI(t *testing.T) {
	e := newBreakGlassEnv(t, 5)
	secret := e.arm(t, `{"name":"ops","targets":["web1"],"max_ttl":"1h"}`)[0]
	wrong := strings.Repeat("AAAA-", 7) + "AAAA"

	tests := []struct {
		name, method, path, tok, body string
		status                        int
		code                          string
	}{
		{"init without admin", "POST", "/api/v1/breakglass/accounts", "", `{"name":"x","targets":["web1"]}`, 401, "unauthorized"},
		{"init of an unknown target", "POST", "/api/v1/breakglass/accounts", e.admin, `{"name":"x","targets":["ghost"]}`, 400, "bad_request"},
		{"init over the token maximum", "POST", "/api/v1/breakglass/accounts", e.admin, `{"name":"x","targets":["web1"],"max_ttl":"9h"}`, 400, "bad_request"},
		{"init twice", "POST", "/api/v1/breakglass/accounts", e.admin, `{"name":"ops","targets":["web1"]}`, 409, "exists"},
		{"exchange: not JSON", "POST", "/api/v1/breakglass", "", `account=ops`, 400, "bad_request"},
		{"exchange: unknown field", "POST", "/api/v1/breakglass", "", `{"account":"ops","admin":true}`, 400, "bad_request"},
		{"exchange: body too large", "POST", "/api/v1/breakglass", "", `{"reason":"` + strings.Repeat("x", maxBreakGlassBody) + `"}`, 413, "too_large"},
		{"exchange: no reason", "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "", "", secret), 400, "bad_request"},
		{"exchange: bad ttl", "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage", "soon", secret), 400, "bad_request"},
		{"exchange: over the cap", "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage", "2h", secret), 400, "bad_request"},
		{"exchange: target not covered", "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web2", "outage", "", secret), 400, "bad_request"},
		{"exchange: wrong secret", "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage", "", wrong), 401, "denied"},
		{"exchange: unknown account", "POST", "/api/v1/breakglass", "", exchangeBody("nope", "web1", "outage", "", secret), 401, "denied"},
		{"review unknown use", "POST", "/api/v1/breakglass/uses/nope/review", e.admin, `{"note":"x"}`, 404, "not_found"},
		{"remove unknown account", "DELETE", "/api/v1/breakglass/accounts/nope", e.admin, "", 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, apiErr := e.call(t, tc.method, tc.path, tc.tok, tc.body, nil)
			if status != tc.status || apiErr.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", status, apiErr, tc.status, tc.code)
			}
			if tc.code == "denied" && apiErr.Message != "break-glass access denied" {
				t.Fatalf("got message %q, want the generic denial", apiErr.Message)
			}
		})
	}

	// The exchange: no bearer token, just the secret.
	var resp BreakGlassResponse
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage 42", "20m", secret), &resp); status != http.StatusCreated {
		t.Fatalf("exchange: got %d %+v", status, apiErr)
	}
	if !resp.Claims.BreakGlass || resp.Claims.Subject != "carol" || resp.Login != "root" || resp.Target != "web1" ||
		resp.ExpiresAt.Sub(resp.Claims.IssuedAt.Time) != 20*time.Minute {
		t.Fatalf("got %+v", resp)
	}
	var who WhoAmI
	if status, _ := e.call(t, "GET", "/api/v1/whoami", resp.Token, "", &who); status != 200 || !who.Claims.BreakGlass || who.Admin {
		t.Fatalf("whoami with the break-glass token: %d %+v", status, who)
	}
	// A bg token administers nothing.
	if status, _ := e.call(t, "GET", "/api/v1/breakglass/uses", resp.Token, "", nil); status != http.StatusForbidden {
		t.Fatalf("bg token on an admin endpoint: got %d, want 403", status)
	}
	// Replayed.
	status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "again", "", secret), nil)
	if status != http.StatusConflict || apiErr.Code != "replayed" || !strings.Contains(apiErr.Message, "already used") {
		t.Fatalf("replay: got %d %+v", status, apiErr)
	}

	// The use is listed unreviewed, and its alert unacknowledged.
	var uses struct{ Uses []breakglass.Use }
	e.call(t, "GET", "/api/v1/breakglass/uses?unreviewed=true", e.admin, "", &uses)
	if len(uses.Uses) != 1 || uses.Uses[0].JTI != resp.JTI {
		t.Fatalf("got unreviewed uses %+v", uses.Uses)
	}
	var alerts struct{ Alerts []alert.Alert }
	e.call(t, "GET", "/api/v1/alerts?kind=breakglass&unacked=true&severity=critical", e.admin, "", &alerts)
	if !hasRule(alerts.Alerts, "breakglass.use") {
		t.Fatalf("got unacknowledged alerts %+v, want the use's", alerts.Alerts)
	}

	// Reviewed by someone else only.
	review := "/api/v1/breakglass/uses/" + resp.JTI + "/review"
	if status, apiErr := e.call(t, "POST", review, e.carolAdmin, `{"note":"mine"}`, nil); status != http.StatusForbidden {
		t.Fatalf("self-review: got %d %+v, want 403", status, apiErr)
	}
	if status, apiErr := e.call(t, "POST", review, e.admin, `{}`, nil); status != http.StatusBadRequest {
		t.Fatalf("review without a note: got %d %+v, want 400", status, apiErr)
	}
	var reviewed breakglass.Use
	if status, apiErr := e.call(t, "POST", review, e.admin, `{"note":"justified"}`, &reviewed); status != 200 || reviewed.ReviewedBy != "root" {
		t.Fatalf("review: got %d %+v %+v", status, apiErr, reviewed)
	}
	if status, apiErr := e.call(t, "POST", review, e.admin, `{"note":"again"}`, nil); status != http.StatusConflict || apiErr.Code != "already_reviewed" {
		t.Fatalf("second review: got %d %+v", status, apiErr)
	}
	alerts.Alerts = nil
	e.call(t, "GET", "/api/v1/alerts?kind=breakglass&unacked=true", e.admin, "", &alerts)
	if hasRule(alerts.Alerts, "breakglass.use") {
		t.Fatal("the reviewed use's alert is still unacknowledged")
	}

	// Every refusal above is on record.
	evs, err := e.audit.Search(context.Background(), audit.Query{Type: "breakglass.denied", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, ev := range evs {
		reasons[ev.Data["reason"].(string)] = true
	}
	for _, want := range []string{"invalid_request", "ttl_over_cap", "target_not_allowed", "wrong_secret", "unknown_account", "replayed"} {
		if !reasons[want] {
			t.Errorf("no breakglass.denied event with reason %s (got %v)", want, reasons)
		}
	}
}

func TestBreakGlassAPILockout(t *testing.T) {
	e := newBreakGlassEnv(t, 2)
	secret := e.arm(t, `{"name":"ops","targets":["web1"]}`)[0]
	wrong := exchangeBody("ops", "web1", "outage", "", strings.Repeat("AAAA-", 7)+"AAAA")
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", wrong, nil); status != 401 || apiErr.Code != "denied" {
		t.Fatalf("first wrong secret: got %d %+v", status, apiErr)
	}
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", wrong, nil); status != 429 || apiErr.Code != "locked" {
		t.Fatalf("second wrong secret: got %d %+v, want 429 locked", status, apiErr)
	}
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage", "", secret), nil); status != 429 || apiErr.Code != "locked" {
		t.Fatalf("right secret while locked: got %d %+v, want 429 locked", status, apiErr)
	}
	// An admin's re-arm lifts the lock with new secrets.
	secrets := e.arm(t, `{"name":"ops","rearm":true,"two_person":true}`)
	if len(secrets) != 2 {
		t.Fatalf("got %d secrets, want 2 (two-person turned on)", len(secrets))
	}
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage", "", secrets[0]), nil); status != 401 || apiErr.Code != "two_person" {
		t.Fatalf("one of two secrets: got %d %+v", status, apiErr)
	}
	if status, apiErr := e.call(t, "POST", "/api/v1/breakglass", "", exchangeBody("ops", "web1", "outage", "", secrets...), nil); status != 201 {
		t.Fatalf("both secrets: got %d %+v", status, apiErr)
	}
}

func hasRule(as []alert.Alert, rule string) bool {
	for _, a := range as {
		if a.Rule == rule {
			return true
		}
	}
	return false
}
