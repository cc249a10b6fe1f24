package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lastNumber returns the highest N of the "line N" lines in out.
func lastNumber(out string) int {
	n := 0
	for _, m := range regexp.MustCompile(`line (\d+)`).FindAllStringSubmatch(out, -1) {
		if v, _ := strconv.Atoi(m[1]); v > n {
			n = v
		}
	}
	return n
}

// waitUntil polls cond for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWatch runs `vigil sessions watch ID` as an admin would.
func (s *server) startWatch(t *testing.T, id string) *terminal {
	cmd := exec.Command(vigilBin, "sessions", "watch", id)
	cmd.Env = append(os.Environ(), "VIGIL_ADDR=http://"+s.addr, "VIGIL_DATA="+s.data)
	return startTerminal(t, cmd)
}

// TestSSHGatewayLiveOversight: an admin watches a running session (catch-up
// then live), pauses it (the flow stops while the target keeps writing),
// resumes and terminates it; every control is audited and the wrong ones
// are refused clearly.
func TestSSHGatewayLiveOversight(t *testing.T) {
	f := newGatewayFixture(t, "")
	s := f.s
	tok := f.token(t, "--grant", "web1:root:exec")
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	counter := filepath.Join(dir, "counter")
	// The loop records on the target how far it got, whatever reaches the
	// client.
	loop := "i=0; while true; do i=$((i+1)); echo line $i; echo $i > " + counter + "; sleep 0.02; done"
	client := startTerminal(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", loop))
	client.waitFor("line 5\n")
	id := f.lastSession(t)

	// Watch: the beginning first, then live.
	watch := s.startWatch(t, id)
	watch.waitFor("line 1\n")
	atStart := lastNumber(client.output())
	waitUntil(t, "live output at the watcher", func() bool { return lastNumber(watch.output()) > atStart+20 })

	// Pause: the user sees the banner, nothing more reaches them, while
	// the target goes on trying to write.
	s.must("", "sessions", "pause", id, "--reason", "review \x1b[2Jplease")
	client.waitFor("[vigil] session paused by admin: review ?[2Jplease")
	if strings.Contains(client.output(), "\x1b[2J") {
		t.Fatal("an escape sequence in the reason reached the user's terminal")
	}
	if out := s.must("", "sessions", "ls", "--active"); !strings.Contains(out, "active (paused by admin)") {
		t.Fatalf("sessions ls does not show the pause:\n%s", out)
	}
	time.Sleep(300 * time.Millisecond) // a chunk already past the valve may land
	frozen := lastNumber(client.output())
	remoteAtPause := readCounter(t, counter)
	waitUntil(t, "the target to keep writing during the pause", func() bool { return readCounter(t, counter) > remoteAtPause+20 })
	if now := lastNumber(client.output()); now != frozen {
		t.Fatalf("output reached the client during the pause: line %d, then %d", frozen, now)
	}
	s.mustFail("", "already paused", "sessions", "pause", id)

	// Resume restores the flow.
	s.must("", "sessions", "resume", id)
	client.waitFor("[vigil] session resumed by admin")
	waitUntil(t, "output after resume", func() bool { return lastNumber(client.output()) > frozen+10 })
	s.mustFail("", "not paused", "sessions", "resume", id)

	// Terminate: the user sees why and ssh exits non-zero; the watcher's
	// stream ends with the reason.
	s.must("", "sessions", "terminate", id, "--reason", "enough")
	if code := client.wait(); code == 0 || !strings.Contains(client.output(), "[vigil] session ended: terminated by admin: enough") {
		t.Fatalf("terminated session: code %d output %q", code, client.output())
	}
	if code := watch.wait(); code != 0 || !strings.Contains(watch.output(), "[vigil] session ended: terminated by admin: enough") {
		t.Fatalf("watcher: code %d output %q", code, watch.output())
	}
	s.mustFail("", "not live", "sessions", "terminate", id)
	s.mustFail("", "not live", "sessions", "pause", id)
	s.mustFail("", "no such session", "sessions", "pause", "s_nosuchsession")

	audit := s.must("", "audit", "search", "-o", "json")
	for _, typ := range []string{"session.watch", "session.watch_end", "session.pause", "session.resume", "session.terminate"} {
		if !strings.Contains(audit, `"type": "`+typ+`"`) {
			t.Errorf("no %s audit event", typ)
		}
	}
	cast := f.recording(t, id)
	for _, want := range []string{`"m", "session paused by admin: review ?[2Jplease"`, `"m", "session resumed by admin"`} {
		if !strings.Contains(cast, want) {
			t.Errorf("recording lacks %s", want)
		}
	}
	if out := s.must("", "sessions", "ls", "-o", "json"); !strings.Contains(out, `"end_reason": "terminated by admin: enough"`) {
		t.Errorf("session record lacks the end reason:\n%s", out)
	}
}

// TestSSHGatewayPauseDiscardsTypedInput: at a terminal, what the user
// types during a pause never reaches the target, and they are told.
func TestSSHGatewayPauseDiscardsTypedInput(t *testing.T) {
	f := newGatewayFixture(t, "")
	tok := f.token(t, "--grant", "web1:root:shell")
	term := f.shell(t, tok, "")
	id := f.lastSession(t)
	f.s.must("", "sessions", "pause", id)
	term.waitFor("[vigil] session paused by admin")
	term.send("echo typed-during-$((6*7))\r")
	term.waitFor("what you type is discarded until it is resumed")
	f.s.must("", "sessions", "resume", id)
	term.waitFor("session resumed by admin")
	term.send("echo after-$((6*7))\r")
	term.waitFor("after-42")
	term.send("exit\r")
	term.wait()
	if strings.Contains(term.output(), "typed-during-42") {
		t.Fatalf("input typed during the pause ran on the target:\n%q", term.output())
	}
}

func readCounter(t *testing.T, path string) int {
	b, _ := os.ReadFile(path)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// TestSSHGatewayInputFollowsExec: data a client sends right behind its
// exec request reaches the command (the gateway handles requests and data
// on different goroutines; the data must not overtake the request).
func TestSSHGatewayInputFollowsExec(t *testing.T) {
	f := newGatewayFixture(t, "")
	tok := f.token(t, "--grant", "web1:root:exec")
	for i := range 10 {
		out, errOut, code := run(t, f.s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "cat"), "sent at once\n")
		if code != 0 || out != "sent at once\n" {
			t.Fatalf("run %d: exit %d, stdout %q, stderr %q", i, code, out, errOut)
		}
	}
}
