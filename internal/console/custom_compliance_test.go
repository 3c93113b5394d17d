package console_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bulwark/api"
	"bulwark/api/bulwarkv1"
	"bulwark/internal/compliance"
	"bulwark/internal/console/consoletest"
	"bulwark/internal/policy"
	"bulwark/internal/rego"
)

const hubScript = `package acme.hub

deny contains {"msg": sprintf("image %s comes from Docker Hub", [c.image]), "path": concat(".", [c.path, "image"]), "container": c.name} if {
	some c in input.pod.containers
	not regex.match("^[^/]*[.:][^/]*/", c.image)
}
`

func customChecks(t testing.TB, c *consoletest.Console) []api.CustomComplianceCheck {
	t.Helper()
	r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/custom-compliance"}), 200)
	var out []api.CustomComplianceCheck
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("GET /api/v1/custom-compliance = %s: %v", r.body, err)
	}
	return out
}

func putCustom(t testing.TB, c *consoletest.Console, check map[string]any, want int) reply {
	t.Helper()
	body, err := json.Marshal(check)
	if err != nil {
		t.Fatal(err)
	}
	return mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/custom-compliance", body: string(body)}), want)
}

func TestCustomCompliance(t *testing.T) {
	c := consoletest.Start(t)
	d, stateDir := startDefender(t, bundle(t, c, "custom"))
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["custom"].Connected })

	if got := customChecks(t, c); len(got) != 0 {
		t.Fatalf("custom checks of a new Console = %v, want none", got)
	}

	// Created with the next free IDs from 9000; the Console sets the rest.
	r := putCustom(t, c, map[string]any{"name": "no-docker-hub", "severity": "high", "script": hubScript, "owner": "mallory"}, 200)
	var stored api.CustomComplianceCheck
	if err := json.Unmarshal(r.body, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.ID != 9000 || stored.Type != "rego" || stored.Title != "no-docker-hub" || stored.Owner != "admin" || stored.Modified.IsZero() {
		t.Errorf("PUT new check = %+v, want _id 9000, type rego, the name as title, owner admin, a modified time", stored)
	}
	putCustom(t, c, map[string]any{"name": "quiet", "title": "Quiet", "severity": "low", "script": "package q\ndeny contains \"never\" if false\n", "disabled": true}, 200)

	refused := []struct {
		name  string
		check map[string]any
		want  int
		err   string
	}{
		{"compile error", map[string]any{"name": "bad", "severity": "low", "script": "package bad\n\ndeny contains msg if {\n\tmsg := \n}\n"}, 400,
			`check 9002 "bad" does not compile: line 5, column 1: rego_parse_error`},
		{"network built-in", map[string]any{"name": "net", "severity": "low", "script": "package n\ndeny contains x if {\n\tx := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}).body\n}\n"}, 400,
			"line 3, column 7: rego_type_error: unsafe built-in function calls in expression: http.send"},
		{"no deny", map[string]any{"name": "nodeny", "severity": "low", "script": "package n\nallow if true\n"}, 400, "the module defines no deny rule"},
		{"taken name", map[string]any{"name": "quiet", "severity": "low", "script": "package n\ndeny contains 1 if false\n"}, 409, `name "quiet" is taken by custom check 9001`},
		{"id outside the range", map[string]any{"_id": 515, "name": "low-id", "severity": "low", "script": "package n\ndeny contains 1 if false\n"}, 400, "_id 515 is outside the custom check range 9000-9999"},
		{"shell script", map[string]any{"name": "sh", "type": "sh", "severity": "low", "script": "exit 1"}, 400, `type "sh" is not supported`},
		{"catalog name", map[string]any{"name": "privileged", "severity": "low", "script": "package n\ndeny contains 1 if false\n"}, 400, `name "privileged" is a catalog check's`},
		{"bad severity", map[string]any{"name": "sev", "severity": "urgent", "script": "package n\ndeny contains 1 if false\n"}, 400, `severity "urgent"`},
		{"unknown field", map[string]any{"name": "x", "severity": "low", "script": "package n\ndeny contains 1 if false\n", "language": "rego"}, 400, `unknown field "language"`},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if msg := putCustom(t, c, tc.check, tc.want).errMsg(t); !strings.Contains(msg, tc.err) {
				t.Errorf("PUT %s = %q, want it to contain %q", tc.name, msg, tc.err)
			}
		})
	}
	// The generic policy endpoint reads the checks but does not write them.
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/" + policy.TypeCustomCompliance, body: `{"rules":[]}`}), 400)
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/policies/" + policy.TypeCustomCompliance}), 200)
	if !strings.Contains(string(r.body), `"name":"no-docker-hub"`) {
		t.Errorf("GET /api/v1/policies/custom-compliance = %s, want the stored checks", r.body)
	}

	got := customChecks(t, c)
	if len(got) != 2 || got[0].ID != 9000 || got[0].Script != hubScript || got[1].ID != 9001 || !got[1].Disabled {
		t.Fatalf("custom checks = %+v, want 9000 no-docker-hub and 9001 quiet (disabled)", got)
	}
	// The auditor reads them too.
	createUser(t, c, "audrey", "auditor", "audrey-password")
	mustStatus(t, c, call{method: "GET", path: "/api/v1/custom-compliance", user: "audrey", pass: "audrey-password"}, 200)

	// The Defender receives the checks in its policy snapshot, and can
	// compile and evaluate them.
	var snap bulwarkv1.Policy
	waitFor(t, "the custom checks to reach the defender", 10*time.Second, func() bool {
		raw, err := os.ReadFile(filepath.Join(stateDir, "policy.json"))
		return err == nil && json.Unmarshal(raw, &snap) == nil && snap.Revision == d.PolicyRevision() && strings.Contains(string(snap.Policies[policy.TypeCustomCompliance]), "quiet")
	})
	doc, err := rego.DecodeDocument(snap.Policies[policy.TypeCustomCompliance])
	if err != nil {
		t.Fatalf("decode the defender's custom checks: %v", err)
	}
	ev, catalog, err := doc.Load(t.Context(), rego.Config{})
	if err != nil {
		t.Fatalf("load the defender's custom checks: %v", err)
	}
	w := compliance.Workload{Source: compliance.Source{Kind: compliance.SourceManifest}, Pod: &compliance.Pod{Containers: []compliance.Container{{Name: "web", Image: "nginx:1.27"}}}}
	fs := compliance.Evaluate(w, compliance.Options{Checks: []string{"no-docker-hub", "quiet"}, Evaluators: []compliance.Evaluator{ev}, Custom: catalog})
	if len(fs) != 1 || fs[0].String() != "9000 - no-docker-hub" || fs[0].Paths[0] != "spec.containers[0].image" {
		t.Errorf("the defender's custom checks find %+v, want one 9000 finding at spec.containers[0].image", fs)
	}

	// A compliance rule names 9000 by ID and quiet by name: neither may be
	// deleted, nor quiet renamed, while it does.
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/compliance/container", body: `{"rules":[
		{"name":"hub","condition":{"vulnerabilities":[{"id":9000,"block":true}]},"checks":{"quiet":"alert"}}]}`}), 200)
	if msg := mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/custom-compliance/9000"}), 409).errMsg(t); !strings.Contains(msg, "compliance/container policy names this custom check") {
		t.Errorf("DELETE a check a rule names = %q, want a conflict naming the policy", msg)
	}
	putCustom(t, c, map[string]any{"_id": 9001, "name": "renamed", "severity": "low", "script": "package q\ndeny contains \"never\" if false\n"}, 409)
	// Changing everything else is fine.
	putCustom(t, c, map[string]any{"_id": 9000, "name": "no-docker-hub", "title": "Images come from our registries", "severity": "critical", "script": hubScript + "\n"}, 200)
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/compliance/container", body: `{"rules":[{"name":"default"}]}`}), 200)
	putCustom(t, c, map[string]any{"_id": 9001, "name": "renamed", "severity": "low", "script": "package q\ndeny contains \"never\" if false\n"}, 200)
	if got := customChecks(t, c); len(got) != 2 || got[1].Name != "renamed" || got[1].PreviousName != "quiet" {
		t.Errorf("after the rename, checks = %+v, want 9001 renamed from quiet", got)
	}

	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/custom-compliance/9000"}), 200)
	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/custom-compliance/9000"}), 404)
	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/custom-compliance/nine"}), 400)
	if got := customChecks(t, c); len(got) != 1 || got[0].ID != 9001 {
		t.Errorf("after the delete, checks = %+v, want only 9001", got)
	}
	// The next new check takes the next ID, not the deleted one.
	r = putCustom(t, c, map[string]any{"name": "third", "severity": "info", "script": "package t\ndeny contains 1 if false\n"}, 200)
	if !strings.Contains(string(r.body), `"_id":9002`) {
		t.Errorf("PUT third check = %s, want _id 9002", r.body)
	}

	// Every change is audited, newest first.
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/mgmt?type=policies"}), 200)
	var recs []struct{ Username, Diff string }
	if err := json.Unmarshal(r.body, &recs); err != nil {
		t.Fatal(err)
	}
	var diffs []string
	for _, a := range recs {
		if strings.Contains(a.Diff, "custom compliance") {
			diffs = append(diffs, a.Username+": "+a.Diff[:strings.LastIndex(a.Diff, " (revision")])
		}
	}
	want := []string{
		`admin: created custom compliance check 9002 "third"`,
		`admin: deleted custom compliance check 9000 "no-docker-hub"`,
		`admin: updated custom compliance check 9001 "renamed": name "quiet"→"renamed", title "Quiet"→"renamed", disabled true→false`,
		`admin: updated custom compliance check 9000 "no-docker-hub": title "no-docker-hub"→"Images come from our registries", severity "high"→"critical", script`,
		`admin: created custom compliance check 9001 "quiet"`,
		`admin: created custom compliance check 9000 "no-docker-hub"`,
	}
	if strings.Join(diffs, "\n") != strings.Join(want, "\n") {
		t.Errorf("custom check audits, newest first:\n%s\nwant:\n%s", strings.Join(diffs, "\n"), strings.Join(want, "\n"))
	}
}
