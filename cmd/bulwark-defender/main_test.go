package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
		"status", "TESTING ONLY",
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
