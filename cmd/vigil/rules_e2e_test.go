package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
)

const testRules = `packs:
  - name: test-guard
    description: rules the end-to-end tests exercise
    rules:
      - id: no-forbidden
        pattern: '\btouch\s+\S*forbidden'
        action: block
        severity: high
        description: creating forbidden files is not allowed
      - id: review-me
        pattern: '\btouch\s+\S*needs-review'
        action: pause
        description: needs a second pair of eyes
      - id: kill-switch
        pattern: '\btouch\s+\S*kill-switch'
        action: terminate
        severity: critical
        description: this ends the session
      - id: secret-output
        kind: output
        pattern: 'TOP-SECRET-MARKER'
        action: alert
        description: a secret marker was printed
`

// hookReceiver is a webhook endpoint on loopback that keeps the alerts
// whose signature verifies.
type hookReceiver struct {
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	alerts []alert.Alert
	bad    int
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{secret: []byte(secret)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		err := alert.VerifySignature(h.secret, r.Header.Get("X-Vigil-Timestamp"), r.Header.Get("X-Vigil-Signature"), body, time.Now(), 5*time.Minute)
		var a alert.Alert
		if err != nil || json.Unmarshal(body, &a) != nil {
			h.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		h.alerts = append(h.alerts, a)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) rules() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, a := range h.alerts {
		ids = append(ids, a.Rule)
	}
	return ids
}

// TestSSHGatewayRules: rules act on what users type and run, against a
// real sshd: block (the side effect never happens, a look-alike runs),
// pause for review, terminate, output alerts; hits are audited, listed as
// alerts and sent to a signed webhook.
func TestSSHGatewayRules(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o600)
	hook := newHookReceiver(t, "hook-secret-for-tests")
	t.Setenv("VIGIL_TEST_HOOK_SECRET", "hook-secret-for-tests")
	f := newGatewayFixture(t, "rules:\n  file: "+rulesFile+"\nalerts:\n  webhooks:\n    - name: soc\n      url: "+hook.srv.URL+"/hook\n      secret_env: VIGIL_TEST_HOOK_SECRET\n")
	s := f.s
	if out := s.must("", "target", "rules", "web1", "test-guard,credential-access"); !strings.Contains(out, "test-guard,credential-access") {
		t.Fatalf("target rules: %s", out)
	}
	s.mustFail("", "unknown", "target", "rules", "web1", "no-such-pack")
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }

	tok := f.token(t, "--grant", "web1:root:shell,exec")
	term := f.shell(t, tok, "; cd "+dir)

	// block: typed key by key, and pasted with other commands.
	for _, c := range "touch forbidden-1" {
		term.send(string(c))
	}
	term.send("\r")
	term.waitFor("[vigil] command blocked by rule no-forbidden: creating forbidden files is not allowed")
	term.send("echo a-$((40+2)); touch forbidden-2\r")
	waitUntil(t, "the second block", func() bool { return strings.Count(term.output(), "[vigil] command blocked by rule no-forbidden") == 2 })
	// A look-alike runs; had the blocked ones run, they would be done by
	// the time it is.
	term.send("touch allowed-1 && echo made-$((6*7))\r")
	term.waitFor("made-42")
	if exists("forbidden-1") || exists("forbidden-2") || !exists("allowed-1") {
		t.Fatalf("block rule: forbidden-1 %v forbidden-2 %v allowed-1 %v", exists("forbidden-1"), exists("forbidden-2"), exists("allowed-1"))
	}

	// An ESC already on the target cannot turn the line clearing into
	// readline's shell-expand-line (which would run the substitution).
	term.send("echo $(touch forbidden-esc)\x1b")
	time.Sleep(100 * time.Millisecond)
	term.send("\r")
	waitUntil(t, "the third block", func() bool { return strings.Count(term.output(), "[vigil] command blocked by rule no-forbidden") == 3 })
	term.send("echo after-esc-$((6*7))\r")
	term.waitFor("after-esc-42")
	if exists("forbidden-esc") {
		t.Fatal("a blocked command substitution ran")
	}

	// output rule: alert only.
	term.send("printf 'TOP-SECRET-%s\\n' MARKER\r")
	term.waitFor("TOP-SECRET-MARKER\r\n")

	// pause: the command waits for an admin, then runs.
	term.send("touch needs-review && echo reviewed-$((6*7))\r")
	term.waitFor("[vigil] session paused by rule review-me: review before it runs: needs a second pair of eyes")
	id := f.lastSession(t)
	time.Sleep(200 * time.Millisecond)
	if exists("needs-review") {
		t.Fatal("the command a pause rule held ran before review")
	}
	s.must("", "sessions", "resume", id)
	term.waitFor("reviewed-42")
	// What follows a held command in the same chunk has not been seen by
	// the rules: it is dropped, not released with the approval.
	term.send("touch needs-review-2\rtouch sneaked-in\r")
	waitUntil(t, "the second pause", func() bool { return strings.Count(term.output(), "session paused by rule review-me") == 2 })
	s.must("", "sessions", "resume", id)
	term.send("echo second-review-$((6*7))\r")
	term.waitFor("second-review-42")
	if !exists("needs-review-2") || exists("sneaked-in") {
		t.Fatalf("after the second review: needs-review-2 %v, sneaked-in %v", exists("needs-review-2"), exists("sneaked-in"))
	}

	// terminate.
	term.send("touch kill-switch\r")
	if code := term.wait(); code == 0 || !strings.Contains(term.output(), "[vigil] session ended: terminated by rule kill-switch: this ends the session") {
		t.Fatalf("terminate rule: code %d output %q", code, term.output())
	}
	if exists("kill-switch") {
		t.Fatal("the command of a terminate rule ran")
	}

	// exec requests are checked exactly.
	_, errOut, code := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "touch "+dir+"/forbidden-3"), "")
	if code != 1 || !strings.Contains(errOut, "command blocked by rule no-forbidden") || exists("forbidden-3") {
		t.Fatalf("exec block: code %d stderr %q exists %v", code, errOut, exists("forbidden-3"))
	}
	if out, _, code := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "touch "+dir+"/allowed-2 && echo ok"), ""); code != 0 || out != "ok\n" {
		t.Fatalf("innocent exec: %d %q", code, out)
	}
	// A command dressed as scp is an ordinary command, checked as one.
	if _, errOut, code := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "scp -t /tmp; touch "+dir+"/forbidden-scp"), ""); code != 1 || !strings.Contains(errOut, "blocked") || exists("forbidden-scp") {
		t.Fatalf("scp look-alike: code %d stderr %q", code, errOut)
	}
	// A shell without a terminal cannot have a line cleared: a block
	// ends the session before the line runs (the lines before it are
	// passed on, though the shell may not get to run them before the end).
	_, errOut, code = run(t, s.sshCmd(tok, "ssh", "-T", "root@web1@127.0.0.1"), "touch "+dir+"/allowed-3\ntouch "+dir+"/forbidden-nopty\ntouch "+dir+"/after-nopty\n")
	if code == 0 || !strings.Contains(errOut, "terminated by rule no-forbidden") || exists("forbidden-nopty") || exists("after-nopty") {
		t.Fatalf("shell without a terminal: code %d stderr %q forbidden %v after %v", code, errOut, exists("forbidden-nopty"), exists("after-nopty"))
	}

	// Every hit is audited and an alert, and the webhook got them signed.
	audit := s.must("", "audit", "search", "--type", "rule.hit", "-o", "json")
	for _, want := range []string{`"rule": "no-forbidden"`, `"rule": "review-me"`, `"rule": "kill-switch"`, `"rule": "secret-output"`, `"taken": "block"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("rule.hit audit events lack %s", want)
		}
	}
	alerts := s.must("", "alerts", "ls", "-o", "json")
	for _, want := range []string{`"rule": "no-forbidden"`, `"rule": "secret-output"`, `"kind": "rule"`} {
		if !strings.Contains(alerts, want) {
			t.Errorf("alerts lack %s:\n%s", want, alerts)
		}
	}
	waitUntil(t, "the webhook to receive the alerts", func() bool {
		got := strings.Join(hook.rules(), ",")
		return strings.Contains(got, "no-forbidden") && strings.Contains(got, "kill-switch") && strings.Contains(got, "secret-output")
	})
	if hook.bad != 0 {
		t.Fatalf("%d webhook requests had a bad signature", hook.bad)
	}
	var listed struct{ Alerts []alert.Alert }
	json.Unmarshal([]byte(alerts), &listed)
	first := listed.Alerts[len(listed.Alerts)-1]
	s.must("", "alerts", "ack", jsonNumber(first.ID), "--note", "seen")
	s.mustFail("", "already acknowledged", "alerts", "ack", jsonNumber(first.ID))
	if out := s.must("", "alerts", "ls", "--unacked", "-o", "json"); strings.Contains(out, `"id": `+jsonNumber(first.ID)+`,`) {
		t.Fatal("an acknowledged alert is listed as unacknowledged")
	}

	// The recording marks where rules acted.
	cast := f.recording(t, id)
	if !strings.Contains(cast, `"rule no-forbidden: blocked: touch forbidden-1"`) {
		t.Errorf("recording lacks the block marker")
	}

	// rules ls and rules test.
	if out := s.must("", "rules", "ls"); !strings.Contains(out, "os-sensitive") || !strings.Contains(out, "no-forbidden") {
		t.Errorf("rules ls:\n%s", out)
	}
	if out := s.must("", "rules", "test", "touch /srv/forbidden"); !strings.Contains(out, "no-forbidden") || !strings.Contains(out, "block") {
		t.Errorf("rules test:\n%s", out)
	}
	if out := s.must("", "rules", "test", "ls -la"); !strings.Contains(out, "no rule hits") {
		t.Errorf("rules test of an innocent command:\n%s", out)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestRulesFileErrors: a rules file with a mistake stops vigil serve with
// the file and line.
func TestRulesFileErrors(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte("packs:\n  - name: broken\n    rules:\n      - id: bad\n        pattern: 'rm (-rf'\n        action: block\n"), 0o600)
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte("rules:\n  file: "+rulesFile+"\n"), 0o600)
	cmd := exec.Command(vigilBin, "serve", "--config", cfg, "--data", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "rules.yaml:5") {
		t.Fatalf("serve with a bad rules file: err %v output %s", err, out)
	}
}
