package console_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/api"
	"bulwark/internal/compliance"
	"bulwark/internal/console/consoletest"
	"bulwark/internal/defender"
	"bulwark/internal/event"
)

func TestCompliancePolicies(t *testing.T) {
	c := consoletest.Start(t)
	d, _ := startDefender(t, bundle(t, c, "policy-reader"))
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["policy-reader"].Connected })

	getPolicy := func(t *testing.T, path string) compliance.Policy {
		t.Helper()
		r := mustStatus(t, c, admin(call{method: "GET", path: path}), 200)
		var p compliance.Policy
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("GET %s: %s: %v", path, r.body, err)
		}
		return p
	}
	const containerPath, hostPath = "/api/v1/policies/compliance/container", "/api/v1/policies/compliance/host"

	t.Run("built-in before any PUT", func(t *testing.T) {
		for path, typ := range map[string]string{containerPath: compliance.PolicyTypeContainer, hostPath: compliance.PolicyTypeHost} {
			got := getPolicy(t, path)
			if diff := cmp.Diff(compliance.DefaultPolicy(typ), got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s", path, diff)
			}
			if got.ID != typ || got.PolicyType != typ || len(got.Rules) == 0 || got.Rules[0].Name != compliance.RuleIgnoreBulwark {
				t.Errorf("GET %s = _id %q, policyType %q, rules %v; want %s and the rule %q first", path, got.ID, got.PolicyType, got.Rules, typ, compliance.RuleIgnoreBulwark)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name, path, body, want string
		}{
			{"bad effect", containerPath, `{"rules":[{"name":"a"},{"name":"b","effect":"deny"}]}`, `rules[1].effect: "deny" is not ignore, alert or block`},
			{"unknown check", containerPath, `{"rules":[{"name":"a","checks":{"no-such-check":"alert"}}]}`, `rules[0].checks: no check "no-such-check"`},
			{"unknown Prisma ID", hostPath, `{"rules":[{"name":"a","condition":{"vulnerabilities":[{"id":99999}]}}]}`, `rules[0].condition.vulnerabilities[0]: id 99999`},
			{"duplicate names", hostPath, `{"rules":[{"name":"a"},{"name":"a"}]}`, `rules[1]: a rule named "a" comes earlier`},
			{"unknown field", containerPath, `{"rules":[{"name":"a","efect":"alert"}]}`, `unknown field "efect"`},
			{"no rules", containerPath, `{"policyType":"containerCompliance"}`, `"rules" array is missing`},
			{"other policy type", containerPath, `{"policyType":"hostCompliance","rules":[]}`, `policyType "hostCompliance" does not belong at /api/v1/policies/compliance/container`},
			{"other _id", hostPath, `{"_id":"containerCompliance","rules":[]}`, `_id "containerCompliance" does not belong`},
			{"not JSON", hostPath, `{"rules":`, "malformed JSON"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := mustStatus(t, c, admin(call{method: "PUT", path: tc.path, body: tc.body}), 400)
				if msg := r.errMsg(t); !strings.Contains(msg, tc.want) {
					t.Errorf("PUT %s %s: err = %q, want it to contain %q", tc.path, tc.body, msg, tc.want)
				}
			})
		}
		// Nothing was stored or pushed.
		if got := getPolicy(t, containerPath); got.Rules[0].Name != compliance.RuleIgnoreBulwark {
			t.Errorf("policy after refused PUTs = %+v, want the built-in one", got)
		}
	})

	t.Run("stored, audited and pushed", func(t *testing.T) {
		// A Prisma client's policy: no _id, checks by Prisma ID.
		body := `{"policyType":"containerCompliance","rules":[
			{"name":"` + compliance.RuleIgnoreBulwark + `","collections":[{"name":"Bulwark","images":["*bulwark-defender*"]}],"effect":"ignore"},
			{"name":"prod","collections":[{"name":"prod","namespaces":["prod"]}],"condition":{"vulnerabilities":[{"id":5515,"block":true},{"id":54},{"check":"caps-drop-all"}]}}]}`
		r := mustStatus(t, c, admin(call{method: "PUT", path: containerPath, body: body}), 200)
		var rev struct{ Revision int64 }
		if err := json.Unmarshal(r.body, &rev); err != nil || rev.Revision < 1 {
			t.Fatalf("PUT %s = %s, want a revision", containerPath, r.body)
		}
		got := getPolicy(t, containerPath)
		want := compliance.Policy{ID: compliance.PolicyTypeContainer, PolicyType: compliance.PolicyTypeContainer, Rules: []compliance.Rule{
			{Name: compliance.RuleIgnoreBulwark, Collections: []compliance.Collection{{Name: "Bulwark", Images: []string{"*bulwark-defender*"}}}, Effect: compliance.EffectIgnore},
			{Name: "prod", Collections: []compliance.Collection{{Name: "prod", Namespaces: []string{"prod"}}}, Condition: &compliance.Condition{Checks: []compliance.CheckRef{
				{ID: 5515, Block: true}, {ID: 54}, {Check: "caps-drop-all"},
			}}},
		}}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("GET %s after PUT (-want +got):\n%s", containerPath, diff)
		}
		waitFor(t, "the policy to reach the defender", 5*time.Second, func() bool { return d.PolicyRevision() == rev.Revision })
		// The host policy is still the built-in one.
		if got := getPolicy(t, hostPath); got.PolicyType != compliance.PolicyTypeHost || got.Rules[0].Name != compliance.RuleIgnoreBulwark {
			t.Errorf("GET %s = %+v, want the built-in host policy", hostPath, got)
		}
		r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/mgmt?type=policies"}), 200)
		if !strings.Contains(string(r.body), `replaced compliance/container policy (revision `) || !strings.Contains(string(r.body), `2 rules: \"`+compliance.RuleIgnoreBulwark+`\", \"prod\"`) {
			t.Errorf("policy audits = %s, want the compliance policy change with its rules", r.body)
		}
		// An empty policy is allowed (nothing is evaluated) and a host PUT
		// may name its _id.
		mustStatus(t, c, admin(call{method: "PUT", path: hostPath, body: `{"_id":"hostCompliance","rules":[]}`}), 200)
		if got := getPolicy(t, hostPath); got.ID != compliance.PolicyTypeHost || len(got.Rules) != 0 {
			t.Errorf("GET %s after an empty PUT = %+v", hostPath, got)
		}
	})

	t.Run("the generic route keeps the other types", func(t *testing.T) {
		mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/runtime/container", body: `{"rules":[{"name":"r1","effect":"alert"}]}`}), 200)
		r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/policies/runtime/container"}), 200)
		if !strings.Contains(string(r.body), `"effect":"alert"`) {
			t.Errorf("GET runtime policy = %s", r.body)
		}
		mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/nonsense", body: `{"rules":[]}`}), 400)
	})
}

// Container IDs of the explorer test.
const (
	cmplWeb  = "c0ffee000001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	cmplAPI  = "c0ffee000002bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	cmplWeb2 = "d00d00000003cccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// catalogFinding is a failed catalog check as a Defender reports it.
func catalogFinding(t testing.TB, slug string, cri bool, effect compliance.Effect) compliance.Finding {
	t.Helper()
	c, ok := compliance.Lookup(slug)
	if !ok {
		t.Fatalf("no check %q in the catalog", slug)
	}
	return compliance.Finding{
		Check: slug, PrismaID: c.PrismaID(cri), Severity: c.Severity, Title: c.Title,
		Message: slug + " found", Paths: []string{"linux.namespaces"}, Effect: effect,
	}
}

// emitCompliance has the Defender report a container's (ctr set) or a
// host's evaluation.
func emitCompliance(t testing.TB, d *defender.Defender, at time.Time, host string, ctr *event.Container, fs ...compliance.Finding) {
	t.Helper()
	kind := event.KindComplianceHost
	if ctr != nil {
		kind = event.KindComplianceContainer
	}
	data, err := json.Marshal(event.Compliance{Trigger: "start", PolicyRevision: 0, Host: host, Container: ctr, Findings: append([]compliance.Finding{}, fs...)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Emit(kind, at, data); err != nil {
		t.Fatalf("Emit: %v", err)
	}
}

func getJSON[T any](t testing.TB, c *consoletest.Console, path string) (T, string) {
	t.Helper()
	var v T
	next := getInto(t, c, path, &v)
	return v, next
}

// getInto decodes the JSON of a GET that must answer 200 into v and returns
// its X-Bulwark-Next header.
func getInto(t testing.TB, c *consoletest.Console, path string, v any) string {
	t.Helper()
	r := mustStatus(t, c, admin(call{method: "GET", path: path}), 200)
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("GET %s: %s: %v", path, r.body, err)
	}
	return r.header.Get("X-Bulwark-Next")
}

// TestComplianceExplorer feeds compliance events through real Defenders and
// the channel and reads the explorer. Every query names the test's hosts
// (cmpl-*), so that results a Defender reports about the machine the test
// runs on do not count.
func TestComplianceExplorer(t *testing.T) {
	c := consoletest.Start(t)
	one, _ := startDefender(t, bundle(t, c, "cmpl-one"))
	two, _ := startDefender(t, bundle(t, c, "cmpl-two"))
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)

	web := &event.Container{ID: cmplWeb, Name: "web", Image: "nginx:1.27", Pod: "web-0", Namespace: "prod", Runtime: "containerd"}
	apiCtr := &event.Container{ID: cmplAPI, Name: "api", Image: "api:2", Namespace: "prod", Runtime: "containerd"}
	web2 := &event.Container{ID: cmplWeb2, Name: "web", Image: "nginx:1.27", Namespace: "dev", Runtime: "docker"}
	pidCRI := catalogFinding(t, "host-pid", true, compliance.EffectBlock)
	privileged := catalogFinding(t, "privileged", true, compliance.EffectAlert)
	pidDocker := catalogFinding(t, "host-pid", false, compliance.EffectAlert)
	kubelet := catalogFinding(t, "kubelet-anon-auth", true, compliance.EffectAlert)

	emitCompliance(t, one, t0, "cmpl-a", web, pidCRI, privileged)
	emitCompliance(t, one, t0, "cmpl-a", apiCtr, pidCRI)
	emitCompliance(t, one, t0.Add(time.Second), "cmpl-a", nil, kubelet)
	emitCompliance(t, two, t0.Add(2*time.Second), "cmpl-b", web2, pidDocker)
	emitCompliance(t, two, t0.Add(2*time.Second), "cmpl-b", nil)

	const stats = "/api/v1/stats/compliance?hostname=cmpl-*"
	waitFor(t, "the compliance results to be stored", 20*time.Second, func() bool {
		s, _ := getJSON[api.ComplianceStats](t, c, stats)
		return s.Containers == 3 && s.Hosts == 2
	})

	idStats := func(slug, id, typ string, failed, containers, images, hosts int) api.ComplianceIDStats {
		ch, _ := compliance.Lookup(slug)
		return api.ComplianceIDStats{
			ID: id, Check: slug, Title: ch.Title, Description: ch.Description, Severity: string(ch.Severity), Type: typ,
			Failed: failed, FailedContainers: containers, FailedImages: images, FailedHosts: hosts,
		}
	}

	t.Run("stats", func(t *testing.T) {
		tests := []struct {
			name, query string
			want        api.ComplianceStats
		}{
			{"all", stats, api.ComplianceStats{
				IDs: []api.ComplianceIDStats{
					idStats("privileged", "5054", "container", 1, 1, 1, 1),
					idStats("kubelet-anon-auth", "8212", "host", 1, 0, 0, 1),
					idStats("host-pid", "5515", "container", 2, 2, 2, 1),
					idStats("host-pid", "515", "container", 1, 1, 1, 1),
				},
				Containers: 3, Images: 2, Hosts: 2,
			}},
			{"namespace", stats + "&namespace=prod", api.ComplianceStats{
				IDs: []api.ComplianceIDStats{
					idStats("privileged", "5054", "container", 1, 1, 1, 1),
					idStats("host-pid", "5515", "container", 2, 2, 2, 1),
				},
				Containers: 2, Images: 2, Hosts: 1,
			}},
			{"image", stats + "&image=nginx:*", api.ComplianceStats{
				IDs: []api.ComplianceIDStats{
					idStats("privileged", "5054", "container", 1, 1, 1, 1),
					idStats("host-pid", "515", "container", 1, 1, 1, 1),
					idStats("host-pid", "5515", "container", 1, 1, 1, 1),
				},
				Containers: 2, Images: 1, Hosts: 2,
			}},
			{"one host", "/api/v1/stats/compliance?hostname=cmpl-b", api.ComplianceStats{
				IDs:        []api.ComplianceIDStats{idStats("host-pid", "515", "container", 1, 1, 1, 1)},
				Containers: 1, Images: 1, Hosts: 1,
			}},
			{"hosts only", stats + "&type=host", api.ComplianceStats{
				IDs:   []api.ComplianceIDStats{idStats("kubelet-anon-auth", "8212", "host", 1, 0, 0, 1)},
				Hosts: 2,
			}},
			{"one check by slug", stats + "&complianceIDs=host-pid", api.ComplianceStats{
				IDs: []api.ComplianceIDStats{
					idStats("host-pid", "5515", "container", 2, 2, 2, 1),
					idStats("host-pid", "515", "container", 1, 1, 1, 1),
				},
				Containers: 3, Images: 2, Hosts: 2,
			}},
			{"fresh only", stats + "&from=" + url.QueryEscape(t0.Add(2*time.Second).Format(time.RFC3339)), api.ComplianceStats{
				IDs:        []api.ComplianceIDStats{idStats("host-pid", "515", "container", 1, 1, 1, 1)},
				Containers: 1, Images: 1, Hosts: 1,
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, _ := getJSON[api.ComplianceStats](t, c, tc.query)
				if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("GET %s (-want +got):\n%s", tc.query, diff)
				}
			})
		}
	})

	issue := func(f compliance.Finding, typ string) api.ComplianceIssue {
		ch, _ := compliance.Lookup(f.Check)
		id := map[string]int{"5515": 5515, "515": 515, "5054": 5054, "8212": 8212}[f.PrismaID]
		return api.ComplianceIssue{ID: id, Check: f.Check, Title: f.Title, Severity: string(f.Severity), Description: ch.Description,
			Cause: f.Message, Type: typ, Effect: string(f.Effect), Paths: f.Paths}
	}

	t.Run("containers failing a check", func(t *testing.T) {
		got, _ := getJSON[[]api.ContainerCompliance](t, c, "/api/v1/containers?hostname=cmpl-*&complianceIDs=5515")
		want := []api.ContainerCompliance{
			{
				ID: cmplWeb, Hostname: "cmpl-a", ScanTime: t0,
				Info: api.ContainerComplianceInfo{ID: cmplWeb, Name: "web", Image: "nginx:1.27", ImageName: "nginx:1.27", Namespace: "prod", Pod: "web-0",
					ComplianceIssues:       []api.ComplianceIssue{issue(pidCRI, "container"), issue(privileged, "container")},
					ComplianceIssuesCount:  2,
					ComplianceDistribution: api.ComplianceDistribution{Critical: 1, High: 1, Total: 2}},
				ComplianceSource: api.ComplianceSource{DefenderID: "cmpl-one", Trigger: "start"},
			},
			{
				ID: cmplAPI, Hostname: "cmpl-a", ScanTime: t0,
				Info: api.ContainerComplianceInfo{ID: cmplAPI, Name: "api", Image: "api:2", ImageName: "api:2", Namespace: "prod",
					ComplianceIssues:       []api.ComplianceIssue{issue(pidCRI, "container")},
					ComplianceIssuesCount:  1,
					ComplianceDistribution: api.ComplianceDistribution{High: 1, Total: 1}},
				ComplianceSource: api.ComplianceSource{DefenderID: "cmpl-one", Trigger: "start"},
			},
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("containers failing 5515 (-want +got):\n%s", diff)
		}
	})

	t.Run("hosts", func(t *testing.T) {
		got, _ := getJSON[[]api.HostCompliance](t, c, "/api/v1/hosts?hostname=cmpl-*")
		want := []api.HostCompliance{
			{ID: "cmpl-a", Type: "host", Hostname: "cmpl-a", ScanTime: t0.Add(time.Second),
				ComplianceIssues: []api.ComplianceIssue{issue(kubelet, "host")}, ComplianceIssuesCount: 1,
				ComplianceDistribution: api.ComplianceDistribution{Critical: 1, Total: 1},
				ComplianceSource:       api.ComplianceSource{DefenderID: "cmpl-one", Trigger: "start"}},
			{ID: "cmpl-b", Type: "host", Hostname: "cmpl-b", ScanTime: t0.Add(2 * time.Second),
				ComplianceSource: api.ComplianceSource{DefenderID: "cmpl-two", Trigger: "start"}},
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("hosts (-want +got):\n%s", diff)
		}
		failing, _ := getJSON[[]api.HostCompliance](t, c, "/api/v1/hosts?hostname=cmpl-*&complianceIDs=kubelet-anon-auth")
		if len(failing) != 1 || failing[0].Hostname != "cmpl-a" {
			t.Errorf("hosts failing kubelet-anon-auth = %+v, want cmpl-a", failing)
		}
	})

	t.Run("paging", func(t *testing.T) {
		var got []string
		after := ""
		for range 10 {
			q := url.Values{"hostname": {"cmpl-*"}, "limit": {"1"}}
			if after != "" {
				q.Set("after", after)
			}
			page, next := getJSON[[]api.ContainerCompliance](t, c, "/api/v1/containers?"+q.Encode())
			if len(page) == 0 {
				if next != after {
					t.Errorf("empty page has X-Bulwark-Next %q, want the cursor given, %q", next, after)
				}
				break
			}
			if next == "" || next == after {
				t.Fatalf("X-Bulwark-Next = %q after a page of %d", next, len(page))
			}
			got = append(got, page[0].ID)
			after = next
		}
		if want := []string{cmplWeb, cmplAPI, cmplWeb2}; !slices.Equal(got, want) {
			t.Errorf("containers one page at a time = %v, want %v", got, want)
		}
	})

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			query string
			want  []string
		}{
			{"hostname=cmpl-*&name=web", []string{cmplWeb, cmplWeb2}},
			{"hostname=cmpl-*&namespace=dev,prod&image=api:*", []string{cmplAPI}},
			{"hostname=cmpl-*&id=" + cmplWeb2[:12], []string{cmplWeb2}},
			{"hostname=cmpl-a&hostname=cmpl-b&complianceIDs=515,privileged", []string{cmplWeb, cmplWeb2}},
			{"hostname=cmpl-*&complianceIDs=kubelet-anon-auth", nil},
		}
		for _, tc := range tests {
			got, _ := getJSON[[]api.ContainerCompliance](t, c, "/api/v1/containers?"+tc.query)
			var ids []string
			for _, g := range got {
				ids = append(ids, g.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("GET /api/v1/containers?%s = %v, want %v", tc.query, ids, tc.want)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, path := range []string{
			"/api/v1/stats/compliance?type=image",
			"/api/v1/stats/compliance?limit=5",
			"/api/v1/stats/compliance?hostname=",
			"/api/v1/stats/compliance?from=yesterday",
			"/api/v1/containers?id=c0ffee",
			"/api/v1/containers?limit=1001",
			"/api/v1/containers?after=not-a-cursor",
			"/api/v1/containers?offset=10",
			"/api/v1/hosts?image=nginx",
			"/api/v1/hosts?complianceIDs=" + strings.Repeat("x,", 64) + "x",
		} {
			r := mustStatus(t, c, admin(call{method: "GET", path: path}), 400)
			if r.errMsg(t) == "" {
				t.Errorf("GET %s: empty error message", path)
			}
		}
	})

	t.Run("a clean result replaces the findings", func(t *testing.T) {
		emitCompliance(t, one, t0.Add(time.Minute), "cmpl-a", web)
		waitFor(t, "the clean result", 20*time.Second, func() bool {
			got, _ := getJSON[[]api.ContainerCompliance](t, c, "/api/v1/containers?id="+cmplWeb)
			return len(got) == 1 && got[0].Info.ComplianceIssuesCount == 0
		})
		got, _ := getJSON[api.ComplianceStats](t, c, stats)
		want := api.ComplianceStats{
			IDs: []api.ComplianceIDStats{
				idStats("kubelet-anon-auth", "8212", "host", 1, 0, 0, 1),
				idStats("host-pid", "515", "container", 1, 1, 1, 1),
				idStats("host-pid", "5515", "container", 1, 1, 1, 1),
			},
			Containers: 3, Images: 2, Hosts: 2,
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("stats after a clean result (-want +got):\n%s", diff)
		}
	})
}
