package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
)

// DefaultCheckpointEvery is the longest activity goes without a signed
// checkpoint when Options.CheckpointEvery is zero.
const DefaultCheckpointEvery = time.Second

// SigningKey is the audit key that signs checkpoints: Ed25519, separate
// from the token signing keys (rotating or leaking one does not touch the
// other), stored sealed with the master key.
type SigningKey struct {
	// KID identifies the key: "ak_" and the first 16 hex digits of the
	// SHA-256 of its public key.
	KID  string
	priv ed25519.PrivateKey
}

// Public returns the key's public half.
func (k *SigningKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ak_" + hex.EncodeToString(sum[:8])
}

func keyAAD(kid string) []byte { return []byte("audit_key:" + kid) }

// OpenSigningKey returns the current audit signing key, creating it on
// first use (created is then true). The private key is sealed with mk.
func OpenSigningKey(ctx context.Context, db *store.DB, mk *masterkey.Key, now time.Time) (key *SigningKey, created bool, err error) {
	var kid, sealed string
	err = db.QueryRowContext(ctx, `SELECT kid, private_key FROM audit_keys WHERE retired_at = 0 ORDER BY created_at DESC LIMIT 1`).Scan(&kid, &sealed)
	if err == nil {
		raw, err := base64.StdEncoding.DecodeString(sealed)
		if err != nil {
			return nil, false, fmt.Errorf("audit: key %s is corrupt: %w", kid, err)
		}
		seed, err := mk.Open(raw, keyAAD(kid))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, false, fmt.Errorf("audit: key %s cannot be unsealed with this master key", kid)
		}
		k := &SigningKey{KID: kid, priv: ed25519.NewKeyFromSeed(seed)}
		if keyID(k.Public()) != kid {
			return nil, false, fmt.Errorf("audit: key %s does not match its id", kid)
		}
		return k, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, false, fmt.Errorf("audit: read signing key: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("audit: generate signing key: %w", err)
	}
	k := &SigningKey{KID: keyID(pub), priv: priv}
	_, err = db.ExecContext(ctx, `INSERT INTO audit_keys (kid, public_key, private_key, created_at, retired_at) VALUES ($1, $2, $3, $4, 0)`,
		k.KID, base64.StdEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(mk.Seal(priv.Seed(), keyAAD(k.KID))), store.Nanos(now))
	if err != nil {
		return nil, false, fmt.Errorf("audit: store signing key: %w", err)
	}
	return k, true, nil
}

// PublicKeys returns every audit public key ever used, by KID: a
// checkpoint verifies only against these.
func PublicKeys(ctx context.Context, db *store.DB) (map[string]ed25519.PublicKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT kid, public_key FROM audit_keys`)
	if err != nil {
		return nil, fmt.Errorf("audit: read public keys: %w", err)
	}
	defer rows.Close()
	keys := map[string]ed25519.PublicKey{}
	for rows.Next() {
		var kid, pub string
		if err := rows.Scan(&kid, &pub); err != nil {
			return nil, fmt.Errorf("audit: read public keys: %w", err)
		}
		raw, err := base64.StdEncoding.DecodeString(pub)
		if err != nil || len(raw) != ed25519.PublicKeySize || keyID(raw) != kid {
			return nil, fmt.Errorf("audit: public key %s is corrupt or does not match its id", kid)
		}
		keys[kid] = raw
	}
	return keys, rows.Err()
}

// TrustedKeys returns the audit public keys whose sealed private half
// opens with mk and matches: only those may vouch for checkpoints. A key
// row planted by someone with write access to the database but without
// the master key is left out (and its checkpoints fail verification).
func TrustedKeys(ctx context.Context, db *store.DB, mk *masterkey.Key) (map[string]ed25519.PublicKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT kid, public_key, private_key FROM audit_keys`)
	if err != nil {
		return nil, fmt.Errorf("audit: read keys: %w", err)
	}
	defer rows.Close()
	keys := map[string]ed25519.PublicKey{}
	for rows.Next() {
		var kid, pub, sealed string
		if err := rows.Scan(&kid, &pub, &sealed); err != nil {
			return nil, fmt.Errorf("audit: read keys: %w", err)
		}
		raw, err1 := base64.StdEncoding.DecodeString(pub)
		blob, err2 := base64.StdEncoding.DecodeString(sealed)
		if err1 != nil || err2 != nil || len(raw) != ed25519.PublicKeySize || keyID(raw) != kid {
			continue
		}
		seed, err := mk.Open(blob, keyAAD(kid))
		if err != nil || len(seed) != ed25519.SeedSize || !ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(raw)) {
			continue
		}
		keys[kid] = raw
	}
	return keys, rows.Err()
}

// Checkpoint is a signed statement that the log's event Seq had hash
// Hash at Time. A checkpoint beyond the log's end proves truncation; one
// whose hash no longer matches proves a rewrite.
type Checkpoint struct {
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KID       string    `json:"kid"`
	Signature string    `json:"signature"`
}

// checkpointMessage is what a checkpoint's signature covers.
func checkpointMessage(seq int64, hash string, t time.Time, kid string) []byte {
	b := []byte("vigil-audit-checkpoint/v1\nseq=")
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "\nhash="...)
	b = append(b, hash...)
	b = append(b, "\ntime="...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	b = append(b, "\nkid="...)
	b = append(b, kid...)
	return append(b, '\n')
}

// sign returns a checkpoint of (seq, hash) at t.
func (k *SigningKey) sign(seq int64, hash string, t time.Time) Checkpoint {
	sig := ed25519.Sign(k.priv, checkpointMessage(seq, hash, t, k.KID))
	return Checkpoint{Seq: seq, Hash: hash, Time: t, KID: k.KID, Signature: base64.StdEncoding.EncodeToString(sig)}
}

// Valid reports whether c is signed by keys[c.KID].
func (c Checkpoint) Valid(keys map[string]ed25519.PublicKey) error {
	pub, ok := keys[c.KID]
	if !ok {
		return fmt.Errorf("signed by unknown key %q", c.KID)
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, checkpointMessage(c.Seq, c.Hash, c.Time, c.KID), sig) {
		return fmt.Errorf("signature does not verify with key %s", c.KID)
	}
	return nil
}

func writeCheckpoint(ctx context.Context, db *store.DB, c Checkpoint) error {
	// A transaction, to take its turn with the other writers (store.DB.Tx).
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (seq) DO NOTHING`, c.Seq, c.Hash, store.Nanos(c.Time), c.KID, c.Signature)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: write checkpoint at %d: %w", c.Seq, err)
	}
	return nil
}

// Checkpoints returns the stored checkpoints with seq in [from, to], in
// order.
func Checkpoints(ctx context.Context, db *store.DB, from, to int64) ([]Checkpoint, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, hash, time, kid, signature FROM audit_checkpoints
		WHERE seq >= $1 AND seq <= $2 ORDER BY seq`, from, to)
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var t int64
		if err := rows.Scan(&c.Seq, &c.Hash, &t, &c.KID, &c.Signature); err != nil {
			return nil, fmt.Errorf("audit: read checkpoints: %w", err)
		}
		c.Time = store.Time(t)
		out = append(out, c)
	}
	return out, rows.Err()
}
