package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"bulwark/api"
)

const cliHubModule = `package acme.hub

deny contains sprintf("image %s comes from Docker Hub", [c.image]) if {
	some c in input.pod.containers
	not regex.match("^[^/]*[.:][^/]*/", c.image)
}
`

func TestCustomCompliance(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)
	dir := t.TempDir()
	hub := filepath.Join(dir, "no-docker-hub.rego")
	bad := filepath.Join(dir, "bad.rego")
	if err := os.WriteFile(hub, []byte(cliHubModule), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("package bad\n\ndeny contains msg if {\n\tmsg := \n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, env, "", "custom-compliance", "set", "--file", hub, "--severity", "high", "--title", "Images come from our registries")
	if want := "Created custom compliance check 9000 no-docker-hub (high, enabled)"; !strings.HasPrefix(out, want) {
		t.Errorf("set (new) printed %q, want it to start with %q", out, want)
	}
	out = mustRun(t, env, "package s\ndeny contains \"x\" if false\n", "custom", "set", "--file", "-", "--name", "from-stdin", "--severity", "low", "-o", "json")
	if got := decode[api.CustomComplianceCheck](t, out); got.ID != 9001 || got.Name != "from-stdin" || got.Owner != "admin" {
		t.Errorf("set --file - -o json = %+v, want check 9001 from-stdin owned by admin", got)
	}

	// Changing one field keeps the others, the module included.
	mustRun(t, env, "", "custom-compliance", "set", "--id", "9000", "--severity", "critical")
	got := decode[api.CustomComplianceCheck](t, mustRun(t, env, "", "custom-compliance", "get", "9000", "-o", "json"))
	if got.Severity != "critical" || got.Title != "Images come from our registries" || got.Script != cliHubModule || got.Disabled {
		t.Errorf("after set --id 9000 --severity critical, get = %+v, want critical with the title and module kept", got)
	}
	mustRun(t, env, "", "custom-compliance", "set", "--id", "9000", "--disabled")
	out = mustRun(t, env, "", "custom-compliance", "get", "9000")
	for _, want := range []string{"Name:        no-docker-hub", "Severity:    critical", "State:       disabled", "Owner:       admin", "\n" + cliHubModule} {
		if !strings.Contains(out, want) {
			t.Errorf("get 9000 printed:\n%s\nwant it to contain %q", out, want)
		}
	}

	list := decode[[]api.CustomComplianceCheck](t, mustRun(t, env, "", "custom-compliance", "list", "-o", "json"))
	if len(list) != 2 || list[0].Name != "no-docker-hub" || list[1].Name != "from-stdin" {
		t.Errorf("list -o json = %+v, want no-docker-hub and from-stdin", list)
	}
	out = mustRun(t, env, "", "custom-compliance", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "9000") || !strings.Contains(lines[1], "disabled") ||
		!strings.Contains(lines[2], "from-stdin") {
		t.Errorf("list printed:\n%s\nwant a header and the two checks", out)
	}

	failures := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"compile error", []string{"set", "--file", bad, "--severity", "low"}, 1, `check 9002 "bad" does not compile: line 5, column 1`},
		{"new check without a file", []string{"set", "--severity", "low"}, 2, "a new custom check needs --file and --severity"},
		{"new check without a severity", []string{"set", "--file", hub, "--name", "x"}, 2, "needs --file and --severity"},
		{"unknown id without a file", []string{"set", "--id", "9500", "--severity", "low"}, 2, "no custom check has id 9500"},
		{"id outside the range", []string{"set", "--id", "515", "--file", hub}, 2, `custom check ID "515" is not a number from 9000 to 9999`},
		{"stdin without a name", []string{"set", "--file", "-", "--severity", "low"}, 2, "--name is required with --file -"},
		{"missing file", []string{"set", "--file", filepath.Join(dir, "nope.rego"), "--severity", "low"}, 1, "read the Rego module"},
		{"taken name", []string{"set", "--file", hub, "--name", "from-stdin", "--severity", "low"}, 1, `name "from-stdin" is taken by custom check 9001`},
		{"get unknown", []string{"get", "9500"}, 1, "no custom compliance check 9500"},
		{"get not a number", []string{"get", "abc"}, 2, `custom check ID "abc"`},
		{"delete unknown", []string{"delete", "9500"}, 1, "not found"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, env, "", append([]string{"custom-compliance"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("custom-compliance %s = %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}

	if out := mustRun(t, env, "", "custom-compliance", "delete", "9000"); out != "Deleted custom compliance check 9000\n" {
		t.Errorf("delete 9000 printed %q", out)
	}
	list = decode[[]api.CustomComplianceCheck](t, mustRun(t, env, "", "custom-compliance", "list", "-o", "json"))
	if len(list) != 1 || list[0].ID != 9001 {
		t.Errorf("after delete, list = %+v, want only 9001", list)
	}

	// An auditor reads but may not write.
	mustRun(t, env, "audrey-password\n", "users", "create", "audrey", "--role", "auditor", "--password-stdin")
	auditor := c.env(t)
	auditor[envUsername], auditor[envPassword] = "audrey", "audrey-password"
	mustRun(t, auditor, "", "custom-compliance", "list")
	if r := run(t, auditor, "", "custom-compliance", "delete", "9001"); r.code != 1 || !strings.Contains(r.stderr, "write-policy") {
		t.Errorf("delete as auditor = %d, stderr %q; want 1 and the missing write-policy permission", r.code, r.stderr)
	}
}

func TestCustomComplianceHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"custom-compliance"}},
		{[]string{"custom-compliance", "--help"}, []string{"list", "get", "set", "delete", "9000", "docs/custom-compliance.md", "write-policy"}},
		{[]string{"custom-compliance", "set", "--help"}, []string{"--file", "--id", "--name", "--title", "--severity", "--description", "--remediation", "--notes", "--disabled", "only the flags given change"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, baseEnv(t), "", tc.args...)
			if r.code != 0 {
				t.Fatalf("Execute(%q) = %d, want 0; stderr:\n%s", tc.args, r.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("Execute(%q) help does not mention %q:\n%s", tc.args, w, r.stdout)
				}
			}
		})
	}
}
