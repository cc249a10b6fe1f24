// Package sshdtest runs a real OpenSSH sshd on a free 127.0.0.1 port for
// tests, with a throwaway host key, a client key pair that may log in as
// root, and a test user with a fresh random password. The server is
// stopped by the test that started it. It needs root (to create the test
// user and run sshd with privilege separation) and openssh-server, which
// `make test` installs.
package sshdtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// User is the unprivileged test account whose password is set per run.
const User = "vigil-test"

// Server is a running sshd.
type Server struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// HostKey is the server's host key as an authorized_keys line.
	HostKey string
	// ClientKeyFile is a private key accepted for root and User.
	ClientKeyFile string
	// ClientKey is that private key's contents.
	ClientKey []byte
	// Password is User's password for this run.
	Password string
	// Dir holds the server's files.
	Dir string
	cmd *exec.Cmd
}

// Start runs sshd for t, failing the test with setup instructions when it
// cannot.
func Start(t testing.TB) *Server {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("sshdtest: OpenSSH server not installed (run scripts/test-deps.sh): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("sshdtest: needs root to run sshd and create the test user (make test runs as root in CI)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	s := &Server{Dir: dir, ClientKeyFile: filepath.Join(dir, "client_ed25519")}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("sshdtest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_ed25519"))
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.ClientKeyFile)
	hk, _ := os.ReadFile(filepath.Join(dir, "host_ed25519.pub"))
	s.HostKey = strings.TrimSpace(string(hk))
	s.ClientKey, _ = os.ReadFile(s.ClientKeyFile)
	pub, _ := os.ReadFile(s.ClientKeyFile + ".pub")
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o644)

	// privilege separation directory, normally made by systemd
	os.MkdirAll("/run/sshd", 0o755)
	if _, err := exec.Command("id", User).CombinedOutput(); err != nil {
		run("useradd", "--create-home", "--shell", "/bin/bash", User)
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	s.Password = "Pw-" + hex.EncodeToString(pw)
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(User + ":" + s.Password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("sshdtest: chpasswd: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(s.Addr)
	cfg := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s/host_ed25519
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 200
MaxSessions 50
`, port, dir, dir, dir)
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o644)
	log, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("sshdtest: start sshd: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		log.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", s.Addr)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshdtest: sshd did not start listening on %s: %s", s.Addr, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what sshd has logged.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sshd.log"))
	return string(b)
}

// Stop kills sshd now (a target going down mid-test).
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}
