package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newCA(tb testing.TB) *CA {
	tb.Helper()
	ca, _, err := LoadOrCreateCA(tb.TempDir(), t0)
	if err != nil {
		tb.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca
}

func parse(tb testing.TB, certPEM []byte) *x509.Certificate {
	tb.Helper()
	c, err := ParseCertPEM(certPEM)
	if err != nil {
		tb.Fatalf("ParseCertPEM: %v", err)
	}
	return c
}

func wantMode(tb testing.TB, path string, want os.FileMode) {
	tb.Helper()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		tb.Errorf("mode of %s = %v, want %v", filepath.Base(path), got, want)
	}
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, created, err := LoadOrCreateCA(dir, t0)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateCA (first) = created %v, err %v; want created, nil", created, err)
	}
	cert := ca.Certificate()
	checks := []struct {
		name string
		ok   bool
	}{
		{"common name", cert.Subject.CommonName == "Bulwark Console CA"},
		{"is CA", cert.BasicConstraintsValid && cert.IsCA},
		{"max path len 0", cert.MaxPathLen == 0 && cert.MaxPathLenZero},
		{"key usage", cert.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"P-256", cert.PublicKey.(*ecdsa.PublicKey).Curve == elliptic.P256()},
		{"10 years", cert.NotAfter.Equal(t0.Add(10 * 365 * 24 * time.Hour))},
		{"valid now", !cert.NotBefore.After(t0)},
		{"128-bit serial", cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() <= 128},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("CA certificate: %s: wrong", c.name)
		}
	}
	wantMode(t, dir, 0o700)
	wantMode(t, filepath.Join(dir, CACertFile), 0o600)
	wantMode(t, filepath.Join(dir, CAKeyFile), 0o600)

	again, created, err := LoadOrCreateCA(dir, t0.Add(24*time.Hour))
	if err != nil || created {
		t.Fatalf("LoadOrCreateCA (reload) = created %v, err %v; want not created, nil", created, err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Error("reloaded CA certificate differs")
	}
	if !again.key.Equal(ca.key) {
		t.Error("reloaded CA key differs")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// A crash between writing the key and the certificate leaves a key alone; the
// next start must keep that key, not replace it.
func TestLoadOrCreateCAKeyWithoutCert(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := LoadOrCreateCA(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
	again, created, err := LoadOrCreateCA(dir, t0)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateCA = created %v, err %v; want created, nil", created, err)
	}
	if !again.key.Equal(ca.key) {
		t.Error("CA key was replaced")
	}
	// Certificates issued before still chain to the re-made CA certificate.
	certPEM, _, _, _, err := ca.IssueClient("d1", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := again.VerifyClient([]*x509.Certificate{parse(t, certPEM)}, t0); err != nil {
		t.Errorf("VerifyClient with re-made CA certificate: %v", err)
	}
}

// Two Consoles started on one data directory must not end up with a key and
// a certificate that do not match.
func TestLoadOrCreateCAConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	cas := make([]*CA, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cas[i], _, errs[i] = LoadOrCreateCA(dir, t0) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadOrCreateCA #%d: %v", i, errs[i])
		}
		if !cas[i].key.Equal(cas[0].key) {
			t.Errorf("LoadOrCreateCA #%d has another key", i)
		}
	}
	if _, _, err := LoadOrCreateCA(dir, t0); err != nil {
		t.Errorf("LoadOrCreateCA after the race: %v", err)
	}
}

func TestLoadOrCreateCABroken(t *testing.T) {
	other := newCA(t)
	serverPEM, serverKey, err := other.IssueServer([]string{"localhost"}, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := encodeKey(other.key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		breakIt  func(t *testing.T, dir string)
		now      time.Time
		wantFile string // named in the error
		wantErr  string
	}{
		{
			name:     "garbage key",
			breakIt:  writeFile(CAKeyFile, []byte("not a key\n"), 0o600),
			wantFile: CAKeyFile, wantErr: "no PEM block",
		},
		{
			name: "truncated key",
			breakIt: func(t *testing.T, dir string) {
				raw, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(CAKeyFile, raw[:len(raw)/2], 0o600)(t, dir)
			},
			wantFile: CAKeyFile, wantErr: "no PEM block",
		},
		{
			name:     "key with bad DER",
			breakIt:  writeFile(CAKeyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600),
			wantFile: CAKeyFile, wantErr: "parse key",
		},
		{
			name:     "key of another CA",
			breakIt:  writeFile(CAKeyFile, otherKey, 0o600),
			wantFile: CACertFile, wantErr: "does not match the key",
		},
		{
			name:     "key readable by others",
			breakIt:  func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, CAKeyFile), 0o644) },
			wantFile: CAKeyFile, wantErr: "chmod 600",
		},
		{
			name:     "key missing",
			breakIt:  func(t *testing.T, dir string) { remove(t, filepath.Join(dir, CAKeyFile)) },
			wantFile: CAKeyFile, wantErr: "missing",
		},
		{
			name:     "garbage certificate",
			breakIt:  writeFile(CACertFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600),
			wantFile: CACertFile, wantErr: "parse certificate",
		},
		{
			name: "certificate is not a CA",
			breakIt: func(t *testing.T, dir string) {
				writeFile(CACertFile, serverPEM, 0o600)(t, dir)
				writeFile(CAKeyFile, serverKey, 0o600)(t, dir)
			},
			wantFile: CACertFile, wantErr: "not a CA",
		},
		{
			name:     "expired",
			breakIt:  func(*testing.T, string) {},
			now:      t0.Add(11 * 365 * 24 * time.Hour),
			wantFile: CACertFile, wantErr: "expired",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := LoadOrCreateCA(dir, t0); err != nil {
				t.Fatal(err)
			}
			tc.breakIt(t, dir)
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			_, _, err := LoadOrCreateCA(dir, now)
			if err == nil {
				t.Fatal("LoadOrCreateCA = nil error, want one")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tc.wantFile)) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadOrCreateCA error = %q, want it to name %s and say %q", err, tc.wantFile, tc.wantErr)
			}
		})
	}
}

func writeFile(name string, data []byte, mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			t.Fatal(err)
		}
		chmod(t, filepath.Join(dir, name), mode)
	}
}

func chmod(tb testing.TB, path string, mode os.FileMode) {
	tb.Helper()
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
}

func remove(tb testing.TB, path string) {
	tb.Helper()
	if err := os.Remove(path); err != nil {
		tb.Fatal(err)
	}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name    string
		hosts   []string
		wantDNS []string
		wantIPs []string
		wantErr bool
	}{
		{
			name:    "defaults and more",
			hosts:   []string{"localhost", "127.0.0.1", "::1", "Console.Example.com.", "10.0.0.7", "*.bulwark.internal", "localhost"},
			wantDNS: []string{"localhost", "console.example.com", "*.bulwark.internal"},
			wantIPs: []string{"127.0.0.1", "::1", "10.0.0.7"},
		},
		{name: "host with underscore", hosts: []string{"build_box"}, wantDNS: []string{"build_box"}},
		{name: "no hosts", hosts: nil, wantErr: true},
		{name: "empty host", hosts: []string{""}, wantErr: true},
		{name: "url", hosts: []string{"https://console"}, wantErr: true},
		{name: "bracketed ip", hosts: []string{"[::1]"}, wantErr: true},
		{name: "empty label", hosts: []string{"a..b"}, wantErr: true},
		{name: "host with space", hosts: []string{"a b"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.IssueServer(tc.hosts, 24*time.Hour, t0)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("IssueServer(%q) = nil error, want one", tc.hosts)
				}
				return
			}
			if err != nil {
				t.Fatalf("IssueServer(%q): %v", tc.hosts, err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("X509KeyPair: %v", err)
			}
			c := parse(t, certPEM)
			if !slices.Equal(c.DNSNames, tc.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", c.DNSNames, tc.wantDNS)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) {
				t.Errorf("IPAddresses = %q, want %q", ips, tc.wantIPs)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || c.IsCA {
				t.Errorf("ExtKeyUsage = %v, IsCA = %v; want [ServerAuth], false", c.ExtKeyUsage, c.IsCA)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, DNSName: tc.hosts[0]}); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestIssueNotBeyondCA(t *testing.T) {
	ca := newCA(t)
	certPEM, _, err := ca.IssueServer([]string{"localhost"}, 20*365*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parse(t, certPEM).NotAfter, ca.Certificate().NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter = %v, want the CA's %v", got, want)
	}
	if _, _, err := ca.IssueServer([]string{"localhost"}, 0, t0); err == nil {
		t.Error("IssueServer with validity 0 = nil error, want one")
	}
}

func TestDefaultHosts(t *testing.T) {
	got := DefaultHosts()
	for _, want := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(got, want) {
			t.Errorf("DefaultHosts() = %q, want it to contain %q", got, want)
		}
	}
	if h, err := os.Hostname(); err == nil && !slices.Contains(got, h) {
		t.Errorf("DefaultHosts() = %q, want it to contain the host name %q", got, h)
	}
}

func TestLoadOrCreateServerCert(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	base := []string{"localhost", "127.0.0.1", "::1"}
	day := 24 * time.Hour
	type step struct {
		name        string
		setup       func(t *testing.T, dir string) // before the call
		now         time.Time
		hosts       []string
		wantReissue bool
	}
	steps := []step{
		{name: "first use issues", now: t0, hosts: base, wantReissue: true},
		{name: "unchanged keeps", now: t0.Add(day), hosts: base},
		{name: "fewer hosts keeps", now: t0.Add(day), hosts: base[:1]},
		{name: "new DNS host", now: t0.Add(day), hosts: append(slices.Clone(base), "console.example.com"), wantReissue: true},
		{name: "new IP host", now: t0.Add(day), hosts: append(slices.Clone(base), "console.example.com", "10.1.2.3"), wantReissue: true},
		{name: "host case differs keeps", now: t0.Add(2 * day), hosts: []string{"Console.Example.COM", "10.1.2.3"}},
		{name: "300 days later keeps", now: t0.Add(day + 300*day), hosts: base},
		{name: "within 30 days of expiry", now: t0.Add(day + 340*day), hosts: base, wantReissue: true},
		{
			name:  "certificate missing",
			setup: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "api.pem")) },
			now:   t0.Add(400 * day), hosts: base, wantReissue: true,
		},
		{
			name:  "key missing",
			setup: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "api-key.pem")) },
			now:   t0.Add(400 * day), hosts: base, wantReissue: true,
		},
		{
			name:  "certificate corrupt",
			setup: writeFile("api.pem", []byte("garbage"), 0o600),
			now:   t0.Add(400 * day), hosts: base, wantReissue: true,
		},
		{
			name: "key of another certificate",
			setup: func(t *testing.T, dir string) {
				_, keyPEM, err := ca.IssueServer(base, 365*day, t0.Add(400*day))
				if err != nil {
					t.Fatal(err)
				}
				writeFile("api-key.pem", keyPEM, 0o600)(t, dir)
			},
			now: t0.Add(400 * day), hosts: base, wantReissue: true,
		},
		{
			name:  "key readable by others",
			setup: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "api-key.pem"), 0o644) },
			now:   t0.Add(400 * day), hosts: base, wantReissue: true,
		},
		{
			name: "signed by another CA",
			setup: func(t *testing.T, dir string) {
				certPEM, keyPEM, err := other.IssueServer(base, 365*day, t0.Add(400*day))
				if err != nil {
					t.Fatal(err)
				}
				writeFile("api.pem", certPEM, 0o600)(t, dir)
				writeFile("api-key.pem", keyPEM, 0o600)(t, dir)
			},
			now: t0.Add(400 * day), hosts: base, wantReissue: true,
		},
		{name: "after all that keeps", now: t0.Add(401 * day), hosts: base},
	}
	dir := t.TempDir()
	var prev string
	for _, s := range steps { // in order: each step starts from the files the last one left
		if s.setup != nil {
			s.setup(t, dir)
		}
		cert, err := LoadOrCreateServerCert(dir, "api", ca, s.hosts, s.now)
		if err != nil {
			t.Fatalf("%s: LoadOrCreateServerCert: %v", s.name, err)
		}
		leaf := cert.Leaf
		serial := SerialString(leaf)
		if reissued := serial != prev; reissued != s.wantReissue {
			t.Errorf("%s: reissued = %v, want %v", s.name, reissued, s.wantReissue)
		}
		prev = serial
		for _, h := range s.hosts {
			if err := leaf.VerifyHostname(h); err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: s.now}); err != nil {
			t.Errorf("%s: Verify: %v", s.name, err)
		}
		stored, err := os.ReadFile(filepath.Join(dir, "api.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if SerialString(parse(t, stored)) != serial {
			t.Errorf("%s: stored certificate is not the one returned", s.name)
		}
		wantMode(t, filepath.Join(dir, "api.pem"), 0o600)
		wantMode(t, filepath.Join(dir, "api-key.pem"), 0o600)
	}
}

func TestLoadOrCreateServerCertBadName(t *testing.T) {
	ca := newCA(t)
	for _, name := range []string{"", "../api", "a/b", ".hidden"} {
		if _, err := LoadOrCreateServerCert(t.TempDir(), name, ca, []string{"localhost"}, t0); err == nil {
			t.Errorf("LoadOrCreateServerCert(name %q) = nil error, want one", name)
		}
	}
}

func TestIssueClient(t *testing.T) {
	ca := newCA(t)
	certPEM, keyPEM, serial, notAfter, err := ca.IssueClient("host-1.prod_a", 90*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	c := parse(t, certPEM)
	if c.Subject.CommonName != "host-1.prod_a" {
		t.Errorf("CommonName = %q, want %q", c.Subject.CommonName, "host-1.prod_a")
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "bulwark://defender/host-1.prod_a" {
		t.Errorf("URIs = %v, want [bulwark://defender/host-1.prod_a]", c.URIs)
	}
	if want := c.SerialNumber.Text(16); serial != want || serial != strings.ToLower(serial) {
		t.Errorf("serial = %q, want %q in lowercase", serial, want)
	}
	if !notAfter.Equal(c.NotAfter) || !notAfter.Equal(t0.Add(90*24*time.Hour)) {
		t.Errorf("notAfter = %v, want %v", notAfter, c.NotAfter)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", c.ExtKeyUsage)
	}
	for _, id := range []string{"", "a b", "x/../y", strings.Repeat("a", 65), "d\n"} {
		if _, _, _, _, err := ca.IssueClient(id, time.Hour, t0); err == nil {
			t.Errorf("IssueClient(%q) = nil error, want one", id)
		}
	}
}

func TestVerifyClient(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	issueClient := func(ca *CA, id string) *x509.Certificate {
		certPEM, _, _, _, err := ca.IssueClient(id, 30*24*time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		return parse(t, certPEM)
	}
	good := issueClient(ca, "d-42")
	serverPEM, _, err := ca.IssueServer([]string{"d-42"}, 30*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		now     time.Time
		wantID  string
		wantErr string
	}{
		{name: "valid", chain: []*x509.Certificate{good}, now: t0.Add(time.Hour), wantID: "d-42"},
		{name: "another CA", chain: []*x509.Certificate{issueClient(other, "d-42")}, now: t0, wantErr: "unknown authority"},
		{name: "expired", chain: []*x509.Certificate{good}, now: good.NotAfter.Add(time.Second), wantErr: "expired"},
		{name: "not yet valid", chain: []*x509.Certificate{good}, now: t0.Add(-time.Hour), wantErr: "not yet valid"},
		{name: "server certificate", chain: []*x509.Certificate{parse(t, serverPEM)}, now: t0, wantErr: "key usage"},
		{name: "CA certificate", chain: []*x509.Certificate{ca.Certificate()}, now: t0, wantErr: "CA certificate"},
		{name: "other CA as intermediate", chain: []*x509.Certificate{issueClient(other, "d-42"), other.Certificate()}, now: t0, wantErr: "unknown authority"},
		{name: "empty chain", chain: nil, now: t0, wantErr: "no client certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, serial, err := ca.VerifyClient(tc.chain, tc.now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("VerifyClient = %q, %v; want error containing %q", id, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyClient: %v", err)
			}
			if id != tc.wantID || serial != SerialString(tc.chain[0]) {
				t.Errorf("VerifyClient = %q, %q; want %q, %q", id, serial, tc.wantID, SerialString(tc.chain[0]))
			}
		})
	}
	var invalid x509.CertificateInvalidError
	if _, _, err := ca.VerifyClient([]*x509.Certificate{good}, good.NotAfter.Add(time.Second)); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("VerifyClient(expired) = %v, want an x509.CertificateInvalidError for expiry", err)
	}
}

// handshake runs a TLS handshake over loopback TCP and returns the client's
// and the server's errors. (net.Pipe has no buffer, so a side sending an
// alert the other does not read stalls until a close deadline.)
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		conn := tls.Server(c, server)
		err = conn.HandshakeContext(t.Context())
		_ = conn.Close()
		done <- err
	}()
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(c, client)
	clientErr = conn.HandshakeContext(t.Context())
	if clientErr == nil {
		// A TLS 1.3 server rejects the client's certificate after the
		// client's handshake is done; reading lets that alert arrive.
		_, _ = conn.Read(make([]byte, 1))
	}
	_ = conn.Close()
	return clientErr, <-done
}

func TestServerTLSConfig(t *testing.T) {
	now := time.Now()
	ca, _, err := LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := LoadOrCreateServerCert(t.TempDir(), "api", ca, DefaultHosts(), now)
	if err != nil {
		t.Fatal(err)
	}
	client := func(minV, maxV uint16, suites ...uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: minV, MaxVersion: maxV, CipherSuites: suites}
	}
	tests := []struct {
		name    string
		client  *tls.Config
		wantErr string // in the server's error
	}{
		{name: "TLS 1.3", client: client(tls.VersionTLS13, tls.VersionTLS13)},
		{name: "TLS 1.2 AEAD", client: client(tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)},
		{name: "TLS 1.1 at most", client: client(tls.VersionTLS10, tls.VersionTLS11), wantErr: "unsupported versions"},
		{name: "TLS 1.2 CBC only", client: client(tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA), wantErr: "no cipher suite"},
		{name: "TLS 1.2 RSA key exchange only", client: client(tls.VersionTLS12, tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256), wantErr: "no cipher suite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clientErr, serverErr := handshake(t, ServerTLSConfig(cert), tc.client)
			t.Logf("client: %v; server: %v", clientErr, serverErr)
			if tc.wantErr != "" {
				if clientErr == nil || serverErr == nil || !strings.Contains(serverErr.Error(), tc.wantErr) {
					t.Errorf("handshake: client %v, server %v; want both to fail, the server with %q", clientErr, serverErr, tc.wantErr)
				}
				return
			}
			if clientErr != nil || serverErr != nil {
				t.Errorf("handshake: client %v, server %v; want success", clientErr, serverErr)
			}
		})
	}
}

// TestMutualTLS shows VerifyClient in a handshake as the Defender channel
// uses it, with a revocation check by the caller.
func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca, _, err := LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := LoadOrCreateServerCert(t.TempDir(), "channel", ca, []string{"localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := func(ca *CA, id string) (tls.Certificate, string) {
		certPEM, keyPEM, serial, _, err := ca.IssueClient(id, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c, serial
	}
	good, _ := clientCert(ca, "d-1")
	revoked, revokedSerial := clientCert(ca, "d-2")
	foreign, _ := clientCert(other, "d-1")

	tests := []struct {
		name    string
		cert    *tls.Certificate
		wantID  string
		wantErr bool
	}{
		{name: "valid", cert: &good, wantID: "d-1"},
		{name: "revoked", cert: &revoked, wantErr: true},
		{name: "another CA", cert: &foreign, wantErr: true},
		{name: "no certificate", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotID string
			server := ServerTLSConfig(serverCert)
			server.ClientAuth = tls.RequireAnyClientCert // VerifyClient does the chain check
			server.VerifyConnection = func(cs tls.ConnectionState) error {
				id, serial, err := ca.VerifyClient(cs.PeerCertificates, time.Now())
				if err != nil {
					return err
				}
				if serial == revokedSerial {
					return errors.New("revoked")
				}
				gotID = id
				return nil
			}
			client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13}
			if tc.cert != nil {
				client.Certificates = []tls.Certificate{*tc.cert}
			}
			_, serverErr := handshake(t, server, client)
			t.Logf("server: %v", serverErr)
			if (serverErr != nil) != tc.wantErr {
				t.Fatalf("server handshake error = %v, want error %v", serverErr, tc.wantErr)
			}
			if gotID != tc.wantID {
				t.Errorf("id = %q, want %q", gotID, tc.wantID)
			}
		})
	}
}
