package siem

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/config"
)

// Build returns the sinks configured by cfgs (audit.forward), reading
// each webhook's secret with getenv; nil getenv means os.Getenv. It checks
// every entry and reports the first problem, naming the entry: a missing
// or repeated name, not exactly one of syslog and webhook, an unknown
// format (empty means "jsonl"), an address that is not HOST:PORT, a CA
// file that cannot be read or holds no certificate, TLS settings without
// tls, a webhook without a secret, or a URL that is neither https nor
// http to a loopback address. The webhook's own name and min_severity are
// not used: the sink is named by the entry and forwards every event.
func Build(cfgs []config.Forward, getenv func(string) string) ([]Sink, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var sinks []Sink
	seen := map[string]bool{}
	for i, fc := range cfgs {
		where := fmt.Sprintf("audit.forward[%d]", i)
		if fc.Name == "" {
			return nil, fmt.Errorf("siem: %s: name is required (it keys the sink's cursor)", where)
		}
		where = fmt.Sprintf("audit.forward[%d] (%s)", i, fc.Name)
		if seen[fc.Name] {
			return nil, fmt.Errorf("siem: %s: name used by an earlier entry; names must be unique", where)
		}
		seen[fc.Name] = true
		format := fc.Format
		if format == "" {
			format = FormatJSONL
		}
		if _, err := lookupFormat(format); err != nil {
			return nil, fmt.Errorf("siem: %s: %w", where, err)
		}
		switch {
		case fc.Syslog != nil && fc.Webhook != nil:
			return nil, fmt.Errorf("siem: %s: both syslog and webhook are set; use one entry per sink", where)
		case fc.Syslog != nil:
			sk, err := buildSyslog(fc.Name, format, fc.Syslog)
			if err != nil {
				return nil, fmt.Errorf("siem: %s: syslog: %w", where, err)
			}
			sinks = append(sinks, sk)
		case fc.Webhook != nil:
			sk, err := buildWebhook(fc.Name, format, fc.Webhook, getenv)
			if err != nil {
				return nil, fmt.Errorf("siem: %s: webhook: %w", where, err)
			}
			sinks = append(sinks, sk)
		default:
			return nil, fmt.Errorf("siem: %s: set syslog or webhook", where)
		}
	}
	return sinks, nil
}

// buildSyslog checks one syslog sink's configuration and builds it.
func buildSyslog(name, format string, sc *config.SyslogSink) (*Syslog, error) {
	if sc.Addr == "" {
		return nil, errors.New("addr is required (HOST:PORT)")
	}
	if err := validateAddr(sc.Addr); err != nil {
		return nil, err
	}
	sk := &Syslog{SinkName: name, Addr: sc.Addr, Format: format}
	if !sc.TLS {
		if sc.CAFile != "" || sc.ServerName != "" {
			return nil, errors.New("ca_file and server_name need tls: true")
		}
		return sk, nil
	}
	host, _, _ := net.SplitHostPort(sc.Addr)
	sk.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if sc.ServerName != "" {
		sk.TLS.ServerName = sc.ServerName
	}
	if sc.CAFile != "" {
		pem, err := os.ReadFile(sc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", sc.CAFile)
		}
		sk.TLS.RootCAs = pool
	}
	return sk, nil
}

// buildWebhook checks one webhook sink's configuration and builds it.
func buildWebhook(name, format string, wc *config.Webhook, getenv func(string) string) (*Webhook, error) {
	if err := alert.CheckURL(wc.URL); err != nil {
		return nil, err
	}
	if wc.SecretEnv == "" {
		return nil, errors.New("secret_env is required (batches are always signed)")
	}
	secret := getenv(wc.SecretEnv)
	if secret == "" {
		return nil, fmt.Errorf("environment variable %s is unset or empty", wc.SecretEnv)
	}
	return &Webhook{SinkName: name, URL: wc.URL, Secret: []byte(secret), Format: format}, nil
}
