package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"bulwark/internal/inventory"
)

// DefenderURIScheme and DefenderURIHost make the URI SAN that names the
// Defender a client certificate was issued to: bulwark://defender/<id>.
const (
	DefenderURIScheme = "bulwark"
	DefenderURIHost   = "defender"
)

// DefaultHosts are the names a Console server certificate always carries:
// localhost, 127.0.0.1, ::1 and the machine's host name when it has one.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && !strings.EqualFold(h, "localhost") {
		hosts = append(hosts, h)
	}
	return hosts
}

// IssueServer issues a server certificate (ExtKeyUsageServerAuth) with a new
// P-256 key for hosts: IP addresses become IP SANs, the others DNS SANs.
// Callers that want the loopback names pass DefaultHosts among hosts. The
// certificate does not outlive the CA.
func (ca *CA) IssueServer(hosts []string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	dns, ips, err := parseHosts(hosts)
	if err != nil {
		return nil, nil, err
	}
	cn := "Bulwark Console"
	if len(dns) > 0 {
		cn = dns[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"Bulwark"}},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certPEM, keyPEM, _, err = ca.issue(tmpl, validity, now)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	return certPEM, keyPEM, nil
}

// IssueClient issues a Defender's client certificate (ExtKeyUsageClientAuth)
// with a new P-256 key. commonName is the Defender ID; it is also the URI SAN
// bulwark://defender/<id>. serial is the certificate's serial number in
// lowercase hexadecimal, the form VerifyClient returns.
func (ca *CA) IssueClient(commonName string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, serial string, notAfter time.Time, err error) {
	if err := inventory.ValidateID(commonName); err != nil {
		return nil, nil, "", time.Time{}, fmt.Errorf("issue client certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"Bulwark Defender"}},
		URIs:        []*url.URL{DefenderURI(commonName)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, cert, err := ca.issue(tmpl, validity, now)
	if err != nil {
		return nil, nil, "", time.Time{}, fmt.Errorf("issue client certificate: %w", err)
	}
	return certPEM, keyPEM, SerialString(cert), cert.NotAfter, nil
}

// DefenderURI is the URI SAN of Defender id's client certificate.
func DefenderURI(id string) *url.URL {
	return &url.URL{Scheme: DefenderURIScheme, Host: DefenderURIHost, Path: "/" + id}
}

// SerialString is cert's serial number in lowercase hexadecimal, as recorded
// for revocation.
func SerialString(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

// issue completes tmpl with a serial number and validity, signs it for a new
// key and returns both PEM-encoded and the parsed certificate.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, _ *x509.Certificate, _ error) {
	if validity <= 0 {
		return nil, nil, nil, fmt.Errorf("validity %v is not positive", validity)
	}
	if !now.Before(ca.cert.NotAfter) {
		return nil, nil, nil, fmt.Errorf("CA expired at %s", ca.cert.NotAfter.Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter // a chain is no longer valid than its root
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, cert, nil
}

// parseHosts splits hosts into lowercase DNS names and IP addresses, without
// duplicates, in the order given.
func parseHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("no hosts")
	}
	seen := make(map[string]bool)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if to4 := ip.To4(); to4 != nil {
				ip = to4
			}
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if err := checkDNSName(name); err != nil {
			return nil, nil, fmt.Errorf("host %q: %w", h, err)
		}
		if !seen[name] {
			seen[name] = true
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

// checkDNSName accepts a host name, with an optional leading "*." wildcard
// label. It allows '_', which real host names sometimes have.
func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("a DNS name must be 1-253 characters")
	}
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return errors.New("a DNS label must be 1-63 characters")
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return errors.New("not an IP address, and a DNS name may contain only letters, digits, '-', '_' and '.'")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("a DNS label may not begin or end with '-'")
		}
	}
	return nil
}
