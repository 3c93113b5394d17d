package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// ServerCertValidity is how long an issued server certificate lasts.
	ServerCertValidity = 365 * 24 * time.Hour
	// RenewBefore is how long before it expires a stored server certificate
	// is replaced.
	RenewBefore = 30 * 24 * time.Hour
)

// LoadOrCreateServerCert returns the server certificate stored as
// dir/<name>.pem with its key in dir/<name>-key.pem, issuing and storing a new
// one when either file is missing or unreadable as a pair, when the key file
// is accessible by others, when the certificate was not issued by ca, when it
// is not valid at now or expires within RenewBefore, or when one of hosts is
// not among its SANs. Extra SANs do not cause a new certificate.
//
// The check runs when this is called, i.e. at startup: a process that runs
// for longer than ServerCertValidity-RenewBefore must call it again.
func LoadOrCreateServerCert(dir, name string, ca *CA, hosts []string, now time.Time) (tls.Certificate, error) {
	if err := checkFileName(name); err != nil {
		return tls.Certificate{}, err
	}
	dns, ips, err := parseHosts(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := ensureDir(dir); err != nil {
		return tls.Certificate{}, err
	}
	certName, keyName := name+".pem", name+"-key.pem"
	certPEM, certErr := os.ReadFile(filepath.Join(dir, certName))
	keyPEM, keyErr := os.ReadFile(filepath.Join(dir, keyName))
	for _, err := range []error{certErr, keyErr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Not a reason to replace the files: they may be fine, and a
			// permission problem would only come back.
			return tls.Certificate{}, fmt.Errorf("server certificate %s: %w", name, err)
		}
	}
	if certErr == nil && keyErr == nil && checkKeyMode(filepath.Join(dir, keyName)) == nil {
		if cert, err := usableServerCert(certPEM, keyPEM, ca, dns, ips, now); err == nil {
			return cert, nil
		}
	}
	certPEM, keyPEM, err = ca.IssueServer(hosts, ServerCertValidity, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	// The key goes first: after a crash between the two writes the old
	// certificate does not match the new key and is replaced on the next call.
	if err := writeFileAtomic(dir, keyName, keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("write server key %s: %w", name, err)
	}
	if err := writeFileAtomic(dir, certName, certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("write server certificate %s: %w", name, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate %s: %w", name, err)
	}
	return cert, nil
}

// usableServerCert parses a stored pair and tells why it must be replaced.
func usableServerCert(certPEM, keyPEM []byte, ca *CA, dns []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       ca.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return tls.Certificate{}, err
	}
	if now.Add(RenewBefore).After(leaf.NotAfter) {
		return tls.Certificate{}, errors.New("expires soon")
	}
	for _, d := range dns {
		if !slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, d) }) {
			return tls.Certificate{}, fmt.Errorf("no SAN %s", d)
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return tls.Certificate{}, fmt.Errorf("no SAN %s", ip)
		}
	}
	return cert, nil
}

// checkFileName keeps name a plain file name inside the pki directory.
func checkFileName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' ||
		strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return fmt.Errorf("certificate name %q: want 1-64 letters, digits, '.', '_' or '-', not starting with '.'", name)
	}
	return nil
}
