package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"bulwark/internal/inventory"
)

// VerifyClient checks a Defender's certificate chain, leaf first as TLS
// presents it: the leaf must chain to this CA at now, be an end-entity
// certificate for ExtKeyUsageClientAuth, and name a valid Defender ID in both
// its common name and its bulwark://defender/<id> URI SAN. It returns that ID
// and the serial number as IssueClient did. Revocation is the caller's check.
//
// Use it from tls.Config.VerifyConnection with cs.PeerCertificates.
func (ca *CA) VerifyClient(chain []*x509.Certificate, now time.Time) (id, serial string, err error) {
	if len(chain) == 0 || chain[0] == nil {
		return "", "", errors.New("no client certificate")
	}
	leaf := chain[0]
	var inter *x509.CertPool
	if len(chain) > 1 {
		inter = x509.NewCertPool()
		for _, c := range chain[1:] {
			if c != nil {
				inter.AddCert(c)
			}
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         ca.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", "", fmt.Errorf("client certificate: %w", err)
	}
	if leaf.IsCA {
		return "", "", errors.New("client certificate is a CA certificate")
	}
	// A certificate without extended key usages passes Verify for any usage;
	// every client certificate this CA issues names ClientAuth.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", "", errors.New("client certificate is not for client authentication")
	}
	id = leaf.Subject.CommonName
	if err := inventory.ValidateID(id); err != nil {
		return "", "", fmt.Errorf("client certificate: %w", err)
	}
	if want := DefenderURI(id).String(); len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		return "", "", fmt.Errorf("client certificate for %q lacks URI SAN %s", id, want)
	}
	return id, SerialString(leaf), nil
}
