package rego_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
	"bulwark/internal/rego"
)

func module(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".rego"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// testChecks are the checks of testdata/.
func testChecks(tb testing.TB) []rego.Check {
	tb.Helper()
	return []rego.Check{
		{ID: 9000, Slug: "no-docker-hub", Title: "Images come from our registries", Severity: compliance.SeverityHigh, Module: module(tb, "no-docker-hub")},
		{ID: 9001, Slug: "plaintext-secrets", Title: "No secrets in plain-text environment variables", Severity: compliance.SeverityCritical, Module: module(tb, "plaintext-secrets")},
		{ID: 9002, Slug: "memory-limits", Title: "Containers set a memory limit", Severity: compliance.SeverityMedium, Module: module(tb, "memory-limits")},
	}
}

func compile(tb testing.TB, checks []rego.Check, cfg rego.Config) *rego.Evaluator {
	tb.Helper()
	ev, err := rego.Compile(tb.Context(), checks, cfg)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return ev
}

// deployment is a Deployment's pod template with three containers.
func deployment() compliance.Workload {
	return compliance.Workload{
		Source: compliance.Source{Kind: compliance.SourceManifest, Object: compliance.Object{Kind: "Deployment", Name: "web", Namespace: "shop"}},
		Pod: &compliance.Pod{
			Path: "spec.template.spec",
			Containers: []compliance.Container{
				{Name: "app", Image: "registry.acme.io/shop/web:1.2", Env: []compliance.EnvVar{{Name: "DB_PASSWORD", Value: "hunter2"}, {Name: "API_TOKEN", FromSource: true}},
					Resources: compliance.Resources{Limits: map[string]string{"memory": "256Mi"}}},
				{Name: "proxy", Image: "nginx:1.27", Resources: compliance.Resources{Limits: map[string]string{"memory": "64Mi"}}},
				{Name: "init", Kind: compliance.ContainerInit, Image: "docker.io/library/busybox", Env: []compliance.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}},
			},
		},
	}
}

func TestEvaluate(t *testing.T) {
	ev := compile(t, testChecks(t), rego.Config{})
	docker := compliance.Workload{
		Source: compliance.Source{Kind: compliance.SourceDocker, ID: "abc123", Engine: compliance.EngineDocker},
		Runtime: &compliance.Runtime{
			Name:  "cache",
			Image: compliance.Fact[string]{Value: "redis:7", Key: "Config.Image"},
			Env:   []compliance.RuntimeEnv{{Name: "REDIS_PASSWORD", Value: "s3cret", Key: "Config.Env[0]"}, {Name: "TZ", Value: "UTC", Key: "Config.Env[1]"}},
		},
	}
	clean := compliance.Workload{
		Source: compliance.Source{Kind: compliance.SourceOCI, Engine: compliance.EngineContainerd},
		Runtime: &compliance.Runtime{
			Name:  "ok",
			Image: compliance.Fact[string]{Value: "localhost:5000/ok:1", Key: "annotations"},
		},
	}
	tests := []struct {
		name string
		w    compliance.Workload
		want []compliance.Finding
	}{
		{
			name: "deployment",
			w:    deployment(),
			want: []compliance.Finding{
				{Check: "no-docker-hub", PrismaID: "9000", Severity: "high", Title: "Images come from our registries", Message: "image docker.io/library/busybox comes from Docker Hub",
					Paths: []string{"spec.template.spec.initContainers[0].image"}, Container: "init"},
				{Check: "no-docker-hub", PrismaID: "9000", Severity: "high", Title: "Images come from our registries", Message: "image nginx:1.27 comes from Docker Hub",
					Paths: []string{"spec.template.spec.containers[1].image"}, Container: "proxy"},
				{Check: "plaintext-secrets", PrismaID: "9001", Severity: "critical", Title: "No secrets in plain-text environment variables", Message: "container app sets DB_PASSWORD in plain text"},
				{Check: "memory-limits", PrismaID: "9002", Severity: "medium", Title: "Containers set a memory limit", Message: "container init has no memory limit",
					Paths: []string{"spec.template.spec.initContainers[0].resources.limits.memory"}, Container: "init"},
			},
		},
		{
			name: "docker container",
			w:    docker,
			want: []compliance.Finding{
				{Check: "no-docker-hub", PrismaID: "9000", Severity: "high", Title: "Images come from our registries", Message: "image redis:7 comes from Docker Hub",
					Paths: []string{"Config.Image"}, Container: "cache"},
				{Check: "plaintext-secrets", PrismaID: "9001", Severity: "critical", Title: "No secrets in plain-text environment variables", Message: "REDIS_PASSWORD is set in plain text (Config.Env[0])"},
			},
		},
		{name: "clean", w: clean},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ev.EvaluateContext(t.Context(), tc.w)
			if err != nil {
				t.Fatalf("EvaluateContext: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("EvaluateContext(%s) findings (-want +got):\n%s", tc.name, diff)
			}
			// Evaluate, the compliance.Evaluator method, agrees.
			if diff := cmp.Diff(got, ev.Evaluate(tc.w)); diff != "" {
				t.Errorf("Evaluate and EvaluateContext differ (-ctx +plain):\n%s", diff)
			}
		})
	}
}

// TestEvaluateDoesNotChangeTheWorkload: filling in container paths for the
// input works on a copy.
func TestEvaluateDoesNotChangeTheWorkload(t *testing.T) {
	ev := compile(t, testChecks(t), rego.Config{})
	w := deployment()
	ev.Evaluate(w)
	if diff := cmp.Diff(deployment(), w); diff != "" {
		t.Errorf("Evaluate changed the workload (-before +after):\n%s", diff)
	}
}

func TestDenyShapes(t *testing.T) {
	w := deployment()
	tests := []struct {
		name    string
		deny    string
		want    []compliance.Finding
		wantErr string
	}{
		{
			name: "string",
			deny: `deny contains "plain"`,
			want: []compliance.Finding{{Message: "plain"}},
		},
		{
			name: "object with paths and path",
			deny: `deny contains {"msg": "m", "path": "a", "paths": ["b", "a"], "container": "app", "extra": 1}`,
			want: []compliance.Finding{{Message: "m", Paths: []string{"a", "b"}, Container: "app"}},
		},
		{
			name: "empty message takes the title",
			deny: `deny contains {"msg": "", "path": "x"}`,
			want: []compliance.Finding{{Message: "Shapes", Paths: []string{"x"}}},
		},
		{
			name: "unknown container is reported for the workload",
			deny: `deny contains {"msg": "m", "container": "nope"}`,
			want: []compliance.Finding{{Message: `m (container "nope")`}},
		},
		{name: "empty set", deny: `deny contains "never" if { false }`},
		{name: "rego.v1 import", deny: "import rego.v1\ndeny contains \"v1\"", want: []compliance.Finding{{Message: "v1"}}},
		{name: "number", deny: `deny contains 42`, wantErr: "deny element 0 is a number; want a string or an object with msg"},
		{name: "object without msg", deny: `deny contains {"path": "x"}`, wantErr: "deny element 0: the object has no msg"},
		{name: "msg not a string", deny: `deny contains {"msg": 1}`, wantErr: "deny element 0: msg is a number, not a string"},
		{name: "paths not strings", deny: `deny contains {"msg": "m", "paths": [1]}`, wantErr: "deny element 0: paths has a number, not a string"},
		{
			name:    "run-time conflict",
			deny:    "f(x) := 1 if x\nf(x) := 2 if x\ndeny contains \"m\" if f(true) == 1",
			wantErr: "eval_conflict_error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rego.Check{ID: 9100, Slug: "shapes", Title: "Shapes", Severity: compliance.SeverityLow, Module: "package shapes\n" + tc.deny}
			ev := compile(t, []rego.Check{c}, rego.Config{})
			got, err := ev.EvaluateContext(t.Context(), w)
			if tc.wantErr != "" {
				var ee *rego.EvalError
				if !errors.As(err, &ee) || ee.ID != 9100 || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("EvaluateContext(%s) error = %v, want an *EvalError of check 9100 containing %q", tc.deny, err, tc.wantErr)
				}
				if len(got) != 0 {
					t.Errorf("EvaluateContext(%s) = %v with an error, want no finding", tc.deny, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("EvaluateContext(%s): %v", tc.deny, err)
			}
			for i := range tc.want {
				tc.want[i].Check, tc.want[i].PrismaID, tc.want[i].Severity, tc.want[i].Title = "shapes", "9100", compliance.SeverityLow, "Shapes"
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("EvaluateContext(%s) (-want +got):\n%s", tc.deny, diff)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	valid := rego.Check{ID: 9000, Slug: "ok", Title: "OK", Severity: compliance.SeverityLow, Module: "package ok\ndeny contains \"x\" if false\n"}
	with := func(f func(*rego.Check)) []rego.Check {
		c := valid
		f(&c)
		return []rego.Check{c}
	}
	mod := func(m string) []rego.Check { return with(func(c *rego.Check) { c.Module = m }) }
	tests := []struct {
		name     string
		checks   []rego.Check
		want     []string // substrings of the error
		wantLine int      // of the first problem, for compile errors
	}{
		{
			name:     "parse error",
			checks:   mod("package p\n\ndeny contains msg if {\n\tmsg := 1 +\n}\n"),
			want:     []string{`check 9000 "ok" does not compile`, "line 5, column 1", "rego_parse_error"},
			wantLine: 5,
		},
		{
			name:     "unsafe variable",
			checks:   mod("package p\ndeny contains msg if {\n\tmsg := y\n}\n"),
			want:     []string{"line 3", "rego_unsafe_var_error: var y is unsafe"},
			wantLine: 3,
		},
		{
			name:   "no deny",
			checks: mod("package p\nallow if true\n"),
			want:   []string{"the module defines no deny rule"},
		},
		{
			name:     "deny is a boolean",
			checks:   mod("package p\n\ndeny if input.pod.hostPID\n"),
			want:     []string{"line 3", "deny must be a set"},
			wantLine: 3,
		},
		{
			name:     "deny is an object",
			checks:   mod("package p\ndeny[\"a\"] := 1\n"),
			want:     []string{"line 2", "deny must be a set"},
			wantLine: 2,
		},
		{
			name:     "rego v0 syntax",
			checks:   mod("package p\ndeny[msg] {\n\tmsg := \"x\"\n}\n"),
			want:     []string{"line 2", "`if` keyword is required"},
			wantLine: 2,
		},
		{name: "no package", checks: mod("deny contains 1\n"), want: []string{"rego_parse_error: package expected"}, wantLine: 1},
		{name: "empty module", checks: mod("  \n"), want: []string{"the Rego module is empty"}},
		{name: "id below the range", checks: with(func(c *rego.Check) { c.ID = 515 }), want: []string{"id 515 is outside the custom check range 9000-9999"}},
		{name: "id above the range", checks: with(func(c *rego.Check) { c.ID = 10000 }), want: []string{"id 10000 is outside"}},
		{name: "catalog slug", checks: with(func(c *rego.Check) { c.Slug = "host-pid" }), want: []string{`name "host-pid" is a catalog check's`}},
		{name: "bad slug", checks: with(func(c *rego.Check) { c.Slug = "No Spaces" }), want: []string{`name "No Spaces": use lowercase letters`}},
		{name: "empty slug", checks: with(func(c *rego.Check) { c.Slug = "" }), want: []string{"name is empty"}},
		{name: "severity", checks: with(func(c *rego.Check) { c.Severity = "urgent" }), want: []string{`severity "urgent" is not critical, high, medium, low or info`}},
		{name: "title", checks: with(func(c *rego.Check) { c.Title = " " }), want: []string{"title is empty"}},
		{name: "module too large", checks: mod("package p\n" + strings.Repeat("#", rego.MaxModuleBytes)), want: []string{"larger than 65536 bytes"}},
		{name: "duplicate id", checks: append(mod(valid.Module), rego.Check{ID: 9000, Slug: "other", Title: "T", Severity: "low", Module: valid.Module}), want: []string{"another check has id 9000"}},
		{name: "duplicate slug", checks: append(mod(valid.Module), rego.Check{ID: 9001, Slug: "ok", Title: "T", Severity: "low", Module: valid.Module}), want: []string{`another check is named "ok"`}},
		{
			name: "every bad check is named",
			checks: []rego.Check{
				{ID: 9001, Slug: "a", Title: "A", Severity: "low", Module: "package a\ndeny contains x if { x := }\n"},
				{ID: 9002, Slug: "b", Title: "B", Severity: "low", Module: "package b\n"},
			},
			want: []string{`check 9001 "a" does not compile`, `check 9002 "b" does not compile`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := rego.Compile(t.Context(), tc.checks, rego.Config{})
			if err == nil {
				t.Fatalf("Compile(%s) = %v, want an error", tc.name, ev)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Compile(%s) error = %q, want it to contain %q", tc.name, err, w)
				}
			}
			var ce *rego.CompileError
			if tc.wantLine > 0 {
				if !errors.As(err, &ce) || len(ce.Problems) == 0 || ce.Problems[0].Line != tc.wantLine {
					t.Errorf("Compile(%s) = %#v, want a *CompileError whose first problem is on line %d", tc.name, err, tc.wantLine)
				}
			}
		})
	}
}

func TestForbiddenBuiltins(t *testing.T) {
	calls := map[string]string{
		"http.send":          `x := http.send({"method": "get", "url": "http://127.0.0.1:1/"})`,
		"net.lookup_ip_addr": `x := net.lookup_ip_addr("example.com")`,
		"opa.runtime":        `x := opa.runtime().env`,
		"rand.intn":          `x := rand.intn("a", 10)`,
		"uuid.rfc4122":       `x := uuid.rfc4122("a")`,
		"time.now_ns":        `x := time.now_ns()`,
		"io.jwt.encode_sign": `x := io.jwt.encode_sign({"alg": "HS256"}, {}, {"kty": "oct", "k": "AA"})`,
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			c := rego.Check{ID: 9000, Slug: "bad", Title: "Bad", Severity: "low", Module: "package bad\n\ndeny contains \"m\" if {\n\t" + call + "\n\tx\n}\n"}
			_, err := rego.Compile(t.Context(), []rego.Check{c}, rego.Config{})
			var ce *rego.CompileError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "unsafe built-in function calls in expression: "+name) || ce.Problems[0].Line != 4 {
				t.Errorf("Compile(module calling %s) error = %v, want a compile error on line 4 refusing %s", name, err, name)
			}
		})
	}
	// Pure built-ins stay allowed, net.cidr_contains among them.
	pure := rego.Check{ID: 9000, Slug: "pure", Title: "Pure", Severity: "low",
		Module: "package pure\ndeny contains c.name if {\n\tsome c in input.pod.containers\n\tsome p in c.ports\n\tnet.cidr_contains(\"10.0.0.0/8\", p.hostIP)\n}\n"}
	ev := compile(t, []rego.Check{pure}, rego.Config{})
	w := compliance.Workload{Source: compliance.Source{Kind: compliance.SourceManifest}, Pod: &compliance.Pod{Containers: []compliance.Container{
		{Name: "a", Ports: []compliance.ContainerPort{{ContainerPort: 80, HostPort: 80, HostIP: "10.1.2.3"}}},
		{Name: "b", Ports: []compliance.ContainerPort{{ContainerPort: 80, HostPort: 80, HostIP: "192.168.0.1"}}},
	}}}
	got, err := ev.EvaluateContext(t.Context(), w)
	if err != nil || len(got) != 1 || got[0].Message != "a" {
		t.Errorf("EvaluateContext(net.cidr_contains check) = %v, %v; want one finding for container a", got, err)
	}
}

// slow never finishes within a test's patience: it walks a billion numbers.
const slow = "package slow\ndeny contains \"never\" if {\n\tsome i in numbers.range(1, 1000000000)\n\ti < 0\n}\n"

func TestTimeout(t *testing.T) {
	var logs bytes.Buffer
	checks := []rego.Check{
		{ID: 9000, Slug: "fast", Title: "Fast", Severity: "low", Module: "package fast\ndeny contains \"found\"\n"},
		{ID: 9001, Slug: "slow", Title: "Slow", Severity: "low", Module: slow},
	}
	ev := compile(t, checks, rego.Config{Timeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	start := time.Now()
	got, err := ev.EvaluateContext(t.Context(), deployment())
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("EvaluateContext took %s with a 50ms timeout", took)
	}
	var ee *rego.EvalError
	if !errors.As(err, &ee) || ee.ID != 9001 || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Errorf("EvaluateContext(slow check) error = %v, want an *EvalError of check 9001 that timed out", err)
	}
	if len(got) != 1 || got[0].Check != "fast" {
		t.Errorf("EvaluateContext(fast, slow) = %v, want the fast check's finding", got)
	}

	// Evaluate cannot return the error: it logs it and returns what it has.
	got = ev.Evaluate(deployment())
	if len(got) != 1 || got[0].Check != "fast" {
		t.Errorf("Evaluate(fast, slow) = %v, want the fast check's finding", got)
	}
	if !strings.Contains(logs.String(), "timed out") || !strings.Contains(logs.String(), `check 9001 \"slow\"`) {
		t.Errorf("Evaluate logged %q, want the timeout of check 9001", logs.String())
	}

	// A caller's cancelled context stops evaluation too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ev.EvaluateContext(ctx, deployment()); !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "timed out") {
		t.Errorf("EvaluateContext(cancelled context) error = %v, want context.Canceled, not a timeout", err)
	}
}

func TestApplyWithCustomRule(t *testing.T) {
	ev := compile(t, testChecks(t), rego.Config{})
	opts := compliance.Options{Evaluators: []compliance.Evaluator{ev}, Custom: ev.Checks()}
	doc := `{"rules":[
		{"name":"block hub images","collections":[{"name":"shop","namespaces":["shop"]}],
		 "condition":{"vulnerabilities":[{"id":9000,"block":true},{"id":9001}]}},
		{"name":"default"}]}`
	p, err := compliance.ParsePolicy([]byte(doc), opts.Custom...)
	if err != nil {
		t.Fatalf("ParsePolicy(rule naming 9000 and 9001): %v", err)
	}
	if _, err := compliance.ParsePolicy([]byte(doc)); err == nil {
		t.Errorf("ParsePolicy(rule naming 9000) without the custom checks succeeded, want an error")
	}
	got := compliance.Apply(p.Rules, deployment(), opts)
	type decided struct {
		Check, PrismaID, Container string
		Effect                     compliance.Effect
	}
	var gotD []decided
	for _, f := range got {
		if f.PrismaID == "9000" || f.PrismaID == "9001" || f.PrismaID == "9002" {
			gotD = append(gotD, decided{f.Check, f.PrismaID, f.Container, f.Effect})
		}
	}
	want := []decided{
		{"no-docker-hub", "9000", "init", compliance.EffectBlock},
		{"no-docker-hub", "9000", "proxy", compliance.EffectBlock},
		{"plaintext-secrets", "9001", "", compliance.EffectAlert},
		// memory-limits (9002) is not in the condition: ignored.
	}
	if diff := cmp.Diff(want, gotD); diff != "" {
		t.Errorf("Apply(rule naming 9000 to block, 9001 to alert) custom findings (-want +got):\n%s", diff)
	}

	// Outside the rule's collection, the default rule keeps each check's
	// default effect: alert on critical (9001) and high (9000).
	w := deployment()
	w.Source.Object.Namespace = "other"
	var effects []string
	for _, f := range compliance.Apply(p.Rules, w, opts) {
		if strings.HasPrefix(f.PrismaID, "900") {
			effects = append(effects, f.PrismaID+":"+string(f.Effect))
		}
	}
	if diff := cmp.Diff([]string{"9000:alert", "9000:alert", "9001:alert"}, effects); diff != "" {
		t.Errorf("Apply(default rule) custom findings (-want +got):\n%s", diff)
	}
}

func TestChecks(t *testing.T) {
	ev := compile(t, testChecks(t)[:1], rego.Config{})
	want := []compliance.Check{{
		Slug: "no-docker-hub", DockerID: "9000", CRIID: "9000", Severity: compliance.SeverityHigh, Title: "Images come from our registries",
		AppliesTo: []compliance.Scope{compliance.ScopeManifest, compliance.ScopeRuntime, compliance.ScopeImage},
	}}
	if diff := cmp.Diff(want, ev.Checks(), cmp.AllowUnexported(compliance.Check{})); diff != "" {
		t.Errorf("Checks() (-want +got):\n%s", diff)
	}
}

func FuzzCompile(f *testing.F) {
	for _, name := range []string{"no-docker-hub", "plaintext-secrets", "memory-limits"} {
		f.Add(module(f, name))
	}
	f.Add("package p\ndeny contains x if { x := input.pod.containers[_].name }\n")
	f.Add("package p\ndeny contains {\"msg\": m, \"path\": 1} if { m := \"a\" }\n")
	f.Add("package p\nimport rego.v1\ndeny contains 1 if { some i in numbers.range(1, 100000); i > 99999 }\n")
	f.Add("package p\ndeny if true\n")
	f.Add("package p\nf(x) := 1 if x\nf(x) := 2 if x\ndeny contains \"m\" if f(true) == 1\n")
	f.Add("package p\ndeny contains x if { x := http.send({}) }\n")
	f.Add("package a.b[\"c\"]\ndeny contains [[[[[[[[1]]]]]]]]\n")
	f.Add("")
	w := deployment()
	f.Fuzz(func(t *testing.T, mod string) {
		c := rego.Check{ID: 9000, Slug: "fuzz", Title: "Fuzz", Severity: "low", Module: mod}
		ev, err := rego.Compile(t.Context(), []rego.Check{c}, rego.Config{Timeout: 20 * time.Millisecond})
		if err != nil {
			if err.Error() == "" {
				t.Errorf("Compile(%q) returned an empty error", mod)
			}
			return
		}
		fs, err := ev.EvaluateContext(t.Context(), w)
		for _, f := range fs {
			if f.Check != "fuzz" || f.PrismaID != "9000" || f.Message == "" {
				t.Errorf("EvaluateContext(%q) finding %+v lacks the check's identity or a message", mod, f)
			}
		}
		if err != nil && len(fs) > 0 {
			t.Errorf("EvaluateContext(%q) = %v and error %v, want no finding with an error", mod, fs, err)
		}
	})
}

// BenchmarkEvaluate measures one workload (a Deployment with three
// containers): the catalog alone for reference, then with one and with the
// three checks of testdata/ as Evaluators.
func BenchmarkEvaluate(b *testing.B) {
	w := deployment()
	checks := testChecks(b)
	b.Run("catalog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			compliance.Evaluate(w, compliance.Options{})
		}
	})
	for _, n := range []int{1, 3} {
		ev := compile(b, checks[:n], rego.Config{})
		opts := compliance.Options{Evaluators: []compliance.Evaluator{ev}, Custom: ev.Checks()}
		b.Run(fmt.Sprintf("catalog+%d rego", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				compliance.Evaluate(w, opts)
			}
		})
	}
}
