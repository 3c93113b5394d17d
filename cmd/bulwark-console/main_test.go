package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"bulwark/internal/console"
)

func TestHelpNamesEveryFlagAndVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	help := errOut.String()
	for _, want := range []string{
		"--data-dir", "BULWARK_DATA_DIR", "--api-addr", "BULWARK_API_ADDR", "--channel-addr", "BULWARK_CHANNEL_ADDR",
		"--channel-url", "BULWARK_CHANNEL_URL", "--tls-cert", "BULWARK_TLS_CERT", "--tls-key", "BULWARK_TLS_KEY",
		"--hosts", "BULWARK_HOSTS", "--admin-username", "BULWARK_ADMIN_USERNAME", "--token-ttl", "BULWARK_TOKEN_TTL",
		"--log-level", "BULWARK_LOG_LEVEL", "BULWARK_ADMIN_PASSWORD", "--version", "(default :8083)", "(default :8084)",
		"--admission-addr", "BULWARK_ADMISSION_ADDR", "--admission-dns", "BULWARK_ADMISSION_DNS",
		"--admission-audit-retention", "BULWARK_ADMISSION_AUDIT_RETENTION", "(default 100000)", "GOGC", "GOMEMLIMIT",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %q:\n%s", want, help)
		}
	}
}

func TestBadConfigurationIsReportedWhole(t *testing.T) {
	var out, errOut bytes.Buffer
	env := map[string]string{"BULWARK_API_ADDR": "nowhere", "BULWARK_TOKEN_TTL": "1s", "BULWARK_ADMISSION_ADDR": "8085"}
	code := run(context.Background(), []string{"--tls-cert", "x.pem"}, func(k string) string { return env[k] }, &out, &errOut)
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, want := range []string{`api addr "nowhere"`, "token ttl 1s", "tls cert and tls key", `admission addr "8085"`} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("error output lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestFlagBeatsEnvironment(t *testing.T) {
	var out, errOut bytes.Buffer
	env := map[string]string{"BULWARK_API_ADDR": "nowhere"}
	// A valid flag overrides the invalid variable: the run gets past validation
	// and fails only later, on the data dir.
	code := run(context.Background(), []string{"--api-addr", "127.0.0.1:0", "--channel-addr", "127.0.0.1:0", "--data-dir", "/dev/null/x"},
		func(k string) string { return env[k] }, &out, &errOut)
	if code != 1 || strings.Contains(errOut.String(), "nowhere") {
		t.Fatalf("exit %d, output %s; want a start failure (1) not mentioning the overridden variable", code, errOut.String())
	}
}

func TestGoGCEnvironmentWins(t *testing.T) {
	tests := []struct {
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{nil, console.DefaultAdmissionGCPercent, console.DefaultAdmissionMemoryLimit},
		{map[string]string{"GOGC": "200"}, 0, console.DefaultAdmissionMemoryLimit},
		{map[string]string{"GOMEMLIMIT": "2GiB"}, console.DefaultAdmissionGCPercent, 0},
		{map[string]string{"GOGC": "off", "GOMEMLIMIT": "2GiB"}, 0, 0},
	}
	for _, tc := range tests {
		cfg := console.Default()
		keepGoGC(&cfg, func(k string) string { return tc.env[k] })
		if cfg.AdmissionGCPercent != tc.wantPercent || cfg.AdmissionMemoryLimit != tc.wantLimit {
			t.Errorf("keepGoGC(%v): GC percent %d, memory limit %d; want %d and %d", tc.env,
				cfg.AdmissionGCPercent, cfg.AdmissionMemoryLimit, tc.wantPercent, tc.wantLimit)
		}
	}
}
