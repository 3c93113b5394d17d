package shimv1_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/api/shimv1"
	"bulwark/internal/compliance"
)

func TestDefaultTimeoutIsSixtySeconds(t *testing.T) {
	if shimv1.DefaultTimeout != 60*time.Second {
		t.Errorf("DefaultTimeout = %v, want 60s", shimv1.DefaultTimeout)
	}
	for _, tc := range []struct {
		ms   int64
		want time.Duration
	}{{0, 60 * time.Second}, {-5, 60 * time.Second}, {2000, 2 * time.Second}, {1, time.Millisecond}} {
		if got := (shimv1.Settings{TimeoutMS: tc.ms}).Timeout(); got != tc.want {
			t.Errorf("Settings{TimeoutMS: %d}.Timeout() = %v, want %v", tc.ms, got, tc.want)
		}
	}
}

func TestDecides(t *testing.T) {
	for _, tc := range []struct {
		sub  string
		want bool
	}{{"create", true}, {"run", true}, {"restore", true}, {"start", false}, {"state", false}, {"exec", false}, {"", false}, {"Create", false}} {
		if got := shimv1.Decides(tc.sub); got != tc.want {
			t.Errorf("Decides(%q) = %v, want %v", tc.sub, got, tc.want)
		}
	}
}

func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		verdict string
		want    bool
	}{
		{shimv1.VerdictAllowed, true}, {shimv1.VerdictFailOpenTimeout, true}, {shimv1.VerdictFailOpenUnreachable, true},
		{shimv1.VerdictFailOpenError, true}, {shimv1.VerdictBlocked, false}, {shimv1.VerdictFailClosedTimeout, false},
		{shimv1.VerdictFailClosedUnreachable, false}, {shimv1.VerdictFailClosedError, false}, {"", false}, {"bogus", false},
	} {
		if got := shimv1.Allows(tc.verdict); got != tc.want {
			t.Errorf("Allows(%q) = %v, want %v", tc.verdict, got, tc.want)
		}
	}
}

func TestContainerFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want shimv1.Container
	}{
		{"none", nil, shimv1.Container{ID: "c1"}},
		{"containerd CRI", map[string]string{
			"io.kubernetes.cri.container-name": "web", "io.kubernetes.cri.image-name": "nginx:1.27",
			"io.kubernetes.cri.sandbox-name": "web-0", "io.kubernetes.cri.sandbox-namespace": "prod",
		}, shimv1.Container{ID: "c1", Name: "web", Image: "nginx:1.27", Pod: "web-0", Namespace: "prod"}},
		{"CRI-O", map[string]string{
			"io.kubernetes.container.name": "db", "io.kubernetes.cri-o.ImageName": "postgres:17",
			"io.kubernetes.pod.name": "db-0", "io.kubernetes.pod.namespace": "data",
		}, shimv1.Container{ID: "c1", Name: "db", Image: "postgres:17", Pod: "db-0", Namespace: "data"}},
		{"bulwark image wins over ref.name", map[string]string{
			"io.bulwark.image": "registry.local/web:1.2", "org.opencontainers.image.ref.name": "1.2",
		}, shimv1.Container{ID: "c1", Image: "registry.local/web:1.2"}},
		{"empty values are skipped", map[string]string{
			"io.kubernetes.cri.image-name": "", "org.opencontainers.image.ref.name": "latest",
		}, shimv1.Container{ID: "c1", Image: "latest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, shimv1.ContainerFrom("c1", tc.ann)); diff != "" {
				t.Errorf("ContainerFrom mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFailClosed(t *testing.T) {
	s := shimv1.Settings{
		V: 1, Host: "node-1", Cluster: "prod-eu",
		Rules: []shimv1.Rule{
			{Name: "ignore bulwark", Collections: []shimv1.Collection{{Images: []string{"*bulwark*"}}}},
			{Name: "prod strict", FailClosed: true, Collections: []shimv1.Collection{{Namespaces: []string{"prod*"}}, {Containers: []string{"db"}}}},
			{Name: "labelled", FailClosed: true, Collections: []shimv1.Collection{{Labels: []string{"team:x"}}}},
			{Name: "other hosts", FailClosed: true, Collections: []shimv1.Collection{{Hosts: []string{"node-2"}}}},
			{Name: "everything"},
		},
	}
	for _, tc := range []struct {
		name       string
		c          shimv1.Container
		wantRule   string
		wantClosed bool
	}{
		{"first rule wins", shimv1.Container{ID: "1", Image: "bulwark/defender:1", Namespace: "prod"}, "ignore bulwark", false},
		{"namespace glob", shimv1.Container{ID: "1", Image: "nginx", Namespace: "prod-eu"}, "prod strict", true},
		{"second collection", shimv1.Container{ID: "1", Name: "db"}, "prod strict", true},
		{"labels are unknown to the shim", shimv1.Container{ID: "1", Namespace: "dev"}, "everything", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule, closed := s.FailClosed(tc.c)
			if rule != tc.wantRule || closed != tc.wantClosed {
				t.Errorf("FailClosed(%+v) = %q, %v; want %q, %v", tc.c, rule, closed, tc.wantRule, tc.wantClosed)
			}
		})
	}
	if rule, closed := (shimv1.Settings{}).FailClosed(shimv1.Container{ID: "x"}); rule != "" || closed {
		t.Errorf("empty Settings: FailClosed = %q, %v; want no rule, open", rule, closed)
	}
}

// TestFailClosedAgreesWithCompliance: the shim decides which rule applies
// as the compliance engine does, for containers whose facts both know.
func TestFailClosedAgreesWithCompliance(t *testing.T) {
	rules := []compliance.Rule{
		{Name: "a", Collections: []compliance.Collection{{Name: "x", Images: []string{"nginx*"}, Namespaces: []string{"prod"}}}},
		{Name: "b", Disabled: true, FailClosed: true},
		{Name: "c", FailClosed: true, Collections: []compliance.Collection{{Name: "y", Containers: []string{"web?"}}, {Name: "z", Hosts: []string{"h*"}, Clusters: []string{"eu"}}}},
		{Name: "d", Collections: []compliance.Collection{{Name: "l", Labels: []string{"*"}}}},
	}
	var srules []shimv1.Rule
	for _, r := range rules {
		if r.Disabled {
			continue
		}
		sr := shimv1.Rule{Name: r.Name, FailClosed: r.FailClosed}
		for _, c := range r.Collections {
			sr.Collections = append(sr.Collections, shimv1.Collection{Images: c.Images, Containers: c.Containers, Hosts: c.Hosts, Labels: c.Labels, Namespaces: c.Namespaces, Clusters: c.Clusters})
		}
		srules = append(srules, sr)
	}
	for _, host := range []string{"h1", "x"} {
		for _, cluster := range []string{"eu", "us"} {
			s := shimv1.Settings{Host: host, Cluster: cluster, Rules: srules}
			for _, c := range []shimv1.Container{
				{ID: "1", Image: "nginx:1", Namespace: "prod"}, {ID: "2", Image: "nginx:1", Namespace: "dev"},
				{ID: "3", Name: "web1"}, {ID: "4", Name: "web12"}, {ID: "5"},
			} {
				want, ok := compliance.Decide(rules, compliance.Resource{Image: c.Image, Container: c.Name, Host: host, Namespace: c.Namespace, Cluster: cluster})
				rule, closed := s.FailClosed(c)
				if !ok {
					want = compliance.Rule{}
				}
				if rule != want.Name || closed != want.FailClosed {
					t.Errorf("host %s cluster %s: FailClosed(%+v) = %q, %v; compliance.Decide says %q, %v", host, cluster, c, rule, closed, want.Name, want.FailClosed)
				}
			}
		}
	}
}

func FuzzGlobAgreesWithCompliance(f *testing.F) {
	for _, s := range [][2]string{{"*", ""}, {"a*b", "axxb"}, {"?", "é"}, {"*bulwark*", "x/bulwark/y"}, {"a**", "a"}, {"*a*a*a", "aaaaab"}, {"", ""}, {"x", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if got, want := shimv1.Glob(pattern, s), compliance.Glob(pattern, s); got != want {
			t.Errorf("Glob(%q, %q) = %v, compliance.Glob says %v", pattern, s, got, want)
		}
	})
}

func validRequest() shimv1.Request {
	return shimv1.Request{V: 1, Command: "create", ID: "c1", Bundle: "/b", Config: json.RawMessage(`{"ociVersion":"1.0.2"}`)}
}

func TestDecodeRequest(t *testing.T) {
	good, _ := json.Marshal(validRequest())
	if r, err := shimv1.DecodeRequest(good); err != nil || r.ID != "c1" || string(r.Config) != `{"ociVersion":"1.0.2"}` {
		t.Fatalf("DecodeRequest(%s) = %+v, %v; want the request", good, r, err)
	}
	mutate := func(f func(*shimv1.Request)) []byte {
		r := validRequest()
		f(&r)
		b, _ := json.Marshal(r)
		return b
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not JSON", `{`, "unexpected EOF"},
		{"trailing data", string(good) + `{}`, "data after"},
		{"version", string(mutate(func(r *shimv1.Request) { r.V = 2 })), "version 2"},
		{"command", string(mutate(func(r *shimv1.Request) { r.Command = "start" })), `command "start"`},
		{"id", string(mutate(func(r *shimv1.Request) { r.ID = "" })), "container id"},
		{"long id", string(mutate(func(r *shimv1.Request) { r.ID = strings.Repeat("x", 1025) })), "container id"},
		{"bundle", string(mutate(func(r *shimv1.Request) { r.Bundle = "" })), "bundle empty"},
		{"config array", string(mutate(func(r *shimv1.Request) { r.Config = json.RawMessage(`[1]`) })), "config is not a JSON object"},
		{"config missing", `{"v":1,"command":"run","id":"x","bundle":"/b"}`, "config is not a JSON object"},
		{"too large", `{"v":1,"pad":"` + strings.Repeat("x", shimv1.MaxRequestBytes) + `"}`, "over the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := shimv1.DecodeRequest([]byte(tc.in))
			if !errors.Is(err, shimv1.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeRequest(%.60q) = %v, want ErrInvalid mentioning %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestDecodeDecision(t *testing.T) {
	d, err := shimv1.DecodeDecision([]byte(`{"v":1,"verdict":"blocked","rule":"r","message":"bulwark: blocked","extra":1}`))
	if err != nil || d.Allowed() || d.Rule != "r" {
		t.Fatalf("DecodeDecision(blocked) = %+v, %v; want a refusal by rule r (unknown fields are fine)", d, err)
	}
	for _, in := range []string{``, `null`, `{"v":1,"verdict":"maybe"}`, `{"v":0,"verdict":"allowed"}`, `{"v":1,"verdict":"allowed"} x`} {
		if _, err := shimv1.DecodeDecision([]byte(in)); !errors.Is(err, shimv1.ErrInvalid) {
			t.Errorf("DecodeDecision(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestDecodeFiles(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	m, err := shimv1.DecodeManifest([]byte(`{"v":1,"path":"/usr/sbin/runc","original":"/usr/sbin/runc.bulwark-orig","sha256":"` + sha + `","mode":493}`))
	if err != nil || m.Mode != 0o755 {
		t.Fatalf("DecodeManifest = %+v, %v", m, err)
	}
	s, err := shimv1.DecodeSettings([]byte(`{"v":1,"timeoutMs":2000,"rules":[{"name":"r","failClosed":true}]}`))
	if err != nil || s.Timeout() != 2*time.Second || len(s.Rules) != 1 {
		t.Fatalf("DecodeSettings = %+v, %v", s, err)
	}
	a, err := shimv1.DecodeAudit([]byte(`{"v":1,"time":"2026-01-02T03:04:05Z","verdict":"fail-open-timeout","command":"create","container":{"id":"c"},"elapsedMs":2001}`))
	if err != nil || a.ElapsedMS != 2001 {
		t.Fatalf("DecodeAudit = %+v, %v", a, err)
	}
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		in     string
	}{
		{"manifest version", func(b []byte) error { _, err := shimv1.DecodeManifest(b); return err }, `{"v":2,"path":"/a","original":"/b","sha256":"` + sha + `"}`},
		{"manifest paths", func(b []byte) error { _, err := shimv1.DecodeManifest(b); return err }, `{"v":1,"sha256":"` + sha + `"}`},
		{"manifest sha", func(b []byte) error { _, err := shimv1.DecodeManifest(b); return err }, `{"v":1,"path":"/a","original":"/b","sha256":"x"}`},
		{"settings timeout", func(b []byte) error { _, err := shimv1.DecodeSettings(b); return err }, `{"v":1,"timeoutMs":-1}`},
		{"settings type", func(b []byte) error { _, err := shimv1.DecodeSettings(b); return err }, `{"v":1,"rules":{}}`},
		{"audit verdict", func(b []byte) error { _, err := shimv1.DecodeAudit(b); return err }, `{"v":1,"verdict":"ok","container":{"id":"c"}}`},
		{"audit container", func(b []byte) error { _, err := shimv1.DecodeAudit(b); return err }, `{"v":1,"verdict":"allowed","container":{}}`},
		{"audit too large", func(b []byte) error { _, err := shimv1.DecodeAudit(b); return err }, `{"v":1,"error":"` + strings.Repeat("x", shimv1.MaxFileBytes) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode([]byte(tc.in)); !errors.Is(err, shimv1.ErrInvalid) {
				t.Errorf("decode(%.60q) = %v, want ErrInvalid", tc.in, err)
			}
		})
	}
}

// FuzzDecode feeds the same bytes to every decoder: none may panic, and
// whatever one accepts must encode and decode again to the same value.
func FuzzDecode(f *testing.F) {
	good, _ := json.Marshal(validRequest())
	for _, s := range []string{
		string(good), `{"v":1,"verdict":"blocked","rule":"r","message":"m"}`,
		`{"v":1,"path":"/a","original":"/b","sha256":"` + strings.Repeat("0", 64) + `"}`,
		`{"v":1,"timeoutMs":5,"host":"h","rules":[{"name":"r","failClosed":true,"collections":[{"images":["*"]}]}]}`,
		`{"v":1,"time":"2026-01-02T03:04:05Z","verdict":"fail-open-error","container":{"id":"c","image":"i"},"elapsedMs":3}`,
		`{"v":1,"command":"run","id":"x","bundle":"/b","config":{}} `, `[]`, `"x"`, `{"v":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := shimv1.DecodeRequest(b); err == nil {
			again, _ := json.Marshal(r)
			if _, err := shimv1.DecodeRequest(again); err != nil {
				t.Errorf("DecodeRequest accepted %q but not its re-encoding %s: %v", b, again, err)
			}
		}
		if d, err := shimv1.DecodeDecision(b); err == nil {
			again, _ := json.Marshal(d)
			if d2, err := shimv1.DecodeDecision(again); err != nil || d2 != d {
				t.Errorf("DecodeDecision round trip of %q: %+v, %v", b, d2, err)
			}
		}
		if s, err := shimv1.DecodeSettings(b); err == nil && s.Timeout() <= 0 {
			t.Errorf("DecodeSettings(%q) accepted timeout %v", b, s.Timeout())
		}
		if a, err := shimv1.DecodeAudit(b); err == nil && (a.Container.ID == "" || a.Verdict == "") {
			t.Errorf("DecodeAudit(%q) accepted %+v", b, a)
		}
		_, _ = shimv1.DecodeManifest(b)
	})
}
