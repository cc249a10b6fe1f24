package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/vigil-pam/vigil/internal/sshdtest"
	"golang.org/x/crypto/ssh"
)

// sshCmd runs a real OpenSSH client (ssh, scp or sftp) against the
// gateway, answering the password prompt with tok through SSH_ASKPASS
// (this very binary in askpass mode).
func (s *server) sshCmd(tok, client string, args ...string) *exec.Cmd {
	_, port, _ := net.SplitHostPort(s.sshAddr)
	portFlag := "-p"
	if client != "ssh" {
		portFlag = "-P"
	}
	common := []string{portFlag, port, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "PreferredAuthentications=keyboard-interactive,password",
		"-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"}
	cmd := exec.Command(client, append(common, args...)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+vigilBin, "SSH_ASKPASS_REQUIRE=force", askpassEnv+"=1", "VIGIL_TOKEN="+tok)
	return cmd
}

// run runs cmd with stdin and returns stdout, stderr and the exit code.
func run(t testing.TB, cmd *exec.Cmd, stdin string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	return out.String(), errb.String(), code
}

// gatewayFixture is a vigil serve and an sshd with targets web1 (root, key)
// and web2 (the test user, password).
type gatewayFixture struct {
	s    *server
	sshd *sshdtest.Server
}

func newGatewayFixture(t testing.TB, config string) *gatewayFixture {
	t.Helper()
	sshd := sshdtest.Start(t)
	s := startConfigured(t, config)
	out := s.must("", "target", "add", "web1", "--ssh", sshd.Addr, "--login", "root", "--key-file", sshd.ClientKeyFile, "--label", "env=test")
	if !strings.Contains(out, "SHA256:") {
		t.Fatalf("target add did not pin a host key: %s", out)
	}
	cmd := exec.Command(vigilBin, "target", "add", "web2", "--ssh", sshd.Addr, "--login", sshdtest.User, "--password-env", "WEB2_PW", "--host-key", sshd.HostKey)
	cmd.Env = append(os.Environ(), "VIGIL_ADDR=http://"+s.addr, "VIGIL_DATA="+s.data, "WEB2_PW="+sshd.Password)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("target add web2: %v %s", err, b)
	}
	return &gatewayFixture{s: s, sshd: sshd}
}

// startConfigured runs vigil serve with config (YAML; "" for the
// defaults) in a fresh data directory.
func startConfigured(t testing.TB, config string) *server {
	t.Helper()
	var args []string
	if config != "" {
		p := filepath.Join(t.TempDir(), "vigil.yaml")
		os.WriteFile(p, []byte(config), 0o600)
		args = []string{"--config", p}
	}
	s, err := startServer(t, filepath.Join(t.TempDir(), "data"), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *gatewayFixture) token(t testing.TB, args ...string) string {
	t.Helper()
	return strings.TrimSpace(f.s.must("", append([]string{"token", "issue", "--user", "alice"}, args...)...))
}

// lastSession returns the newest session's ID.
func (f *gatewayFixture) lastSession(t *testing.T) string {
	t.Helper()
	out := f.s.must("", "sessions", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("no sessions: %s", out)
	}
	return strings.Fields(lines[1])[0]
}

func (f *gatewayFixture) recording(t *testing.T, id string) string { return f.s.recording(t, id) }

// recording exports a session's recording as asciicast text.
func (s *server) recording(t testing.TB, id string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), id+".cast")
	s.must("", "recording", "export", id, "-o", p)
	b, _ := os.ReadFile(p)
	return string(b)
}

func TestSSHGatewayExecAndTransfers(t *testing.T) {
	f := newGatewayFixture(t, "")
	s := f.s
	baseline := s.goroutines(t)
	defer s.checkNoLeak(t, baseline)
	tok := f.token(t, "--grant", "web1:root:shell,exec,sftp", "--grant", "web2:"+sshdtest.User+":exec")

	// exec: stdout, stderr and exit status pass through unchanged.
	out, errOut, code := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo out; echo err >&2; exit 3"), "")
	if out != "out\n" || !strings.Contains(errOut, "err") || code != 3 {
		t.Fatalf("exec: out %q err %q code %d", out, errOut, code)
	}
	id := f.lastSession(t)
	if cast := f.recording(t, id); !strings.Contains(cast, `"exec: echo out; echo err >&2; exit 3"`) || !strings.Contains(cast, `"out\n"`) {
		t.Fatalf("exec recording lacks the command or output: %s", cast)
	}
	// LOGIN may be omitted when the token grants one login on the target.
	if out, _, code := run(t, s.sshCmd(tok, "ssh", "web1@127.0.0.1", "id -un"), ""); out != "root\n" || code != 0 {
		t.Fatalf("login omitted: %q %d", out, code)
	}
	// stdin is piped through.
	if out, _, _ := run(t, s.sshCmd(tok, "ssh", "web1@127.0.0.1", "tr a-z A-Z"), "hello vigil\n"); out != "HELLO VIGIL\n" {
		t.Fatalf("stdin: %q", out)
	}
	// A password credential is injected as well as a key.
	if out, errOut, code := run(t, s.sshCmd(tok, "ssh", sshdtest.User+"@web2@127.0.0.1", "id -un"), ""); out != sshdtest.User+"\n" || code != 0 {
		t.Fatalf("password target: %q %q %d", out, errOut, code)
	}
	// An action the token lacks is refused with a reason the user sees.
	_, errOut, code = run(t, s.sshCmd(tok, "ssh", "-tt", sshdtest.User+"@web2@127.0.0.1"), "")
	if code == 0 || !strings.Contains(errOut, "shell is not granted on web2") {
		t.Fatalf("shell without the action: %q %d", errOut, code)
	}

	// 50 MB binary both ways, scp (SFTP protocol), legacy scp and sftp.
	dir := t.TempDir()
	src := filepath.Join(dir, "blob")
	blob := make([]byte, 50<<20)
	rand.Read(blob)
	os.WriteFile(src, blob, 0o600)
	want := sha256.Sum256(blob)
	check := func(name, path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil || sha256.Sum256(b) != want {
			t.Fatalf("%s: checksum differs (%v)", name, err)
		}
	}
	for _, legacy := range []bool{false, true} {
		args := []string{}
		if legacy {
			args = append(args, "-O")
		}
		name := fmt.Sprintf("scp legacy=%v", legacy)
		if _, errOut, code := run(t, s.sshCmd(tok, "scp", append(args, src, "root@web1@127.0.0.1:/tmp/vigil-blob")...), ""); code != 0 {
			t.Fatalf("%s upload: %s", name, errOut)
		}
		check(name+" upload", "/tmp/vigil-blob")
		back := filepath.Join(dir, fmt.Sprintf("back-%v", legacy))
		if _, errOut, code := run(t, s.sshCmd(tok, "scp", append(args, "root@web1@127.0.0.1:/tmp/vigil-blob", back)...), ""); code != 0 {
			t.Fatalf("%s download: %s", name, errOut)
		}
		check(name+" download", back)
		os.Remove("/tmp/vigil-blob")
	}
	// Commands on stdin (sftp -b would force BatchMode, which forbids
	// the password prompt).
	batch := fmt.Sprintf("put %s /tmp/vigil-sftp\nget /tmp/vigil-sftp %s/sftp-back\nrename /tmp/vigil-sftp /tmp/vigil-sftp2\nrm /tmp/vigil-sftp2\n", src, dir)
	if _, errOut, code := run(t, s.sshCmd(tok, "sftp", "root@web1@127.0.0.1"), batch); code != 0 {
		t.Fatalf("sftp: %s", errOut)
	}
	check("sftp get", filepath.Join(dir, "sftp-back"))
	events := s.must("", "audit", "search", "--type", "ssh.file_transfer", "-o", "json")
	for _, want := range []string{`"op": "upload"`, `"op": "download"`, `"path": "/tmp/vigil-sftp"`, `"bytes": 52428800`, `"op": "rename"`, `"op": "remove"`} {
		if !strings.Contains(events, want) {
			t.Errorf("file transfer events lack %s", want)
		}
	}
	if out := s.must("", "audit", "search", "--type", "ssh.scp", "-o", "json"); !strings.Contains(out, "scp -t /tmp/vigil-blob") {
		t.Errorf("legacy scp command not audited: %s", out)
	}

	// The session list and the end events carry bytes and exit status.
	sessions := s.must("", "sessions", "ls", "-o", "json")
	if !strings.Contains(sessions, `"exit_status": 3`) || !strings.Contains(sessions, `"state": "ended"`) {
		t.Fatalf("sessions: %s", sessions)
	}
	ends := s.must("", "audit", "search", "--type", "session.end", "-o", "json")
	if !strings.Contains(ends, `"recording_sha256"`) {
		t.Fatalf("session.end lacks the recording digest: %s", ends)
	}

	// The targets' secrets appear in no API output, log or recording.
	secrets := []string{f.sshd.Password, string(pemBody(f.sshd.ClientKey))}
	haystacks := map[string]string{
		"target ls":  s.must("", "target", "ls", "-o", "json"),
		"audit":      s.must("", "audit", "search", "-o", "json", "--limit", "10000"),
		"sessions":   sessions,
		"server log": s.logs(),
		"recordings": allRecordings(t, s),
	}
	for where, text := range haystacks {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("a target secret appears in %s", where)
			}
		}
	}
}

// pemBody returns the base64 body of the key's first PEM block line.
func pemBody(key []byte) []byte {
	block, _ := pem.Decode(key)
	if block == nil {
		return key
	}
	return []byte(strings.Split(string(pem.EncodeToMemory(block)), "\n")[1])
}

// allRecordings concatenates every recording exported through the CLI.
func allRecordings(t *testing.T, s *server) string {
	var all strings.Builder
	out := s.must("", "sessions", "ls")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		id := strings.Fields(line)[0]
		p := filepath.Join(t.TempDir(), "r.cast")
		if _, _, ok := s.vigil("", "recording", "export", id, "-o", p); ok {
			b, _ := os.ReadFile(p)
			all.Write(b)
		}
	}
	return all.String()
}

// terminal drives an interactive ssh -tt session: it writes keystrokes
// and waits for output, with a generous deadline (not a timing assertion).
type terminal struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	// mu guards out.
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startTerminal(t *testing.T, cmd *exec.Cmd) *terminal {
	t.Helper()
	term := &terminal{t: t, cmd: cmd, done: make(chan struct{})}
	term.in, _ = cmd.StdinPipe()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { cmd.Wait(); pw.Close(); close(term.done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-term.done })
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

func (term *terminal) waitFor(s string) {
	term.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(term.output(), s) {
		if time.Now().After(deadline) {
			term.t.Fatalf("terminal never showed %q; got %q", s, term.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (term *terminal) send(s string) {
	term.t.Helper()
	if _, err := io.WriteString(term.in, s); err != nil {
		term.t.Fatal(err)
	}
}

func (term *terminal) wait() int {
	select {
	case <-term.done:
	case <-time.After(60 * time.Second):
		term.t.Fatal("ssh did not exit")
	}
	return term.cmd.ProcessState.ExitCode()
}

// shell starts an interactive ssh session on web1 with tok and waits for
// its prompt, "vigil$ ", after running setup (may be empty).
func (f *gatewayFixture) shell(t *testing.T, tok, setup string) *terminal {
	t.Helper()
	term := startTerminal(t, f.s.sshCmd(tok, "ssh", "-tt", "root@web1@127.0.0.1"))
	// Each wait is for text only the remote side can print (the terminal
	// echoes what is typed, so a wait for typed text would pass early).
	term.send("export PS1='vi''gil$ '" + setup + "\r")
	term.waitFor("vigil$ ")
	return term
}

func TestSSHGatewayInteractiveMasksSecrets(t *testing.T) {
	f := newGatewayFixture(t, "")
	tok := f.token(t, "--grant", "web1:root:shell")
	term := f.shell(t, tok, "")
	term.send("read -s -p 'Sec''ret: ' SECRET\r")
	term.waitFor("Secret: ")
	term.send("hunter2-topsecret\r")
	term.send("echo len=$((${#SECRET}+1000))\r")
	term.waitFor("len=1017")
	term.send("exit 7\r")
	if code := term.wait(); code != 7 {
		t.Fatalf("exit status %d, want 7", code)
	}
	cast := f.recording(t, f.lastSession(t))
	if strings.Contains(cast, "hunter2") || strings.Contains(cast, "topsecret") {
		t.Fatalf("the secret typed at read -s is in the recording:\n%s", cast)
	}
	for _, want := range []string{`"*****************\r"`, "echo len=$((${#SECRET}+1000))", "len=1017", `"shell"`} {
		if !strings.Contains(cast, want) {
			t.Errorf("recording lacks %s:\n%s", want, cast)
		}
	}
}

// TestSSHGatewayDenials covers every refusal: the client sees only
// "Permission denied", the audit log has the reason.
func TestSSHGatewayDenials(t *testing.T) {
	f := newGatewayFixture(t, "token:\n  clock_skew: 0s\n")
	s := f.s
	baseline := s.goroutines(t)
	defer s.checkNoLeak(t, baseline)
	good := f.token(t, "--grant", "web1:root:exec", "--grant", "ghost:root:exec", "--grant", "web2:"+sshdtest.User+":exec")
	revoked := f.token(t, "--grant", "web1:root:exec")
	s.must("", "token", "revoke", jti(t, s, revoked))
	elsewhere := f.token(t, "--grant", "web1:root:exec", "--src", "10.0.0.0/8")
	short := f.token(t, "--grant", "web1:root:exec", "--ttl", "1s")
	twoLogins := f.token(t, "--grant", "web1:root:exec", "--grant", "web1:admin:exec")
	time.Sleep(1500 * time.Millisecond) // let the 1 s token expire (no skew allowed)
	tests := []struct{ name, tok, user, reason string }{
		{"garbage token", "not-a-token", "root@web1", "token_malformed"},
		{"revoked", revoked, "root@web1", "token_revoked"},
		{"expired", short, "root@web1", "token_expired"},
		{"wrong source", elsewhere, "root@web1", "token_source_not_allowed"},
		{"no grant for target", good, "root@web3", "no_grant"},
		{"wrong login", good, "admin@web1", "no_grant"},
		{"unknown target", good, "root@ghost", "unknown_target"},
		{"several logins, none named", twoLogins, "web1", "ambiguous_login"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := run(t, s.sshCmd(tc.tok, "ssh", tc.user+"@127.0.0.1", "true"), "")
			if code != 255 || !strings.Contains(errOut, "Permission denied") {
				t.Fatalf("got code %d, stderr %q; want a plain permission denied", code, errOut)
			}
			if strings.Contains(errOut, tc.reason) {
				t.Fatal("the client was told the reason")
			}
		})
	}
	auths := s.must("", "audit", "search", "--type", "ssh.auth", "-o", "json", "--limit", "10000")
	for _, tc := range tests {
		if !strings.Contains(auths, `"reason": "`+tc.reason+`"`) {
			t.Errorf("no ssh.auth denial with reason %s", tc.reason)
		}
	}

	// Two grants for the same login add up (roles can each grant some
	// actions): the login need not be named, and each grant's actions
	// are allowed.
	both := f.token(t, "--grant", "web1:root:exec", "--grant", "web1:root:sftp")
	if out, errOut, code := run(t, s.sshCmd(both, "ssh", "web1@127.0.0.1", "id -un"), ""); out != "root\n" || code != 0 {
		t.Errorf("exec with two grants for root@web1: code %d, out %q, err %q", code, out, errOut)
	}
	if out, errOut, code := run(t, s.sshCmd(both, "sftp", "root@web1@127.0.0.1"), "pwd\n"); code != 0 || !strings.Contains(out, "/root") {
		t.Errorf("sftp with two grants for root@web1: code %d, out %q, err %q", code, out, errOut)
	}

	// Target-side failures reach the user as a clear message.
	_, otherHost, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(otherHost.Public())
	s.must("", "target", "add", "moved", "--ssh", f.sshd.Addr, "--login", "root", "--key-file", f.sshd.ClientKeyFile,
		"--host-key", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherPub))))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := ln.Addr().String()
	ln.Close()
	s.must("", "target", "add", "down", "--ssh", deadAddr, "--login", "root", "--key-file", f.sshd.ClientKeyFile, "--host-key", f.sshd.HostKey)
	strangerKey := filepath.Join(t.TempDir(), "stranger")
	exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", strangerKey).Run()
	s.must("", "target", "add", "stranger", "--ssh", f.sshd.Addr, "--login", "root", "--key-file", strangerKey, "--host-key", f.sshd.HostKey)
	tok := f.token(t, "--grant", "moved:root:exec", "--grant", "down:root:exec", "--grant", "stranger:root:exec")
	for target, want := range map[string]string{
		"moved":    "the host key of moved has changed",
		"down":     "cannot reach down",
		"stranger": "stranger refused Vigil's credential for root",
	} {
		_, errOut, code := run(t, s.sshCmd(tok, "ssh", "root@"+target+"@127.0.0.1", "true"), "")
		if code != 255 || !strings.Contains(errOut, want) {
			t.Errorf("%s: code %d stderr %q, want %q", target, code, errOut, want)
		}
	}
	if out := s.must("", "audit", "search", "--type", "target.host_key_mismatch"); !strings.Contains(out, "moved") {
		t.Error("host key change not audited")
	}
}

// TestSSHGatewayTokenExpiresMidSession: a session never outlives its token.
func TestSSHGatewayTokenExpiresMidSession(t *testing.T) {
	f := newGatewayFixture(t, "token:\n  clock_skew: 0s\nssh:\n  expiry_warning: 2s\n")
	tok := f.token(t, "--grant", "web1:root:exec", "--ttl", "4s")
	out, errOut, code := run(t, f.s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "sleep 60; echo finished"), "")
	if strings.Contains(out, "finished") || code == 0 {
		t.Fatalf("the session outlived its token: %q %d", out, code)
	}
	for _, want := range []string{"[vigil] your token expires at", "[vigil] session ended: the token expired"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	if out := f.s.must("", "audit", "search", "--type", "session.end", "-o", "json"); !strings.Contains(out, "the token expired") {
		t.Errorf("session.end does not say the token expired: %s", out)
	}
}

// goroutines reads the server's go_goroutines metric.
func (s *server) goroutines(t testing.TB) int {
	t.Helper()
	_, body := s.get("", "/metrics")
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "go_goroutines ") {
			var n int
			fmt.Sscan(strings.TrimPrefix(line, "go_goroutines "), &n)
			return n
		}
	}
	t.Fatal("no go_goroutines metric")
	return 0
}

// checkNoLeak waits (bounded) for the server's goroutines to come back to
// about baseline after its sessions ended.
func (s *server) checkNoLeak(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := s.goroutines(t)
		if n <= baseline+3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d after the sessions ended, %d before them", n, baseline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSSHGatewayBadInput: garbage instead of SSH and a client that stalls
// mid-handshake are closed and audited; nothing leaks.
func TestSSHGatewayBadInput(t *testing.T) {
	f := newGatewayFixture(t, "ssh:\n  handshake_timeout: 5s\n") // long enough for a real login under -race
	s := f.s
	baseline := s.goroutines(t)
	for _, send := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "SSH-2.0-OpenSSH\r\n" + strings.Repeat("\x00\xff", 40000), ""} {
		c, err := net.Dial("tcp", s.sshAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(send))
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = io.Copy(io.Discard, c) // returns when the gateway closes
		c.Close()
		// Closing with our garbage unread makes the kernel send a reset.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the gateway did not close a bad connection (%q...): %v", send[:min(len(send), 10)], err)
		}
	}
	if out := s.must("", "audit", "search", "--type", "ssh.handshake_failed"); strings.Count(out, "ssh.handshake_failed") < 3 {
		t.Fatalf("bad connections not audited: %s", out)
	}
	// The gateway still serves after all that.
	tok := f.token(t, "--grant", "web1:root:exec")
	if out, _, _ := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo alive"), ""); out != "alive\n" {
		t.Fatalf("after bad input: %q", out)
	}
	s.checkNoLeak(t, baseline)
}

// mountTiny mounts a 1 MiB tmpfs: a disk that fills.
func mountTiny(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	os.Mkdir(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestSSHGatewayRecordingFailures: a recording that fails mid-session ends
// the session with a visible message (fail closed), or lets it go on
// unrecorded where the target says fail open; a recording that cannot be
// opened refuses the session. All audited.
func TestSSHGatewayRecordingFailures(t *testing.T) {
	tiny := mountTiny(t)
	f := newGatewayFixture(t, "recordings: file://"+tiny+"\n")
	s := f.s
	s.must("", "target", "add", "lenient", "--ssh", f.sshd.Addr, "--login", "root", "--key-file", f.sshd.ClientKeyFile,
		"--host-key", f.sshd.HostKey, "--fail-open")
	tok := f.token(t, "--grant", "web1:root:exec", "--grant", "lenient:root:exec")
	// ~27 MB of incompressible text: far more than the 1 MiB disk.
	flood := "head -c 20000000 /dev/urandom | base64; echo done"

	out, errOut, code := run(t, s.sshCmd(tok, "ssh", "root@lenient@127.0.0.1", flood), "")
	if code != 0 || !strings.HasSuffix(out, "done\n") || !strings.Contains(errOut, "continues UNRECORDED") {
		t.Fatalf("fail-open target: code %d, ends %q, stderr %q", code, out[max(0, len(out)-10):], errOut)
	}
	// The disk is full now: the next session cannot even open a recording.
	out, errOut, code = run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo should-not-run"), "")
	if code != 255 || strings.Contains(out, "should-not-run") || !strings.Contains(errOut, "cannot be recorded, so it is refused") {
		t.Fatalf("recording cannot open: code %d out %q stderr %q", code, out, errOut)
	}
	// Free the disk; a session that fills it is ended, visibly.
	for _, e := range must(os.ReadDir(tiny)) {
		os.Remove(filepath.Join(tiny, e.Name()))
	}
	out, errOut, code = run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", flood), "")
	if code == 0 || strings.HasSuffix(out, "done\n") || !strings.Contains(errOut, "[vigil] session ended: the recording failed") {
		t.Fatalf("fail-closed target: code %d, stderr %q", code, errOut)
	}
	events := s.must("", "audit", "search", "--type", "recording.failed", "-o", "json")
	for _, want := range []string{`"policy": "fail_open"`, `"phase": "open"`, `"policy": "fail_closed"`} {
		if !strings.Contains(events, want) {
			t.Errorf("recording.failed events lack %s", want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestSSHGatewayWindowChangeAndPlayback: the real ssh client in a real
// terminal (tmux) is resized; the resize reaches the target and the
// recording, and the exported recording plays in asciinema.
func TestSSHGatewayWindowChangeAndPlayback(t *testing.T) {
	f := newGatewayFixture(t, "")
	tok := f.token(t, "--grant", "web1:root:shell")
	sock := "vigil-" + filepath.Base(t.TempDir())
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v %s", args, err, out)
		}
		return string(out)
	}
	cmd := f.s.sshCmd(tok, "ssh", "-tt", "root@web1@127.0.0.1")
	var line []string
	for _, e := range cmd.Env[len(os.Environ()):] {
		line = append(line, shellQuote(e))
	}
	line = append([]string{"env"}, line...)
	for _, a := range cmd.Args {
		line = append(line, shellQuote(a))
	}
	tmux("new-session", "-d", "-s", "w", "-x", "80", "-y", "24", strings.Join(line, " "))
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })
	screen := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(tmux("capture-pane", "-p", "-t", "w"), want) {
			if time.Now().After(deadline) {
				t.Fatalf("screen never showed %q:\n%s\nserver log:\n%s", want, tmux("capture-pane", "-p", "-t", "w"), f.s.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tmux("send-keys", "-t", "w", "export PS1='vi''gil$ '", "Enter")
	screen("vigil$") // capture-pane trims trailing spaces
	tmux("resize-window", "-t", "w", "-x", "100", "-y", "30")
	tmux("send-keys", "-t", "w", "echo size=$(stty size | tr ' ' x)", "Enter")
	screen("size=30x100")
	tmux("send-keys", "-t", "w", "exit", "Enter")
	id := ""
	deadline := time.Now().Add(30 * time.Second)
	for id == "" {
		if out := f.s.must("", "sessions", "ls", "-o", "json"); strings.Contains(out, `"state": "ended"`) {
			id = f.lastSession(t)
		} else if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	cast := f.recording(t, id)
	for _, want := range []string{`"r", "80x24"`, `"r", "100x30"`, "size=30x100"} {
		if !strings.Contains(cast, want) {
			t.Errorf("recording lacks %s", want)
		}
	}
	p := filepath.Join(t.TempDir(), "s.cast")
	os.WriteFile(p, []byte(cast), 0o600)
	// asciinema wants a terminal; script(1) gives it one.
	if out, err := exec.Command("script", "-qec", "asciinema cat "+p, "/dev/null").CombinedOutput(); err != nil || !strings.Contains(string(out), "size=30x100") {
		t.Fatalf("asciinema cat: %v\n%s\n%s", err, out, cast[:min(len(cast), 600)])
	}
	// vigil play renders the same output in this terminal.
	if out := f.s.must("", "play", id, "--speed", "1000"); !strings.Contains(out, "size=30x100") {
		t.Fatalf("vigil play: %q", out)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestSSHGatewayConvenienceAndMalformedRequests: `vigil ssh` works; raw
// protocol abuse a stock client cannot send (malformed, oversized or
// unsupported requests) is refused without harm.
func TestSSHGatewayConvenienceAndMalformedRequests(t *testing.T) {
	f := newGatewayFixture(t, "")
	tok := f.token(t, "--grant", "web1:root:exec,shell")
	cmd := exec.Command(vigilBin, "ssh", "root@web1", "--", "echo", "via-vigil-ssh")
	cmd.Env = append(os.Environ(), "VIGIL_ADDR=http://"+f.s.addr, "VIGIL_TOKEN="+tok, "VIGIL_SSH_ADDR="+f.s.sshAddr, "XDG_CONFIG_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "via-vigil-ssh") {
		t.Fatalf("vigil ssh: %v %s", err, out)
	}

	c, err := ssh.Dial("tcp", f.s.sshAddr, &ssh.ClientConfig{User: "root@web1", Auth: []ssh.AuthMethod{ssh.Password(tok)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	for _, r := range []struct {
		name    string
		payload []byte
	}{
		{"pty-req", []byte{0, 0, 0, 200, 'x'}},
		{"env", []byte("garbage")},
		{"env", ssh.Marshal(struct{ Name, Value string }{"LD_PRELOAD", "/tmp/evil.so"})},
		{"env", ssh.Marshal(struct{ Name, Value string }{"LANG", strings.Repeat("x", 200<<10)})},
		{"exec", []byte{0xff, 0xff, 0xff, 0xff}},
		{"subsystem", ssh.Marshal(struct{ Name string }{"netconf"})},
		{"auth-agent-req@openssh.com", nil},
		{"x11-req", nil},
		{"no-such-request@example.com", nil},
	} {
		if ok, err := ch.SendRequest(r.name, true, r.payload); ok || err != nil {
			t.Errorf("%s (%d bytes): accepted=%v err=%v, want a refusal", r.name, len(r.payload), ok, err)
		}
	}
	// The channel still works for a proper request.
	if ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{"echo still-fine"})); !ok || err != nil {
		t.Fatalf("exec after abuse: %v %v", ok, err)
	}
	out, _ := io.ReadAll(ch)
	if string(out) != "still-fine\n" {
		t.Fatalf("got %q", out)
	}
	// Channel types Vigil does not relay are rejected.
	if _, _, err := c.OpenChannel("x11", nil); err == nil {
		t.Fatal("an x11 channel was opened")
	}
	if _, _, err := c.OpenChannel("direct-tcpip", []byte("junk")); err == nil {
		t.Fatal("a malformed direct-tcpip channel was opened")
	}
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Fatal("port forwarding without the forward action was allowed")
	}
}

// TestSSHGatewayIdentityProviderRoles: an identity provider's token logs
// in directly, with the stored grants of its roles, each checked at the
// connection for its time window and source networks.
func TestSSHGatewayIdentityProviderRoles(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := jwk.PublicKeyOf(key.Public())
	pub.Set(jwk.KeyIDKey, "idp-1")
	pub.Set(jwk.AlgorithmKey, jwa.ES256())
	set := jwk.NewSet()
	set.AddKey(pub)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(set) }))
	defer idp.Close()
	const iss = "https://idp.example.test/"
	f := newGatewayFixture(t, fmt.Sprintf("issuers:\n  - issuer: %s\n    jwks_url: %s/jwks\n    audience: vigil-ext\n    roles_claim: groups\n", iss, idp.URL))
	s := f.s
	// A window that is closed now: two hours from now, for an hour.
	from := time.Now().UTC().Add(2 * time.Hour).Hour()
	window := fmt.Sprintf("* %02d:00-%02d:00 UTC", from, (from+1)%24)
	s.must("", "grant", "add", "--role", "night-ops", "--target", "web1", "--login", "root", "--actions", "exec", "--window", window)
	s.must("", "grant", "add", "--role", "remote", "--target", "web1", "--login", "root", "--actions", "exec", "--from", "10.0.0.0/8")
	s.must("", "grant", "add", "--role", "dev", "--target", "web1", "--login", "root", "--actions", "exec")
	idpToken := func(group string) string {
		now := time.Now()
		b, _ := json.Marshal(map[string]any{"iss": iss, "sub": "okta|" + group, "aud": "vigil-ext", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{group}})
		hdr := jws.NewHeaders()
		hdr.Set(jws.KeyIDKey, "idp-1")
		tok, err := jws.Sign(b, jws.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}
	if out, errOut, code := run(t, s.sshCmd(idpToken("dev"), "ssh", "root@web1@127.0.0.1", "echo idp-ok"), ""); out != "idp-ok\n" || code != 0 {
		t.Fatalf("IdP user with an open role grant: %q %q %d", out, errOut, code)
	}
	for _, group := range []string{"night-ops", "remote"} {
		if _, errOut, code := run(t, s.sshCmd(idpToken(group), "ssh", "root@web1@127.0.0.1", "true"), ""); code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Fatalf("%s: code %d %q, want a denial", group, code, errOut)
		}
	}
	auths := s.must("", "audit", "search", "--type", "ssh.auth", "-o", "json")
	if strings.Count(auths, `"reason": "no_grant"`) < 2 {
		t.Fatalf("outside-window and wrong-source denials not audited as no_grant: %s", auths)
	}
}

// TestSSHGatewayForwarding: with the forward action, `ssh -W` reaches a
// port through the target, and the destination is audited.
func TestSSHGatewayForwarding(t *testing.T) {
	f := newGatewayFixture(t, "")
	tok := f.token(t, "--grant", "web1:root:forward")
	term := startTerminal(t, f.s.sshCmd(tok, "ssh", "-W", f.sshd.Addr, "root@web1@127.0.0.1"))
	term.waitFor("SSH-2.0-OpenSSH") // the target's sshd, reached through the forward
	term.in.Close()
	term.wait()
	if evs := f.s.must("", "audit", "search", "--type", "ssh.forward", "-o", "json"); !strings.Contains(evs, f.sshd.Addr) {
		t.Fatalf("forward not audited: %s", evs)
	}
}

// waitActive waits (bounded) until n sessions are live.
func (s *server) waitActive(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(s.must("", "sessions", "ls", "--active", "-o", "json"), `"state": "active"`) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d live sessions", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSSHGatewayLocksAndRevocation: a lock refuses new sessions and ends
// the live ones; revoking a token ends its live sessions.
func TestSSHGatewayLocksAndRevocation(t *testing.T) {
	f := newGatewayFixture(t, "")
	s := f.s
	tok := f.token(t, "--grant", "web1:root:exec")
	live := startTerminal(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo started; sleep 120; echo finished"))
	live.waitFor("started")
	s.waitActive(t, 1)
	if out := s.must("", "lock", "add", "--user", "alice", "--reason", "incident 42"); !strings.Contains(out, "ended 1 live sessions") {
		t.Fatalf("lock add: %s", out)
	}
	if code := live.wait(); code == 0 || strings.Contains(live.output(), "finished") || !strings.Contains(live.output(), "[vigil] session ended: locked: incident 42") {
		t.Fatalf("locked live session: code %d output %q", code, live.output())
	}
	if _, errOut, code := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "true"), ""); code != 255 || !strings.Contains(errOut, "Permission denied") {
		t.Fatalf("new session of a locked user: %d %q", code, errOut)
	}
	if out := s.must("", "audit", "search", "--type", "ssh.auth", "-o", "json"); !strings.Contains(out, `"reason": "locked"`) {
		t.Fatal("no ssh.auth denial with reason locked")
	}
	ls := s.must("", "lock", "ls")
	id := strings.Fields(strings.Split(strings.TrimSpace(ls), "\n")[1])[0]
	s.must("", "lock", "rm", id)
	if out, _, code := run(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo unlocked"), ""); code != 0 || out != "unlocked\n" {
		t.Fatalf("after the lock was removed: %d %q", code, out)
	}

	// Revoking the token ends the session opened with it.
	live = startTerminal(t, s.sshCmd(tok, "ssh", "root@web1@127.0.0.1", "echo started; sleep 120; echo finished"))
	live.waitFor("started")
	s.waitActive(t, 1)
	s.must("", "token", "revoke", jti(t, s, tok), "--reason", "laptop stolen")
	if code := live.wait(); code == 0 || !strings.Contains(live.output(), "the token was revoked: laptop stolen") {
		t.Fatalf("revoked token's live session: code %d output %q", code, live.output())
	}
}
