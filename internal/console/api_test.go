package console_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"bulwark/internal/console/consoletest"
)

// call is one API request made by a test.
type call struct {
	method, path string
	body         string
	user, pass   string // HTTP Basic when user != ""
	token        string // Bearer when set
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) errMsg(t testing.TB) string {
	t.Helper()
	var e struct {
		Err string `json:"err"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not {\"err\": ...}: %v", r.body, err)
	}
	return e.Err
}

func do(t testing.TB, c *consoletest.Console, k call) reply {
	t.Helper()
	var body io.Reader
	if k.body != "" {
		body = strings.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), k.method, c.URL+k.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if k.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if k.user != "" {
		req.SetBasicAuth(k.user, k.pass)
	}
	if k.token != "" {
		req.Header.Set("Authorization", "Bearer "+k.token)
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", k.method, k.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func mustStatus(t testing.TB, c *consoletest.Console, k call, want int) reply {
	t.Helper()
	r := do(t, c, k)
	if r.status != want {
		t.Fatalf("%s %s = %d %s, want %d", k.method, k.path, r.status, r.body, want)
	}
	return r
}

func admin(k call) call {
	k.user, k.pass = "admin", consoletest.AdminPassword
	return k
}

func createUser(t testing.TB, c *consoletest.Console, name, role, pw string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": name, "role": role, "password": pw})
	mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/users", body: string(body)}), 200)
}

func TestPingAndCredentials(t *testing.T) {
	c := consoletest.Start(t)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/_ping"}, 200)
	r := mustStatus(t, c, call{method: "GET", path: "/api/v1/users"}, 401)
	if r.errMsg(t) == "" || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without err message or WWW-Authenticate: %q %v", r.body, r.header)
	}
	mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/users"}), 200)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/users", user: "admin", pass: "wrong-password"}, 401)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/users", user: "nobody", pass: "wrong-password"}, 401)

	tok := token(t, c, "admin", consoletest.AdminPassword)
	r = mustStatus(t, c, call{method: "GET", path: "/api/v1/users", token: tok}, 200)
	var users []map[string]any
	if err := json.Unmarshal(r.body, &users); err != nil || len(users) != 1 || users[0]["username"] != "admin" || users[0]["role"] != "admin" {
		t.Fatalf("GET /users = %s (%v), want the admin", r.body, err)
	}
	if _, ok := users[0]["password"]; ok {
		t.Error("a user's password is in the answer")
	}
	mustStatus(t, c, call{method: "GET", path: "/api/v1/users", token: tok[:len(tok)-2] + "xx"}, 401)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/users", token: "not-a-token"}, 401)

	r = mustStatus(t, c, call{method: "GET", path: "/api/v1/version", token: tok}, 200)
	var v string
	if err := json.Unmarshal(r.body, &v); err != nil || v != "test" {
		t.Errorf("GET /version = %s, want the JSON string \"test\"", r.body)
	}
}

func token(t testing.TB, c *consoletest.Console, user, pass string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	r := mustStatus(t, c, call{method: "POST", path: "/api/v1/authenticate", body: string(body)}, 200)
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &tr); err != nil || tr.Token == "" {
		t.Fatalf("authenticate answered %s", r.body)
	}
	return tr.Token
}

func TestTokensDieWithPasswordOrUser(t *testing.T) {
	c := consoletest.Start(t)
	createUser(t, c, "alice", "operator", "alice-password-1")
	tok := token(t, c, "alice", "alice-password-1")
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", token: tok}, 200)

	mustStatus(t, c, call{method: "PUT", path: "/api/v1/users/password", token: tok, body: `{"oldPassword":"wrong-one!","newPassword":"alice-password-2"}`}, 400)
	mustStatus(t, c, call{method: "PUT", path: "/api/v1/users/password", token: tok, body: `{"oldPassword":"alice-password-1","newPassword":"alice-password-2"}`}, 200)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", token: tok}, 401)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", user: "alice", pass: "alice-password-1"}, 401)
	tok2 := token(t, c, "alice", "alice-password-2")
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", token: tok2}, 200)

	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/users/alice"}), 200)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", token: tok2}, 401)
	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/users/alice"}), 404)
}

func TestBadInput(t *testing.T) {
	c := consoletest.Start(t)
	audits := func() int {
		r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/mgmt?limit=1000"}), 200)
		var a []any
		if err := json.Unmarshal(r.body, &a); err != nil {
			t.Fatal(err)
		}
		return len(a)
	}
	before := audits()
	tests := []struct {
		name, method, path, body string
		want                     int
		wantMsg                  string
	}{
		{"malformed JSON", "POST", "/api/v1/users", `{"username": "bob", `, 400, "malformed JSON"},
		{"unknown field", "POST", "/api/v1/users", `{"username":"bob","role":"auditor","password":"bob-password","isRoot":true}`, 400, `unknown field "isRoot"`},
		{"oversized", "POST", "/api/v1/users", `{"username":"` + strings.Repeat("b", 2<<20) + `"}`, 400, "larger than"},
		{"bad role", "POST", "/api/v1/users", `{"username":"bob","role":"god","password":"bob-password"}`, 400, `unknown role "god"`},
		{"short password", "POST", "/api/v1/users", `{"username":"bob","role":"auditor","password":"short"}`, 400, "shorter than 8"},
		{"bad username", "POST", "/api/v1/users", `{"username":"bob smith","role":"auditor","password":"bob-password"}`, 400, "contains"},
		{"missing role", "POST", "/api/v1/users", `{"username":"bob","password":"bob-password"}`, 400, `"role" is required`},
		{"wrong type", "POST", "/api/v1/users", `{"username":5}`, 400, `field "username" must be string`},
		{"bad audit limit", "GET", "/api/v1/audits/mgmt?limit=-3", ``, 400, "limit"},
		{"bad audit time", "GET", "/api/v1/audits/mgmt?from=yesterday", ``, 400, "RFC 3339"},
		{"delete self", "DELETE", "/api/v1/users/admin", ``, 400, "your own user"},
		{"demote last admin", "PUT", "/api/v1/users", `{"username":"admin","role":"auditor"}`, 400, "last admin"},
		{"unknown endpoint", "GET", "/api/v1/nothing-here", ``, 404, "no such endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustStatus(t, c, admin(call{method: tc.method, path: tc.path, body: tc.body}), tc.want)
			if msg := r.errMsg(t); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("err = %q, want it to contain %q", msg, tc.wantMsg)
			}
		})
	}
	r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/users"}), 200)
	if strings.Contains(string(r.body), "bob") {
		t.Errorf("a refused request left a user behind: %s", r.body)
	}
	if after := audits(); after != before {
		t.Errorf("refused requests wrote %d audit records", after-before)
	}
	mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/users", body: `{"username":"admin","role":"auditor","password":"another-password"}`}), 409)
}

func TestLoginBackoff(t *testing.T) {
	c := consoletest.Start(t)
	createUser(t, c, "carol", "auditor", "carol-password")
	var last reply
	for range 8 {
		last = do(t, c, call{method: "POST", path: "/api/v1/authenticate", body: `{"username":"carol","password":"guess-guess"}`})
		if last.status == 429 {
			break
		}
		if last.status != 401 {
			t.Fatalf("wrong password answered %d, want 401 or 429", last.status)
		}
	}
	if last.status != 429 {
		t.Fatalf("8 wrong passwords never answered 429")
	}
	if s, err := strconv.Atoi(last.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 Retry-After = %q, want a positive number of seconds", last.header.Get("Retry-After"))
	}
	// While locked out, even the right password is refused: guessing gains nothing.
	mustStatus(t, c, call{method: "POST", path: "/api/v1/authenticate", body: `{"username":"carol","password":"carol-password"}`}, 429)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/roles", user: "carol", pass: "carol-password"}, 429)
}

func TestAccessKeys(t *testing.T) {
	c := consoletest.Start(t)
	createUser(t, c, "ops", "operator", "ops-password")
	r := mustStatus(t, c, call{method: "POST", path: "/api/v1/access-keys", user: "ops", pass: "ops-password", body: `{"name":"ci","role":"ci-user","expiresInDays":30}`}, 200)
	var k struct{ ID, Secret, Role string }
	if err := json.Unmarshal(r.body, &k); err != nil || k.ID == "" || k.Secret == "" || k.Role != "ci-user" {
		t.Fatalf("create key = %s", r.body)
	}
	// The key acts with its narrower role.
	r = mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", user: k.ID, pass: k.Secret}, 200)
	if !strings.Contains(string(r.body), `"role":"ci-user"`) {
		t.Errorf("current user via key = %s, want role ci-user", r.body)
	}
	mustStatus(t, c, call{method: "GET", path: "/api/v1/users", user: k.ID, pass: k.Secret}, 403)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", user: k.ID, pass: k.Secret + "x"}, 401)
	// A key exchanged for a token keeps its role; a key cannot mint keys.
	tok := token(t, c, k.ID, k.Secret)
	mustStatus(t, c, call{method: "POST", path: "/api/v1/access-keys", token: tok, body: `{}`}, 403)
	// A key cannot exceed its owner.
	mustStatus(t, c, call{method: "POST", path: "/api/v1/access-keys", user: "ops", pass: "ops-password", body: `{"role":"admin"}`}, 403)
	// Other users' keys are invisible to ops and deletable by the admin.
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/access-keys?username=*"}), 200)
	if !strings.Contains(string(r.body), k.ID) || strings.Contains(string(r.body), k.Secret) {
		t.Errorf("admin key list = %s: want the key, never its secret", r.body)
	}
	mustStatus(t, c, call{method: "GET", path: "/api/v1/access-keys?username=admin", user: "ops", pass: "ops-password"}, 403)
	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/access-keys/" + k.ID}), 200)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", user: k.ID, pass: k.Secret}, 401)
	mustStatus(t, c, call{method: "GET", path: "/api/v1/current/user", token: tok}, 401)

	// The secret is kept only as a hash.
	db, err := os.ReadFile(filepath.Join(c.DataDir, "bulwark.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(c.DataDir, "bulwark.db-wal"))
	if bytes.Contains(db, []byte(k.Secret)) || bytes.Contains(wal, []byte(k.Secret)) {
		t.Error("the access key secret is stored in clear")
	}
}

func TestAuditRecordsEveryChange(t *testing.T) {
	c := consoletest.Start(t)
	createUser(t, c, "dave", "auditor", "dave-password")
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/users", body: `{"username":"dave","role":"operator"}`}), 200)
	r := mustStatus(t, c, call{method: "POST", path: "/api/v1/access-keys", user: "dave", pass: "dave-password", body: `{"name":"k"}`}, 200)
	var k struct{ ID, Secret string }
	_ = json.Unmarshal(r.body, &k)
	mustStatus(t, c, call{method: "DELETE", path: "/api/v1/access-keys/" + k.ID, user: "dave", pass: "dave-password"}, 200)
	mustStatus(t, c, admin(call{method: "DELETE", path: "/api/v1/users/dave"}), 200)

	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/mgmt?type=users"}), 200)
	var recs []struct {
		Username, Type, Method, API, Status, Diff string
	}
	if err := json.Unmarshal(r.body, &recs); err != nil {
		t.Fatal(err)
	}
	var diffs []string
	for _, a := range recs {
		diffs = append(diffs, a.Username+": "+a.Diff)
	}
	want := []string{"admin: deleted user dave", "admin: updated user dave: role auditor → operator", "admin: created user dave with role auditor", "system: created first admin admin"}
	if strings.Join(diffs, "\n") != strings.Join(want, "\n") {
		t.Errorf("user audits, newest first:\n%s\nwant:\n%s", strings.Join(diffs, "\n"), strings.Join(want, "\n"))
	}
	r = mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/mgmt?type=accessKeys&user=dave"}), 200)
	if n := strings.Count(string(r.body), `"_id"`); n != 2 {
		t.Errorf("dave's key audits = %d records, want 2: %s", n, r.body)
	}
	if strings.Contains(string(r.body), k.Secret) || strings.Contains(string(r.body), "dave-password") {
		t.Error("an audit record contains a secret")
	}
}

func TestServedSpecIsCommittedFile(t *testing.T) {
	c := consoletest.Start(t)
	r := mustStatus(t, c, call{method: "GET", path: "/api/v1/openapi.yaml"}, 200)
	file, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.body, file) {
		t.Error("the served OpenAPI document differs from api/openapi.yaml")
	}
}

func TestTLSVersions(t *testing.T) {
	c := consoletest.Start(t)
	for _, tc := range []struct {
		name    string
		max     uint16
		wantErr bool
	}{{"TLS 1.1", tls.VersionTLS11, true}, {"TLS 1.2", tls.VersionTLS12, false}, {"TLS 1.3", tls.VersionTLS13, false}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := c.Client.Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.MinVersion = tls.VersionTLS10
			tr.TLSClientConfig.MaxVersion = tc.max
			req, _ := http.NewRequestWithContext(t.Context(), "GET", c.URL+"/api/v1/_ping", nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("handshake with max %s: err = %v, want error %v", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestRestartKeepsData(t *testing.T) {
	c := consoletest.Start(t)
	createUser(t, c, "erin", "auditor", "erin-password")
	ca := c.CACertPEM()
	dir := c.DataDir
	// A second Console on the same directory after the first is gone.
	c.Stop()
	c2 := consoletest.Start(t, consoletest.WithDataDir(dir))
	mustStatus(t, c2, call{method: "GET", path: "/api/v1/current/user", user: "erin", pass: "erin-password"}, 200)
	if !bytes.Equal(ca, c2.CACertPEM()) {
		t.Error("the CA changed across a restart")
	}
	if c2.GeneratedAdminPassword() != "" {
		t.Error("a restart generated a new admin password")
	}
}
