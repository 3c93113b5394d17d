package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"bulwark/internal/admission"
	"bulwark/internal/admission/admissiontest"
	"bulwark/internal/audit"
	"bulwark/internal/sqlite"
	"bulwark/internal/store"
)

// blockPrivileged blocks two checks everywhere and keeps the default
// effect (alert on critical and high) for the others.
const blockPrivileged = `"rules":[{"name":"block privileged","checks":{"privileged":"block","host-pid":"block"}}]`

// env is a controller over a real SQLite store, served over TLS, with Run
// going.
type env struct {
	t   testing.TB
	wh  *admission.Webhook
	db  *sqlite.DB
	srv *httptest.Server
}

func start(t testing.TB, policyDoc string, cfg admission.Config) *env {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "bulwark.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e := &env{t: t, db: db}
	if policyDoc != "" {
		e.putPolicy(policyDoc)
	}
	if e.wh, err = admission.New(t.Context(), cfg, db, logger); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.wh.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e.srv = httptest.NewTLSServer(e.wh)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) putPolicy(doc string) {
	e.t.Helper()
	err := e.db.Update(e.t.Context(), func(w store.Writer) error {
		_, err := w.PutPolicy(e.t.Context(), "admission", []byte(doc))
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// post sends body to path and returns the status and the body.
func (e *env) post(path, contentType string, body []byte) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// review sends req to path and decodes the answer, which must be a 200 with
// the request's UID.
func (e *env) review(path string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	e.t.Helper()
	status, body := e.post(path, "application/json", admissiontest.Review(req))
	if status != http.StatusOK {
		e.t.Fatalf("POST %s = %d %s, want 200", path, status, body)
	}
	resp, err := admissiontest.DecodeResponse(body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.UID != req.UID {
		e.t.Errorf("response uid = %q, want the request's %q", resp.UID, req.UID)
	}
	return resp
}

// audits waits until the store holds n admission audits and returns them,
// newest first.
func (e *env) audits(n int) []audit.Admission {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := e.db.AdmissionAudits(e.t.Context(), audit.AdmissionFilter{Limit: 1000})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				e.t.Fatalf("%d admission audits stored, want %d: %+v", len(got), n, got)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	privilegedLine = "5054 - Do not use privileged containers: "
	hostPIDLine    = "5515 - Do not share the host's process namespace: "
	pssLine        = "pss-baseline - Pod violates the Pod Security Standards baseline profile: "
)

// TestWorkloads sends real AdmissionReviews for a Pod, a Deployment and a
// CronJob, hardened and privileged, in audit and in enforce mode.
func TestWorkloads(t *testing.T) {
	type workload struct {
		name    string
		obj     func(spec corev1.PodSpec) runtime.Object
		podPath string
	}
	workloads := []workload{
		{"Pod", func(s corev1.PodSpec) runtime.Object { return admissiontest.Pod("prod", "web-7d4b9", s) }, "spec"},
		{"Deployment", func(s corev1.PodSpec) runtime.Object { return admissiontest.Deployment("prod", "web", s) }, "spec.template.spec"},
		{"CronJob", func(s corev1.PodSpec) runtime.Object { return admissiontest.CronJob("prod", "report", s) }, "spec.jobTemplate.spec.template.spec"},
	}
	for _, mode := range []string{"audit", "enforce"} {
		e := start(t, `{"mode":"`+mode+`",`+blockPrivileged+`}`, admission.Config{})
		for _, wl := range workloads {
			t.Run(mode+"/"+wl.name+"/hardened", func(t *testing.T) {
				resp := e.review("/v1/admission", admissiontest.Request("uid-ok-"+wl.name, admissionv1.Create, wl.obj(admissiontest.HardenedSpec()), nil))
				if !resp.Allowed || resp.Result != nil || len(resp.Warnings) != 0 {
					t.Errorf("hardened %s in %s mode: allowed %v, result %+v, warnings %q; want allowed without warnings", wl.name, mode, resp.Allowed, resp.Result, resp.Warnings)
				}
				if got := resp.AuditAnnotations["decision"]; got != "allow" {
					t.Errorf("auditAnnotations decision = %q, want allow", got)
				}
			})
			t.Run(mode+"/"+wl.name+"/privileged", func(t *testing.T) {
				resp := e.review("/v1/admission", admissiontest.Request("uid-bad-"+wl.name, admissionv1.Create, wl.obj(admissiontest.PrivilegedSpec()), nil))
				privileged := privilegedLine + wl.podPath + ".containers[0].securityContext.privileged"
				hostPID := hostPIDLine + wl.podPath + ".hostPID"
				pss := pssLine + wl.podPath + ".hostPID"
				if mode == "audit" {
					want := []string{privileged, hostPID, pss}
					if !resp.Allowed || resp.Result != nil {
						t.Errorf("privileged %s in audit mode: allowed %v, result %+v; want allowed", wl.name, resp.Allowed, resp.Result)
					}
					if !containsAll(resp.Warnings, want) {
						t.Errorf("warnings = %q, want them to include %q", resp.Warnings, want)
					}
					return
				}
				if resp.Allowed || resp.Result == nil {
					t.Fatalf("privileged %s in enforce mode: allowed %v, result %+v; want denied", wl.name, resp.Allowed, resp.Result)
				}
				if resp.Result.Code != http.StatusForbidden || resp.Result.Reason != metav1.StatusReasonForbidden || resp.Result.Status != metav1.StatusFailure {
					t.Errorf("result = %+v, want Failure, 403, Forbidden", resp.Result)
				}
				// In the catalog's order.
				wantMsg := `denied by Bulwark rule "block privileged": ` + hostPID + "; " + privileged
				if resp.Result.Message != wantMsg {
					t.Errorf("message = %q, want %q", resp.Result.Message, wantMsg)
				}
				// The alerting findings still warn; the blocking ones are in the message.
				if !containsAll(resp.Warnings, []string{pss}) || slices.Contains(resp.Warnings, privileged) {
					t.Errorf("warnings = %q, want %q and not the denied checks", resp.Warnings, pss)
				}
				if got := resp.AuditAnnotations["decision"]; got != "block" {
					t.Errorf("auditAnnotations decision = %q, want block", got)
				}
			})
		}
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// TestAuditRecords checks what the store keeps of each decision.
func TestAuditRecords(t *testing.T) {
	e := start(t, `{"mode":"enforce",`+blockPrivileged+`}`, admission.Config{})
	dep := admissiontest.Deployment("prod", "web", admissiontest.PrivilegedSpec())
	e.review("/v1/admission", admissiontest.Request("uid-1", admissionv1.Create, dep, nil))
	cron := admissiontest.CronJob("kube-system", "cleanup", admissiontest.PrivilegedSpec())
	e.review("/v1/admission", admissiontest.Request("uid-2", admissionv1.Create, cron, nil))
	got := e.audits(2)

	denied, exempt := got[1], got[0]
	if denied.ID == 0 || denied.Time.IsZero() || exempt.ID <= denied.ID {
		t.Errorf("IDs %d, %d and time %v: want increasing IDs and a time", denied.ID, exempt.ID, denied.Time)
	}
	want := audit.Admission{
		RuleName: "block privileged", Operation: "CREATE", Kind: "Deployment", Resource: "deployments", Name: "web", Namespace: "prod",
		Username: "kubernetes-admin", UserUID: "admin-uid", UserGroups: "system:masters, system:authenticated",
		Effect: "block", Mode: "enforce", UID: "uid-1", PolicyRevision: 1,
	}
	ignore := cmpopts.IgnoreFields(audit.Admission{}, "ID", "Time", "Message", "Findings")
	if diff := cmp.Diff(want, denied, ignore); diff != "" {
		t.Errorf("denied record mismatch (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(denied.Message, `denied by Bulwark rule "block privileged": 5515 - `) {
		t.Errorf("denied record message = %q", denied.Message)
	}
	var checks []string
	for _, f := range denied.Findings {
		checks = append(checks, f.Check+":"+string(f.Effect))
	}
	if diff := cmp.Diff([]string{"host-pid:block", "privileged:block", "pss-baseline:alert", "pss-baseline:alert"}, checks); diff != "" {
		t.Errorf("denied record findings (-want +got):\n%s", diff)
	}

	want = audit.Admission{
		Operation: "CREATE", Kind: "CronJob", Resource: "cronjobs", Name: "cleanup", Namespace: "kube-system",
		Username: "kubernetes-admin", UserUID: "admin-uid", UserGroups: "system:masters, system:authenticated",
		Effect: "allow", Mode: "enforce", UID: "uid-2", PolicyRevision: 1, Message: "namespace kube-system is exempt",
	}
	if diff := cmp.Diff(want, exempt, cmpopts.IgnoreFields(audit.Admission{}, "ID", "Time"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("exempt record mismatch (-want +got):\n%s", diff)
	}
	st := e.wh.Stats()
	if st.Reviews != 2 || st.Denied != 1 || st.Allowed != 1 || st.AuditsWritten != 2 || st.AuditsDropped != 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

// TestDecisions covers the requests that are not a plain CREATE.
func TestDecisions(t *testing.T) {
	e := start(t, `{"mode":"enforce","exemptNamespaces":["kube-system","monitoring"],`+blockPrivileged+`}`, admission.Config{})
	hardened := admissiontest.Deployment("prod", "web", admissiontest.HardenedSpec())
	privileged := admissiontest.Deployment("prod", "web", admissiontest.PrivilegedSpec())
	relabelled := admissiontest.Deployment("prod", "web", admissiontest.PrivilegedSpec())
	relabelled.Labels["tier"] = "front"
	relabelled.Spec.Replicas = new(int32(5))
	service := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	ephemeral := admissiontest.Pod("prod", "web-0", admissiontest.HardenedSpec())
	debug := ephemeral.DeepCopy()
	debug.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debug", Image: "busybox:1.36", SecurityContext: &corev1.SecurityContext{Privileged: new(true)},
	}}}
	debugReq := admissiontest.Request("uid-debug", admissionv1.Update, debug, ephemeral)
	debugReq.SubResource, debugReq.Resource.Resource = "ephemeralcontainers", "pods"
	dryRun := admissiontest.Request("uid-dry", admissionv1.Create, privileged, nil)
	dryRun.DryRun = new(true)
	generated := admissiontest.Pod("prod", "", admissiontest.HardenedSpec())
	generated.GenerateName = "web-7d4b9-"

	tests := []struct {
		name    string
		req     *admissionv1.AdmissionRequest
		allowed bool
		record  string // the audit's effect and message; "" for no record
	}{
		{"exempt namespace", admissiontest.Request("uid-exempt", admissionv1.Create, admissiontest.Deployment("monitoring", "agent", admissiontest.PrivilegedSpec()), nil),
			true, "allow namespace monitoring is exempt"},
		{"other kind", admissiontest.Request("uid-svc", admissionv1.Create, service, nil), true, ""},
		{"delete", admissiontest.Request("uid-del", admissionv1.Delete, nil, privileged), true, ""},
		{"update leaving the template", admissiontest.Request("uid-scale", admissionv1.Update, relabelled, privileged), true, "allow pod template unchanged"},
		{"update making it privileged", admissiontest.Request("uid-upd", admissionv1.Update, privileged, hardened), false, "block denied by Bulwark rule"},
		{"update making it hardened", admissiontest.Request("uid-fix", admissionv1.Update, hardened, privileged), true, "allow "},
		{"privileged ephemeral container", debugReq, false, "block denied by Bulwark rule \"block privileged\": 5054 - Do not use privileged containers: spec.ephemeralContainers[0].securityContext.privileged"},
		{"dry run", dryRun, false, "block denied"},
		{"generated name", admissiontest.Request("uid-gen", admissionv1.Create, generated, nil), true, "allow "},
	}
	records := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.review("/v1/admission", tc.req)
			if resp.Allowed != tc.allowed {
				t.Errorf("allowed = %v (%+v), want %v", resp.Allowed, resp.Result, tc.allowed)
			}
			if tc.record == "" {
				if resp.AuditAnnotations != nil {
					t.Errorf("auditAnnotations = %v, want none for a request that is no decision", resp.AuditAnnotations)
				}
				return
			}
			records++
			got := e.audits(records)[0]
			if got.UID != string(tc.req.UID) || !strings.HasPrefix(got.Effect+" "+got.Message, tc.record) {
				t.Errorf("audit %s: %q %q, want %q", got.UID, got.Effect, got.Message, tc.record)
			}
			if tc.req.DryRun != nil && *tc.req.DryRun != got.DryRun {
				t.Errorf("audit dryRun = %v, want %v", got.DryRun, *tc.req.DryRun)
			}
			if tc.req.SubResource != "" && got.Resource != "pods/"+tc.req.SubResource {
				t.Errorf("audit resource = %q, want pods/%s", got.Resource, tc.req.SubResource)
			}
			if tc.req.Name == "" && got.Name != "web-7d4b9-" {
				t.Errorf("audit name = %q, want the generateName", got.Name)
			}
		})
	}
}

// TestClusterAndRules: rules scope by namespace, label and the cluster the
// path names, and the first matching rule decides.
func TestClusterAndRules(t *testing.T) {
	e := start(t, `{"mode":"enforce","pssLevel":"none","rules":[
		{"name":"east may","collections":[{"name":"east","clusters":["prod-east"]}],"effect":"ignore"},
		{"name":"legacy","collections":[{"name":"legacy","labels":["tier:legacy"]}],"checks":{"privileged":"alert","host-pid":"alert"}},
		{"name":"prod","collections":[{"name":"prod","namespaces":["prod*"]}],"effect":"block"},
		{"name":"rest","effect":"alert"}]}`, admission.Config{})
	legacy := admissiontest.Deployment("prod", "old", admissiontest.PrivilegedSpec())
	legacy.Labels["tier"] = "legacy"
	tests := []struct {
		name, path string
		obj        runtime.Object
		allowed    bool
		warnings   int
	}{
		{"prod namespace blocks", "/v1/admission", admissiontest.Deployment("prod-eu", "web", admissiontest.PrivilegedSpec()), false, 0},
		{"the cluster's rule comes first", "/v1/admission/prod-east", admissiontest.Deployment("prod-eu", "web", admissiontest.PrivilegedSpec()), true, 0},
		{"another cluster", "/v1/admission/prod-west", admissiontest.Deployment("prod-eu", "web", admissiontest.PrivilegedSpec()), false, 0},
		{"labelled legacy alerts", "/v1/admission", legacy, true, 2},
		// host-userns too: a medium check the built-in rules do not alert on.
		{"elsewhere alerts on everything", "/v1/admission", admissiontest.Deployment("dev", "web", admissiontest.PrivilegedSpec()), true, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.review(tc.path, admissiontest.Request("uid", admissionv1.Create, tc.obj, nil))
			if resp.Allowed != tc.allowed || len(resp.Warnings) != tc.warnings {
				t.Errorf("allowed %v with warnings %q; want %v with %d", resp.Allowed, resp.Warnings, tc.allowed, tc.warnings)
			}
		})
	}
}

// TestIgnoreAnnotations: the annotations count only when the policy says so.
func TestIgnoreAnnotations(t *testing.T) {
	dep := admissiontest.Deployment("prod", "web", admissiontest.PrivilegedSpec())
	dep.Spec.Template.Annotations = map[string]string{
		"bulwark.dev/ignore-check.privileged":   "node agent, reviewed in SEC-12",
		"bulwark.dev/ignore-check.host-pid":     "node agent, reviewed in SEC-12",
		"bulwark.dev/ignore-check.pss-baseline": "node agent, reviewed in SEC-12",
	}
	for _, honour := range []bool{false, true} {
		doc := `{"mode":"enforce",` + blockPrivileged + `}`
		if honour {
			doc = `{"mode":"enforce","ignoreAnnotations":true,` + blockPrivileged + `}`
		}
		e := start(t, doc, admission.Config{})
		resp := e.review("/v1/admission", admissiontest.Request("uid", admissionv1.Create, dep, nil))
		if resp.Allowed != honour {
			t.Errorf("ignoreAnnotations %v: allowed = %v (%+v), want %v", honour, resp.Allowed, resp.Result, honour)
		}
		if honour {
			const want = "ignored by annotation: host-pid (node agent, reviewed in SEC-12), privileged (node agent, reviewed in SEC-12), pss-baseline (node agent, reviewed in SEC-12)"
			if got := e.audits(1)[0]; got.Effect != "allow" || got.Message != want {
				t.Errorf("audit of the ignored checks: %s %q, want allow %q", got.Effect, got.Message, want)
			}
		}
	}
	bad := dep.DeepCopy()
	bad.Spec.Template.Annotations["bulwark.dev/ignore-check.privileged"] = " "
	e := start(t, `{"mode":"enforce","ignoreAnnotations":true,`+blockPrivileged+`}`, admission.Config{})
	resp := e.review("/v1/admission", admissiontest.Request("uid", admissionv1.Create, bad, nil))
	if resp.Allowed || !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.Contains(w, "needs a reason; no check ignored") }) {
		t.Errorf("an ignore annotation without a reason: allowed %v, warnings %q; want denied with a warning about it", resp.Allowed, resp.Warnings)
	}
}

// TestPolicyChanges: a change applies at once through PolicyChanged, or
// within the refresh interval; a bad stored policy leaves the one in force.
func TestPolicyChanges(t *testing.T) {
	e := start(t, "", admission.Config{PolicyRefresh: 50 * time.Millisecond})
	dep := admissiontest.Deployment("prod", "web", admissiontest.PrivilegedSpec())
	allowed := func() bool {
		return e.review("/v1/admission", admissiontest.Request("uid", admissionv1.Create, dep, nil)).Allowed
	}
	// No policy yet: the built-in one audits.
	if !allowed() {
		t.Fatal("the built-in policy denied; want audit mode")
	}
	if got := e.wh.Stats().PolicyRevision; got != 0 {
		t.Errorf("PolicyRevision = %d, want 0", got)
	}

	e.putPolicy(`{"mode":"enforce",` + blockPrivileged + `}`)
	snap, err := e.db.PolicySnapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.wh.PolicyChanged(t.Context(), snap)
	if allowed() || e.wh.Stats().PolicyRevision != 1 {
		t.Fatalf("after PolicyChanged to enforce: allowed, revision %d; want denied at revision 1", e.wh.Stats().PolicyRevision)
	}

	// Written by another replica: the refresh finds it.
	e.putPolicy(`{"mode":"audit"}`)
	waitFor(t, func() bool { return e.wh.Stats().PolicyRevision == 2 })
	if !allowed() {
		t.Error("after the refresh to audit mode: denied")
	}

	// A document an older Console stored without validation.
	e.putPolicy(`{"mode":"block"}`)
	time.Sleep(200 * time.Millisecond)
	if got := e.wh.Stats().PolicyRevision; got != 2 {
		t.Errorf("after a bad policy: revision %d in force, want 2", got)
	}
	if !allowed() {
		t.Error("after a bad policy: the audit policy is no longer in force")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMalformed: whatever is not an AdmissionReview gets a 400 with a
// message, never a crash, and no audit.
func TestMalformed(t *testing.T) {
	e := start(t, "", admission.Config{MaxBodyBytes: 64 << 10})
	good := admissiontest.Request("uid-1", admissionv1.Create, admissiontest.Deployment("prod", "web", admissiontest.HardenedSpec()), nil)
	review := func(mutate func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(admissiontest.Review(good), &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	request := func(m map[string]any) map[string]any { return m["request"].(map[string]any) }
	tests := []struct {
		name, contentType string
		body              []byte
		want              string
	}{
		{"not JSON", "application/json", []byte("<AdmissionReview/>"), "malformed JSON at byte"},
		{"empty body", "application/json", nil, "the body is empty"},
		{"truncated", "application/json", admissiontest.Review(good)[:100], "malformed JSON"},
		{"trailing data", "application/json", append(admissiontest.Review(good), []byte(" {}")...), "malformed JSON"},
		{"JSON array", "application/json", []byte("[]"), "not an AdmissionReview"},
		{"wrong content type", "text/plain", admissiontest.Review(good), `content type "text/plain" is not application/json`},
		{"no content type", "", admissiontest.Review(good), `content type "" is not application/json`},
		{"oversized", "application/json", bytes.Repeat([]byte(" "), 65<<10), "larger than 65536 bytes"},
		{"wrong apiVersion", "application/json", review(func(m map[string]any) { m["apiVersion"] = "admission.k8s.io/v1beta1" }), "want apiVersion admission.k8s.io/v1 and kind AdmissionReview"},
		{"wrong kind", "application/json", review(func(m map[string]any) { m["kind"] = "TokenReview" }), `got "admission.k8s.io/v1" and "TokenReview"`},
		{"kind in the wrong case", "application/json", review(func(m map[string]any) { m["Kind"] = m["kind"]; delete(m, "kind") }), `and ""`},
		{"no request", "application/json", review(func(m map[string]any) { delete(m, "request") }), "has no request"},
		{"request is a string", "application/json", review(func(m map[string]any) { m["request"] = "x" }), "not an AdmissionReview"},
		{"duplicate field", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","kind":"AdmissionReview"}`), "duplicate field"},
		{"no uid", "application/json", review(func(m map[string]any) { delete(request(m), "uid") }), "request.uid is missing"},
		{"no kind", "application/json", review(func(m map[string]any) { delete(request(m), "kind") }), "request.kind is missing"},
		{"bad operation", "application/json", review(func(m map[string]any) { request(m)["operation"] = "PATCH" }), `request.operation "PATCH"`},
		{"no object", "application/json", review(func(m map[string]any) { delete(request(m), "object") }), "request.object is missing for CREATE"},
		{"object of another kind", "application/json", review(func(m map[string]any) {
			request(m)["kind"] = map[string]any{"group": "batch", "version": "v1", "kind": "CronJob"}
		}), "request.object is apps/v1 Deployment, but request.kind is batch/v1 CronJob"},
		{"object without a template", "application/json", review(func(m map[string]any) {
			request(m)["object"] = map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "x"}}
		}), "without a pod template"},
		{"object field of the wrong type", "application/json", review(func(m map[string]any) {
			obj := request(m)["object"].(map[string]any)
			obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["hostPID"] = "yes"
		}), "request.object:"},
		{"object is not an object", "application/json", review(func(m map[string]any) { request(m)["object"] = []any{1} }), "request.object: want a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.post("/v1/admission", tc.contentType, tc.body)
			var got struct {
				Err string `json:"err"`
			}
			if err := json.Unmarshal(body, &got); err != nil || status != http.StatusBadRequest || !strings.Contains(got.Err, tc.want) {
				t.Errorf("POST = %d %s, want 400 with an err saying %q", status, body, tc.want)
			}
		})
	}
	if st := e.wh.Stats(); st.Malformed != uint64(len(tests)) || st.Reviews != 0 {
		t.Errorf("Stats() = %+v, want %d malformed and no reviews", st, len(tests))
	}
	time.Sleep(300 * time.Millisecond) // a flush interval
	if got, err := e.db.AdmissionAudits(t.Context(), audit.AdmissionFilter{}); err != nil || len(got) != 0 {
		t.Errorf("audits after malformed requests: %d, %v; want none", len(got), err)
	}
}

// TestDefaultBodyLimit: a review over the default 8 MiB is refused, one just
// under it answered.
func TestDefaultBodyLimit(t *testing.T) {
	e := start(t, "", admission.Config{})
	dep := admissiontest.Deployment("prod", "web", admissiontest.HardenedSpec())
	dep.Annotations = map[string]string{"padding": strings.Repeat("x", admission.DefaultMaxBodyBytes-20<<10)}
	body := admissiontest.Review(admissiontest.Request("uid-big", admissionv1.Create, dep, nil))
	if status, out := e.post("/v1/admission", "application/json", body); status != http.StatusOK {
		t.Errorf("a %d-byte review = %d %.200s, want 200", len(body), status, out)
	}
	dep.Annotations["padding"] += strings.Repeat("x", 40<<10)
	body = admissiontest.Review(admissiontest.Request("uid-bigger", admissionv1.Create, dep, nil))
	if status, out := e.post("/v1/admission", "application/json", body); status != http.StatusBadRequest || !strings.Contains(string(out), "larger than 8388608 bytes") {
		t.Errorf("a %d-byte review = %d %.200s, want 400 naming the limit", len(body), status, out)
	}
}

func TestRoutes(t *testing.T) {
	e := start(t, "", admission.Config{})
	body := admissiontest.Review(admissiontest.Request("uid", admissionv1.Create, admissiontest.Pod("prod", "p", admissiontest.HardenedSpec()), nil))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/v1/admission", 200},
		{"POST", "/v1/admission/", 200},
		{"POST", "/v1/admission/east-1", 200},
		{"POST", "/v1/admission/east/1", 404},
		{"POST", "/v1/admissionx", 404},
		{"POST", "/", 404},
		{"GET", "/v1/admission", 405},
		{"PUT", "/v1/admission", 405},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, e.srv.URL+tc.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

// TestWarningsBounded: a workload failing many checks gets at most 20
// warnings of at most 256 bytes, the last one pointing at the audit.
func TestWarningsBounded(t *testing.T) {
	e := start(t, `{"pssLevel":"restricted","rules":[{"name":"all","effect":"alert"}]}`, admission.Config{})
	spec := admissiontest.PrivilegedSpec()
	for i := range 12 {
		c := spec.Containers[0]
		c.Name = "c" + strings.Repeat("x", 40) + string(rune('a'+i))
		c.SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
		c.Resources = corev1.ResourceRequirements{}
		spec.Containers = append(spec.Containers, c)
	}
	resp := e.review("/v1/admission", admissiontest.Request("uid", admissionv1.Create, admissiontest.Deployment("dev", "many", spec), nil))
	if len(resp.Warnings) != 20 || !strings.HasSuffix(resp.Warnings[19], "more failed checks; see Bulwark's admission audit") {
		t.Fatalf("%d warnings, last %q; want 20 ending with the pointer to the audit", len(resp.Warnings), resp.Warnings[len(resp.Warnings)-1])
	}
	for _, w := range resp.Warnings {
		if len(w) > 256 {
			t.Errorf("warning of %d bytes: %q", len(w), w)
		}
	}
}

// TestAuditQueueFull: when the store cannot keep up, decisions are still
// answered and the audits that do not fit are counted.
func TestAuditQueueFull(t *testing.T) {
	e := start(t, "", admission.Config{AuditQueue: 1})
	// Hold the store's only writer so that the first flush waits.
	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = e.db.Update(context.Background(), func(store.Writer) error { close(held); <-release; return nil })
	}()
	<-held
	send := func(uid string) {
		resp := e.review("/v1/admission", admissiontest.Request(uid, admissionv1.Create, admissiontest.Pod("prod", "p", admissiontest.HardenedSpec()), nil))
		if !resp.Allowed {
			t.Fatal("denied")
		}
	}
	// One audit, and a flush interval: the writer now waits for the store.
	send("uid-first")
	time.Sleep(400 * time.Millisecond)
	for i := range 50 {
		send(fmt.Sprint("uid-", i))
	}
	st := e.wh.Stats()
	close(release)
	if st.AuditsDropped == 0 || st.Reviews != 51 {
		t.Errorf("Stats() = %+v, want 51 reviews and some audits dropped", st)
	}
	waitFor(t, func() bool { s := e.wh.Stats(); return s.AuditsWritten+s.AuditsDropped == 51 })
	if got, err := e.db.AdmissionAudits(t.Context(), audit.AdmissionFilter{Limit: 100}); err != nil || uint64(len(got)) != e.wh.Stats().AuditsWritten {
		t.Errorf("%d audits stored (%v), want the %d written", len(got), err, e.wh.Stats().AuditsWritten)
	}
}

func TestCustomChecks(t *testing.T) {
	e := start(t, "", admission.Config{})
	err := e.db.Update(t.Context(), func(w store.Writer) error {
		_, err := w.PutPolicy(t.Context(), "custom-compliance", []byte(`{"rules":[{"_id":9000,"name":"no-latest-registry","title":"Images come from registry.example","severity":"high",
			"script":"package bulwark.custom.own_registry\ndeny contains {\"msg\": sprintf(\"%s runs %s\", [c.name, c.image]), \"path\": concat(\".\", [c.path, \"image\"]), \"container\": c.name} if {\n  some c in input.pod.containers\n  not startswith(c.image, \"registry.example/\")\n}"}]}`))
		if err != nil {
			return err
		}
		_, err = w.PutPolicy(t.Context(), "admission", []byte(`{"mode":"enforce","rules":[{"name":"own registry","checks":{"no-latest-registry":"block"}}]}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := e.db.PolicySnapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.wh.PolicyChanged(t.Context(), snap)
	ours := admissiontest.Deployment("prod", "web", admissiontest.HardenedSpec())
	if resp := e.review("/v1/admission", admissiontest.Request("uid-1", admissionv1.Create, ours, nil)); !resp.Allowed {
		t.Errorf("an image of registry.example: denied %+v", resp.Result)
	}
	theirs := ours.DeepCopy()
	theirs.Spec.Template.Spec.Containers[0].Image = "docker.io/library/nginx:1"
	resp := e.review("/v1/admission", admissiontest.Request("uid-2", admissionv1.Create, theirs, nil))
	if resp.Allowed || !strings.HasSuffix(resp.Result.Message, "9000 - Images come from registry.example: spec.template.spec.containers[0].image") {
		t.Errorf("an image of docker.io: allowed %v, result %+v; want denied by the custom check", resp.Allowed, resp.Result)
	}
}
