package cli

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// result is what one run of bulwarkctl printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// run executes bulwarkctl in-process with env as its whole environment.
func run(t testing.TB, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(t.Context(), args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// baseEnv is an environment with a fresh config directory.
func baseEnv(t testing.TB) map[string]string {
	t.Helper()
	return map[string]string{envConfigDir: filepath.Join(t.TempDir(), "bulwark")}
}

// fakeConsole is an httptest TLS server that records requests and answers
// from a table of canned responses.
type fakeConsole struct {
	*httptest.Server
	caFile string

	mu   sync.Mutex
	reqs []*http.Request
}

func startFake(t testing.TB, h http.HandlerFunc) *fakeConsole {
	t.Helper()
	f := &fakeConsole{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Clone(r.Context()))
		f.mu.Unlock()
		h(w, r)
	}))
	f.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError) // rejected handshakes are expected
	f.StartTLS()
	t.Cleanup(f.Close)
	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
	if err := os.WriteFile(f.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeConsole) last(t testing.TB) *http.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the fake Console got no request")
	}
	return f.reqs[len(f.reqs)-1]
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown command", []string{"nope"}, "unknown command"},
		{"unknown flag", []string{"users", "--nope"}, "unknown flag"},
		{"bad output", []string{"-o", "yaml", "users"}, "--output must be table or json"},
		{"missing argument", []string{"users", "delete"}, "expected NAME"},
		{"extra argument", []string{"users", "set-role", "a", "b", "c"}, "expected NAME ROLE"},
		{"argument to users", []string{"users", "bob"}, `unexpected argument "bob"`},
		{"create without role", []string{"users", "create", "bob"}, `required flag(s) "role" not set`},
		{"http console", []string{"--console", "http://127.0.0.1:8083", "users"}, "must use https"},
		{"negative limit", []string{"--username", "u", "--password", "p", "audits", "--limit", "-1"}, "--limit must not be negative"},
		{"password without username", []string{"--password", "p", "users"}, "needs --username"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, baseEnv(t), "", tc.args...)
			if r.code != exitUsage {
				t.Errorf("Execute(%q) = %d, want %d; stderr:\n%s", tc.args, r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--help") {
				t.Errorf("Execute(%q) stderr = %q, want it to contain %q and point to --help", tc.args, r.stderr, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	globals := []string{"--console", "--ca-cert", "--insecure", "--output", "--username", "--password", "--config-dir",
		envConsole, envCACert, envUsername, envPassword, envConfigDir}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, append([]string{"Examples:", "login", "users", "keys", "audits", "version", "Exit codes"}, globals...)},
		{[]string{"users", "create", "--help"}, append([]string{"--role", "--password-stdin", "auditor"}, globals...)},
		{[]string{"keys", "create", "--help"}, append([]string{"--name", "--role", "--expires-in-days", "printed once"}, globals...)},
		{[]string{"audits", "--help"}, append([]string{"--user", "--type", "--limit"}, globals...)},
		{[]string{"login", "--help"}, append([]string{"0600"}, globals...)},
		{[]string{"logout", "--help"}, globals},
		{[]string{"version", "--help"}, globals},
		{[]string{"users", "--help"}, append([]string{"set-role", "delete", "password", "list"}, globals...)},
		{[]string{"users", "password", "--help"}, globals},
		{[]string{"keys", "delete", "--help"}, globals},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, baseEnv(t), "", tc.args...)
			if r.code != 0 {
				t.Fatalf("Execute(%q) = %d, want 0; stderr:\n%s", tc.args, r.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("Execute(%q) help does not mention %q:\n%s", tc.args, w, r.stdout)
				}
			}
		})
	}
}

func TestConfigSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "bulwark")
	got, warning, err := loadConfig(dir)
	if err != nil || warning != "" || got != (savedConfig{}) {
		t.Fatalf("loadConfig(missing) = %+v, %q, %v; want empty, no warning, no error", got, warning, err)
	}
	for _, want := range []savedConfig{
		{Console: "https://c:8083", CACert: "/ca.pem", Token: "t1", Username: "admin"},
		{Console: "https://d:8083", Insecure: true, Token: "t2", Username: "bob"}, // overwrite
	} {
		if err := saveConfig(dir, want); err != nil {
			t.Fatalf("saveConfig: %v", err)
		}
		got, warning, err := loadConfig(dir)
		if err != nil || warning != "" {
			t.Fatalf("loadConfig = %q, %v", warning, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("loadConfig after saveConfig (-want +got):\n%s", diff)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != configFile {
		t.Errorf("config dir holds %v, want only %s (no temporary files)", entries, configFile)
	}
	if runtime.GOOS == "windows" {
		return
	}
	assertMode(t, filepath.Join(dir, configFile), 0o600)
	assertMode(t, dir, 0o700)

	if err := os.Chmod(filepath.Join(dir, configFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, warning, _ := loadConfig(dir); !strings.Contains(warning, "chmod 600") {
		t.Errorf("loadConfig(0644 file) warning = %q, want advice to chmod 600", warning)
	}
}

func TestLoadConfigCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadConfig(dir); err == nil || !strings.Contains(err.Error(), "login") {
		t.Errorf("loadConfig(corrupt) = %v, want an error that says to log in again", err)
	}
	r := run(t, map[string]string{envConfigDir: dir}, "", "users")
	if r.code != exitError {
		t.Errorf("users with a corrupt config = %d, want %d; stderr: %s", r.code, exitError, r.stderr)
	}
}

func assertMode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %04o, want %04o", path, got, want)
	}
}

func TestNormalizeConsole(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "https://127.0.0.1:8083", want: "https://127.0.0.1:8083"},
		{in: "https://console.example:8083/", want: "https://console.example:8083"},
		{in: "console.example:8083", want: "https://console.example:8083"},
		{in: " https://c/prefix/ ", want: "https://c/prefix"},
		{in: "http://c:8083", wantErr: true},
		{in: "https://", wantErr: true},
		{in: "https://c?x=1", wantErr: true},
		{in: "https://u:p@c", wantErr: true},
	}
	for _, tc := range tests {
		got, err := normalizeConsole(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("normalizeConsole(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestTables(t *testing.T) {
	when := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
		want  string
	}{
		{"users", func(b *bytes.Buffer) error {
			return writeUsers(b, []user{
				{Username: "admin", Role: "admin", AuthType: "basic", LastModified: when},
				{Username: "a-long-name", Role: "auditor"},
			})
		}, "" +
			"USERNAME     ROLE     AUTH   LAST MODIFIED\n" +
			"admin        admin    basic  2026-03-04 05:06:07\n" +
			"a-long-name  auditor  -      -\n"},
		{"no users", func(b *bytes.Buffer) error { return writeUsers(b, nil) }, "USERNAME  ROLE  AUTH  LAST MODIFIED\n"},
		{"keys", func(b *bytes.Buffer) error {
			return writeKeys(b, []accessKey{{ID: "k1", Username: "admin", Name: "ci", CreatedAt: when}})
		}, "" +
			"ID  USER   NAME  ROLE       CREATED              EXPIRES  LAST USED\n" +
			"k1  admin  ci    (owner's)  2026-03-04 05:06:07  never    -\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(&b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, b.String()); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCellEscapesControlCharacters(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"plain", "plain"},
		{"tab\there", `tab\x09here`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"line\nbreak", `line\x0abreak`},
		{"héllo", "héllo"},
	}
	for _, tc := range tests {
		if got := cell(tc.in); got != tc.want {
			t.Errorf("cell(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		want     []string
		wantCode int
	}{
		{"unauthorized", 401, `{"err":"unauthorized: valid credentials required"}`, []string{"bulwarkctl: list users: 401 Unauthorized: unauthorized: valid credentials required", "bulwarkctl login"}, exitError},
		{"forbidden", 403, `{"err":"forbidden: role auditor lacks permission manage-users"}`, []string{"403 Forbidden: forbidden: role auditor", "ask an admin"}, exitError},
		{"too many", 429, `{"err":"too many failed logins; retry in 4s"}`, []string{"429 Too Many Requests: too many failed logins"}, exitError},
		{"not json", 502, `<html>bad gateway</html>`, []string{"502 Bad Gateway: <html>bad gateway</html>"}, exitError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, answer(tc.status, tc.body))
			env := baseEnv(t)
			env[envConsole], env[envCACert] = f.URL, f.caFile
			r := run(t, env, "", "--username", "u", "--password", "p", "users")
			if r.code != tc.wantCode {
				t.Errorf("users = %d, want %d", r.code, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("users stderr = %q, want it to contain %q", r.stderr, w)
				}
			}
		})
	}
}

// TestCredentialLayering checks which credentials reach which Console: flags
// win over the environment, Basic over the saved token, and the saved token is
// never sent to a Console it was not saved for.
func TestCredentialLayering(t *testing.T) {
	f := startFake(t, answer(200, `[]`))
	other := startFake(t, answer(200, `[]`))
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		to       *fakeConsole
		wantAuth string // Authorization header; "" with wantCode 1 means no request
		wantCode int
	}{
		{"saved token", nil, nil, f, "Bearer saved-token", 0},
		{"env basic wins over token", map[string]string{envUsername: "eu", envPassword: "ep"}, nil, f, basic("eu", "ep"), 0},
		{"flag wins over env", map[string]string{envUsername: "eu", envPassword: "ep"}, []string{"--username", "fu", "--password", "fp"}, f, basic("fu", "fp"), 0},
		{"token not sent to another console", nil, []string{"--console", other.URL, "--ca-cert", other.caFile}, other, "", exitError},
		{"env console wins over saved", map[string]string{envConsole: other.URL, envCACert: other.caFile, envUsername: "eu", envPassword: "ep"}, nil, other, basic("eu", "ep"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := baseEnv(t)
			if err := saveConfig(env[envConfigDir], savedConfig{Console: f.URL, CACert: f.caFile, Token: "saved-token", Username: "admin"}); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.env {
				env[k] = v
			}
			tc.to.mu.Lock()
			tc.to.reqs = nil
			tc.to.mu.Unlock()
			r := run(t, env, "", append(tc.args, "users", "-o", "json")...)
			if r.code != tc.wantCode {
				t.Fatalf("users = %d, want %d; stderr: %s", r.code, tc.wantCode, r.stderr)
			}
			if tc.wantCode != 0 {
				if !strings.Contains(r.stderr, "bulwarkctl login") {
					t.Errorf("stderr = %q, want a hint to log in", r.stderr)
				}
				tc.to.mu.Lock()
				n := len(tc.to.reqs)
				tc.to.mu.Unlock()
				if n != 0 {
					t.Errorf("the other Console got %d requests, want none", n)
				}
				return
			}
			req := tc.to.last(t)
			if got := req.Header.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tc.wantAuth)
			}
			if req.URL.Path != "/api/v1/users" || req.Method != http.MethodGet {
				t.Errorf("request = %s %s, want GET /api/v1/users", req.Method, req.URL.Path)
			}
		})
	}
}

func basic(u, p string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(u, p)
	return r.Header.Get("Authorization")
}

// TestRequests checks the method, path and body each command sends.
func TestRequests(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		stdin    string
		reply    string
		method   string
		path     string // with query
		wantBody map[string]any
		wantOut  string
	}{
		{"create user", []string{"users", "create", "bob", "--role", "auditor"}, "pw-of-bob-123\n", `{"username":"bob","role":"auditor"}`,
			"POST", "/api/v1/users", map[string]any{"username": "bob", "password": "pw-of-bob-123", "role": "auditor"}, "Created user bob with role auditor"},
		{"create user stdin", []string{"users", "create", "bob", "--role", "auditor", "--password-stdin"}, "pw-of-bob-123", `{"username":"bob","role":"auditor"}`,
			"POST", "/api/v1/users", map[string]any{"username": "bob", "password": "pw-of-bob-123", "role": "auditor"}, "Created user bob"},
		{"set role", []string{"users", "set-role", "bob", "operator"}, "", `{"username":"bob","role":"operator"}`,
			"PUT", "/api/v1/users", map[string]any{"username": "bob", "role": "operator"}, "User bob now has role operator"},
		{"delete user", []string{"users", "delete", "bob/x"}, "", ``,
			"DELETE", "/api/v1/users/bob%2Fx", nil, "Deleted user bob/x"},
		{"change password", []string{"users", "password"}, "new-password-1\n", ``,
			"PUT", "/api/v1/users/password", map[string]any{"oldPassword": "p", "newPassword": "new-password-1"}, "Password changed"},
		{"create key", []string{"keys", "create", "--name", "ci", "--role", "ci-user", "--expires-in-days", "30"}, "", `{"id":"K1","secret":"S1"}`,
			"POST", "/api/v1/access-keys", map[string]any{"name": "ci", "role": "ci-user", "expiresInDays": float64(30)}, "Secret:  S1"},
		{"list keys of all", []string{"keys", "--user", "*"}, "", `[]`,
			"GET", "/api/v1/access-keys?username=%2A", nil, "ID"},
		{"delete key", []string{"keys", "delete", "K1"}, "", ``,
			"DELETE", "/api/v1/access-keys/K1", nil, "Deleted access key K1"},
		{"audits", []string{"audits", "--user", "bob", "--type", "users", "--limit", "5"}, "", `[{"_id":1,"username":"bob","type":"users","api":"/api/v1/users","status":"succeeded","diff":"created user x"}]`,
			"GET", "/api/v1/audits/mgmt?limit=5&type=users&user=bob", nil, "created user x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
				body, _ = readAll(r)
				answer(200, tc.reply)(w, r)
			})
			env := baseEnv(t)
			env[envConsole], env[envCACert] = f.URL, f.caFile
			r := run(t, env, tc.stdin, append([]string{"--username", "u", "--password", "p"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("Execute(%q) = %d; stderr: %s", tc.args, r.code, r.stderr)
			}
			req := f.last(t)
			if got := req.Method + " " + req.URL.RequestURI(); got != tc.method+" "+tc.path {
				t.Errorf("request = %s, want %s %s", got, tc.method, tc.path)
			}
			if tc.wantBody != nil {
				var got map[string]any
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("request body %q: %v", body, err)
				}
				if diff := cmp.Diff(tc.wantBody, got); diff != "" {
					t.Errorf("request body (-want +got):\n%s", diff)
				}
			}
			if !strings.Contains(r.stdout, tc.wantOut) {
				t.Errorf("stdout = %q, want it to contain %q", r.stdout, tc.wantOut)
			}
		})
	}
}

func readAll(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r.Body)
	return b.Bytes(), err
}

func TestNotLoggedIn(t *testing.T) {
	r := run(t, baseEnv(t), "", "users")
	if r.code != exitError || !strings.Contains(r.stderr, "not logged in") || !strings.Contains(r.stderr, "bulwarkctl login") {
		t.Errorf("users without login = %d, %q; want 1 and a hint to log in", r.code, r.stderr)
	}
}

func TestVersionWithoutConsole(t *testing.T) {
	r := run(t, baseEnv(t), "", "version", "-o", "json")
	if r.code != 0 {
		t.Fatalf("version = %d; stderr: %s", r.code, r.stderr)
	}
	var got versions
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("version -o json = %q: %v", r.stdout, err)
	}
	if diff := cmp.Diff(versions{Client: devVersion}, got); diff != "" {
		t.Errorf("version (-want +got):\n%s", diff)
	}
}

func TestLogout(t *testing.T) {
	env := baseEnv(t)
	dir := env[envConfigDir]
	if err := saveConfig(dir, savedConfig{Console: "https://c:8083", Token: "t", Username: "admin"}); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "", "logout")
	if r.code != 0 || !strings.Contains(r.stdout, "Logged out of https://c:8083") {
		t.Fatalf("logout = %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	got, _, err := loadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(savedConfig{Console: "https://c:8083", Username: "admin"}, got); diff != "" {
		t.Errorf("config after logout (-want +got):\n%s", diff)
	}
	if r := run(t, env, "", "logout"); r.code != 0 || !strings.Contains(r.stdout, "Not logged in") {
		t.Errorf("second logout = %d, %q", r.code, r.stdout)
	}
}

func TestTLSVerification(t *testing.T) {
	f := startFake(t, answer(200, `[]`))
	badCA := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(badCA, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"no CA", nil, exitError, []string{"cannot verify the Console's TLS certificate", "--ca-cert", "BULWARK_CA_CERT"}},
		{"insecure", []string{"--insecure"}, 0, []string{"warning: --insecure"}},
		{"CA", []string{"--ca-cert", f.caFile}, 0, nil},
		{"bad CA file", []string{"--ca-cert", badCA}, exitError, []string{"no PEM certificate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--console", f.URL, "--username", "u", "--password", "p"}, tc.args...)
			r := run(t, baseEnv(t), "", append(args, "users")...)
			if r.code != tc.wantCode {
				t.Errorf("users = %d, want %d; stderr: %s", r.code, tc.wantCode, r.stderr)
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr = %q, want it to contain %q", r.stderr, w)
				}
			}
		})
	}
}
