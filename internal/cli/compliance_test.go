package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/api"
	"bulwark/internal/compliance"
	"bulwark/internal/defender"
	"bulwark/internal/event"
)

// startTestDefender registers a Defender through bulwarkctl and runs it
// until the test ends.
func startTestDefender(t *testing.T, env map[string]string, id string) *defender.Defender {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	mustRun(t, env, "", "defender", "bundle", "--id", id, "--out", dir)
	cfg := defender.Default()
	cfg.Shim = defender.ShimOff       // never this machine's runc
	cfg.Enforce = defender.EnforceOff // no kernel enforcement of this machine's containers
	cfg.BundleDir = dir
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Sensor = false
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

func TestCompliancePolicyCommands(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)

	table := mustRun(t, env, "", "compliance", "policy", "get", "container")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "#") || !strings.Contains(lines[1], compliance.RuleIgnoreBulwark) ||
		!strings.Contains(lines[1], "ignore") || !strings.Contains(lines[1], "Bulwark images, Bulwark containers") {
		t.Errorf("compliance policy get container =\n%s\nwant the built-in rules, %q first", table, compliance.RuleIgnoreBulwark)
	}
	p := decode[compliance.Policy](t, mustRun(t, env, "", "compliance", "policy", "get", "host", "-o", "json"))
	if diff := cmp.Diff(compliance.DefaultPolicy(compliance.PolicyTypeHost), p); diff != "" {
		t.Errorf("compliance policy get host -o json (-want +got):\n%s", diff)
	}

	doc := `{"rules":[{"name":"prod","collections":[{"name":"prod","namespaces":["prod"]}],
		"condition":{"vulnerabilities":[{"id":5515,"block":true},{"check":"caps-drop-all"}]},"checks":{"net-raw":"ignore"}},
		{"name":"rest","effect":"alert"}]}`
	out := mustRun(t, env, doc, "compliance", "policy", "set", "container", "--file", "-")
	if want := "Stored the container compliance policy; the policy revision is now 1\n"; out != want {
		t.Errorf("compliance policy set printed %q, want %q", out, want)
	}
	table = mustRun(t, env, "", "compliance", "policy", "get", "container")
	want := [][]string{
		{"#", "NAME", "EFFECT", "COLLECTIONS", "CHECKS"},
		{"1", "prod", "listed checks", "prod", "5515 (block), caps-drop-all, net-raw=ignore"},
		{"2", "rest", "alert", "(all)", "-"},
	}
	var got [][]string
	for line := range strings.SplitSeq(strings.TrimSpace(table), "\n") {
		var cells []string
		for cell := range strings.SplitSeq(line, "  ") {
			if cell = strings.TrimSpace(cell); cell != "" {
				cells = append(cells, cell)
			}
		}
		got = append(got, cells)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("compliance policy get container after set (-want +got):\n%s", diff)
	}

	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string // in stderr
	}{
		{"refused by the Console", `{"rules":[{"name":"a","effect":"deny"}]}`, []string{"compliance", "policy", "set", "host", "-f", "-"}, exitError, `rules[0].effect: "deny" is not ignore, alert or block`},
		{"not JSON", `{`, []string{"compliance", "policy", "set", "host", "-f", "-"}, exitUsage, "is not JSON"},
		{"no file", "", []string{"compliance", "policy", "set", "host"}, exitUsage, "--file FILE"},
		{"unknown kind", "", []string{"compliance", "policy", "get", "image"}, exitUsage, `"image": want container or host`},
		{"missing kind", "", []string{"compliance", "policy", "get"}, exitUsage, "expected KIND"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, env, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("bulwarkctl %s = %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.want)
			}
		})
	}
}

func TestComplianceExplorerCommand(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)
	d := startTestDefender(t, env, "cli-cmpl")

	finding := func(slug string, cri bool, effect compliance.Effect) compliance.Finding {
		ch, _ := compliance.Lookup(slug)
		return compliance.Finding{Check: slug, PrismaID: ch.PrismaID(cri), Severity: ch.Severity, Title: ch.Title, Message: slug + " is set", Effect: effect}
	}
	emit := func(at time.Time, host string, ctr *event.Container, fs ...compliance.Finding) {
		kind := event.KindComplianceHost
		if ctr != nil {
			kind = event.KindComplianceContainer
		}
		data, err := json.Marshal(event.Compliance{Trigger: "start", Host: host, Container: ctr, Findings: append([]compliance.Finding{}, fs...)})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Emit(kind, at, data); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-48 * time.Hour)
	emit(t0, "cli-node", &event.Container{ID: "0123456789ab0000", Name: "web", Image: "nginx:1.27", Namespace: "prod"},
		finding("host-pid", true, compliance.EffectBlock), finding("privileged", true, compliance.EffectAlert))
	emit(time.Now(), "cli-node", &event.Container{ID: "0123456789ab1111", Name: "db", Image: "postgres:17", Namespace: "data"},
		finding("host-pid", true, compliance.EffectAlert))
	emit(time.Now(), "cli-node", nil, finding("kubelet-anon-auth", true, compliance.EffectAlert))

	explorer := []string{"compliance", "explorer", "--host", "cli-*"}
	deadline := time.Now().Add(20 * time.Second)
	var st api.ComplianceStats
	for {
		st = decode[api.ComplianceStats](t, mustRun(t, env, "", append(explorer, "-o", "json")...))
		// Hosts counts the hosts of container results too: wait for the
		// host's own result (its check) as well.
		if st.Containers == 2 && len(st.IDs) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ids []string
	for _, e := range st.IDs {
		ids = append(ids, e.ID+"/"+e.Type)
	}
	if diff := cmp.Diff([]string{"5054/container", "8212/host", "5515/container"}, ids); diff != "" {
		t.Fatalf("explorer -o json ids (-want +got):\n%s", diff)
	}

	table := mustRun(t, env, "", explorer...)
	for _, want := range []string{
		"ID    TYPE       SEVERITY  FAILED  CONTAINERS  IMAGES  HOSTS  TITLE",
		"5515  container  high      2       2           2       1      Do not share the host's process namespace",
		"Evaluated: 2 containers (2 images), 1 host",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("explorer =\n%s\nwant a line with %q", table, want)
		}
	}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"check by ID", []string{"--check", "5515"}, []string{
			"container  cli-node  web        nginx:1.27   prod       ",
			"5515  block   host-pid is set",
			"container  cli-node  db         postgres:17  data       ",
			"2 containers and 0 hosts fail 5515",
		}},
		{"check by slug on hosts", []string{"--check", "kubelet-anon-auth", "--type", "host"}, []string{"host  cli-node", "8212  alert   kubelet-anon-auth is set", "0 containers and 1 host fail kubelet-anon-auth"}},
		{"since leaves the old result out", []string{"--check", "host-pid", "--since", "24h"}, []string{"db", "1 container and 0 hosts fail host-pid"}},
		{"namespace", []string{"--check", "host-pid", "--namespace", "prod"}, []string{"web", "1 container and 0 hosts fail host-pid"}},
		{"nothing", []string{"--check", "5059"}, []string{"Nothing fails 5059.\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, env, "", append(explorer, tc.args...)...)
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("explorer %s =\n%s\nwant it to contain %q", strings.Join(tc.args, " "), out, want)
				}
			}
		})
	}

	fr := decode[failingResources](t, mustRun(t, env, "", append(explorer, "--check", "privileged", "-o", "json")...))
	if fr.Check != "privileged" || len(fr.Containers) != 1 || fr.Containers[0].Info.Name != "web" || len(fr.Hosts) != 0 {
		t.Errorf("explorer --check privileged -o json = %+v, want container web only", fr)
	}

	for _, args := range [][]string{
		{"--type", "image"},
		{"--type", "host", "--image", "nginx"},
		{"--since", "yesterday"},
		{"--since", "-1h"},
		{"--host", ""},
	} {
		r := run(t, env, "", append([]string{"compliance", "explorer"}, args...)...)
		if r.code != exitUsage {
			t.Errorf("explorer %s = %d, stderr %q; want %d", strings.Join(args, " "), r.code, r.stderr, exitUsage)
		}
	}
}
