package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bulwark/api"
	"bulwark/internal/defender"
	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

// startRuntimeDefender registers a Defender with the Console and runs it
// without a sensor: the test feeds it events.
func startRuntimeDefender(t *testing.T, c *testConsole, env map[string]string, id string) *defender.Defender {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	mustRun(t, env, "", "defender", "bundle", "--id", id, "--out", dir)
	cfg := defender.Default()
	cfg.Shim = defender.ShimOff       // never this machine's runc
	cfg.Enforce = defender.EnforceOff // no kernel enforcement of this machine's containers
	cfg.BundleDir, cfg.StateDir, cfg.SpoolMaxBytes, cfg.Sensor = dir, t.TempDir(), 16<<20, false
	cfg.LearningWindow, cfg.ModelReportInterval = 500*time.Millisecond, 50*time.Millisecond
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
	return d
}

func waitUntil(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRuntimePolicyCommands(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)
	out := mustRun(t, env, "", "runtime", "policy", "get", "container")
	for _, want := range []string{rp.RuleIgnoreBulwark, rp.RuleDefault, "NAME", "PREVENTS"} {
		if !strings.Contains(out, want) {
			t.Errorf("runtime policy get container:\n%s\nwant %q", out, want)
		}
	}
	// A mistake is found before anything is sent: exit 2, naming the field.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules":[{"name":"x","network":{"deniedIPs":["300.1.1.1"]}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "", "runtime", "policy", "set", "container", "--file", bad)
	if r.code != 2 || !strings.Contains(r.stderr, `network.deniedIPs[0]: "300.1.1.1"`) {
		t.Errorf("set of a bad policy = %d, stderr %q; want 2 naming the field", r.code, r.stderr)
	}
	good := `{"rules":[{"name":"lock web","collections":[{"name":"web","images":["web:*"]}],
		"processes":{"deniedList":{"effect":"prevent","paths":["nc","/tmp/*"]},"modifiedProcessEffect":"block"},
		"network":{"outboundPorts":{"denied":[{"start":25}],"effect":"prevent"}}}]}`
	out = mustRun(t, env, good, "runtime", "policy", "set", "container", "--file", "-")
	if !strings.HasPrefix(out, "Replaced the container runtime policy (revision ") {
		t.Errorf("set printed %q", out)
	}
	out = mustRun(t, env, "", "runtime", "policy", "get", "container")
	if !strings.Contains(out, "lock web") || !strings.Contains(out, "2 exec, 1 connect, drift") || !strings.Contains(out, "modifiedProcess") {
		t.Errorf("get after set:\n%s\nwant the rule, what it prevents and what it blocks", out)
	}
	p := decode[rp.Policy](t, mustRun(t, env, "", "runtime", "policy", "get", "container", "-o", "json"))
	if len(p.Rules) != 1 || p.Rules[0].Name != "lock web" {
		t.Errorf("get -o json = %+v", p)
	}
	if r := run(t, env, "", "runtime", "policy", "get", "pod"); r.code != 2 {
		t.Errorf("get pod = %d, want 2", r.code)
	}
}

func TestRuntimeModelAndIncidentCommands(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)
	d := startRuntimeDefender(t, c, env, "cli-runtime")
	web := &event.Container{ID: "0123456789abcdef", Name: "web-0", Image: "web:1"}
	pid := uint32(1 << 30)
	run1 := func(exe string) {
		t.Helper()
		pid++
		if err := d.Observe(event.KindProcessExec, time.Now(), event.Runtime{Process: event.Process{PID: pid, Exe: exe, Argv: []string{exe, "-x"}}, Container: web}); err != nil {
			t.Fatal(err)
		}
	}
	run1("/usr/sbin/nginx")
	var ms []rp.Model
	waitUntil(t, "the learned model", func() bool {
		ms = decode[[]rp.Model](t, mustRun(t, env, "", "runtime", "models", "-o", "json"))
		return len(ms) == 1 && ms[0].State == rp.StateActive
	})
	id := ms[0].ID
	out := mustRun(t, env, "", "runtime", "models")
	if !strings.Contains(out, id) || !strings.Contains(out, "web:1") || !strings.Contains(out, "active") {
		t.Errorf("models:\n%s", out)
	}
	out = mustRun(t, env, "", "runtime", "models", "get", id)
	if !strings.Contains(out, "process") || !strings.Contains(out, "/usr/sbin/nginx") {
		t.Errorf("models get:\n%s", out)
	}

	run1("/bin/cat")
	var incs []api.Incident
	waitUntil(t, "the incident", func() bool {
		incs = decode[[]api.Incident](t, mustRun(t, env, "", "runtime", "incidents", "-o", "json"))
		return len(incs) == 1
	})
	out = mustRun(t, env, "", "runtime", "incidents", "--open", "--since", "1h")
	if !strings.Contains(out, incs[0].ID) || !strings.Contains(out, rp.IncidentUnexpectedBehavior) || !strings.Contains(out, "web-0 on ") {
		t.Errorf("incidents:\n%s", out)
	}
	waitUntil(t, "the forensic record", func() bool {
		return strings.Contains(mustRun(t, env, "", "runtime", "incidents", "get", incs[0].ID), "Forensic record")
	})
	out = mustRun(t, env, "", "runtime", "incidents", "get", incs[0].ID)
	for _, want := range []string{rp.DetectUnexpectedProcess, "/bin/cat -x", "/usr/sbin/nginx -x", "not in the model of web:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("incidents get:\n%s\nwant %q", out, want)
		}
	}
	if out := mustRun(t, env, "", "runtime", "incidents", "ack", incs[0].ID); out != "Acknowledged incident "+incs[0].ID+"\n" {
		t.Errorf("ack printed %q", out)
	}
	if out := mustRun(t, env, "", "runtime", "incidents", "--open", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("open incidents after ack = %s", out)
	}
	mustRun(t, env, "", "runtime", "incidents", "ack", incs[0].ID, "--reopen")
	if got := decode[[]api.Incident](t, mustRun(t, env, "", "runtime", "incidents", "--open", "-o", "json")); len(got) != 1 {
		t.Errorf("open incidents after reopen = %+v", got)
	}

	// Edit: cat becomes part of the model.
	m := ms[0]
	m.Processes = append(m.Processes, rp.ModelProcess{Path: "/bin/cat"})
	raw, _ := json.Marshal(m)
	out = mustRun(t, env, string(raw), "runtime", "models", "edit", id, "--file", "-")
	if !strings.HasPrefix(out, "Edited the model of web:1 (generation 1)") {
		t.Errorf("edit printed %q", out)
	}
	if r := run(t, env, `{"processes":[{"path":""}]}`, "runtime", "models", "edit", id, "--file", "-"); r.code != 2 {
		t.Errorf("edit with an empty path = %d, want 2", r.code)
	}
	out = mustRun(t, env, "", "runtime", "models", "relearn", "--all")
	if out != "1 models learn again\n" {
		t.Errorf("relearn --all printed %q", out)
	}
	if out := mustRun(t, env, "", "runtime", "models", "relearn", id); out != "The model of web:1 learns again\n" {
		t.Errorf("relearn ID printed %q", out)
	}
	for _, bad := range [][]string{{"relearn"}, {"relearn", id, "--all"}} {
		if r := run(t, env, "", append([]string{"runtime", "models"}, bad...)...); r.code != 2 {
			t.Errorf("models %v = %d, want 2", bad, r.code)
		}
	}
	if r := run(t, env, "", "runtime", "models", "get", "nope"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("models get nope = %d %q, want 1, not found", r.code, r.stderr)
	}
}
