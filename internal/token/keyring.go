package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
)

// rsaBits is the modulus size of RSA keys Vigil generates.
const rsaBits = 3072

// KeyInfo describes a signing key without its private part.
type KeyInfo struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is when the key stopped signing; zero for the active key.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// PublishUntil is when the retired key leaves the JWKS: the latest
	// expiry of any token it can have signed.
	PublishUntil time.Time `json:"publish_until,omitzero"`
	Active       bool      `json:"active"`
}

type signingKey struct {
	verifyKey
	signer crypto.Signer
	info   KeyInfo
}

// Keyring holds Vigil's own signing keys: one active key that signs, and
// retired keys that still verify until every token they signed has
// expired. Private keys are stored sealed under the master key.
type Keyring struct {
	db     *store.DB
	mk     *masterkey.Key
	alg    string
	maxTTL time.Duration
	now    func() time.Time

	// mu guards active and keys.
	mu     sync.RWMutex
	active *signingKey
	keys   map[string]*signingKey
}

// KeyringConfig configures OpenKeyring.
type KeyringConfig struct {
	// Algorithm for new keys: EdDSA (default), ES256 or RS256.
	Algorithm string
	// MaxTTL is the longest lifetime of any Vigil token; a retired key is
	// published for this long after retirement.
	MaxTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// OpenKeyring loads the signing keys from db, creating the first one when
// there is none (created reports that). A private key that does not open
// under mk is an error naming the likely cause.
func OpenKeyring(ctx context.Context, db *store.DB, mk *masterkey.Key, cfg KeyringConfig) (kr *Keyring, created bool, err error) {
	if cfg.Algorithm == "" {
		cfg.Algorithm = AlgEdDSA
	}
	switch cfg.Algorithm {
	case AlgEdDSA, AlgES256, AlgRS256:
	default:
		return nil, false, fmt.Errorf("token: signing algorithm %q not supported (EdDSA, ES256, RS256)", cfg.Algorithm)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kr = &Keyring{db: db, mk: mk, alg: cfg.Algorithm, maxTTL: cfg.MaxTTL, now: cfg.Now}
	if err := kr.Reload(ctx); err != nil {
		return nil, false, err
	}
	if kr.active == nil {
		if _, err := kr.Rotate(ctx); err != nil {
			return nil, false, err
		}
		created = true
	}
	return kr, created, nil
}

func keyAAD(kid string) []byte { return []byte("vigil/signing-key/" + kid) }

// Reload reads the keys from the database, dropping those past their
// publication. Other nodes sharing the database see rotations this way.
func (kr *Keyring) Reload(ctx context.Context) error {
	rows, err := kr.db.QueryContext(ctx, `SELECT kid, alg, private_key, created_at, retired_at, publish_until FROM signing_keys`)
	if err != nil {
		return fmt.Errorf("token: load signing keys: %w", err)
	}
	defer rows.Close()
	now := kr.now()
	keys := make(map[string]*signingKey)
	var active *signingKey
	for rows.Next() {
		var kid, alg, sealed string
		var created, retired, until int64
		if err := rows.Scan(&kid, &alg, &sealed, &created, &retired, &until); err != nil {
			return fmt.Errorf("token: load signing keys: %w", err)
		}
		if until != 0 && now.After(store.Time(until)) {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sealed)
		if err != nil {
			return fmt.Errorf("token: signing key %s: stored value is not base64", kid)
		}
		der, err := kr.mk.Open(raw, keyAAD(kid))
		if err != nil {
			return fmt.Errorf("token: signing key %s: %w (master key from %s)", kid, err, kr.mk.Source)
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return fmt.Errorf("token: signing key %s: %w", kid, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return fmt.Errorf("token: signing key %s: %T is not a signer", kid, priv)
		}
		k := &signingKey{
			verifyKey: verifyKey{kid: kid, alg: alg, pub: signer.Public()},
			signer:    signer,
			info: KeyInfo{KID: kid, Alg: alg, CreatedAt: store.Time(created),
				RetiredAt: store.Time(retired), PublishUntil: store.Time(until), Active: retired == 0},
		}
		if err := checkKeyAlg(k.pub, alg); err != nil {
			return fmt.Errorf("token: signing key %s: %w", kid, err)
		}
		keys[kid] = k
		if retired == 0 {
			if active != nil {
				return fmt.Errorf("token: two active signing keys (%s, %s); retire one", active.kid, kid)
			}
			active = k
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("token: load signing keys: %w", err)
	}
	kr.mu.Lock()
	kr.keys, kr.active = keys, active
	kr.mu.Unlock()
	return nil
}

func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("token: cannot generate %s keys", alg)
}

// Rotate creates a new key with the configured algorithm and makes it the
// signing key; the previous key is retired and stays published for MaxTTL.
func (kr *Keyring) Rotate(ctx context.Context) (KeyInfo, error) {
	signer, err := generate(kr.alg)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("token: generate key: %w", err)
	}
	kid, err := thumbprintKID(signer.Public())
	if err != nil {
		return KeyInfo{}, fmt.Errorf("token: key id: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("token: encode key: %w", err)
	}
	sealed := base64.StdEncoding.EncodeToString(kr.mk.Seal(der, keyAAD(kid)))
	now := kr.now()
	until := now.Add(kr.maxTTL + Leeway)
	err = kr.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at = 0`,
			store.Nanos(now), store.Nanos(until)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM signing_keys WHERE publish_until <> 0 AND publish_until < $1`, store.Nanos(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, alg, private_key, created_at) VALUES ($1, $2, $3, $4)`,
			kid, kr.alg, sealed, store.Nanos(now))
		return err
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("token: rotate: %w", err)
	}
	if err := kr.Reload(ctx); err != nil {
		return KeyInfo{}, err
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	if kr.active == nil || kr.active.kid != kid {
		return KeyInfo{}, errors.New("token: rotate: new key not active after reload")
	}
	return kr.active.info, nil
}

// RotateIfOlder rotates when the signing key is at least every old, and
// reports whether it did. It is how automatic rotation runs.
func (kr *Keyring) RotateIfOlder(ctx context.Context, every time.Duration) (KeyInfo, bool, error) {
	kr.mu.RLock()
	created := kr.active.info.CreatedAt
	kr.mu.RUnlock()
	if every <= 0 || kr.now().Sub(created) < every {
		return KeyInfo{}, false, nil
	}
	info, err := kr.Rotate(ctx)
	return info, err == nil, err
}

// List returns the published keys, newest first.
func (kr *Keyring) List() []KeyInfo {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	now := kr.now()
	out := make([]KeyInfo, 0, len(kr.keys))
	for _, k := range kr.keys {
		if k.info.PublishUntil.IsZero() || now.Before(k.info.PublishUntil) {
			out = append(out, k.info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}

// JWKS returns the JSON Web Key Set of the published public keys.
func (kr *Keyring) JWKS() ([]byte, error) {
	set := jwk.NewSet()
	for _, info := range kr.List() {
		k := kr.lookup(info.KID)
		if k == nil {
			continue
		}
		key, err := publicJWK(k)
		if err != nil {
			return nil, err
		}
		if err := set.AddKey(key); err != nil {
			return nil, fmt.Errorf("token: jwks: %w", err)
		}
	}
	return json.Marshal(set)
}

// lookup returns the key with kid if it is still published.
func (kr *Keyring) lookup(kid string) *verifyKey {
	kr.mu.RLock()
	k := kr.keys[kid]
	kr.mu.RUnlock()
	if k == nil || (!k.info.PublishUntil.IsZero() && !kr.now().Before(k.info.PublishUntil)) {
		return nil
	}
	return &k.verifyKey
}

// signer returns the active key.
func (kr *Keyring) signer() *signingKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active
}
