package pggw

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
)

const (
	certMeta = "pg_tls_cert"
	keyMeta  = "pg_tls_key"
)

// LoadOrCreateCertificate returns the gateway's TLS certificate: the
// configured certFile and keyFile (PEM) when given, else a self-signed
// ECDSA P-256 certificate created on first start for hosts (names and
// addresses; localhost, 127.0.0.1 and ::1 are always included) and
// stored in the state database with its private key sealed under the
// master key, so every node presents the same certificate. Clients that
// verify the server (sslmode=verify-full) need a configured certificate
// from a CA they trust, or the generated one pinned as their root.
func LoadOrCreateCertificate(ctx context.Context, db *store.DB, mk *masterkey.Key, certFile, keyFile string, hosts []string) (tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return tls.Certificate{}, errors.New("pggw: tls certificate: give both the certificate and the key file")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("pggw: tls certificate: %w", err)
		}
		return cert, nil
	}
	aad := []byte("vigil/" + keyMeta)
	certPEM, ok, err := db.Meta(ctx, certMeta)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !ok {
		cpem, kder, err := selfSigned(hosts, time.Now())
		if err != nil {
			return tls.Certificate{}, err
		}
		// The key first: a certificate stored without its key would stick.
		if err := db.SetMetaOnce(ctx, keyMeta, base64.StdEncoding.EncodeToString(mk.Seal(kder, aad))); err != nil {
			return tls.Certificate{}, err
		}
		if err := db.SetMetaOnce(ctx, certMeta, string(cpem)); err != nil {
			return tls.Certificate{}, err
		}
		// Another node may have won the race: read back what is stored.
		if certPEM, _, err = db.Meta(ctx, certMeta); err != nil {
			return tls.Certificate{}, err
		}
	}
	v, ok, err := db.Meta(ctx, keyMeta)
	if err != nil {
		return tls.Certificate{}, err
	}
	sealed, err := base64.StdEncoding.DecodeString(v)
	if !ok || err != nil {
		return tls.Certificate{}, errors.New("pggw: stored tls key is missing or corrupt")
	}
	kder, err := mk.Open(sealed, aad)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pggw: tls key: %w", err)
	}
	cert, err := tls.X509KeyPair([]byte(certPEM), pemKey(kder))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pggw: stored tls certificate: %w", err)
	}
	return cert, nil
}

// selfSigned returns a self-signed certificate (PEM) for hosts and its
// PKCS #8 private key (DER).
func selfSigned(hosts []string, now time.Time) (certPEM, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pggw: tls key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("pggw: tls serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Vigil PostgreSQL gateway", Organization: []string{"Vigil"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		// A leaf, not a CA: a client that pins it as its root
		// (sslrootcert, checked with OpenSSL 3 and Go) trusts this
		// certificate and nothing its key might sign.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pggw: tls certificate: %w", err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pggw: tls key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyDER, nil
}

// pemKey wraps a PKCS #8 private key (DER) in PEM.
func pemKey(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
