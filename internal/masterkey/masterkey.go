// Package masterkey owns Vigil's master key: where it comes from
// (VIGIL_MASTER_KEY or a 0600 file in the data directory) and sealing data
// at rest under it with AES-256-GCM. It does not decide what is sealed; the
// token keyring and, later, the vault call Seal and Open.
package masterkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar is the environment variable that, when set, holds the master key
// (32 bytes as 64 hex digits or base64) and takes precedence over the file.
const EnvVar = "VIGIL_MASTER_KEY"

// FileName is the master key file created in the data directory when
// EnvVar is not set.
const FileName = "master.key"

// Size is the master key length in bytes (AES-256).
const Size = 32

// ErrMismatch is returned by Open when a ciphertext was not sealed under
// this key (or was altered): the operator most likely supplied the wrong
// master key.
var ErrMismatch = errors.New("masterkey: ciphertext does not open under this master key (wrong master key or altered data)")

// Key is a loaded master key. The zero value is not usable; get one from
// Load or New.
type Key struct {
	aead cipher.AEAD
	// Source says where the key came from ("env" or the file path), for
	// operator messages; never the key itself.
	Source string
}

// New returns a Key for the raw 32-byte secret.
func New(secret []byte, source string) (*Key, error) {
	if len(secret) != Size {
		return nil, fmt.Errorf("masterkey: key from %s is %d bytes, want %d", source, len(secret), Size)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("masterkey: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("masterkey: %w", err)
	}
	return &Key{aead: aead, Source: source}, nil
}

// Load returns the master key from the value of EnvVar when env is not
// empty, otherwise from dataDir/master.key, creating that file (mode 0600)
// with a fresh random key if it does not exist. A key file readable by group
// or others is refused: whoever reads it can read every secret Vigil holds.
func Load(env, dataDir string) (*Key, error) {
	if env != "" {
		secret, err := decode(strings.TrimSpace(env))
		if err != nil {
			return nil, fmt.Errorf("masterkey: %s: %w", EnvVar, err)
		}
		return New(secret, EnvVar)
	}
	path := filepath.Join(dataDir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("masterkey: read %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("masterkey: stat %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("masterkey: %s has mode %o; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	secret, err := decode(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("masterkey: %s: %w", path, err)
	}
	return New(secret, path)
}

func create(path string) (*Key, error) {
	secret := make([]byte, Size)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("masterkey: generate: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("masterkey: create %s: %w", path, err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("masterkey: write %s: %w", path, err)
	}
	return New(secret, path)
}

func decode(s string) ([]byte, error) {
	if len(s) == 2*Size {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != Size {
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), Size)
			}
			return b, nil
		}
	}
	return nil, errors.New("not 32 bytes in hex or base64")
}

// Seal encrypts plaintext with a fresh random nonce. aad binds the
// ciphertext to its context (for example the row it is stored in), so a
// ciphertext copied to another row does not open.
func (k *Key) Seal(plaintext, aad []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("masterkey: crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
	}
	return k.aead.Seal(nonce, nonce, plaintext, aad)
}

// Open decrypts a ciphertext made by Seal with the same aad. It returns
// ErrMismatch when authentication fails.
func (k *Key) Open(sealed, aad []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return nil, fmt.Errorf("masterkey: sealed data is %d bytes, too short", len(sealed))
	}
	pt, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], aad)
	if err != nil {
		return nil, ErrMismatch
	}
	return pt, nil
}
