package pki

import (
	"bytes"
	"encoding/pem"
	"testing"
	"time"
)

func FuzzParseCertPEM(f *testing.F) {
	ca := newCA(f)
	clientPEM, keyPEM, _, _, err := ca.IssueClient("d-1", time.Hour, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.CertPEM())
	f.Add(clientPEM)
	f.Add(keyPEM)
	f.Add(append(bytes.Clone(clientPEM), ca.CertPEM()...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, err := ParseCertPEM(data)
		if err != nil {
			if cert != nil {
				t.Fatal("ParseCertPEM returned a certificate with an error")
			}
			return
		}
		// What parsed must parse again to the same certificate.
		again, err := ParseCertPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
		if err != nil {
			t.Fatalf("ParseCertPEM(re-encoded): %v", err)
		}
		if !again.Equal(cert) {
			t.Fatal("re-encoded certificate differs")
		}
		_ = SerialString(cert)
	})
}
