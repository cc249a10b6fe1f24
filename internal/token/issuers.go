package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Limits on fetching an external issuer's JWKS.
const (
	// jwksFetchTimeout bounds one fetch, so a slow IdP cannot hold a
	// verification (or a login) for long.
	jwksFetchTimeout = 5 * time.Second
	// jwksMaxBytes bounds a JWKS document; real ones are a few KiB.
	jwksMaxBytes = 256 << 10
	// DefaultJWKSRefresh is how often keys are re-fetched in the background.
	DefaultJWKSRefresh = 10 * time.Minute
	// DefaultJWKSMinInterval is the least time between two fetches of one
	// issuer's keys; an unknown kid triggers a fetch at most this often,
	// so a flood of tokens with random kids cannot flood the IdP.
	DefaultJWKSMinInterval = 30 * time.Second
	// DefaultExternalLifetime caps the lifetime of external tokens.
	DefaultExternalLifetime = 24 * time.Hour
)

// IssuerConfig is a trusted external identity provider.
type IssuerConfig struct {
	// Issuer is the exact "iss" value of its tokens.
	Issuer string `yaml:"issuer" json:"issuer"`
	// JWKSURL or JWKSFile is where its public keys are; exactly one.
	// JWKSURL must be https unless it points to a loopback address.
	JWKSURL  string `yaml:"jwks_url" json:"jwks_url,omitempty"`
	JWKSFile string `yaml:"jwks_file" json:"jwks_file,omitempty"`
	// Audience must be among its tokens' "aud" values.
	Audience string `yaml:"audience" json:"audience"`
	// RolesClaim names the claim listing the user's roles; dots descend
	// into objects (realm_access.roles). Empty: no roles.
	RolesClaim string `yaml:"roles_claim" json:"roles_claim,omitempty"`
	// AdminRoles are roles that administer Vigil. Empty: none do.
	AdminRoles []string `yaml:"admin_roles" json:"admin_roles,omitempty"`
	// Algorithms, when set, restricts the keys used to these algorithms.
	Algorithms []string `yaml:"algorithms" json:"algorithms,omitempty"`
	// MaxLifetime caps exp - iat of its tokens; 0 means 24h.
	MaxLifetime time.Duration `yaml:"max_lifetime" json:"max_lifetime,omitempty"`
	// Refresh is the background refresh interval; 0 means 10m.
	Refresh time.Duration `yaml:"refresh" json:"refresh,omitempty"`
	// MinInterval is the least time between fetches; 0 means 30s.
	MinInterval time.Duration `yaml:"min_interval" json:"min_interval,omitempty"`
}

// FetchObserver is told the outcome of every key fetch.
type FetchObserver func(ctx context.Context, issuer string, keys int, skipped []string, err error)

// RemoteIssuer holds the verification keys of one external issuer,
// fetched from its JWKS URL or file.
type RemoteIssuer struct {
	cfg     IssuerConfig
	client  *http.Client
	now     func() time.Time
	observe FetchObserver

	// mu guards keys.
	mu   sync.RWMutex
	keys map[string]*verifyKey

	// fetchMu serialises fetches and guards lastAttempt.
	fetchMu     sync.Mutex
	lastAttempt time.Time
}

// NewRemoteIssuer validates cfg. client may be nil for a default client
// that does not follow redirects; now may be nil; observe may be nil.
func NewRemoteIssuer(cfg IssuerConfig, client *http.Client, now func() time.Time, observe FetchObserver) (*RemoteIssuer, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("token: an issuer needs issuer and audience")
	}
	if (cfg.JWKSURL == "") == (cfg.JWKSFile == "") {
		return nil, fmt.Errorf("token: issuer %s: set exactly one of jwks_url and jwks_file", cfg.Issuer)
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("token: issuer %s: jwks_url %q is not a URL", cfg.Issuer, cfg.JWKSURL)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
			return nil, fmt.Errorf("token: issuer %s: jwks_url must use https (plain http only on loopback)", cfg.Issuer)
		}
	}
	for _, a := range cfg.Algorithms {
		if _, ok := allowedAlgs[a]; !ok {
			return nil, fmt.Errorf("token: issuer %s: algorithm %q not allowed", cfg.Issuer, a)
		}
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultExternalLifetime
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultJWKSRefresh
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultJWKSMinInterval
	}
	if client == nil {
		client = &http.Client{
			Timeout: jwksFetchTimeout,
			// A redirect could lead the fetch anywhere; the configured URL
			// is the only source of keys.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if now == nil {
		now = time.Now
	}
	return &RemoteIssuer{cfg: cfg, client: client, now: now, observe: observe, keys: map[string]*verifyKey{}}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Config returns the issuer's configuration.
func (ri *RemoteIssuer) Config() IssuerConfig { return ri.cfg }

// Refresh fetches the keys now, unless a fetch happened less than
// MinInterval ago (unless force). On failure the previous keys stay.
func (ri *RemoteIssuer) Refresh(ctx context.Context, force bool) error {
	ri.fetchMu.Lock()
	defer ri.fetchMu.Unlock()
	now := ri.now()
	if !force && !ri.lastAttempt.IsZero() && now.Sub(ri.lastAttempt) < ri.cfg.MinInterval {
		return nil
	}
	ri.lastAttempt = now
	keys, skipped, err := ri.fetch(ctx)
	if ri.observe != nil {
		ri.observe(ctx, ri.cfg.Issuer, len(keys), skipped, err)
	}
	if err != nil {
		return err
	}
	ri.mu.Lock()
	ri.keys = keys
	ri.mu.Unlock()
	return nil
}

func (ri *RemoteIssuer) fetch(ctx context.Context) (map[string]*verifyKey, []string, error) {
	var body []byte
	var err error
	if ri.cfg.JWKSFile != "" {
		body, err = readLimited(ri.cfg.JWKSFile)
	} else {
		body, err = ri.get(ctx)
	}
	if err != nil {
		return nil, nil, err
	}
	keys, skipped, err := parseJWKS(body, ri.cfg.Algorithms)
	if err != nil {
		return nil, nil, fmt.Errorf("token: issuer %s: %w", ri.cfg.Issuer, err)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("token: issuer %s: JWKS has no usable signing key", ri.cfg.Issuer)
	}
	return keys, skipped, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token: read jwks_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, jwksMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("token: read jwks_file %s: %w", path, err)
	}
	if len(b) > jwksMaxBytes {
		return nil, fmt.Errorf("token: jwks_file %s is larger than %d bytes", path, jwksMaxBytes)
	}
	return b, nil
}

func (ri *RemoteIssuer) get(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ri.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("token: issuer %s: %w", ri.cfg.Issuer, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ri.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token: issuer %s: fetch JWKS: %w", ri.cfg.Issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token: issuer %s: fetch JWKS: HTTP %d", ri.cfg.Issuer, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("token: issuer %s: read JWKS: %w", ri.cfg.Issuer, err)
	}
	if len(b) > jwksMaxBytes {
		return nil, fmt.Errorf("token: issuer %s: JWKS is larger than %d bytes", ri.cfg.Issuer, jwksMaxBytes)
	}
	return b, nil
}

// maxJWKSKeys bounds how many keys of a set are considered.
const maxJWKSKeys = 64

// parseJWKS parses a JWK Set key by key (with jwx), so that one key Vigil
// refuses (too weak, malformed, unsupported) is skipped with its reason
// instead of discarding the whole set.
func parseJWKS(body []byte, pinned []string) (map[string]*verifyKey, []string, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Keys == nil {
		return nil, nil, errors.New("JWKS is not a JSON object with a \"keys\" array")
	}
	if len(doc.Keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("JWKS has %d keys, more than %d", len(doc.Keys), maxJWKSKeys)
	}
	var parsed []jwk.Key
	var skipped []string
	for i, raw := range doc.Keys {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		parsed = append(parsed, k)
	}
	keys, more := keysFromJWKS(parsed, pinned)
	return keys, append(skipped, more...), nil
}

// current returns the key with kid without fetching.
func (ri *RemoteIssuer) current(kid string) *verifyKey {
	ri.mu.RLock()
	defer ri.mu.RUnlock()
	return ri.keys[kid]
}

// lookup returns the key with kid, fetching the key set once (within the
// rate limit) when kid is unknown: that is how a rotation at the IdP is
// picked up between background refreshes.
func (ri *RemoteIssuer) lookup(ctx context.Context, kid string) *verifyKey {
	if k := ri.current(kid); k != nil {
		return k
	}
	_ = ri.Refresh(ctx, false) // failures are observed and leave the old keys
	return ri.current(kid)
}

// Run refreshes the keys every Refresh interval until ctx ends.
func (ri *RemoteIssuer) Run(ctx context.Context) {
	t := time.NewTicker(ri.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = ri.Refresh(ctx, true)
		}
	}
}
