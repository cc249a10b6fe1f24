package main

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
)

// TestMonitorEndToEnd: tokens presented to a real server raise monitor
// alerts (alg none, header injection, a burst of bad signatures), listed
// by `vigil alerts ls`; the evidence never holds the token.
func TestMonitorEndToEnd(t *testing.T) {
	s, err := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	claims := enc([]byte(`{"iss":"vigil","sub":"mallory","aud":"vigil","exp":4102444800}`))
	none := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + claims + "."
	jku := enc([]byte(`{"alg":"EdDSA","kid":"x","jku":"https://evil.example/jwks.json"}`)) + "." + claims + "." + enc([]byte("sig"))
	good := strings.TrimSpace(s.must("", "token", "issue", "--user", "bob"))
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + parts[1] + "." + enc(make([]byte, 64))
	for _, tok := range []string{none, jku} {
		if code, _ := s.get(tok, "/api/v1/whoami"); code != 401 {
			t.Fatalf("forged token accepted: %d", code)
		}
	}
	for i := 0; i < 12; i++ {
		s.get(forged, "/api/v1/whoami")
	}
	var out string
	waitUntil(t, "monitor alerts", func() bool {
		out = s.must("", "alerts", "ls", "--kind", "monitor", "-o", "json")
		return strings.Contains(out, `"rule": "alg_none"`) && strings.Contains(out, `"rule": "header_injection"`) &&
			strings.Contains(out, `"rule": "signature_burst"`)
	})
	for _, secret := range []string{none, jku, forged, parts[2]} {
		if strings.Contains(out, secret) {
			t.Fatalf("an alert holds a presented token:\n%s", out)
		}
	}
}
