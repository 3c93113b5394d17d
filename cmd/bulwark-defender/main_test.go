package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"bulwark/internal/defender"
)

func TestHelpNamesEveryFlagAndVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	help := errOut.String()
	for _, want := range []string{
		"--bundle", "BULWARK_BUNDLE_DIR", "--state-dir", "BULWARK_STATE_DIR", "--console-url", "BULWARK_CONSOLE_URL",
		"--spool-max-bytes", "BULWARK_SPOOL_MAX_BYTES", "--proc-root", "BULWARK_PROC_ROOT", "--log-level", "POD_NAME",
		"--compliance", "BULWARK_COMPLIANCE", "--host-root", "BULWARK_HOST_ROOT", "--compliance-interval", "BULWARK_COMPLIANCE_INTERVAL",
		"status", "TESTING ONLY", "--shim", "BULWARK_SHIM", "--shim-timeout", "BULWARK_SHIM_TIMEOUT", "--shim-runc",
		"--shim-binary", "--shim-dir", "shim install|uninstall|status", "--enforce", "BULWARK_ENFORCE",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %q:\n%s", want, help)
		}
	}
}

func TestMissingBundleFailsClearly(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--bundle", t.TempDir(), "--state-dir", t.TempDir()}, func(string) string { return "" }, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "bundle.json") {
		t.Fatalf("exit %d, output %s; want 1 and a message naming bundle.json", code, errOut.String())
	}
}

func TestEnforceFlag(t *testing.T) {
	if got := defender.Default().Enforce; got != defender.EnforceAuto {
		t.Errorf("Default().Enforce = %q, want auto", got)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"--enforce", "sometimes"}, nil},
		{"environment", nil, map[string]string{"BULWARK_ENFORCE": "sometimes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(tc.args, "--bundle", t.TempDir(), "--state-dir", t.TempDir())
			code := run(context.Background(), args, func(k string) string { return tc.env[k] }, &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), `enforce "sometimes": want auto or off`) {
				t.Errorf("run(%v, env %v) = %d, %s; want 2 and a message naming --enforce", tc.args, tc.env, code, errOut.String())
			}
		})
	}
}

func TestShimTimeoutDefaultsToSixtySeconds(t *testing.T) {
	if got := defender.Default().ShimTimeout; got != 60*time.Second {
		t.Errorf("Default().ShimTimeout = %v, want 60s", got)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--shim-timeout", "0s", "--bundle", t.TempDir(), "--state-dir", t.TempDir()}, func(string) string { return "" }, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "shim timeout") {
		t.Errorf("--shim-timeout 0s: exit %d, %s; want 2 and a message naming the shim timeout", code, errOut.String())
	}
}

func TestShimCommandNeedsAnAction(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"shim"}, {"shim", "--state-dir", "x"}} {
		if code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	code := run(context.Background(), []string{"shim", "reinstall", "--shim-runc", "/nonexistent/runc"}, func(string) string { return "" }, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "want install, uninstall or status") {
		t.Errorf("shim reinstall: exit %d, %s; want 1 and the valid actions", code, errOut.String())
	}
}
