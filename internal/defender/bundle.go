package defender

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files of an install bundle, as `bulwarkctl defender bundle --out DIR` and
// POST /api/v1/defenders/bundle produce them.
const (
	BundleCA     = "ca.pem"
	BundleCert   = "defender.pem"
	BundleKey    = "defender-key.pem"
	BundleConfig = "bundle.json"
)

// BundleInfo is bundle.json.
type BundleInfo struct {
	DefenderID string    `json:"defenderID"`
	ConsoleURL string    `json:"consoleURL"` // wss://host:8084/v1/channel
	IssuedAt   time.Time `json:"issuedAt"`
	NotAfter   time.Time `json:"notAfter"`
}

// Bundle is a loaded install bundle.
type Bundle struct {
	Info BundleInfo
	TLS  *tls.Config
	Leaf *x509.Certificate
}

// LoadBundle reads and checks an install bundle directory.
func LoadBundle(dir string) (*Bundle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, BundleConfig))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	var info BundleInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", BundleConfig, err)
	}
	if info.DefenderID == "" || info.ConsoleURL == "" {
		return nil, fmt.Errorf("bundle %s: defenderID and consoleURL are required", BundleConfig)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, BundleCert), filepath.Join(dir, BundleKey))
	if err != nil {
		return nil, fmt.Errorf("bundle certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("bundle certificate: %w", err)
	}
	if leaf.Subject.CommonName != info.DefenderID {
		return nil, fmt.Errorf("bundle: certificate is for %q, bundle.json says %q", leaf.Subject.CommonName, info.DefenderID)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, BundleCA))
	if err != nil {
		return nil, fmt.Errorf("bundle CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("bundle CA: no certificate in " + BundleCA)
	}
	if st, err := os.Stat(filepath.Join(dir, BundleKey)); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("bundle key %s is readable by others (mode %v); chmod 600 it", filepath.Join(dir, BundleKey), st.Mode().Perm())
	}
	return &Bundle{
		Info: info,
		Leaf: leaf,
		TLS:  &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}, nil
}
