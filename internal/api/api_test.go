package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/store"
)

type env struct {
	srv   *httptest.Server
	db    *store.DB
	admin string
	user  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	f := newFixture(t, fixtureOptions{})
	s := f.server(nil)
	s.Grants = policy.NewGrants(f.db, nil)
	return &env{srv: serve(t, s), db: f.db, admin: f.admin, user: f.user}
}

func (e *env) do(t *testing.T, method, path, tok, body string) (int, APIError) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Error APIError }
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	if resp.StatusCode >= 400 && (out.Error.Code == "" || resp.Header.Get("Content-Type") != "application/json") {
		t.Fatalf("%s %s: error body %q is not the JSON error format", method, path, b)
	}
	return resp.StatusCode, out.Error
}

func TestAPIErrors(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path, tok, body string
		status                        int
		code                          string
	}{
		{"unknown path", "GET", "/nope", "", "", 404, "not_found"},
		{"no token", "GET", "/api/v1/whoami", "", "", 401, "unauthorized"},
		{"user on admin endpoint", "GET", "/api/v1/keys", e.user, "", 403, "forbidden"},
		{"unknown field", "POST", "/api/v1/tokens", e.admin, `{"sub":"a","admin":true}`, 400, "bad_request"},
		{"not JSON", "POST", "/api/v1/tokens", e.admin, `sub=a`, 400, "bad_request"},
		{"body too large", "POST", "/api/v1/tokens", e.admin, `{"sub":"` + strings.Repeat("a", maxBody) + `"}`, 413, "too_large"},
		{"bad ttl", "POST", "/api/v1/tokens", e.admin, `{"sub":"a","ttl":"forever"}`, 400, "bad_request"},
		{"ttl over max", "POST", "/api/v1/tokens", e.admin, `{"sub":"a","ttl":"9h"}`, 400, "bad_request"},
		{"user issues for another", "POST", "/api/v1/tokens", e.user, `{"sub":"bob","grants":[{"target":"t","login":"l","actions":["shell"]}]}`, 403, "forbidden"},
		{"revoke without jti", "POST", "/api/v1/tokens/revoke", e.admin, `{}`, 400, "bad_request"},
		{"grant without target", "POST", "/api/v1/grants", e.admin, `{"user":"a","login":"l","actions":["shell"]}`, 400, "bad_request"},
		{"remove unknown grant", "DELETE", "/api/v1/grants/g_nope", e.admin, "", 404, "not_found"},
		{"bad since", "GET", "/api/v1/audit?since=yesterday", e.admin, "", 400, "bad_request"},
		{"wrong method", "DELETE", "/api/v1/whoami", e.admin, "", 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, apiErr := e.do(t, tc.method, tc.path, tc.tok, tc.body)
			if status != tc.status || apiErr.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", status, apiErr, tc.status, tc.code)
			}
		})
	}
}

// TestAPIFailsClosedWhenAuditIsDown: with the store gone, a valid token
// is not honoured (the verification cannot be recorded) and nothing
// crashes or hangs.
func TestAPIFailsClosedWhenAuditIsDown(t *testing.T) {
	e := newEnv(t)
	if status, _ := e.do(t, "GET", "/api/v1/whoami", e.admin, ""); status != 200 {
		t.Fatalf("before: %d", status)
	}
	e.db.Close()
	status, apiErr := e.do(t, "GET", "/api/v1/whoami", e.admin, "")
	if status != http.StatusServiceUnavailable || apiErr.Code != "unavailable" {
		t.Fatalf("got %d %+v, want 503 unavailable", status, apiErr)
	}
}
