package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `
http_addr: 127.0.0.1:9999
token:
  max_ttl: 4h
  default_ttl: 10m
  algorithm: ES256
issuers:
  - issuer: https://idp.example.com/
    jwks_file: idp.json
    audience: vigil
    roles_claim: groups
    max_lifetime: 1h
`)
	cfg, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:9999" || cfg.Token.MaxTTL != 4*time.Hour || cfg.Token.Algorithm != "ES256" || cfg.Data != "./vigil-data" {
		t.Fatalf("got %+v", cfg)
	}
	if is := cfg.Issuers[0]; is.JWKSFile != filepath.Join(dir, "idp.json") || is.MaxLifetime != time.Hour || is.RolesClaim != "groups" {
		t.Fatalf("got issuer %+v", is)
	}
	if got := cfg.StoreURL(); got != "sqlite://vigil-data/vigil.db" {
		t.Fatalf("got store %q", got)
	}

	tests := []struct{ name, body, want string }{
		{"typo", "tokn:\n  max_ttl: 1h\n", "field tokn not found"},
		{"not yaml", "{{{", "yaml"},
		{"bad duration", "token:\n  max_ttl: forever\n", "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(write(tc.name+".yaml", tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file: got nil error")
	}

	invalid := []func(*Config){
		func(c *Config) { c.Token.DefaultTTL = 9 * time.Hour },
		func(c *Config) { c.Token.Algorithm = "HS256" },
		func(c *Config) { c.HTTPAddr = "8080" },
		func(c *Config) { c.Token.RotateEvery = time.Minute },
		func(c *Config) { c.LogLevel = "loud" },
	}
	for i, mutate := range invalid {
		c := Default()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("invalid config %d: got nil error", i)
		}
	}
}
