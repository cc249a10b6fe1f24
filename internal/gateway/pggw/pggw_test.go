package pggw

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
)

// The gateway against a real PostgreSQL server (psql, pgx, pgbench,
// cancel, COPY, rules, masking, every login fault) is tested end to end
// in cmd/vigil (pg_e2e_test.go); these are the pure parts.

func TestTagRows(t *testing.T) {
	tests := []struct {
		tag  string
		n    int64
		isOK bool
	}{
		{"SELECT 5", 5, true},
		{"INSERT 0 3", 3, true},
		{"COPY 10", 10, true},
		{"UPDATE 0", 0, true},
		{"CREATE TABLE", 0, false},
		{"BEGIN", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		n, ok := tagRows(tc.tag)
		if n != tc.n || ok != tc.isOK {
			t.Errorf("tagRows(%q) = %d, %v; want %d, %v", tc.tag, n, ok, tc.n, tc.isOK)
		}
	}
}

func TestUnsafeEncoding(t *testing.T) {
	for enc, want := range map[string]bool{"UTF8": false, "utf-8": false, "LATIN1": false, "SQL_ASCII": false, "": false,
		"SJIS": true, "shift_jis_2004": true, "MSKANJI": true, "S.JIS": true, "Windows932": true, "Big5": true, "GBK": true, "GB18030": true, "UHC": true, "JOHAB": true, "WIN932": true} {
		if got := unsafeEncoding(enc); got != want {
			t.Errorf("unsafeEncoding(%q) = %v", enc, got)
		}
	}
}

func TestCleanLine(t *testing.T) {
	got := cleanLine("a\x1b[2Jb\nc\x00\u0085d", 100)
	if got != `a\x1b[2Jb\nc\x00\x85d` {
		t.Errorf("cleanLine = %q", got)
	}
	if got := cleanLine(strings.Repeat("x", 300), 10); !strings.HasPrefix(got, "xxxxxxxxxx… (300 bytes)") {
		t.Errorf("cut = %q", got)
	}
}

type nopSink struct{}

func (nopSink) Append(context.Context, audit.Event) error { return nil }

// startupPacket frames a startup packet body.
func startupPacket(body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	return append(b, body...)
}

func testServer(t testing.TB) *Server {
	cpem, kder, err := selfSigned(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(cpem, pemKey(kder))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Audit: nopSink{}, Unauthenticated: nopSink{}, Now: time.Now}, keys: map[uint32]*conn{}}
	s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"postgresql"}}
	return s
}

// negotiateBytes runs the startup negotiation on input and returns its
// error and what the gateway wrote back.
func negotiateBytes(t testing.TB, s *Server, input []byte) (error, []byte) {
	a, b := net.Pipe()
	defer a.Close()
	out := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		b.SetDeadline(time.Now().Add(300 * time.Millisecond))
		go func() {
			b.Write(input)
		}()
		tmp := make([]byte, 4096)
		for {
			n, err := b.Read(tmp)
			buf.Write(tmp[:n])
			if err != nil {
				break
			}
		}
		out <- buf.Bytes()
	}()
	a.SetDeadline(time.Now().Add(300 * time.Millisecond))
	cl := &client{nc: a, r: bufio.NewReaderSize(a, 8192)}
	err := s.negotiate(context.Background(), cl)
	a.Close()
	return err, <-out
}

func TestNegotiate(t *testing.T) {
	s := testServer(t)
	startup := func(version uint32, kv ...string) []byte {
		body := binary.BigEndian.AppendUint32(nil, version)
		for _, x := range kv {
			body = append(append(body, x...), 0)
		}
		return startupPacket(append(body, 0))
	}
	gss := startupPacket(binary.BigEndian.AppendUint32(nil, codeGSSENCRequest))
	tests := []struct {
		name   string
		input  []byte
		reason string // "" = accepted
		reply  string // prefix of what the gateway answered
	}{
		{"plaintext on loopback refused by default", startup(3<<16, "user", "app", "database", "db1"), "tls_required", ""},
		{"GSSENC declined, then startup", append(gss, startup(3<<16, "user", "app")...), "tls_required", "N"},
		{"protocol 2", startup(2<<16, "user", "app"), "unsupported_protocol", ""},
		{"protocol 3.5 negotiated down", startup(3<<16|5, "user", "app"), "tls_required", "v"},
		{"unknown _pq_ option", startup(3<<16, "user", "app", "_pq_.x", "1"), "tls_required", "v"},
		{"unsafe encoding", startup(3<<16, "user", "app", "client_encoding", "SJIS"), "unsafe_encoding", ""},
		{"replication", startup(3<<16, "user", "app", "replication", "database"), "replication_refused", ""},
		{"short packet", startupPacket([]byte{0, 3}), "malformed_startup", ""},
		{"huge length", []byte{0x7f, 0, 0, 0, 0, 3, 0, 0}, "malformed_startup", ""},
		{"bad layout", startupPacket(append(binary.BigEndian.AppendUint32(nil, 3<<16), "user"...)), "malformed_startup", ""},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), "malformed_startup", ""},
		{"cancel for nobody", startupPacket(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, codeCancelRequest), 7), 9)), "cancel", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err, reply := negotiateBytes(t, s, tc.input)
			reason := ""
			switch e := err.(type) {
			case nil:
			case *startupError:
				reason = e.reason
			default:
				if err == errCancelHandled {
					reason = "cancel"
				} else {
					reason = err.Error()
				}
			}
			if reason != tc.reason {
				t.Errorf("reason %q, want %q", reason, tc.reason)
			}
			if !bytes.HasPrefix(reply, []byte(tc.reply)) {
				t.Errorf("reply %q, want prefix %q", reply, tc.reply)
			}
		})
	}
}

// FuzzNegotiate feeds arbitrary bytes to the startup negotiation: it
// ends with an error or a startup message, never a panic or a hang.
func FuzzNegotiate(f *testing.F) {
	f.Add([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f})
	f.Add(startupPacket(append(binary.BigEndian.AppendUint32(nil, 3<<16), "user\x00app\x00\x00"...)))
	f.Add([]byte{0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0})
	s := testServer(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		negotiateBytes(t, s, input)
	})
}

// TestSelfSignedIsLeaf: the generated certificate is no CA, and a client
// pinning it as its root accepts it for the names it was made for.
func TestSelfSignedIsLeaf(t *testing.T) {
	cpem, _, err := selfSigned([]string{"db.example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(cpem)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Errorf("IsCA %v, key usage %b: want a leaf", cert.IsCA, cert.KeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, name := range []string{"localhost", "127.0.0.1", "db.example.com"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.com"}); err == nil {
		t.Error("verified for a name it was not made for")
	}
}
