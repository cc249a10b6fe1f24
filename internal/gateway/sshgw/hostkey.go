package sshgw

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
	"golang.org/x/crypto/ssh"
)

const hostKeyMeta = "ssh_host_key"

// LoadOrCreateHostKey returns the gateway's Ed25519 host key, creating it
// on first use. It is stored sealed under the master key in the state
// database, so every node sharing the database presents the same key.
func LoadOrCreateHostKey(ctx context.Context, db *store.DB, mk *masterkey.Key) (ssh.Signer, error) {
	aad := []byte("vigil/" + hostKeyMeta)
	v, ok, err := db.Meta(ctx, hostKeyMeta)
	if err != nil {
		return nil, err
	}
	if !ok {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sshgw: host key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("sshgw: host key: %w", err)
		}
		if err := db.SetMetaOnce(ctx, hostKeyMeta, base64.StdEncoding.EncodeToString(mk.Seal(der, aad))); err != nil {
			return nil, err
		}
		// Another node may have won the race: read back what is stored.
		if v, _, err = db.Meta(ctx, hostKeyMeta); err != nil {
			return nil, err
		}
	}
	sealed, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, errors.New("sshgw: stored host key is corrupt")
	}
	der, err := mk.Open(sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("sshgw: host key: %w", err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("sshgw: host key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// errGotKey stops a handshake once the host key is known.
var errGotKey = errors.New("host key captured")

// FetchHostKey connects to an SSH server and returns the host key it
// presents, preferring Ed25519, for trust-on-first-use pinning. It does
// not authenticate.
func FetchHostKey(ctx context.Context, addr string, timeout time.Duration) (ssh.PublicKey, error) {
	var got ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "vigil-host-key-probe",
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = key
			return errGotKey
		},
		Timeout: timeout,
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sshgw: reach %s: %w", addr, err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(timeout))
	_, _, _, err = ssh.NewClientConn(nc, addr, cfg)
	if got == nil {
		return nil, fmt.Errorf("sshgw: no host key from %s: %v", addr, err)
	}
	return got, nil
}
