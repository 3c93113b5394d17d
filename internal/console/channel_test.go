package console_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/console/consoletest"
	"bulwark/internal/defender"
	"bulwark/internal/pki"
)

// bundle asks the Console for an install bundle and writes it to a directory.
func bundle(t testing.TB, c *consoletest.Console, id string) string {
	t.Helper()
	body := `{}`
	if id != "" {
		body = `{"id":"` + id + `"}`
	}
	r := mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/defenders/bundle", body: body}), 200)
	var b struct {
		DefenderID string            `json:"defenderID"`
		Files      map[string]string `json:"files"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), b.DefenderID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range b.Files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadKeyPair(t testing.TB, dir string) tls.Certificate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, defender.BundleCert), filepath.Join(dir, defender.BundleKey))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func selfSigned(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func issuedBy(t testing.TB, ca *pki.CA, id string, validity time.Duration, now time.Time) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, _, _, err := ca.IssueClient(id, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// channelRequest dials :8084 with the given client certificates, sends a
// websocket upgrade request and reports whether any HTTP answer came back.
func channelRequest(t testing.TB, c *consoletest.Console, certs []tls.Certificate, header http.Header) (answered bool, err error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	conn, err := tls.Dial("tcp", c.ChannelAddr().String(), &tls.Config{RootCAs: pool, Certificates: certs, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + bulwarkv1.Path + " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: " + bulwarkv1.Subprotocol + "\r\n"
	for k, vs := range header {
		for _, v := range vs {
			req += k + ": " + v + "\r\n"
		}
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return false, err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if n > 0 && strings.HasPrefix(string(buf[:n]), "HTTP/") {
		return true, nil
	}
	return false, err
}

// TestChannelMTLSMatrix: only a valid, unrevoked Defender certificate gets
// anything from :8084, and a Defender certificate gets nothing on :8083.
func TestChannelMTLSMatrix(t *testing.T) {
	c := consoletest.Start(t)
	good := loadKeyPair(t, bundle(t, c, "good"))
	revokedDir := bundle(t, c, "gone")
	revoked := loadKeyPair(t, revokedDir)
	mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/defenders/gone/revoke"}), 200)

	otherCA, _, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The Console's own CA, loaded from its data dir, signs an expired one.
	ownCA, _, err := pki.LoadOrCreateCA(filepath.Join(c.DataDir, "pki"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	basic := http.Header{"Authorization": {"Basic " + basicAuth("admin", consoletest.AdminPassword)}}

	tests := []struct {
		name   string
		certs  []tls.Certificate
		header http.Header
		want   bool // an HTTP answer
	}{
		{"valid defender certificate", []tls.Certificate{good}, nil, true},
		{"no certificate", nil, nil, false},
		{"self-signed certificate", []tls.Certificate{selfSigned(t, "good")}, nil, false},
		{"certificate from another CA", []tls.Certificate{issuedBy(t, otherCA, "good", time.Hour, time.Now())}, nil, false},
		{"expired certificate", []tls.Certificate{issuedBy(t, ownCA, "good", time.Hour, time.Now().Add(-3*time.Hour))}, nil, false},
		{"revoked certificate", []tls.Certificate{revoked}, nil, false},
		{"a user's API credentials", nil, basic, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			answered, err := channelRequest(t, c, tc.certs, tc.header)
			if answered != tc.want {
				t.Errorf("HTTP answer = %v (err %v), want %v", answered, err, tc.want)
			}
			if !tc.want && err == nil {
				t.Errorf("refused connection gave no error")
			}
		})
	}

	// A Defender certificate opens nothing on :8083.
	cl := c.Client.Transport.(*http.Transport).Clone()
	cl.TLSClientConfig.Certificates = []tls.Certificate{good}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", c.URL+"/api/v1/users", nil)
	resp, err := (&http.Client{Transport: cl}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("GET /api/v1/users with a Defender certificate = %d, want 401", resp.StatusCode)
	}
}

func basicAuth(u, p string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(u, p)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// startDefender runs a Defender from dir until the test ends.
func startDefender(t testing.TB, dir string, mutate ...func(*defender.Config)) (*defender.Defender, string) {
	t.Helper()
	cfg := defender.Default()
	cfg.Shim = defender.ShimOff       // never this machine's runc
	cfg.Enforce = defender.EnforceOff // no kernel enforcement of this machine's containers
	cfg.BundleDir = dir
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.SpoolMaxBytes = 16 << 20
	cfg.Sensor = false     // these tests are about the channel; e2e/ runs the sensor
	cfg.Compliance = false // and count events: no compliance results among them
	for _, m := range mutate {
		m(&cfg)
	}
	d, err := defender.New(cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("defender run: %v", err)
		}
		d.Close()
	})
	return d, cfg.StateDir
}

type defenderView struct {
	ID             string `json:"_id"`
	Hostname       string `json:"hostname"`
	HostNetwork    bool   `json:"hostNetwork"`
	Connected      bool   `json:"connected"`
	StoredSeq      uint64 `json:"storedSeq"`
	PolicyRevision int64  `json:"policyRevision"`
	Revoked        bool   `json:"revoked"`
}

func defenders(t testing.TB, c *consoletest.Console) map[string]defenderView {
	t.Helper()
	r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/defenders"}), 200)
	var ds []defenderView
	if err := json.Unmarshal(r.body, &ds); err != nil {
		t.Fatal(err)
	}
	m := map[string]defenderView{}
	for _, d := range ds {
		m[d.ID] = d
	}
	return m
}

func waitFor(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRevokeClosesLiveConnectionWithinASecond(t *testing.T) {
	c := consoletest.Start(t)
	dir := bundle(t, c, "doomed")
	d, _ := startDefender(t, dir)
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["doomed"].Connected })

	start := time.Now()
	mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/defenders/doomed/revoke"}), 200)
	waitFor(t, "the connection to close", 2*time.Second, func() bool { return !d.Status().Connected })
	if took := time.Since(start); took > time.Second {
		t.Errorf("revocation closed the connection after %s, want ≤ 1s", took)
	}
	// It never gets back in.
	time.Sleep(1500 * time.Millisecond)
	if d.Status().Connected {
		t.Error("a revoked defender reconnected")
	}
	if v := defenders(t, c)["doomed"]; !v.Revoked || v.Connected {
		t.Errorf("GET /defenders shows %+v, want revoked and disconnected", v)
	}
	if answered, _ := channelRequest(t, c, []tls.Certificate{loadKeyPair(t, dir)}, nil); answered {
		t.Error("the revoked certificate still gets an HTTP answer")
	}
}

func TestBadFramesCloseOnlyThatConnection(t *testing.T) {
	c := consoletest.Start(t)
	dir := bundle(t, c, "fuzzy")
	cert := loadKeyPair(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	url := "wss://" + c.ChannelAddr().String() + bulwarkv1.Path
	dial := func(t *testing.T) *websocket.Conn {
		t.Helper()
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS13}}}
		ws, resp, err := websocket.Dial(t.Context(), url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{bulwarkv1.Subprotocol}})
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		ws.SetReadLimit(bulwarkv1.MaxFrameBytes * 2)
		return ws
	}
	hello, _ := bulwarkv1.Encode(bulwarkv1.TypeHello, bulwarkv1.Hello{ID: "fuzzy", Hostname: "h"})
	tests := []struct {
		name       string
		afterHello bool
		frame      []byte
		wantReason string
	}{
		{"malformed first frame", false, []byte(`{"type":`), "envelope"},
		{"hello with another id", false, mustEncode(t, bulwarkv1.TypeHello, bulwarkv1.Hello{ID: "someone-else"}), "does not match certificate"},
		{"unknown type", true, []byte(`{"type":"exec","body":{"cmd":"sh"}}`), "unknown type"},
		{"console-only type", true, mustEncode(t, bulwarkv1.TypeAck, bulwarkv1.Ack{Seq: 1}), "may not send ack"},
		{"oversized", true, []byte(`{"type":"heartbeat","body":{"time":"` + strings.Repeat("x", bulwarkv1.MaxFrameBytes) + `"}}`), ""},
		{"non-consecutive batch", true, []byte(`{"type":"events","body":{"events":[{"seq":1,"kind":"k"},{"seq":5,"kind":"k"}]}}`), "consecutive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := c.ChannelStats().BadFrames
			ws := dial(t)
			defer ws.CloseNow()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if tc.afterHello {
				if err := ws.Write(ctx, websocket.MessageText, hello); err != nil {
					t.Fatal(err)
				}
			}
			_ = ws.Write(ctx, websocket.MessageText, tc.frame)
			var closeErr websocket.CloseError
			for {
				_, _, err := ws.Read(ctx)
				if err == nil {
					continue // welcome, policy
				}
				if !errors.As(err, &closeErr) {
					t.Fatalf("connection ended with %v, want a close frame", err)
				}
				break
			}
			if closeErr.Code != websocket.StatusPolicyViolation && closeErr.Code != websocket.StatusMessageTooBig {
				t.Errorf("close code = %v, want policy violation or message too big", closeErr.Code)
			}
			if !strings.Contains(closeErr.Reason, tc.wantReason) {
				t.Errorf("close reason = %q, want it to contain %q", closeErr.Reason, tc.wantReason)
			}
			waitFor(t, "the bad frame to be counted", 2*time.Second, func() bool { return c.ChannelStats().BadFrames > before })
		})
	}
	// The Console is fine: a real Defender still connects.
	startDefender(t, dir)
	waitFor(t, "a good defender to connect", 10*time.Second, func() bool { return defenders(t, c)["fuzzy"].Connected })
}

func mustEncode(t testing.TB, typ string, body any) []byte {
	t.Helper()
	b, err := bulwarkv1.Encode(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPolicyPushAndEvents(t *testing.T) {
	c := consoletest.Start(t)
	d, stateDir := startDefender(t, bundle(t, c, "pushy"), func(cfg *defender.Config) { cfg.SyntheticEvents = 5000 })
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["pushy"].Connected })

	r := mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/runtime/container", body: `{"rules":[{"name":"r1","effect":"alert"}]}`}), 200)
	var rev struct{ Revision int64 }
	_ = json.Unmarshal(r.body, &rev)
	if rev.Revision != 1 {
		t.Fatalf("first policy revision = %d, want 1", rev.Revision)
	}
	waitFor(t, "the policy to reach the defender", 5*time.Second, func() bool { return d.PolicyRevision() == 1 })
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/runtime/container", body: `{"rules":[{"name":"r1"},{"name":"r1"}]}`}), 400)
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/policies/runtime/container"}), 200)
	if !strings.Contains(string(r.body), `"effect":"alert"`) || r.header.Get("X-Bulwark-Policy-Revision") != "1" {
		t.Errorf("GET policy = %s (revision %q)", r.body, r.header.Get("X-Bulwark-Policy-Revision"))
	}
	// The policy is on disk, and the events all arrive.
	if raw, err := os.ReadFile(filepath.Join(stateDir, "policy.json")); err != nil || !strings.Contains(string(raw), `"revision":1`) {
		t.Errorf("stored policy = %s, %v", raw, err)
	}
	waitFor(t, "5000 events to be stored", 20*time.Second, func() bool { return defenders(t, c)["pushy"].StoredSeq == 5000 })
	waitFor(t, "the defender to report revision 1", 5*time.Second, func() bool { return defenders(t, c)["pushy"].PolicyRevision == 1 })
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/defenders/summary"}), 200)
	if !strings.Contains(string(r.body), `"connected":1`) {
		t.Errorf("summary = %s, want one connected", r.body)
	}
}

func TestDefenderMetrics(t *testing.T) {
	c := consoletest.Start(t)
	d, _ := startDefender(t, bundle(t, c, "measured"), func(cfg *defender.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.SyntheticEvents = 10
	})
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["measured"].Connected })
	waitFor(t, "the metrics endpoint", 5*time.Second, func() bool { return d.MetricsAddr() != "" })
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+d.MetricsAddr()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`bulwark_defender_connected{defender="measured"} 1`,
		`bulwark_defender_spool_depth_events{defender="measured"}`,
		`bulwark_defender_spool_dropped_events_total{defender="measured"} 0`,
		`bulwark_defender_policy_revision{defender="measured"} 0`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRenewBeforeExpiry: a renewed certificate works, the old one keeps
// working until the Defender is revoked, and revoking refuses both.
func TestRenewBeforeExpiry(t *testing.T) {
	c := consoletest.Start(t)
	oldDir := bundle(t, c, "renewed")
	r := mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/defenders/renewed/renew"}), 200)
	var b struct {
		DefenderID string            `json:"defenderID"`
		Files      map[string]string `json:"files"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.DefenderID != "renewed" {
		t.Fatalf("renew answered %s (%v)", r.body, err)
	}
	newCert, err := tls.X509KeyPair([]byte(b.Files["defender.pem"]), []byte(b.Files["defender-key.pem"]))
	if err != nil {
		t.Fatal(err)
	}
	oldCert := loadKeyPair(t, oldDir)
	if string(newCert.Certificate[0]) == string(oldCert.Certificate[0]) {
		t.Fatal("renew returned the old certificate")
	}
	for name, cert := range map[string]tls.Certificate{"renewed": newCert, "old": oldCert} {
		if answered, err := channelRequest(t, c, []tls.Certificate{cert}, nil); !answered {
			t.Errorf("the %s certificate is refused before revocation: %v", name, err)
		}
	}
	mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/defenders/renewed/revoke"}), 200)
	for name, cert := range map[string]tls.Certificate{"renewed": newCert, "old": oldCert} {
		if answered, _ := channelRequest(t, c, []tls.Certificate{cert}, nil); answered {
			t.Errorf("the %s certificate still gets an answer after revocation", name)
		}
	}
	mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/defenders/renewed/renew"}), 400)
}
