package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/breakglass"
	"github.com/vigil-pam/vigil/internal/report"
)

// secretRE matches a printed break-glass secret.
var secretRE = regexp.MustCompile(`[A-Z2-7]{4}(-[A-Z2-7]{4}){7}`)

// vigilWith runs a CLI command against s with extra environment and stdin;
// VIGIL_TOKEN is tok (empty: the admin token file).
func (s *server) vigilWith(tok string, env []string, stdin string, args ...string) (string, string, bool) {
	s.t.Helper()
	cmd := exec.Command(vigilBin, args...)
	cmd.Env = append(append(os.Environ(), "VIGIL_ADDR=http://"+s.addr, "VIGIL_DATA="+s.data, "VIGIL_TOKEN="+tok), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

// breakGlass exchanges secret for account ops on web1 as carol, with
// extra flags, and returns stdout, stderr and success.
func (s *server) breakGlass(secret string, args ...string) (string, string, bool) {
	s.t.Helper()
	return s.vigilWith("", []string{"VIGIL_BREAKGLASS_SECRET=" + secret}, "",
		append([]string{"breakglass", "--name", "ops", "--target", "web1", "--as", "carol", "--reason", "INC-1: IdP down, disk full"}, args...)...)
}

// TestBreakGlass: the whole break-glass flow against a real sshd: a secret
// (once) becomes a token; its use is alerted to a webhook on loopback; the
// session is recorded and flagged, its rules only alert; the token is
// revoked when its TTL ends, the session warned and then ended; replays,
// bad requests, lockout and the two-person rule are refused and audited;
// the use is reviewed by someone else and leaves the alerts.
func TestBreakGlass(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o600)
	hook := newHookReceiver(t, "bg-hook-secret")
	t.Setenv("VIGIL_TEST_BG_HOOK_SECRET", "bg-hook-secret")
	f := newGatewayFixture(t, "ssh:\n  expiry_warning: 5s\nrules:\n  file: "+rulesFile+"\n"+
		"alerts:\n  webhooks:\n    - name: soc\n      url: "+hook.srv.URL+"/hook\n      secret_env: VIGIL_TEST_BG_HOOK_SECRET\n      min_severity: critical\n"+
		"breakglass:\n  max_failures: 3\n  lockout: 1h\n")
	s := f.s
	s.must("", "target", "rules", "web1", "test-guard")

	// init prints the secret once; only an admin may.
	var armed breakglass.Armed
	if err := json.Unmarshal([]byte(s.must("", "breakglass", "init", "--name", "ops", "--targets", "web1", "--max-ttl", "1h", "-o", "json")), &armed); err != nil {
		t.Fatal(err)
	}
	if len(armed.Secrets) != 1 || !secretRE.MatchString(armed.Secrets[0]) || armed.Account.TwoPerson {
		t.Fatalf("got %+v, want one secret", armed)
	}
	secret := armed.Secrets[0]
	if out := s.must("", "audit", "search", "--type", "breakglass.init", "-o", "json"); strings.Contains(out, secret) || !strings.Contains(out, `"account": "ops"`) {
		t.Fatalf("breakglass.init event: %s", out)
	}

	// Bad requests with the right secret: clear errors, the secret not spent.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "web2"}, `target "web2" is not covered by account ops`},
		{[]string{"--ttl", "2h"}, "exceeds the account's maximum of 1h0m0s"},
	} {
		if _, errOut, ok := s.breakGlass(secret, tc.args...); ok || !strings.Contains(errOut, tc.want) {
			t.Fatalf("%v: got ok=%v %q, want %q", tc.args, ok, errOut, tc.want)
		}
	}
	s.mustFail("", "--reason is required", "breakglass", "--name", "ops", "--target", "web1", "--as", "carol")

	// The exchange: the secret on stdin, no bearer token.
	out, errOut, ok := s.vigilWith("", nil, secret+"\n", "breakglass", "--name", "ops", "--target", "web1", "--as", "carol",
		"--reason", "INC-1: IdP down, disk full", "--ttl", "15s", "-o", "json")
	if !ok {
		t.Fatalf("exchange: %s", errOut)
	}
	var resp api.BreakGlassResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatal(err)
	}
	tok, jti := resp.Token, resp.JTI
	if !resp.Claims.BreakGlass || resp.Claims.Subject != "carol" || resp.Login != "root" {
		t.Fatalf("got %+v", resp)
	}

	// The webhook got the critical alert.
	waitUntil(t, "the webhook to receive the break-glass alert", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		for _, a := range hook.alerts {
			if a.Kind == "breakglass" && a.Rule == "breakglass.use" && a.Severity == "critical" && a.Data["jti"] == jti {
				return true
			}
		}
		return false
	})

	// The break-glass token cannot mint ordinary tokens.
	s.mustFail(tok, "cannot issue tokens", "token", "issue", "--user", "carol", "--grant", "web1:root:shell")

	// A session with it: recorded and flagged; a block rule only alerts;
	// warned before the TTL ends, ended when it does.
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	live := startTerminal(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo started; touch "+dir+"/forbidden-bg && echo touched; sleep 60; echo finished"))
	live.waitFor("touched")
	s.waitActive(t, 1)
	if out := s.must("", "sessions", "ls", "--active", "-o", "json"); !strings.Contains(out, `"breakglass": true`) {
		t.Fatalf("the live break-glass session is not flagged: %s", out)
	}
	id := f.lastSession(t)
	if code := live.wait(); code == 0 || strings.Contains(live.output(), "finished") {
		t.Fatalf("the session outlived its break-glass token: code %d output %q", code, live.output())
	}
	for _, want := range []string{"[vigil] your token expires at", "[vigil] session ended:"} {
		if !strings.Contains(live.output(), want) {
			t.Errorf("session output %q lacks %q", live.output(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "forbidden-bg")); err != nil {
		t.Fatal("the block rule blocked a break-glass command; break-glass rules should only alert")
	}
	if out := s.must("", "audit", "search", "--type", "rule.hit", "-o", "json"); !strings.Contains(out, `"taken": "alert"`) || !strings.Contains(out, id) {
		t.Fatalf("the rule hit of the break-glass session is not on record: %s", out)
	}
	if out := s.must("", "audit", "search", "--type", "session.start", "--session", id, "-o", "json"); !strings.Contains(out, `"breakglass": true`) {
		t.Fatalf("session.start is not flagged: %s", out)
	}
	if cast := f.recording(t, id); !strings.Contains(cast, "break-glass session") || !strings.Contains(cast, "forbidden-bg") {
		t.Fatalf("the recording lacks the break-glass marker or the command:\n%s", cast)
	}

	// Revoked at the end of its TTL: refused as revoked even within the
	// clock skew leeway.
	waitUntil(t, "breakglass.expire", func() bool {
		return strings.Contains(s.must("", "audit", "search", "--type", "breakglass.expire", "-o", "json"), jti)
	})
	s.mustFail("", "revoked", "token", "verify", tok)

	// Replayed: refused, audited, alerted.
	if _, errOut, ok := s.breakGlass(secret); ok || !strings.Contains(errOut, "already used") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("replay: got ok=%v %q", ok, errOut)
	}
	if out := s.must("", "audit", "search", "--type", "breakglass.replay", "-o", "json"); !strings.Contains(out, jti) {
		t.Fatalf("no breakglass.replay event: %s", out)
	}
	if out := s.must("", "alerts", "ls", "--kind", "breakglass", "-o", "json"); !strings.Contains(out, `"rule": "breakglass.replay"`) {
		t.Fatalf("no replay alert: %s", out)
	}

	// Unreviewed: an unacknowledged alert and UNREVIEWED in the report.
	if out := s.must("", "alerts", "ls", "--unacked", "--kind", "breakglass", "-o", "json"); !strings.Contains(out, `"rule": "breakglass.use"`) {
		t.Fatalf("the unreviewed use is not an unacknowledged alert: %s", out)
	}
	// ... which a plain acknowledgement cannot clear: only the review.
	var unacked []struct{ ID int64 }
	json.Unmarshal([]byte(s.must("", "alerts", "ls", "--unacked", "--kind", "breakglass", "-o", "json")), &unacked)
	for _, a := range unacked {
		if _, errs, ok := s.vigil("", "alerts", "ack", strconv.FormatInt(a.ID, 10)); !ok && !strings.Contains(errs, "acknowledged by its review") {
			t.Fatalf("ack of alert %d: %s", a.ID, errs)
		}
	}
	if out := s.must("", "alerts", "ls", "--unacked", "--kind", "breakglass", "-o", "json"); !strings.Contains(out, `"rule": "breakglass.use"`) {
		t.Fatalf("a plain ack cleared the unreviewed use: %s", out)
	}
	var rows []report.BreakglassRow
	if err := json.Unmarshal([]byte(s.must("", "report", "breakglass", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].JTI != jti || rows[0].Review != report.Unreviewed || rows[0].User != "carol" ||
		rows[0].Account != "ops" || rows[0].SessionCount != 1 || rows[0].Sessions[0] != id || rows[0].TTLS != 15 {
		t.Fatalf("got report %+v", rows)
	}

	// Reviewed by someone other than the user.
	carolAdmin := strings.TrimSpace(s.must("", "token", "issue", "--user", "carol", "--role", "admin"))
	s.mustFail(carolAdmin, "someone other than its user", "breakglass", "review", jti, "--note", "fine by me")
	s.mustFail("", "personal admin token", "breakglass", "review", jti, "--note", "shared token")
	daveAdmin := strings.TrimSpace(s.must("", "token", "issue", "--user", "dave", "--role", "admin"))
	if out := s.must(daveAdmin, "breakglass", "review", jti, "--note", "justified: disk full on web1"); !strings.Contains(out, "reviewed "+jti) {
		t.Fatalf("review: %s", out)
	}
	s.mustFail(daveAdmin, "already reviewed", "breakglass", "review", jti, "--note", "again")
	rows = nil
	json.Unmarshal([]byte(s.must("", "report", "breakglass", "-o", "json")), &rows)
	if len(rows) != 1 || rows[0].Review != report.Reviewed || rows[0].ReviewedBy != "dave" || rows[0].ReviewNote != "justified: disk full on web1" {
		t.Fatalf("got report %+v after the review", rows)
	}
	if out := s.must("", "alerts", "ls", "--unacked", "--kind", "breakglass", "-o", "json"); strings.Contains(out, `"rule": "breakglass.use"`) {
		t.Fatalf("the reviewed use is still an unacknowledged alert: %s", out)
	}

	// Re-armed: new secret, audited.
	out = s.must("", "breakglass", "init", "--name", "ops", "--rearm")
	if fresh := secretRE.FindString(out); fresh == "" || fresh == secret || !strings.Contains(out, "re-armed (generation 2)") {
		t.Fatalf("re-arm: %s", out)
	}
	if out := s.must("", "breakglass", "ls"); !strings.Contains(out, "armed") {
		t.Fatalf("ls after re-arm: %s", out)
	}

	// Lockout after max_failures wrong secrets; then even the right one
	// is refused.
	var locky breakglass.Armed
	json.Unmarshal([]byte(s.must("", "breakglass", "init", "--name", "locky", "--targets", "web1", "-o", "json")), &locky)
	wrong := strings.Repeat("AAAA-", 7) + "AAAA"
	lockArgs := func(secret string) (string, bool) {
		_, errOut, ok := s.vigilWith("", []string{"VIGIL_BREAKGLASS_SECRET=" + secret}, "",
			"breakglass", "--name", "locky", "--target", "web1", "--as", "dave", "--reason", "INC-2")
		return errOut, ok
	}
	for i, want := range []string{"break-glass access denied", "break-glass access denied", "locked"} {
		if errOut, ok := lockArgs(wrong); ok || !strings.Contains(errOut, want) {
			t.Fatalf("wrong secret %d: got ok=%v %q, want %q", i+1, ok, errOut, want)
		}
	}
	if errOut, ok := lockArgs(locky.Secrets[0]); ok || !strings.Contains(errOut, "locked") {
		t.Fatalf("right secret while locked: got ok=%v %q", ok, errOut)
	}
	if out := s.must("", "audit", "search", "--type", "breakglass.lockout", "-o", "json"); !strings.Contains(out, `"account": "locky"`) {
		t.Fatalf("no lockout event: %s", out)
	}
	if out := s.must("", "audit", "search", "--type", "breakglass.denied", "-o", "json", "--limit", "1000"); strings.Count(out, `"reason": "wrong_secret"`) != 3 {
		t.Fatalf("want 3 wrong_secret denials on record: %s", out)
	}

	// The two-person rule: both secrets, from two people.
	out = s.must("", "breakglass", "init", "--name", "pair", "--targets", "web1", "--two-person")
	pair := secretRE.FindAllString(out, -1)
	if len(pair) != 2 || !strings.Contains(out, "Secret 2 of 2") {
		t.Fatalf("two-person init: %s", out)
	}
	pairArgs := []string{"breakglass", "--name", "pair", "--target", "web1", "--as", "erin", "--reason", "INC-3"}
	if _, errOut, ok := s.vigilWith("", []string{"VIGIL_BREAKGLASS_SECRET=" + pair[0]}, "", pairArgs...); ok || !strings.Contains(errOut, "two-person rule") {
		t.Fatalf("one of two secrets: got ok=%v %q", ok, errOut)
	}
	out, errOut, ok = s.vigilWith("", nil, pair[1]+"\n"+pair[0]+"\n", pairArgs...)
	if !ok || strings.Count(strings.TrimSpace(out), ".") != 2 || !strings.Contains(errOut, "BREAK-GLASS token for erin on web1") {
		t.Fatalf("both secrets on stdin: got ok=%v out %q err %q", ok, out, errOut)
	}
}
