package siem

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/config"
)

func TestMessage(t *testing.T) {
	tests := []struct {
		name   string
		ev     audit.Event
		host   string
		format func(audit.Event) []byte
		want   string
	}{
		{"jsonl, authpriv warning",
			authDenied, "gw1", JSONL,
			`<84>1 2026-03-01T12:00:00.123456Z gw1 vigil - ssh.auth [vigil@32473 seq="7" hash="bb02"] ` + strings.TrimSuffix(string(JSONL(authDenied)), "\n")},
		{"cef, critical rule hit",
			audit.Event{Seq: 3, Time: t0, Type: "rule.hit", Data: map[string]any{"severity": "critical"}, Hash: "h"}, "gw1", CEF,
			`<82>1 2026-03-01T12:00:00.123456Z gw1 vigil - rule.hit [vigil@32473 seq="3" hash="h"] ` +
				strings.TrimSuffix(string(CEF(audit.Event{Seq: 3, Time: t0, Type: "rule.hit", Data: map[string]any{"severity": "critical"}, Hash: "h"})), "\n")},
		{"info, zero time, no host, SD escaping",
			audit.Event{Seq: 1, Type: "vigil.start", Hash: `a"b\c]d`}, "", func(audit.Event) []byte { return []byte("hi\n") },
			`<86>1 - - vigil - vigil.start [vigil@32473 seq="1" hash="a\"b\\c\]d"] hi`},
		{"MSGID sanitised and cut to 32",
			audit.Event{Seq: 2, Time: t0, Type: "a b\tc\u00e9" + strings.Repeat("x", 40), Hash: "h"}, "gw1", func(audit.Event) []byte { return nil },
			`<86>1 2026-03-01T12:00:00.123456Z gw1 vigil - a_b_c__xxxxxxxxxxxxxxxxxxxxxxxxx [vigil@32473 seq="2" hash="h"]`},
		{"BOM before a UTF-8 MSG",
			audit.Event{Seq: 5, Time: t0, Type: "x", Hash: "h"}, "gw1", func(audit.Event) []byte { return []byte("café\n") },
			"<86>1 2026-03-01T12:00:00.123456Z gw1 vigil - x [vigil@32473 seq=\"5\" hash=\"h\"] \uFEFFcafé"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Message(tc.ev, tc.host, tc.format)
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			m, err := parseMessage(got)
			if err != nil {
				t.Fatalf("collector cannot parse it: %v", err)
			}
			if m.SD["hash"] != tc.ev.Hash {
				t.Fatalf("hash parameter: got %q, want %q", m.SD["hash"], tc.ev.Hash)
			}
		})
	}
}

func TestSyslogSeverity(t *testing.T) {
	tests := []struct{ cef, want int }{{0, 6}, {3, 6}, {4, 5}, {6, 5}, {7, 4}, {8, 4}, {9, 2}, {10, 2}}
	for _, tc := range tests {
		if got := syslogSeverity(tc.cef); got != tc.want {
			t.Errorf("syslogSeverity(%d): got %d, want %d", tc.cef, got, tc.want)
		}
	}
}

func TestSyslogValidate(t *testing.T) {
	tests := []struct {
		name    string
		sk      *Syslog
		wantErr string
	}{
		{"ok", &Syslog{SinkName: "s", Addr: "127.0.0.1:514"}, ""},
		{"no name", &Syslog{Addr: "127.0.0.1:514"}, "siem: syslog sink without a name"},
		{"no port", &Syslog{SinkName: "s", Addr: "collector"}, `siem: syslog s: address "collector" is not HOST:PORT`},
		{"no host", &Syslog{SinkName: "s", Addr: ":514"}, `siem: syslog s: address ":514" has no host`},
		{"bad port", &Syslog{SinkName: "s", Addr: "h:70000"}, `siem: syslog s: address "h:70000": port "70000" is not a number from 1 to 65535`},
		{"bad format", &Syslog{SinkName: "s", Addr: "h:1", Format: "xml"}, `siem: syslog s: unknown format "xml" (want "jsonl" or "cef")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sk.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// checkExactlyOnce fails unless got is 1..n.
func checkExactlyOnce(t *testing.T, got []int64, n int64) {
	t.Helper()
	if !reflect.DeepEqual(got, seqs(1, n)) {
		t.Fatalf("got %d messages %v, want seqs 1..%d once each, in order", len(got), compress(got), n)
	}
}

// compress shows a seq list as runs: [1-5 3 6-9].
func compress(s []int64) []string {
	var out []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if i == j {
			out = append(out, strconv.FormatInt(s[i], 10))
		} else {
			out = append(out, strconv.FormatInt(s[i], 10)+"-"+strconv.FormatInt(s[j], 10))
		}
		i = j + 1
	}
	return out
}

// TestSyslogTCP: events reach a plain TCP collector in order, each a
// well-formed RFC 5424 message, and the cursor and metrics follow.
func TestSyslogTCP(t *testing.T) {
	db := openDB(t)
	l := openLog(t, db)
	col := startCollector(t, nil)
	// Events before the sink exists are sent too: a new sink starts at 0.
	appendN(t, l, 30, 50)
	reg := prometheus.NewRegistry()
	f, _ := startForwarder(t, db, l, reg, &Syslog{SinkName: "siem", Addr: col.addr, Format: FormatCEF, Hostname: "gw 1"})
	appendN(t, l, 30, 50)
	waitFor(t, "60 messages", func() bool { return col.count() >= 60 })
	waitFor(t, "cursor at 60", func() bool { return cursorOf(t, db, "siem") == 60 })
	checkExactlyOnce(t, col.seqs(), 60)
	for _, m := range col.messages() {
		if m.PRI != 80+6 || m.Hostname != "gw_1" || m.AppName != "vigil" || m.ProcID != "-" || m.MsgID != "ssh.exec" ||
			m.SDID != "vigil@32473" || len(m.SD["hash"]) != 64 || m.BOM || !strings.HasPrefix(m.Msg, "CEF:0|Vigil|Vigil|") {
			t.Fatalf("got %+v, want an authpriv.info ssh.exec CEF message from gw_1", m)
		}
	}
	// The counter moves just after the cursor.
	waitFor(t, "60 forwarded", func() bool { return metricValue(t, reg, "vigil_siem_events_forwarded_total", "siem") == 60 })
	waitFor(t, "backlog 0", func() bool { return f.Backlog("siem") == 0 })
	if got := metricValue(t, reg, "vigil_siem_backlog", "siem"); got != 0 {
		t.Fatalf("backlog metric: got %v, want 0", got)
	}
	if got := f.Backlog("nope"); got != -1 {
		t.Fatalf("backlog of an unknown sink: got %d, want -1", got)
	}
}

// testCA is a CA made for one test and a collector certificate it signed
// for 127.0.0.1 and collector.test.
type testCA struct {
	caFile string
	server *tls.Config
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siem test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "collector.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"collector.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCA{caFile: caFile, server: &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
}

// TestSyslogTLS: a sink built from configuration reaches a TLS collector
// whose CA it was given, checking the configured server name; a sink
// trusting another CA does not.
func TestSyslogTLS(t *testing.T) {
	ca := newTestCA(t)
	col := startCollector(t, ca.server)
	sinks, err := Build([]config.Forward{{Name: "tls", Syslog: &config.SyslogSink{Addr: col.addr, TLS: true,
		CAFile: ca.caFile, ServerName: "collector.test"}}}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t)
	l := openLog(t, db)
	appendN(t, l, 1, 10)
	if err := l.Append(context.Background(), audit.Event{Type: "note", Actor: "zoë"}); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 40, 10)
	_, stop := startForwarder(t, db, l, nil, sinks...)
	waitFor(t, "42 messages", func() bool { return col.count() >= 42 })
	waitFor(t, "cursor at 42", func() bool { return cursorOf(t, db, "tls") == 42 })
	checkExactlyOnce(t, col.seqs(), 42)
	if m := col.messages()[1]; !m.BOM || !strings.Contains(m.Msg, `"actor":"zoë"`) {
		t.Fatalf("got %+v, want a BOM and a UTF-8 JSON message", m)
	}

	// The collector serves one connection at a time: end this one.
	stop()
	other := newTestCA(t)
	bad, err := Build([]config.Forward{{Name: "tls", Syslog: &config.SyslogSink{Addr: col.addr, TLS: true,
		CAFile: other.caFile, ServerName: "collector.test"}}}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	events, err := l.After(context.Background(), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := bad[0].Send(context.Background(), events); n != 0 || err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("send to a collector of another CA: got %d, %v, want 0 and a certificate error", n, err)
	}
	wrongName := sinks[0].(*Syslog)
	wrongName.TLS = wrongName.TLS.Clone()
	wrongName.TLS.ServerName = "other.test"
	wrongName.Close()
	if n, err := wrongName.Send(context.Background(), events); n != 0 || err == nil || !strings.Contains(err.Error(), "other.test") {
		t.Fatalf("send checking the wrong server name: got %d, %v, want 0 and a name error", n, err)
	}
	if got := col.count(); got != 42 {
		t.Fatalf("collector got %d messages after the failed sends, want 42", got)
	}
}

// TestSyslogOutage: the collector reads batch A, then goes away (listener
// and connections closed) while batch B is appended, and comes back on
// the same port. Every event arrives exactly once, in order.
func TestSyslogOutage(t *testing.T) {
	db := openDB(t)
	l := openLog(t, db)
	col := startCollector(t, nil)
	reg := prometheus.NewRegistry()
	startForwarder(t, db, l, reg, &Syslog{SinkName: "siem", Addr: col.addr})

	appendN(t, l, 120, 100)
	waitFor(t, "batch A at the collector", func() bool { return col.count() >= 120 })
	// Delivery of A must also be confirmed (cursor written) before the
	// collector goes: a collector that vanishes between reading a batch
	// and the forwarder's check makes that batch count as lost and sent
	// again, which is correct but not what this test is about.
	waitFor(t, "cursor at 120", func() bool { return cursorOf(t, db, "siem") == 120 })
	col.stop()

	appendN(t, l, 80, 100)
	waitFor(t, "failed sends while the collector is down", func() bool {
		return metricValue(t, reg, "vigil_siem_send_failures_total", "siem") >= 2
	})
	if c := cursorOf(t, db, "siem"); c != 120 {
		t.Fatalf("cursor moved to %d while the collector was down, want 120", c)
	}
	col.restart()
	appendN(t, l, 50, 100)
	waitFor(t, "cursor at 250", func() bool { return cursorOf(t, db, "siem") == 250 })
	checkExactlyOnce(t, col.seqs(), 250)
}

// TestSyslogForwarderRestart: a new Forwarder over the same database
// resends nothing and carries on from the cursor.
func TestSyslogForwarderRestart(t *testing.T) {
	db := openDB(t)
	l := openLog(t, db)
	col := startCollector(t, nil)
	_, stop := startForwarder(t, db, l, nil, &Syslog{SinkName: "siem", Addr: col.addr})
	appendN(t, l, 70, 20)
	waitFor(t, "cursor at 70", func() bool { return cursorOf(t, db, "siem") == 70 })
	stop()

	f2, _ := startForwarder(t, db, l, nil, &Syslog{SinkName: "siem", Addr: col.addr})
	waitFor(t, "the new forwarder's cursor", func() bool { return f2.Backlog("siem") == 0 })
	appendN(t, l, 30, 20)
	waitFor(t, "cursor at 100", func() bool { return cursorOf(t, db, "siem") == 100 })
	waitFor(t, "100 messages", func() bool { return col.count() >= 100 })
	checkExactlyOnce(t, col.seqs(), 100)
	if got := col.connections(); got != 2 {
		t.Fatalf("got %d connections, want 2 (one per forwarder)", got)
	}
}

// TestSyslogSlowCollector: a collector that stops reading holds the
// forwarder up without losing an event. Within the timeouts nothing is
// sent twice; past them the forwarder reconnects and resends from its
// cursor, so some events arrive twice but none is missing and the first
// arrivals are in order.
func TestSyslogSlowCollector(t *testing.T) {
	tests := []struct {
		name  string
		short bool
	}{
		{"stall within the timeouts", false},
		{"stall past the timeouts", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t)
			l := openLog(t, db)
			col := startCollector(t, nil)
			sk := &Syslog{SinkName: "siem", Addr: col.addr}
			if tc.short {
				sk.writeTimeout, sk.ackTimeout = 100*time.Millisecond, 100*time.Millisecond
			}
			reg := prometheus.NewRegistry()
			startForwarder(t, db, l, reg, sk)
			appendN(t, l, 10, 100)
			waitFor(t, "cursor at 10", func() bool { return cursorOf(t, db, "siem") == 10 })

			col.pause()
			// 1500 events of 1 KiB are more than the collector's socket
			// buffer takes unread (about 128 KiB on Linux loopback).
			appendN(t, l, 1500, 1024)
			// Let the stall last: not an assertion on time, the check
			// below holds however long this takes.
			time.Sleep(time.Second)
			if ackSupported {
				if c := cursorOf(t, db, "siem"); c >= 1510 {
					t.Fatalf("cursor reached %d while the collector was not reading", c)
				}
			}
			col.resume()
			waitFor(t, "cursor at 1510", func() bool { return cursorOf(t, db, "siem") == 1510 })
			waitFor(t, "1510 distinct messages", func() bool { return len(distinct(col.seqs())) >= 1510 })
			got := col.seqs()
			if !tc.short {
				checkExactlyOnce(t, got, 1510)
				return
			}
			checkExactlyOnce(t, distinct(got), 1510)
			if f := metricValue(t, reg, "vigil_siem_send_failures_total", "siem"); ackSupported && f == 0 {
				t.Fatalf("no failed send with a %v ack timeout and a 1 s stall", sk.ackTimeout)
			}
			t.Logf("%d messages for 1510 events over %d connections", len(got), col.connections())
		})
	}
}

// distinct returns s without repeats, in the order of first appearance.
func distinct(s []int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// TestSyslogSendCancelled: Send returns when its context ends, even with
// the collector not reading and the batch larger than the socket buffers.
func TestSyslogSendCancelled(t *testing.T) {
	col := startCollector(t, nil)
	sk := &Syslog{SinkName: "siem", Addr: col.addr}
	t.Cleanup(func() { sk.Close() })
	// Connect first, so the cancellation meets the write or the wait for
	// acknowledgement rather than the dial.
	if _, err := sk.Send(context.Background(), []audit.Event{authDenied}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first message", func() bool { return col.count() == 1 })
	col.pause()
	t.Cleanup(col.resume)
	big := strings.Repeat("x", 1<<20)
	var events []audit.Event
	for i := range 8 {
		events = append(events, audit.Event{Seq: int64(i + 2), Time: t0, Type: "x", Data: map[string]any{"pad": big}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sk.Send(ctx, events)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want a cancellation error", err)
		}
	case <-time.After(waitDeadline):
		t.Fatal("Send did not return after its context ended")
	}
}
