package console_test

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"bulwark/internal/console/consoletest"
)

// TestRBACMatrix walks every endpoint with every role, and without
// credentials, and checks the status. The matrix is written out here on
// purpose, not derived from the code under test.
func TestRBACMatrix(t *testing.T) {
	c := consoletest.Start(t, consoletest.WithAdmission())
	roles := []string{"admin", "operator", "auditor", "ci-user", "defender-manager"}
	for _, r := range roles[1:] {
		createUser(t, c, "u-"+r, r, "pw-"+r+"-secret")
	}
	creds := func(role string) (string, string) {
		if role == "admin" {
			return "admin", consoletest.AdminPassword
		}
		return "u-" + role, "pw-" + role + "-secret"
	}
	createUser(t, c, "scratch", "auditor", "scratch-password")

	all := roles
	const public = "public"
	type endpoint struct {
		method, path string
		body         func(role string) string
		allowed      []string // roles; nil with access==public
		access       string
		okStatus     int // what an allowed caller gets for this request
	}
	noBody := func(string) string { return "" }
	eps := []endpoint{
		{"GET", "/api/v1/_ping", noBody, nil, public, 200},
		{"GET", "/api/v1/openapi.yaml", noBody, nil, public, 200},
		{"POST", "/api/v1/authenticate", func(r string) string {
			u, p := creds(r)
			return fmt.Sprintf(`{"username":%q,"password":%q}`, u, p)
		}, nil, public, 200},
		{"GET", "/api/v1/authenticate/renew", noBody, all, "", 200},
		{"GET", "/api/v1/version", noBody, all, "", 200},
		{"GET", "/api/v1/current/user", noBody, all, "", 200},
		{"GET", "/api/v1/roles", noBody, all, "", 200},
		{"GET", "/api/v1/users", noBody, []string{"admin"}, "", 200},
		{"POST", "/api/v1/users", func(r string) string {
			return fmt.Sprintf(`{"username":"made-by-%s","role":"auditor","password":"made-password"}`, r)
		}, []string{"admin"}, "", 200},
		{"PUT", "/api/v1/users", func(string) string { return `{"username":"scratch","role":"auditor"}` }, []string{"admin"}, "", 200},
		{"DELETE", "/api/v1/users/{id}", noBody, []string{"admin"}, "", 404},
		// Wrong old password: the role check passed when the answer is 400.
		{"PUT", "/api/v1/users/password", func(string) string { return `{"oldPassword":"not-it-at-all","newPassword":"whatever-new-1"}` }, all, "", 400},
		{"GET", "/api/v1/access-keys", noBody, all, "", 200},
		{"POST", "/api/v1/access-keys", func(string) string { return `{"name":"matrix"}` }, all, "", 200},
		{"DELETE", "/api/v1/access-keys/{id}", noBody, all, "", 404},
		{"GET", "/api/v1/audits/mgmt", noBody, []string{"admin", "auditor"}, "", 200},
		{"GET", "/api/v1/audits/runtime/container", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/audits/runtime/host", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/audits/admission", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"POST", "/api/v1/defenders/bundle", func(r string) string { return `{"id":"rbac-` + r + `"}` }, []string{"admin", "operator", "defender-manager"}, "", 200},
		{"GET", "/api/v1/defenders", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/defenders/summary", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"POST", "/api/v1/defenders/{id}/revoke", noBody, []string{"admin", "operator", "defender-manager"}, "", 404},
		{"POST", "/api/v1/defenders/{id}/renew", noBody, []string{"admin", "operator", "defender-manager"}, "", 404},
		{"GET", "/api/v1/policies/compliance/container", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/policies/compliance/container", func(string) string { return `{"rules":[]}` }, []string{"admin", "operator"}, "", 200},
		{"GET", "/api/v1/policies/compliance/host", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/policies/compliance/host", func(string) string { return `{"rules":[]}` }, []string{"admin", "operator"}, "", 200},
		{"GET", "/api/v1/stats/compliance", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/containers", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/hosts", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/audits/incidents", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"GET", "/api/v1/audits/incidents/{id}", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 404},
		{"PATCH", "/api/v1/audits/incidents/acknowledge/{id}", func(string) string { return `{"acknowledged":true}` }, []string{"admin", "operator"}, "", 404},
		{"GET", "/api/v1/profiles/container", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"POST", "/api/v1/profiles/container/learn", noBody, []string{"admin", "operator"}, "", 200},
		{"GET", "/api/v1/profiles/container/{id}", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 404},
		{"PUT", "/api/v1/profiles/container/{id}", func(string) string { return `{"processes":[]}` }, []string{"admin", "operator"}, "", 404},
		{"POST", "/api/v1/profiles/container/{id}/learn", noBody, []string{"admin", "operator"}, "", 404},
		{"GET", "/api/v1/policies/runtime/container", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/policies/runtime/container", func(string) string { return `{"rules":[]}` }, []string{"admin", "operator"}, "", 200},
		{"GET", "/api/v1/policies/runtime/host", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/policies/runtime/host", func(string) string { return `{"rules":[]}` }, []string{"admin", "operator"}, "", 200},
		{"GET", "/api/v1/policies/admission", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/policies/admission", func(string) string { return `{"mode":"audit"}` }, []string{"admin", "operator"}, "", 200},
		// Without service or url: the role check passed when the answer is 400.
		{"GET", "/api/v1/admission/webhook", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 400},
		{"GET", "/api/v1/policies/{type}", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/policies/{type}", func(string) string { return `{"rules":[]}` }, []string{"admin", "operator"}, "", 200},
		{"GET", "/api/v1/custom-compliance", noBody, []string{"admin", "operator", "auditor", "defender-manager"}, "", 200},
		{"PUT", "/api/v1/custom-compliance", func(string) string {
			return `{"_id":9000,"name":"rbac","severity":"low","script":"package rbac\ndeny contains \"m\" if false"}`
		}, []string{"admin", "operator"}, "", 200},
		// A non-numeric ID: the role check passed when the answer is 400.
		{"DELETE", "/api/v1/custom-compliance/{id}", noBody, []string{"admin", "operator"}, "", 400},
	}

	// Every endpoint of the API is in the matrix.
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	spec, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(spec, &doc); err != nil {
		t.Fatal(err)
	}
	var inSpec, inMatrix []string
	for p, ops := range doc.Paths {
		for m := range ops {
			inSpec = append(inSpec, strings.ToUpper(m)+" "+p)
		}
	}
	for _, e := range eps {
		inMatrix = append(inMatrix, e.method+" "+e.path)
	}
	sort.Strings(inSpec)
	sort.Strings(inMatrix)
	if strings.Join(inSpec, "\n") != strings.Join(inMatrix, "\n") {
		t.Fatalf("the RBAC matrix does not cover the API:\nspec:\n%s\nmatrix:\n%s", strings.Join(inSpec, "\n"), strings.Join(inMatrix, "\n"))
	}

	for _, e := range eps {
		path := strings.NewReplacer("{id}", "does-not-exist", "{type}", "admission").Replace(e.path)
		for _, role := range append([]string{"anonymous"}, roles...) {
			t.Run(e.method+" "+e.path+" as "+role, func(t *testing.T) {
				k := call{method: e.method, path: path, body: e.body(role)}
				want := e.okStatus
				switch role {
				case "anonymous":
					k.body = e.body("admin")
					if e.access != public {
						want = 401
					}
				default:
					k.user, k.pass = creds(role)
					if e.access != public && !slices.Contains(e.allowed, role) {
						want = 403
					}
				}
				r := do(t, c, k)
				if r.status != want {
					t.Errorf("%s %s as %s = %d %s, want %d", e.method, path, role, r.status, r.body, want)
				}
			})
		}
	}
}
