package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"bulwark/internal/audit"
	"bulwark/internal/console/consoletest"
)

// testConsole is a real Console and an environment that reaches it.
type testConsole struct {
	*consoletest.Console
	caFile string
}

func startConsole(t *testing.T, opts ...consoletest.Option) *testConsole {
	t.Helper()
	c := consoletest.Start(t, opts...)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, c.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testConsole{Console: c, caFile: ca}
}

// env returns a fresh config dir and the Console's URL and CA in the environment.
func (c *testConsole) env(t testing.TB) map[string]string {
	env := baseEnv(t)
	env[envConsole], env[envCACert] = c.URL, c.caFile
	return env
}

// adminEnv also carries the admin's credentials for HTTP Basic.
func (c *testConsole) adminEnv(t testing.TB) map[string]string {
	env := c.env(t)
	env[envUsername], env[envPassword] = "admin", consoletest.AdminPassword
	return env
}

func mustRun(t testing.TB, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	r := run(t, env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("bulwarkctl %s = %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func decode[T any](t testing.TB, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

func usernames(us []user) []string {
	var names []string
	for _, u := range us {
		names = append(names, u.Username)
	}
	return names
}

func TestLoginSavesTokenForLaterCommands(t *testing.T) {
	c := startConsole(t)
	dir := filepath.Join(t.TempDir(), "cfg")
	// Flags on login only; the password comes from stdin as a script would pipe it.
	out := mustRun(t, map[string]string{}, consoletest.AdminPassword+"\n",
		"--config-dir", dir, "--console", c.URL+"/", "--ca-cert", c.caFile, "--username", "admin", "login")
	if want := "Logged in to " + c.URL + " as admin\n"; out != want {
		t.Errorf("login printed %q, want %q", out, want)
	}
	assertMode(t, filepath.Join(dir, configFile), 0o600)
	assertMode(t, dir, 0o700)
	saved, _, err := loadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Console != c.URL || saved.Username != "admin" || saved.Token == "" || !filepath.IsAbs(saved.CACert) {
		t.Errorf("saved config = %+v, want console %s, user admin, a token and an absolute CA path", saved, c.URL)
	}

	// Later commands need only the config dir.
	env := map[string]string{envConfigDir: dir}
	users := decode[[]user](t, mustRun(t, env, "", "users", "-o", "json"))
	if !slices.Contains(usernames(users), "admin") {
		t.Errorf("users -o json = %v, want admin in it", users)
	}
	table := mustRun(t, env, "", "users", "list")
	if !strings.HasPrefix(table, "USERNAME") || !strings.Contains(table, "admin") {
		t.Errorf("users list =\n%s\nwant a table with admin", table)
	}

	v := decode[versions](t, mustRun(t, env, "", "version", "-o", "json"))
	if v.Client != devVersion || v.Server != "test" {
		t.Errorf("version -o json = %+v, want client %s and server test", v, devVersion)
	}

	// Changing the password revokes the token; bulwarkctl renews it.
	newPW := "a-new-admin-password-1"
	out = mustRun(t, env, consoletest.AdminPassword+"\n"+newPW+"\n", "users", "password")
	if !strings.Contains(out, "Password changed") || !strings.Contains(out, "Saved login renewed") {
		t.Errorf("users password printed %q", out)
	}
	mustRun(t, env, "", "users")

	mustRun(t, env, "", "logout")
	r := run(t, env, "", "users")
	if r.code != exitError || !strings.Contains(r.stderr, "bulwarkctl login") {
		t.Errorf("users after logout = %d, %q; want 1 and a hint to log in", r.code, r.stderr)
	}
}

func TestBasicAuthWithoutLogin(t *testing.T) {
	c := startConsole(t)
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"environment", c.adminEnv(t), nil},
		{"flags", c.env(t), []string{"--username", "admin", "--password", consoletest.AdminPassword}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			users := decode[[]user](t, mustRun(t, tc.env, "", append(tc.args, "users", "-o", "json")...))
			if !slices.Contains(usernames(users), "admin") {
				t.Errorf("users = %v, want admin", users)
			}
			if _, err := os.Stat(filepath.Join(tc.env[envConfigDir], configFile)); err == nil {
				t.Errorf("a command without login wrote %s", configFile)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	c := startConsole(t)
	tests := []struct {
		name string
		args []string
	}{
		{"login", []string{"--username", "admin", "--password", "wrong-password", "login"}},
		{"basic", []string{"--username", "admin", "--password", "wrong-password", "users"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := c.env(t)
			r := run(t, env, "", tc.args...)
			if r.code != exitError {
				t.Errorf("%q = %d, want %d", tc.args, r.code, exitError)
			}
			for _, w := range []string{"401 Unauthorized", "bulwarkctl login"} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%q stderr = %q, want it to contain %q", tc.args, r.stderr, w)
				}
			}
			if _, err := os.Stat(filepath.Join(env[envConfigDir], configFile)); err == nil {
				t.Errorf("a failed %q wrote %s", tc.args, configFile)
			}
		})
	}
}

func TestManageUsers(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)
	out := mustRun(t, env, "alice-password-1\n", "users", "create", "alice", "--role", "auditor")
	if want := "Created user alice with role auditor\n"; out != want {
		t.Errorf("users create printed %q, want %q", out, want)
	}
	list := mustRun(t, env, "", "users", "list")
	if !strings.Contains(list, "alice") || !strings.Contains(list, "auditor") {
		t.Errorf("users list =\n%s\nwant alice with role auditor", list)
	}

	// alice can log in with the password given on stdin, and as auditor she
	// may not list users.
	alice := c.env(t)
	alice[envUsername], alice[envPassword] = "alice", "alice-password-1"
	r := run(t, alice, "", "users")
	if r.code != exitError || !strings.Contains(r.stderr, "403 Forbidden") {
		t.Errorf("users as auditor = %d, %q; want 1 and 403", r.code, r.stderr)
	}

	mustRun(t, env, "", "users", "set-role", "alice", "admin")
	if users := decode[[]user](t, mustRun(t, alice, "", "users", "-o", "json")); !slices.Contains(usernames(users), "alice") {
		t.Errorf("users as alice (admin) = %v", users)
	}

	r = run(t, env, "x-password-1\n", "users", "create", "alice", "--role", "auditor")
	if r.code != exitError || !strings.Contains(r.stderr, "409 Conflict") {
		t.Errorf("creating alice twice = %d, %q; want 1 and 409", r.code, r.stderr)
	}

	recs := decode[[]audit.Mgmt](t, mustRun(t, env, "", "audits", "--type", "users", "-o", "json"))
	if !slices.ContainsFunc(recs, func(a audit.Mgmt) bool { return strings.Contains(a.Diff, "created user alice") }) {
		t.Errorf("audits --type users = %+v, want the creation of alice", recs)
	}

	mustRun(t, env, "", "users", "delete", "alice")
	if users := decode[[]user](t, mustRun(t, env, "", "users", "-o", "json")); slices.Contains(usernames(users), "alice") {
		t.Errorf("users after delete = %v, still has alice", users)
	}
	r = run(t, env, "", "users", "delete", "alice")
	if r.code != exitError || !strings.Contains(r.stderr, "404 Not Found") {
		t.Errorf("deleting alice twice = %d, %q; want 1 and 404", r.code, r.stderr)
	}
}

func TestAccessKeyWorksAsBasicAuth(t *testing.T) {
	c := startConsole(t)
	env := c.adminEnv(t)
	r := run(t, env, "", "keys", "create", "--name", "ci", "--role", "auditor", "--expires-in-days", "30", "-o", "json")
	if r.code != 0 {
		t.Fatalf("keys create = %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "store the secret now") {
		t.Errorf("keys create stderr = %q, want a warning to store the secret", r.stderr)
	}
	k := decode[accessKey](t, r.stdout)
	if k.ID == "" || k.Secret == "" || k.Name != "ci" {
		t.Fatalf("keys create = %+v, want an ID, a secret and name ci", k)
	}

	keyEnv := c.env(t)
	recs := decode[[]audit.Mgmt](t, mustRun(t, keyEnv, "", "--username", k.ID, "--password", k.Secret, "audits", "-o", "json"))
	if len(recs) == 0 {
		t.Errorf("audits with the key = empty, want at least the key's creation")
	}

	list := mustRun(t, env, "", "keys", "list")
	if !strings.Contains(list, k.ID) || strings.Contains(list, k.Secret) {
		t.Errorf("keys list =\n%s\nwant the key ID and not its secret", list)
	}
	mustRun(t, env, "", "keys", "delete", k.ID)
	r = run(t, keyEnv, "", "--username", k.ID, "--password", k.Secret, "audits")
	if r.code != exitError || !strings.Contains(r.stderr, "401") {
		t.Errorf("audits with a deleted key = %d, %q; want 1 and 401", r.code, r.stderr)
	}
}

func TestTLSAgainstConsole(t *testing.T) {
	c := startConsole(t)
	t.Run("insecure", func(t *testing.T) {
		env := baseEnv(t)
		env[envUsername], env[envPassword] = "admin", consoletest.AdminPassword
		r := run(t, env, "", "--console", c.URL, "--insecure", "users", "-o", "json")
		if r.code != 0 {
			t.Fatalf("users --insecure = %d: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "warning: --insecure") {
			t.Errorf("stderr = %q, want a warning about --insecure", r.stderr)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		env := baseEnv(t)
		r := run(t, env, consoletest.AdminPassword+"\n", "--console", c.URL, "--username", "admin", "login")
		if r.code != exitError {
			t.Errorf("login without --ca-cert = %d, want %d", r.code, exitError)
		}
		for _, w := range []string{"certificate", "--ca-cert", "--insecure"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr = %q, want it to mention %q", r.stderr, w)
			}
		}
	})
}
