package defender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/api/bulwarkv1"
	"bulwark/api/shimv1"
	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/runtime/runctest"
	"bulwark/internal/shim"
)

// hostPIDWorkload stands in for the OCI normalizer: a container without a
// pid namespace when the config says so.
func hostPIDWorkload(spec []byte, engine string) (compliance.Workload, error) {
	var s struct {
		HostPID     bool              `json:"hostPID"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return compliance.Workload{}, err
	}
	rt := &compliance.Runtime{Image: compliance.Fact[string]{Value: s.Annotations["io.bulwark.image"]}}
	if s.HostPID {
		rt.HostNamespaces = []compliance.HostNamespace{{Type: compliance.NamespacePID, Key: "linux.namespaces"}}
	}
	return compliance.Workload{Source: compliance.Source{Kind: compliance.SourceOCI, Engine: engine, Annotations: s.Annotations}, Runtime: rt}, nil
}

const strictPolicy = `{"rules":[
 {"name":"ignore bulwark","collections":[{"name":"b","images":["*bulwark*"]}],"effect":"ignore"},
 {"name":"prod-strict","collections":[{"name":"p","images":["registry.local/*"]}],"failClosed":true,
  "condition":{"vulnerabilities":[{"id":5515,"block":true},{"check":"net-raw"}]}},
 {"name":"default","effect":"alert"}]}`

// events collects what a gate emits.
type events struct {
	mu  sync.Mutex
	evs []event.Event
}

func (e *events) emit(kind string, at time.Time, data ...json.RawMessage) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range data {
		e.evs = append(e.evs, event.Event{Kind: kind, Time: at, Data: d})
	}
	return nil
}

func (e *events) decisions(t *testing.T) []event.ShimDecision {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []event.ShimDecision
	for _, ev := range e.evs {
		if ev.Kind != event.KindShimDecision {
			continue
		}
		var d event.ShimDecision
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func (e *events) kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		out = append(out, ev.Kind)
	}
	return out
}

func testGate(t *testing.T, policyDoc string) (*gate, *events, *bulwarkv1.Policy) {
	t.Helper()
	evs := &events{}
	p := &bulwarkv1.Policy{Revision: 7, Policies: map[string]json.RawMessage{}}
	if policyDoc != "" {
		p.Policies[policyContainerCompliance] = json.RawMessage(policyDoc)
	}
	var mu sync.Mutex
	g := &gate{
		mode: ShimAuto, timeout: 2 * time.Second, host: "node-1", paths: shim.PathsIn(filepath.Join(t.TempDir(), "shim")),
		logger: slog.New(slog.DiscardHandler),
		policy: func() bulwarkv1.Policy {
			mu.Lock()
			defer mu.Unlock()
			return *p
		},
		emit: evs.emit, normalize: hostPIDWorkload, targets: func() []string { return nil }, wake: make(chan struct{}, 1),
	}
	return g, evs, p
}

func request(id, image string, hostPID bool, root string) shimv1.Request {
	cfg, _ := json.Marshal(map[string]any{"hostPID": hostPID, "annotations": map[string]string{"io.bulwark.image": image}})
	return shimv1.Request{V: 1, Command: "create", ID: id, Bundle: "/b/" + id, Root: root, Container: shimv1.Container{ID: id, Image: image}, Config: cfg}
}

func TestDecide(t *testing.T) {
	g, evs, _ := testGate(t, strictPolicy)
	for _, tc := range []struct {
		name    string
		req     shimv1.Request
		verdict string
		rule    string
		message string
	}{
		{"host PID in prod is blocked", request("c1", "registry.local/web:1", true, "/run/containerd/runc/k8s.io"), shimv1.VerdictBlocked, "prod-strict",
			`bulwark: blocked by rule "prod-strict": 5515 - Do not share the host's process namespace`},
		{"Docker numbering for docker", request("c2", "registry.local/web:1", true, "/run/docker/runtime-runc/moby"), shimv1.VerdictBlocked, "prod-strict",
			`bulwark: blocked by rule "prod-strict": 515 - Do not share the host's process namespace`},
		{"a pid namespace passes", request("c3", "registry.local/web:1", false, "/run/containerd/runc/k8s.io"), shimv1.VerdictAllowed, "prod-strict", ""},
		{"the deciding rule only alerts", request("c4", "docker.io/nginx", true, "/run/containerd/runc/default"), shimv1.VerdictAllowed, "default", ""},
		{"bulwark's own components", request("c5", "registry.local/bulwark-defender:1", true, "/run/containerd/runc/k8s.io"), shimv1.VerdictAllowed, "ignore bulwark", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideNow(g, tc.req)
			want := shimv1.Decision{Verdict: tc.verdict, Rule: tc.rule, Message: tc.message}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("Decide(%s) mismatch (-want +got):\n%s", tc.req.ID, diff)
			}
		})
	}
	ds := evs.decisions(t)
	if len(ds) != 5 {
		t.Fatalf("%d shim.decision events, want one per decision", len(ds))
	}
	first := ds[0]
	if first.Verdict != shimv1.VerdictBlocked || first.Rule != "prod-strict" || first.RecordedBy != "defender" || first.PolicyRevision != 7 ||
		first.Host != "node-1" || first.Bundle != "/b/c1" || first.Container.Runtime != "containerd" || first.Container.Image != "registry.local/web:1" ||
		!strings.Contains(first.Message, "5515") {
		t.Errorf("event of the refusal = %+v", first)
	}
	var checks []string
	for _, f := range first.Findings {
		checks = append(checks, f.Check+":"+string(f.Effect))
	}
	if !slicesEqualUnordered(checks, []string{"host-pid:block", "net-raw:alert"}) && !slicesEqualUnordered(checks, []string{"host-pid:block"}) {
		t.Errorf("findings of the refusal = %q, want host-pid blocking (and the rule's alerts)", checks)
	}
	if s := g.statusInfo(); s.Decisions != 5 || s.Blocked != 2 || !s.Blocking {
		t.Errorf("status = %+v, want 5 decisions, 2 blocked, blocking", s)
	}
}

// decideNow decides and records as the server does after a delivered answer.
func decideNow(g *gate, req shimv1.Request) shimv1.Decision {
	d, done := g.Decide(context.Background(), req)
	done(nil)
	return d
}

func slicesEqualUnordered(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestDecideWhenTheConfigCannotBeEvaluated(t *testing.T) {
	g, evs, _ := testGate(t, strictPolicy)
	g.normalize = func([]byte, string) (compliance.Workload, error) {
		return compliance.Workload{}, errors.New("bad spec")
	}
	d := decideNow(g, request("c1", "registry.local/web:1", false, ""))
	if d.Verdict != shimv1.VerdictFailClosedError || d.Rule != "prod-strict" || !strings.Contains(d.Message, `rule "prod-strict" is fail-closed`) {
		t.Errorf("Decide(unevaluable, fail-closed rule) = %+v", d)
	}
	d = decideNow(g, request("c2", "docker.io/x", false, ""))
	if d.Verdict != shimv1.VerdictFailOpenError || !d.Allowed() {
		t.Errorf("Decide(unevaluable, open rule) = %+v", d)
	}
	if ds := evs.decisions(t); len(ds) != 2 || ds[0].Error != "bad spec" {
		t.Errorf("events = %+v, want both with the error", ds)
	}
}

func TestBadPolicyFallsBackToTheBuiltInRules(t *testing.T) {
	g, _, _ := testGate(t, `{"rules":[{"name":"x","effect":"maybe"}]}`)
	d := decideNow(g, request("c1", "registry.local/web:1", true, ""))
	if !d.Allowed() || d.Rule != compliance.RuleDefaultAlert {
		t.Errorf("Decide under a refused policy = %+v, want the built-in alert rule", d)
	}
	if s := g.statusInfo(); s.PolicyError == "" || s.Blocking {
		t.Errorf("status = %+v, want the policy error and no blocking", s)
	}
}

func TestEngineOf(t *testing.T) {
	for _, tc := range []struct{ root, want string }{
		{"/run/containerd/runc/k8s.io", compliance.EngineContainerd},
		{"/run/containerd/runc/moby", compliance.EngineDocker},
		{"/run/docker/runtime-runc/moby", compliance.EngineDocker},
		{"/run/crio/runc", compliance.EngineCRIO},
		{"/run/runc", ""},
		{"", ""},
	} {
		if got := engineOf(tc.root); got != tc.want {
			t.Errorf("engineOf(%q) = %q, want %q", tc.root, got, tc.want)
		}
	}
}

func TestSettingsFor(t *testing.T) {
	p, err := compliance.ParsePolicy([]byte(`{"rules":[
 {"name":"a","collections":[{"name":"x","namespaces":["prod"],"labels":["team:*"]}]},
 {"name":"off","disabled":true,"failClosed":true},
 {"name":"b","failClosed":true,"collections":[{"name":"y","images":["r/*"]}]},
 {"name":"c"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := settingsFor(p.Rules, 3, "h", 2*time.Second)
	own := compliance.DefaultRules()[0]
	want := shimv1.Settings{V: 1, TimeoutMS: 2000, PolicyRevision: 3, Host: "h", Rules: []shimv1.Rule{
		{Name: compliance.RuleIgnoreBulwark, Collections: []shimv1.Collection{{Images: own.Collections[0].Images}, {Containers: own.Collections[1].Containers}}},
		{Name: "a", Collections: []shimv1.Collection{{Namespaces: []string{"prod"}, Labels: []string{"team:*"}}}},
		{Name: "b", FailClosed: true, Collections: []shimv1.Collection{{Images: []string{"r/*"}}}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settingsFor mismatch (-want +got):\n%s", diff)
	}
	if s := settingsFor(compliance.DefaultRules(), 1, "h", time.Minute); len(s.Rules) != 0 || s.Timeout() != time.Minute {
		t.Errorf("settingsFor(no fail-closed rule) = %+v, want no rules and the timeout", s)
	}
	// The Defender's own image is never refused for want of a Defender.
	if rule, closed := got.FailClosed(shimv1.Container{ID: "d", Image: "registry.local/bulwark-defender:1"}); closed || rule != compliance.RuleIgnoreBulwark {
		t.Errorf("FailClosed(the Defender's image) = %q, %v; want Bulwark's own rule, open", rule, closed)
	}
}

func TestCollectAudits(t *testing.T) {
	g, evs, _ := testGate(t, "")
	if err := os.MkdirAll(g.paths.AuditDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := shimv1.Audit{V: 1, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Verdict: shimv1.VerdictFailOpenTimeout, Command: "create",
		Bundle: "/b", Root: "/run/containerd/runc/default", Container: shimv1.Container{ID: "c9", Image: "i"}, Error: "no decision in time after 2s", ElapsedMS: 2003}
	b, _ := json.Marshal(a)
	for name, data := range map[string][]byte{"1-1.json": b, "2-1.json": []byte("garbage")} {
		if err := os.WriteFile(filepath.Join(g.paths.AuditDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g.collectAudits()
	ds := evs.decisions(t)
	want := []event.ShimDecision{{
		Verdict: shimv1.VerdictFailOpenTimeout, Command: "create", Bundle: "/b", Host: "node-1", RecordedBy: "shim",
		Error: "no decision in time after 2s", ElapsedMS: 2003, Container: event.Container{ID: "c9", Image: "i", Runtime: "containerd"},
	}}
	if diff := cmp.Diff(want, ds); diff != "" {
		t.Errorf("events from audit records mismatch (-want +got):\n%s", diff)
	}
	if evs.evs[0].Time != a.Time {
		t.Errorf("event time %v, want the shim's %v", evs.evs[0].Time, a.Time)
	}
	if entries, _ := os.ReadDir(g.paths.AuditDir); len(entries) != 0 {
		t.Errorf("audit dir holds %d files after collection, want none", len(entries))
	}
}

// TestReconcileFollowsThePolicy: a blocking rule puts the shim in place of
// (a copy of) runc, a policy without one takes it out, byte for byte.
func TestReconcileFollowsThePolicy(t *testing.T) {
	runc := runctest.RuncCopy(t)
	orig, err := os.ReadFile(runc)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bulwark-shim")
	if out, err := exec.Command("go", "build", "-o", bin, "bulwark/cmd/bulwark-shim").CombinedOutput(); err != nil {
		t.Fatalf("go build bulwark-shim: %v\n%s", err, out)
	}
	g, evs, p := testGate(t, strictPolicy)
	g.installer = shim.Installer{Shim: bin, Paths: g.paths}
	g.targets = func() []string { return []string{runc} }

	g.reconcile(context.Background())
	st := g.statusInfo()
	if len(st.Runc) != 1 || st.Runc[0].State != shim.StateInstalled || st.LastError != "" {
		t.Fatalf("after a blocking policy: %+v, want the shim installed", st)
	}
	settings, err := os.ReadFile(g.paths.Settings)
	if err != nil {
		t.Fatal(err)
	}
	s, err := shimv1.DecodeSettings(settings)
	if err != nil || s.Timeout() != 2*time.Second || len(s.Rules) != 3 || !s.Rules[2].FailClosed {
		t.Errorf("settings = %+v (%v), want the 2 s timeout, Bulwark's own rule and the rules up to the fail-closed one", s, err)
	}
	g.reconcile(context.Background()) // again: nothing to do, no event
	if k := evs.kinds(); len(k) != 1 || k[0] != event.KindShimInstall {
		t.Errorf("events = %q, want one shim.install", k)
	}

	*p = bulwarkv1.Policy{Revision: 8, Policies: map[string]json.RawMessage{policyContainerCompliance: json.RawMessage(`{"rules":[{"name":"alert only"}]}`)}}
	g.reconcile(context.Background())
	if st := g.statusInfo(); st.Runc[0].State != shim.StateNotInstalled || st.Blocking {
		t.Errorf("after a policy without blocking rules: %+v, want the shim removed", st)
	}
	if got, _ := os.ReadFile(runc); !bytes.Equal(got, orig) {
		t.Error("runc is not the original after the shim was removed")
	}
	var actions []string
	for _, ev := range evs.evs {
		var ie event.ShimInstall
		_ = json.Unmarshal(ev.Data, &ie)
		actions = append(actions, fmt.Sprintf("%s %s", ie.Action, ie.Reason))
	}
	if want := []string{"installed blocking rule active", "uninstalled no blocking rule"}; !cmp.Equal(actions, want) {
		t.Errorf("shim.install events = %q, want %q", actions, want)
	}
}

func TestUndeliveredDecisionIsRecordedAsSuch(t *testing.T) {
	g, evs, _ := testGate(t, strictPolicy)
	d, done := g.Decide(context.Background(), request("c1", "registry.local/web:1", true, ""))
	if len(evs.decisions(t)) != 0 {
		t.Error("the decision was recorded before the shim had it")
	}
	done(errors.New("write: broken pipe"))
	ds := evs.decisions(t)
	if len(ds) != 1 || ds[0].Verdict != d.Verdict || !strings.Contains(ds[0].Error, "not delivered: write: broken pipe") {
		t.Errorf("events = %+v, want the decision marked as not delivered", ds)
	}
}

func TestValidateShimConfig(t *testing.T) {
	if c := Default(); c.Shim != ShimAuto || c.ShimTimeout != 60*time.Second {
		t.Errorf("Default() shim = %q, timeout %v; want auto and 60s", c.Shim, c.ShimTimeout)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"manual", func(c *Config) { c.Shim = ShimManual }, ""},
		{"unknown mode", func(c *Config) { c.Shim = "on" }, `shim "on": want auto, manual or off`},
		{"zero timeout", func(c *Config) { c.ShimTimeout = 0 }, "shim timeout 0s"},
		{"timeout over an hour", func(c *Config) { c.ShimTimeout = 2 * time.Hour }, "shim timeout 2h0m0s"},
		{"socket path too long", func(c *Config) { c.ShimDir = "/" + strings.Repeat("d", 120) }, "a unix socket path must be under 108"},
		{"a long path is fine when off", func(c *Config) { c.Shim, c.ShimDir = ShimOff, "/"+strings.Repeat("d", 120) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReconcileReportsAFailureOnce(t *testing.T) {
	runc := runctest.RuncCopy(t)
	orig, _ := os.ReadFile(runc)
	g, evs, p := testGate(t, strictPolicy)
	g.installer = shim.Installer{Shim: filepath.Join(t.TempDir(), "no-such-shim"), Paths: g.paths}
	g.targets = func() []string { return []string{runc} }
	for range 3 {
		g.reconcile(context.Background())
	}
	if k := evs.kinds(); len(k) != 1 {
		t.Fatalf("events after 3 failed installs = %q, want one shim.install with the error", k)
	}
	var ie event.ShimInstall
	_ = json.Unmarshal(evs.evs[0].Data, &ie)
	if ie.Action != "installed" || !strings.Contains(ie.Error, "no-such-shim") {
		t.Errorf("event = %+v, want the failed install and its error", ie)
	}
	if st := g.statusInfo(); !strings.Contains(st.LastError, "no-such-shim") {
		t.Errorf("status error = %q, want the failure", st.LastError)
	}
	// Without a blocking rule, a missing shim binary is no error at all.
	*p = bulwarkv1.Policy{Revision: 8}
	g.reconcile(context.Background())
	if st := g.statusInfo(); st.LastError != "" || len(st.Runc) != 1 || st.Runc[0].State != shim.StateNotInstalled {
		t.Errorf("status without a blocking rule = %+v, want runc not installed and no error", st)
	}
	if got, _ := os.ReadFile(runc); !bytes.Equal(got, orig) {
		t.Error("runc changed")
	}
}
