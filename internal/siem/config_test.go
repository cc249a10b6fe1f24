package siem

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-pam/vigil/internal/config"
)

func TestBuild(t *testing.T) {
	ca := newTestCA(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SIEM_SECRET": "s3cret"}
	getenv := func(k string) string { return env[k] }
	syslog := func(addr string) *config.SyslogSink { return &config.SyslogSink{Addr: addr} }
	hook := func(url, secretEnv string) *config.Webhook { return &config.Webhook{URL: url, SecretEnv: secretEnv} }
	tests := []struct {
		name    string
		cfgs    []config.Forward
		wantErr string
	}{
		{"none", nil, ""},
		{"syslog, tls and webhook", []config.Forward{
			{Name: "a", Syslog: syslog("collector:6514")},
			{Name: "b", Format: "cef", Syslog: &config.SyslogSink{Addr: "[::1]:6514", TLS: true, CAFile: ca.caFile, ServerName: "c.test"}},
			{Name: "c", Webhook: hook("https://siem.example/in", "SIEM_SECRET")},
		}, ""},
		{"no name", []config.Forward{{Syslog: syslog("h:1")}}, "siem: audit.forward[0]: name is required (it keys the sink's cursor)"},
		{"repeated name", []config.Forward{{Name: "a", Syslog: syslog("h:1")}, {Name: "a", Syslog: syslog("h:2")}},
			"siem: audit.forward[1] (a): name used by an earlier entry; names must be unique"},
		{"neither", []config.Forward{{Name: "a"}}, "siem: audit.forward[0] (a): set syslog or webhook"},
		{"both", []config.Forward{{Name: "a", Syslog: syslog("h:1"), Webhook: hook("https://x/", "SIEM_SECRET")}},
			"siem: audit.forward[0] (a): both syslog and webhook are set; use one entry per sink"},
		{"bad format", []config.Forward{{Name: "a", Format: "leef", Syslog: syslog("h:1")}},
			`siem: audit.forward[0] (a): unknown format "leef" (want "jsonl" or "cef")`},
		{"no addr", []config.Forward{{Name: "a", Syslog: syslog("")}}, "siem: audit.forward[0] (a): syslog: addr is required (HOST:PORT)"},
		{"addr without port", []config.Forward{{Name: "a", Syslog: syslog("collector")}},
			`siem: audit.forward[0] (a): syslog: address "collector" is not HOST:PORT`},
		{"port out of range", []config.Forward{{Name: "a", Syslog: syslog("collector:0")}},
			`siem: audit.forward[0] (a): syslog: address "collector:0": port "0" is not a number from 1 to 65535`},
		{"CA file missing", []config.Forward{{Name: "a", Syslog: &config.SyslogSink{Addr: "h:1", TLS: true, CAFile: "/nonexistent/ca.pem"}}},
			"siem: audit.forward[0] (a): syslog: ca_file: open /nonexistent/ca.pem: no such file or directory"},
		{"CA file without a certificate", []config.Forward{{Name: "a", Syslog: &config.SyslogSink{Addr: "h:1", TLS: true, CAFile: notPEM}}},
			"siem: audit.forward[0] (a): syslog: ca_file " + notPEM + ": no PEM certificate in it"},
		{"CA file without tls", []config.Forward{{Name: "a", Syslog: &config.SyslogSink{Addr: "h:1", CAFile: ca.caFile}}},
			"siem: audit.forward[0] (a): syslog: ca_file and server_name need tls: true"},
		{"no secret_env", []config.Forward{{Name: "a", Webhook: hook("https://x/", "")}},
			"siem: audit.forward[0] (a): webhook: secret_env is required (batches are always signed)"},
		{"secret unset", []config.Forward{{Name: "a", Webhook: hook("https://x/", "NOPE")}},
			"siem: audit.forward[0] (a): webhook: environment variable NOPE is unset or empty"},
		{"remote http", []config.Forward{{Name: "a", Webhook: hook("http://siem.example/in", "SIEM_SECRET")}},
			"siem: audit.forward[0] (a): webhook: plain http is allowed only to a loopback address; use https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sinks, err := Build(tc.cfgs, getenv)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(sinks) != len(tc.cfgs) {
				t.Fatalf("got %d sinks, want %d", len(sinks), len(tc.cfgs))
			}
			for i, sk := range sinks {
				if sk.Name() != tc.cfgs[i].Name {
					t.Fatalf("sink %d: got name %q, want %q", i, sk.Name(), tc.cfgs[i].Name)
				}
				if err := sk.(interface{ Validate() error }).Validate(); err != nil {
					t.Fatalf("sink %d: %v", i, err)
				}
			}
		})
	}
}

// TestBuildDetails checks what Build puts in the sinks it makes.
func TestBuildDetails(t *testing.T) {
	ca := newTestCA(t)
	sinks, err := Build([]config.Forward{
		{Name: "plain", Syslog: &config.SyslogSink{Addr: "collector:514"}},
		{Name: "tls", Format: "cef", Syslog: &config.SyslogSink{Addr: "10.0.0.5:6514", TLS: true, CAFile: ca.caFile}},
		{Name: "hook", Webhook: &config.Webhook{URL: "https://siem.example/in", SecretEnv: "S"}},
	}, func(string) string { return "k" })
	if err != nil {
		t.Fatal(err)
	}
	plain, tls, hook := sinks[0].(*Syslog), sinks[1].(*Syslog), sinks[2].(*Webhook)
	if plain.TLS != nil || plain.Format != FormatJSONL {
		t.Fatalf("plain: got TLS %v, format %q, want no TLS and jsonl", plain.TLS, plain.Format)
	}
	if tls.TLS == nil || tls.TLS.ServerName != "10.0.0.5" || tls.TLS.RootCAs == nil || tls.TLS.MinVersion != 0x0303 || tls.Format != FormatCEF {
		t.Fatalf("tls: got %+v, want server name 10.0.0.5, the CA, TLS 1.2+ and cef", tls.TLS)
	}
	if string(hook.Secret) != "k" || !strings.HasPrefix(hook.URL, "https://") {
		t.Fatalf("hook: got %+v", hook)
	}
}
