package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
)

// TestAuditTrailEndToEnd: commands typed in a real ssh session are
// audited and found by full-text search (a password typed at a prompt is
// not); the recording on disk holds no plaintext yet plays back; the log
// verifies; tampering with an event, a checkpoint or the recording makes
// `vigil audit verify` fail and name the place; archiving keeps the log
// verifiable.
func TestAuditTrailEndToEnd(t *testing.T) {
	f := newGatewayFixture(t, "")
	s := f.s
	tok := f.token(t, "--grant", "web1:root:shell")
	term := f.shell(t, tok, "")
	term.send("echo needle-$((6*7))-found\r")
	term.waitFor("needle-42-found")
	term.send("read -r -p 'Password: ' PW\r")
	term.waitFor("Password: ")
	term.send("hunter2-topsecret\r")
	term.send("echo len=$((${#PW}+1000))\r")
	term.waitFor("len=1017")
	// A prompt abandoned with ^C does not hide the next command.
	term.send("read -r -p 'Second pass''word: ' PW\r")
	term.waitFor("Second password: ")
	term.send("\x03")
	term.waitFor("^C")
	term.send("echo after-cancel-$((1+1))\r")
	term.waitFor("after-cancel-2")
	term.send("export API_TOKEN=tok-$((2*3))-secret\r")
	term.send("exit\r")
	term.wait()
	id := f.lastSession(t)

	// Full-text search finds the command, with who and where.
	var found struct{ Events []audit.Event }
	if err := json.Unmarshal([]byte(s.must("", "audit", "search", "-q", "needle found", "--type", "session.command", "-o", "json")), &found); err != nil {
		t.Fatal(err)
	}
	if len(found.Events) != 1 || found.Events[0].Actor != "alice" || found.Events[0].Target != "web1" || found.Events[0].Session != id {
		t.Fatalf("search for the typed command: got %+v", found.Events)
	}
	all := s.must("", "audit", "search", "--session", id, "-o", "json", "--limit", "10000")
	if strings.Contains(all, "hunter2") {
		t.Fatalf("a secret typed at a password prompt is in the audit log:\n%s", all)
	}
	if !strings.Contains(all, "[input at a password prompt]") {
		t.Errorf("the password line is not recorded as masked input:\n%s", all)
	}
	if !strings.Contains(all, "echo after-cancel-$((1+1))") {
		t.Errorf("the command after an abandoned password prompt is not recorded:\n%s", all)
	}
	if strings.Contains(all, "tok-$((2*3))-secret") || !strings.Contains(all, "export API_TOKEN=***") {
		t.Errorf("an inline secret is in the audit log, or its redaction is missing:\n%s", all)
	}
	s.mustFail("", "unbalanced quote", "audit", "search", "-q", `"drop table`)
	s.mustFail("", "until", "audit", "search", "--since", "1h", "--until", "2h")

	// SIEM export: CEF and JSON Lines of the same selection; an empty
	// selection says so.
	cef := s.must("", "audit", "export", "--format", "cef", "--session", id)
	if !strings.HasPrefix(cef, "CEF:0|Vigil|Vigil|") || !strings.Contains(cef, "cat=session.command") || !strings.Contains(cef, "suser=alice") {
		t.Fatalf("CEF export:\n%s", cef)
	}
	jsonl := s.must("", "audit", "export", "--session", id)
	lines := strings.Split(strings.TrimSpace(jsonl), "\n")
	if len(lines) != strings.Count(strings.TrimSpace(cef), "\n")+1 {
		t.Fatalf("jsonl and cef exports differ in length: %d lines vs\n%s", len(lines), cef)
	}
	for _, l := range lines {
		var ev audit.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Session != id || ev.Hash == "" {
			t.Fatalf("jsonl line %q: %v", l, err)
		}
	}
	if out, errs, ok := s.vigil("", "audit", "export", "--type", "no.such.type"); !ok || out != "" || !strings.Contains(errs, "nothing exported") {
		t.Fatalf("empty export: ok %v, out %q, stderr %q", ok, out, errs)
	}

	// The recording on disk is encrypted; playback decrypts it.
	var sess struct{ ID, Recording string }
	admin, _ := os.ReadFile(filepath.Join(s.data, "admin.token"))
	_, body := s.get(strings.TrimSpace(string(admin)), "/api/v1/sessions/"+id)
	if err := json.Unmarshal(body, &sess); err != nil || sess.Recording == "" {
		t.Fatalf("session %s: %v %+v", id, err, sess)
	}
	raw, err := os.ReadFile(sess.Recording)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "needle") || strings.Contains(string(raw), "echo") {
		t.Fatal("the recording file holds session plaintext")
	}
	if cast := f.recording(t, id); !strings.Contains(cast, "needle-42-found") {
		t.Fatalf("the recording does not play back:\n%s", cast)
	}

	// Untouched: verify passes, covering the sealed recording.
	out := s.must("", "audit", "verify")
	if !strings.Contains(out, "audit trail: intact") || !strings.Contains(out, "recordings:  1 checked") {
		t.Fatalf("verify of an untouched log:\n%s", out)
	}

	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(s.data, "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq int64
	if err := db.QueryRowContext(context.Background(), `SELECT seq FROM audit_events WHERE type = 'session.command' ORDER BY seq LIMIT 1`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	tamper := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	// An edited event is named.
	tamper(`UPDATE audit_events SET actor = 'mallory' WHERE seq = $1`, seq)
	_, errs, ok := s.vigil("", "audit", "verify")
	if ok || !strings.Contains(errs, "event "+itoa(seq)+" (session.command) does not match its hash") {
		t.Fatalf("verify after an edit: ok %v, stderr %q", ok, errs)
	}
	tamper(`UPDATE audit_events SET actor = 'alice' WHERE seq = $1`, seq)
	s.must("", "audit", "verify")

	// A flipped byte in the recording is named.
	raw[len(raw)/2] ^= 1
	os.WriteFile(sess.Recording, raw, 0o600)
	_, errs, ok = s.vigil("", "audit", "verify")
	if ok || !strings.Contains(errs, "recording of session "+id) {
		t.Fatalf("verify after a recording byte flip: ok %v, stderr %q", ok, errs)
	}
	raw[len(raw)/2] ^= 1
	os.WriteFile(sess.Recording, raw, 0o600)

	// A deleted middle event is named.
	tamper(`DELETE FROM audit_events WHERE seq = $1`, seq)
	_, errs, ok = s.vigil("", "audit", "verify")
	if ok || !strings.Contains(errs, "events "+itoa(seq)+".."+itoa(seq)+" are missing") {
		t.Fatalf("verify after a deletion: ok %v, stderr %q", ok, errs)
	}
}

// TestAuditArchiveEndToEnd: old events move to a sealed archive that
// verifies offline; the live log still verifies from the boundary.
func TestAuditArchiveEndToEnd(t *testing.T) {
	s, err := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.must("", "token", "issue", "--user", "bob")
	s.mustFail("", "no events older than", "audit", "archive", "--before", "365d")
	out := s.must("", "audit", "archive", "--before", "0s")
	if !strings.Contains(out, "archived events 1..") {
		t.Fatalf("archive: %s", out)
	}
	var list struct{ Archives []audit.Archive }
	if err := json.Unmarshal([]byte(s.must("", "audit", "archives", "-o", "json")), &list); err != nil || len(list.Archives) != 1 {
		t.Fatalf("archives: %v %+v", err, list)
	}
	a := list.Archives[0]
	if out := s.must("", "audit", "verify-archive", a.File); !strings.Contains(out, a.Digest) {
		t.Fatalf("verify-archive does not print the recorded digest %s:\n%s", a.Digest, out)
	}
	if out := s.must("", "audit", "verify"); !strings.Contains(out, "archived through "+itoa(a.LastSeq)) {
		t.Fatalf("verify after archive:\n%s", out)
	}
	// A search still works on what is left, and finds nothing archived.
	if out := s.must("", "audit", "search", "--type", "token.issue"); strings.Contains(out, "bob") {
		t.Fatalf("archived events are still in the database:\n%s", out)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
