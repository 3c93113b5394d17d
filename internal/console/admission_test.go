package console_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"bulwark/internal/admission/admissiontest"
	"bulwark/internal/audit"
	"bulwark/internal/console"
	"bulwark/internal/console/consoletest"
	"bulwark/internal/k8s"
)

// admissionClient trusts only the caBundle of the generated webhook
// configuration, as the API server does, and speaks HTTP/2 as it does.
func admissionClient(t testing.TB, caBundle []byte) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle holds no PEM certificate: %q", caBundle)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
}

// sendReview posts the review of req to the Console's admission listener.
func sendReview(t testing.TB, client *http.Client, admissionURL string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	resp, err := client.Post(admissionURL, "application/json", bytes.NewReader(admissiontest.Review(req)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s = %d %s", admissionURL, resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("the admission listener answered over %s, want HTTP/2", resp.Proto)
	}
	out, err := admissiontest.DecodeResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	if out.UID != req.UID {
		t.Errorf("response uid %q, want %q", out.UID, req.UID)
	}
	return out
}

func webhookConfig(t testing.TB, c *consoletest.Console, query string) admissionregv1.ValidatingWebhookConfiguration {
	t.Helper()
	r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/admission/webhook?" + query}), 200)
	var cfg admissionregv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(r.body, &cfg); err != nil {
		t.Fatalf("decode the webhook configuration: %v\n%s", err, r.body)
	}
	return cfg
}

// TestAdmissionThroughConsole runs the admission controller inside a real
// Console over HTTPS: the webhook configuration from the API, reviews of a
// Pod, a Deployment and a CronJob trusted through its caBundle, the policy
// changed through the API, and the decisions read back from the audit.
func TestAdmissionThroughConsole(t *testing.T) {
	c := consoletest.Start(t, consoletest.WithAdmission("bulwark-admission.bulwark.svc"))

	// The configuration a cluster would apply, YAML and JSON alike.
	q := url.Values{"service": {"bulwark-admission"}, "namespace": {"bulwark"}, "failurePolicy": {"Fail"}}
	cfg := webhookConfig(t, c, q.Encode()+"&format=yaml")
	if diff := cmp.Diff(cfg, webhookConfig(t, c, q.Encode())); diff != "" {
		t.Errorf("YAML and JSON configurations differ (-yaml +json):\n%s", diff)
	}
	wh := cfg.Webhooks[0]
	if *wh.FailurePolicy != admissionregv1.Fail || wh.ClientConfig.Service.Name != "bulwark-admission" ||
		!slices.Equal(wh.NamespaceSelector.MatchExpressions[0].Values, []string{"bulwark", "kube-system"}) {
		t.Errorf("webhook = %+v, want failurePolicy Fail, the service, bulwark and kube-system left out", wh)
	}

	// The caBundle verifies the admission listener's certificate for the
	// Service's name, as the API server would check it.
	conn, err := tls.Dial("tcp", c.AdmissionAddr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the chain is verified below
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(wh.ClientConfig.CABundle)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "bulwark-admission.bulwark.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the caBundle does not verify the admission certificate for bulwark-admission.bulwark.svc: %v", err)
	}

	client := admissionClient(t, wh.ClientConfig.CABundle)
	objects := []runtime.Object{
		admissiontest.Pod("shop", "web-0", admissiontest.PrivilegedSpec()),
		admissiontest.Deployment("shop", "web", admissiontest.PrivilegedSpec()),
		admissiontest.CronJob("shop", "report", admissiontest.PrivilegedSpec()),
	}
	// The built-in policy: audit mode, so allowed with warnings.
	for i, obj := range objects {
		resp := sendReview(t, client, c.AdmissionURL, admissiontest.Request("audit-"+string(rune('a'+i)), admissionv1.Create, obj, nil))
		if !resp.Allowed || !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.HasPrefix(w, "5054 - Do not use privileged containers: ") }) {
			t.Errorf("%T under the built-in policy: allowed %v, warnings %q; want allowed, warning of 5054", obj, resp.Allowed, resp.Warnings)
		}
	}

	// A bad policy is refused with every problem named.
	r := mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/admission", body: `{"mode":"deny","exemptNamespaces":["Kube-System"]}`}), 400)
	for _, want := range []string{`mode: "deny" is not audit or enforce`, `exemptNamespaces[0]: "Kube-System" is not a namespace name`} {
		if !strings.Contains(r.errMsg(t), want) {
			t.Errorf("PUT a bad policy: %q, want it to say %q", r.errMsg(t), want)
		}
	}

	// Enforce: in force at once, no wait for the refresh.
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/admission", body: `{"mode":"enforce","exemptNamespaces":["kube-system","legacy"],
		"rules":[{"name":"no privileged","checks":{"privileged":"block"}}]}`}), 200)
	for i, obj := range objects {
		resp := sendReview(t, client, c.AdmissionURL, admissiontest.Request("enforce-"+string(rune('a'+i)), admissionv1.Create, obj, nil))
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, `denied by Bulwark rule "no privileged": 5054 - Do not use privileged containers: `) {
			t.Errorf("%T under enforce: allowed %v, result %+v; want denied by rule no privileged", obj, resp.Allowed, resp.Result)
		}
	}
	exempt := admissiontest.Deployment("legacy", "old", admissiontest.PrivilegedSpec())
	if resp := sendReview(t, client, c.AdmissionURL, admissiontest.Request("exempt", admissionv1.Create, exempt, nil)); !resp.Allowed {
		t.Errorf("a Deployment in an exempt namespace: denied %+v", resp.Result)
	}

	// The policy reads back with the defaults filled in.
	p, _ := getJSON[k8s.AdmissionPolicy](t, c, "/api/v1/policies/admission")
	if p.ID != "admission" || p.Mode != "enforce" || p.PSSLevel != "baseline" || p.PSSVersion != "latest" || len(p.Rules) != 1 {
		t.Errorf("GET /api/v1/policies/admission = %+v", p)
	}
	// The namespaceSelector follows the policy's exempt namespaces.
	cfg = webhookConfig(t, c, "url="+url.QueryEscape("https://console.example:8085"))
	if got := cfg.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values; !slices.Equal(got, []string{"kube-system", "legacy"}) {
		t.Errorf("exempt namespaces of the selector = %q, want kube-system and legacy", got)
	}

	// Every decision is in the audit, newest first, and the filters work.
	var all []audit.Admission
	waitFor(t, "the admission audits", 10*time.Second, func() bool {
		all, _ = getJSON[[]audit.Admission](t, c, "/api/v1/audits/admission")
		return len(all) == 7
	})
	if all[0].UID != "exempt" || all[0].Effect != "allow" || all[6].UID != "audit-a" || all[6].Effect != "alert" {
		t.Errorf("audits newest first: %s %s ... %s %s", all[0].UID, all[0].Effect, all[6].UID, all[6].Effect)
	}
	blocked, _ := getJSON[[]audit.Admission](t, c, "/api/v1/audits/admission?effect=block&kind=Deployment,CronJob")
	var uids []string
	for _, a := range blocked {
		uids = append(uids, a.UID)
	}
	if !slices.Equal(uids, []string{"enforce-c", "enforce-b"}) || blocked[0].RuleName != "no privileged" || blocked[0].Mode != "enforce" {
		t.Errorf("blocked Deployments and CronJobs: %q (rule %q); want enforce-c, enforce-b by no privileged", uids, blocked[0].RuleName)
	}
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/admission?effect=deny"}), 400)
	if !strings.Contains(r.errMsg(t), `effect="deny" must be one of allow, alert, block`) {
		t.Errorf("a bad effect filter: %q", r.errMsg(t))
	}
	if st := c.AdmissionStats(); st.Reviews != 7 || st.Denied != 3 || st.Warned != 3 || st.Allowed != 1 {
		t.Errorf("AdmissionStats() = %+v", st)
	}

	// The policy change is in the management audit.
	mgmt, _ := getJSON[[]audit.Mgmt](t, c, "/api/v1/audits/mgmt?type=policies")
	if len(mgmt) == 0 || !strings.HasPrefix(mgmt[0].Diff, "replaced admission policy (revision ") || !strings.Contains(mgmt[0].Diff, `mode enforce, exempt namespaces [kube-system, legacy]`) {
		t.Errorf("newest policy audit = %+v", mgmt)
	}

	// Malformed reviews get a 400 over HTTPS too.
	resp, err := client.Post(c.AdmissionURL, "application/json", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "has no request") {
		t.Errorf("a review without a request = %d %s, want 400", resp.StatusCode, body)
	}
}

// TestAdmissionWebhookConfigRefused: without the admission listener there
// is nothing to point a cluster at; bad options are named.
func TestAdmissionWebhookConfigRefused(t *testing.T) {
	off := consoletest.Start(t)
	r := mustStatus(t, off, admin(call{method: "GET", path: "/api/v1/admission/webhook?service=a&namespace=b"}), 409)
	if !strings.Contains(r.errMsg(t), "--admission-addr") {
		t.Errorf("webhook configuration of a Console without the admission controller: %q", r.errMsg(t))
	}
	if off.AdmissionAddr() != nil || off.AdmissionURL != "" {
		t.Errorf("a Console without the admission controller listens on %v", off.AdmissionAddr())
	}

	on := consoletest.Start(t, consoletest.WithAdmission())
	for _, tc := range []struct{ query, want string }{
		{"", "give a service (with its namespace) or a URL"},
		{"service=a", "namespace of the service: empty"},
		{"url=http://x", "scheme must be https"},
		{"service=a&namespace=b&failurePolicy=fail", `failure policy "fail": want Ignore or Fail`},
		{"service=a&namespace=b&port=0", "port=\"0\" must be an integer from 1 to 65535"},
		{"service=a&namespace=b&format=xml", `format="xml" must be json or yaml`},
		{"service=a&namespace=b&svc=c", "unknown query parameter svc"},
	} {
		r := mustStatus(t, on, admin(call{method: "GET", path: "/api/v1/admission/webhook?" + tc.query}), 400)
		if !strings.Contains(r.errMsg(t), tc.want) {
			t.Errorf("GET /api/v1/admission/webhook?%s: %q, want it to say %q", tc.query, r.errMsg(t), tc.want)
		}
	}
}

// TestAdmissionPolicyNamesCustomCheck: a custom check that the admission
// policy names cannot be deleted, and the controller enforces it.
func TestAdmissionPolicyNamesCustomCheck(t *testing.T) {
	c := consoletest.Start(t, consoletest.WithAdmission())
	putCustom(t, c, map[string]any{"name": "no-docker-hub", "severity": "high", "script": hubScript}, 200)
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/admission", body: `{"mode":"enforce","rules":[{"name":"own registries","checks":{"no-docker-hub":"block"}}]}`}), 200)
	r := mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/custom-compliance/9000"}), 409)
	if !strings.Contains(r.errMsg(t), "the admission policy names this custom check") {
		t.Errorf("DELETE a custom check the admission policy names: %q", r.errMsg(t))
	}
	dep := admissiontest.Deployment("shop", "web", admissiontest.HardenedSpec())
	dep.Spec.Template.Spec.Containers[0].Image = "nginx:1.27"
	resp := sendReview(t, admissionClient(t, c.CACertPEM()), c.AdmissionURL, admissiontest.Request("hub", admissionv1.Create, dep, nil))
	if resp.Allowed || !strings.Contains(resp.Result.Message, "9000 - ") {
		t.Errorf("an image from Docker Hub: allowed %v, result %+v; want denied by custom check 9000", resp.Allowed, resp.Result)
	}
}

// TestAdmissionConfig: the admission settings are validated with the rest.
func TestAdmissionConfig(t *testing.T) {
	cfg := console.Default()
	cfg.AdmissionAddr, cfg.AdmissionAuditRetention = "8085", -1
	err := cfg.Validate()
	for _, want := range []string{`admission addr "8085"`, "admission audit retention -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	cfg = console.Default()
	cfg.AdmissionHosts = []string{"a.svc"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "admission controller is off") {
		t.Errorf("Validate() with admission hosts and no address = %v", err)
	}
}

// TestAdmissionGC: while the admission controller serves, the collector
// runs with the configured GOGC and memory limit; the settings it replaced
// are back when the Console stops, and a Console without it changes none.
func TestAdmissionGC(t *testing.T) {
	gogc := func() (percent, limit uint64) {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64()
	}
	p0, l0 := gogc()
	plain := consoletest.Start(t)
	time.Sleep(100 * time.Millisecond)
	if p, l := gogc(); p != p0 || l != l0 {
		t.Errorf("without admission: GOGC %d, limit %d; want %d and %d as before", p, l, p0, l0)
	}
	plain.Stop()

	c := consoletest.Start(t, consoletest.WithAdmission(), consoletest.WithConfig(func(cfg *console.Config) {
		cfg.AdmissionGCPercent, cfg.AdmissionMemoryLimit = 300, 256<<20
	}))
	waitFor(t, "GOGC 300", 5*time.Second, func() bool { p, _ := gogc(); return p == 300 })
	if _, l := gogc(); l == l0 || l > 256<<20 {
		t.Errorf("memory limit %d, want %d (or three quarters of the container's memory, when lower)", l, 256<<20)
	}
	c.Stop()
	if p, l := gogc(); p != p0 || l != l0 {
		t.Errorf("after Stop: GOGC %d, limit %d; want %d and %d as before", p, l, p0, l0)
	}
}

// testCA makes a CA and a client certificate (ExtKeyUsageClientAuth) it
// signs, as an administrator would for the API server's webhook kubeconfig.
func testCA(t testing.TB, name string) (caPEM []byte, client tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAdmissionClientCertificate: with --admission-client-ca the listener
// takes reviews only from a client whose certificate that CA signed.
func TestAdmissionClientCertificate(t *testing.T) {
	caPEM, apiServer := testCA(t, "API server client CA")
	_, stranger := testCA(t, "another CA")
	file := filepath.Join(t.TempDir(), "admission-client-ca.pem")
	if err := os.WriteFile(file, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	c := consoletest.Start(t, consoletest.WithAdmission(), consoletest.WithConfig(func(cfg *console.Config) { cfg.AdmissionClientCAFile = file }))
	client := func(certs ...tls.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.CACertPEM())
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
		}}
	}
	pod := admissiontest.Pod("shop", "web-0", admissiontest.PrivilegedSpec())
	for name, cl := range map[string]*http.Client{"no client certificate": client(), "a certificate of another CA": client(stranger)} {
		resp, err := cl.Post(c.AdmissionURL, "application/json", bytes.NewReader(admissiontest.Review(admissiontest.Request("refused", admissionv1.Create, pod, nil))))
		if err == nil {
			resp.Body.Close()
			t.Errorf("a review with %s was answered %s; want the TLS handshake refused", name, resp.Status)
		}
	}
	resp := sendReview(t, client(apiServer), c.AdmissionURL, admissiontest.Request("mtls-ok", admissionv1.Create, pod, nil))
	if !resp.Allowed {
		t.Errorf("the API server's review under the built-in (audit) policy: %+v, want allowed", resp)
	}
	var audits []audit.Admission
	waitFor(t, "the admission audit", 10*time.Second, func() bool {
		audits, _ = getJSON[[]audit.Admission](t, c, "/api/v1/audits/admission")
		return len(audits) > 0
	})
	time.Sleep(100 * time.Millisecond) // a refused review would be written as soon
	audits, _ = getJSON[[]audit.Admission](t, c, "/api/v1/audits/admission")
	if len(audits) != 1 || audits[0].UID != "mtls-ok" {
		t.Errorf("admission audits = %+v, want the one review from the API server's certificate", audits)
	}
}

// TestAdmissionClientCARefused: the Console CA (it signs every Defender's
// certificate), a file without a certificate, or a client CA without the
// admission listener stop the Console at start with the reason.
func TestAdmissionClientCARefused(t *testing.T) {
	dataDir := t.TempDir()
	consoletest.Start(t, consoletest.WithDataDir(dataDir)).Stop()
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, addr, want string
	}{
		{"the Console CA", filepath.Join(dataDir, "pki", "ca.pem"), "127.0.0.1:0", "holds the Console CA"},
		{"no certificate", empty, "127.0.0.1:0", "no PEM certificate"},
		{"missing file", filepath.Join(dataDir, "nope.pem"), "127.0.0.1:0", "no such file"},
		{"admission off", empty, "", "the admission controller is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := console.Default()
			cfg.DataDir, cfg.APIAddr, cfg.ChannelAddr = dataDir, "127.0.0.1:0", "127.0.0.1:0"
			cfg.AdminPassword, cfg.BcryptCost = consoletest.AdminPassword, 4
			cfg.AdmissionAddr, cfg.AdmissionClientCAFile = tc.addr, tc.file
			c, err := console.New(t.Context(), cfg, "test", slog.New(slog.DiscardHandler))
			if err == nil {
				c.Close()
				t.Fatalf("the Console started with admission client CA %s", tc.file)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}
