// Package pki is the Console's certificate authority: it creates and keeps the
// CA in the Console's data directory, issues the server certificates for the
// API (:8083) and the Defender channel (:8084), issues Defender client
// certificates, and verifies them. It uses only the standard library's crypto.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Files of the CA inside its directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

const (
	caCommonName = "Bulwark Console CA"
	caValidity   = 10 * 365 * 24 * time.Hour

	// backdate is taken off every NotBefore so that a host whose clock is a
	// little behind the Console's still accepts a freshly issued certificate.
	backdate = 5 * time.Minute
)

// CA is the Console's certificate authority. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// LoadOrCreateCA loads the CA kept in dir, creating it on first use; created
// reports whether anything was created.
//
// The key is written before the certificate and each file is replaced
// atomically, so a crash leaves either nothing, a whole key without a
// certificate (the certificate is then made from it on the next start) or both.
// An existing key is never overwritten.
func LoadOrCreateCA(dir string, now time.Time) (_ *CA, created bool, err error) {
	if err := ensureDir(dir); err != nil {
		return nil, false, err
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	if certErr != nil && !errors.Is(certErr, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("read CA certificate: %w", certErr)
	}
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case keyErr == nil:
	case !errors.Is(keyErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("read CA key: %w", keyErr)
	case certErr == nil:
		return nil, false, fmt.Errorf("CA key %s is missing but %s exists; restore the key from a backup, or remove both files to create a new CA (every Defender must then be re-enrolled)", keyPath, certPath)
	default:
		if keyPEM, err = createCAKey(dir); err != nil {
			return nil, false, err
		}
		created = true
	}
	if err := checkKeyMode(keyPath); err != nil {
		return nil, false, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, false, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	if certErr != nil {
		if certPEM, err = selfSign(key, now); err != nil {
			return nil, false, err
		}
		if err := writeFileAtomic(dir, CACertFile, certPEM); err != nil {
			return nil, false, fmt.Errorf("write CA certificate: %w", err)
		}
		created = true
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, false, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	if err := checkCA(cert, key, now); err != nil {
		return nil, false, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: certPEM, key: key, pool: pool}, created, nil
}

// createCAKey makes a CA key and stores it, unless another process stored one
// first, in which case that one is returned.
func createCAKey(dir string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	err = writeFileExclusive(dir, CAKeyFile, keyPEM)
	if errors.Is(err, fs.ErrExist) {
		path := filepath.Join(dir, CAKeyFile)
		if keyPEM, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read CA key: %w", err)
		}
		return keyPEM, nil
	}
	if err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	return keyPEM, nil
}

// selfSign makes the CA certificate for key.
func selfSign(key *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"Bulwark"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // no intermediate CAs: every leaf is signed by this key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// checkCA tells whether cert is a usable CA certificate for key.
func checkCA(cert *x509.Certificate, key *ecdsa.PrivateKey, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("not a CA certificate")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("CA certificate may not sign certificates (no cert-sign key usage)")
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("does not match the key in %s", CAKeyFile)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("not self-signed: %w", err)
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("expired at %s", cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// CertPEM is the CA certificate, PEM-encoded, as Defenders and clients trust it.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Certificate is the parsed CA certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool is a new pool holding only the CA certificate, for tls.Config RootCAs
// or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// randomSerial is a positive 128-bit random serial number.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}
