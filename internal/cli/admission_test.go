package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"bulwark/internal/admission/admissiontest"
	"bulwark/internal/audit"
	"bulwark/internal/console/consoletest"
)

func TestAdmissionWebhookConfig(t *testing.T) {
	c := startConsole(t, consoletest.WithAdmission("bulwark-admission.bulwark.svc"))
	env := c.adminEnv(t)

	out := mustRun(t, env, "", "admission", "webhook-config", "--service", "bulwark-admission", "--namespace", "bulwark", "--failure-policy", "Fail")
	var cfg admissionregv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict([]byte(out), &cfg); err != nil {
		t.Fatalf("webhook-config printed no ValidatingWebhookConfiguration: %v\n%s", err, out)
	}
	wh := cfg.Webhooks[0]
	if cfg.Kind != "ValidatingWebhookConfiguration" || *wh.FailurePolicy != admissionregv1.Fail ||
		wh.ClientConfig.Service.Namespace != "bulwark" || !bytes.Equal(wh.ClientConfig.CABundle, c.CACertPEM()) {
		t.Errorf("webhook-config = %+v, want failurePolicy Fail, the service in bulwark, the Console CA", cfg)
	}

	var viaJSON admissionregv1.ValidatingWebhookConfiguration
	js := mustRun(t, env, "", "admission", "webhook-config", "--url", "https://console.example:8085", "--cluster", "east", "-o", "json")
	if err := yaml.UnmarshalStrict([]byte(js), &viaJSON); err != nil || *viaJSON.Webhooks[0].ClientConfig.URL != "https://console.example:8085/v1/admission/east" {
		t.Errorf("webhook-config --url -o json = %s (%v), want the URL with /v1/admission/east", js, err)
	}

	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--namespace", "bulwark"}, 2, "give --service and --namespace, or --url"},
		{[]string{"--service", "a"}, 2, "--service needs --namespace"},
		{[]string{"--service", "a", "--namespace", "b", "--url", "https://x"}, 2, "not both"},
		{[]string{"--service", "a", "--namespace", "b", "--failure-policy", "fail"}, 2, `--failure-policy must be Fail or Ignore, not "fail"`},
		{[]string{"--url", "http://x"}, 1, "scheme must be https"},
		{[]string{"--service", "a", "--namespace", "b", "--timeout", "60"}, 1, `timeoutSeconds="60" must be an integer from 1 to 30`},
	} {
		r := run(t, env, "", append([]string{"admission", "webhook-config"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("webhook-config %s = %d %q, want %d saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.stderr)
		}
	}
}

func TestAdmissionAudits(t *testing.T) {
	c := startConsole(t, consoletest.WithAdmission())
	env := c.adminEnv(t)
	mustRun(t, env, `{"mode":"enforce","rules":[{"name":"no privileged","checks":{"privileged":"block"}}]}`, "policy", "set", "admission", "--file", "-")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for i, obj := range []*admissionv1.AdmissionRequest{
		admissiontest.Request("u1", admissionv1.Create, admissiontest.Deployment("prod", "web", admissiontest.PrivilegedSpec()), nil),
		admissiontest.Request("u2", admissionv1.Create, admissiontest.Pod("dev", "tool", admissiontest.HardenedSpec()), nil),
	} {
		resp, err := client.Post(c.AdmissionURL, "application/json", bytes.NewReader(admissiontest.Review(obj)))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("review %d = %d", i, resp.StatusCode)
		}
	}
	var recs []audit.Admission
	for deadline := time.Now().Add(10 * time.Second); len(recs) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		recs = decode[[]audit.Admission](t, mustRun(t, env, "", "admission", "audits", "-o", "json"))
	}
	if len(recs) != 2 || recs[0].UID != "u2" || recs[1].Effect != "block" {
		t.Fatalf("admission audits -o json = %+v, want u2 then the blocked u1", recs)
	}

	out := mustRun(t, env, "", "admission", "audits", "--effect", "block", "--since", "1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("audits --effect block printed:\n%s\nwant a header and one decision", out)
	}
	for _, want := range []string{"block", "enforce", "CREATE", "Deployment prod/web", "kubernetes-admin", "no privileged", "5054(block)"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("audits row %q lacks %q", lines[1], want)
		}
	}
	if r := run(t, env, "", "admission", "audits", "--since", "yesterday"); r.code != 2 {
		t.Errorf("audits --since yesterday = %d, want 2", r.code)
	}
	if r := run(t, env, "", "admission", "audits", "--effect", "deny"); r.code != 1 || !strings.Contains(r.stderr, "must be one of allow, alert, block") {
		t.Errorf("audits --effect deny = %d %q, want 1 with the Console's message", r.code, r.stderr)
	}
}
