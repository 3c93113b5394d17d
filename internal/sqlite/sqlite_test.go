package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/store"
	"bulwark/internal/store/storetest"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openTB opens a database at path and closes it when the test ends.
func openTB(tb testing.TB, path string) *DB {
	tb.Helper()
	db, err := Open(tb.Context(), path, discard())
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTB(t, filepath.Join(t.TempDir(), "bulwark.db"))
	})
}

func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dir with ?#% in it")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bulwark.db")
	db := openTB(t, path)

	if err := db.Update(t.Context(), func(w store.Writer) error { return w.PutSetting(t.Context(), "k", []byte("v")) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	// SQLite opened the file at path, not some misreading of it, and its WAL
	// is as private as the database.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", e.Name(), got)
		}
	}
	if diff := cmp.Diff([]string{"bulwark.db", "bulwark.db-shm", "bulwark.db-wal"}, names); diff != "" {
		t.Errorf("files in the database directory (-want +got):\n%s", diff)
	}

	tests := []struct {
		pool   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"write", db.write, "journal_mode", "wal"},
		{"write", db.write, "synchronous", "2"},
		{"write", db.write, "foreign_keys", "1"},
		{"write", db.write, "busy_timeout", "10000"},
		{"read", db.read, "foreign_keys", "1"},
		{"read", db.read, "busy_timeout", "10000"},
		{"read", db.read, "query_only", "1"},
	}
	for _, tc := range tests {
		t.Run(tc.pool+" "+tc.pragma, func(t *testing.T) {
			var got string
			if err := tc.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
			}
		})
	}

	// Only the write connection writes.
	if _, err := db.read.ExecContext(t.Context(), `INSERT INTO settings (key, value) VALUES ('x', x'00')`); err == nil {
		t.Errorf("write on the read pool succeeded, want query_only to refuse it")
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bulwark.db")
	ctx := t.Context()
	db, err := Open(ctx, path, discard())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	u := auth.User{Username: "alice", Role: auth.RoleAdmin, AuthType: auth.AuthBasic, PasswordHash: "h", CreatedAt: time.Now()}
	err = db.Update(ctx, func(w store.Writer) error {
		if err := w.CreateUser(ctx, u); err != nil {
			return err
		}
		return w.PutSetting(ctx, "signing-key", []byte("secret"))
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openTB(t, path)
	got, err := db.User(ctx, "alice")
	if err != nil {
		t.Fatalf("User(alice) after reopening: %v", err)
	}
	if !got.CreatedAt.Equal(u.CreatedAt) || got.Role != u.Role {
		t.Errorf("User(alice) after reopening = %+v, want %+v", got, u)
	}
	if v, err := db.Setting(ctx, "signing-key"); err != nil || string(v) != "secret" {
		t.Errorf("Setting(signing-key) after reopening = %q, %v; want \"secret\"", v, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	tests := []struct {
		name    string
		version int
		want    string
	}{
		{"newer", 9999, "newer than this binary"},
		{"unknown gap", 0, "does not know"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bulwark.db")
			db, err := Open(t.Context(), path, discard())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if _, err := db.write.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)`, tc.version); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			db, err = Open(t.Context(), path, discard())
			if err == nil {
				db.Close()
				t.Fatalf("Open of a database with schema migration %d succeeded, want an error", tc.version)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bulwark.db")
	for range 3 {
		db, err := Open(t.Context(), path, discard())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db := openTB(t, path)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.read.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("schema_migrations has %d rows after three opens, want %d", n, len(ms))
	}
}

// crashChildEnv names the database the crash test's child writes to.
const crashChildEnv = "BULWARK_SQLITE_CRASH_CHILD_DB"

// TestCrash kills a process in the middle of writing and checks that every
// Update it reported as committed survived, whole, and nothing else did by
// halves.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "bulwark.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrash$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	committed := make(chan string)
	readDone := make(chan error, 1)
	go func() {
		defer close(committed)
		readDone <- readCommitted(out, committed)
	}()

	// Let the child get going (under -race it starts slowly), then kill it
	// mid-stream.
	var names []string
	select {
	case name, ok := <-committed:
		if !ok {
			t.Fatalf("child exited before committing anything: %v", <-readDone)
		}
		names = append(names, name)
	case <-time.After(time.Minute):
		t.Fatal("child committed nothing within a minute")
	}
	kill := time.After(300 * time.Millisecond)
loop:
	for {
		select {
		case name, ok := <-committed:
			if !ok {
				break loop
			}
			names = append(names, name)
		case <-kill:
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("kill child %d: %v", cmd.Process.Pid, err)
			}
			kill = nil
		}
	}
	if err := <-readDone; err != nil {
		t.Fatalf("read child output: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("child exited cleanly, want it killed")
	}
	t.Logf("child committed %d updates before SIGKILL", len(names))

	db := openTB(t, path)
	ctx := t.Context()
	var check string
	if err := db.read.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if check != "ok" {
		t.Fatalf("integrity_check = %q, want ok", check)
	}
	for _, name := range names {
		if _, err := db.User(ctx, name); err != nil {
			t.Errorf("User(%s), reported committed: %v", name, err)
		}
	}
	// Every user has exactly one audit record and every audit record a user:
	// no Update was half applied, including one in flight at the kill.
	rows, err := db.read.QueryContext(ctx, `
		SELECT u.username, a.username, count(a.id)
		FROM users u FULL JOIN audits_mgmt a ON a.username = u.username
		GROUP BY u.username, a.username`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	users := 0
	for rows.Next() {
		var (
			u, a sql.NullString
			n    int
		)
		if err := rows.Scan(&u, &a, &n); err != nil {
			t.Fatal(err)
		}
		if !u.Valid || !a.Valid || n != 1 {
			t.Errorf("user %q has %d audit records (audit username %q), want exactly 1", u.String, n, a.String)
		}
		users++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if users < len(names) {
		t.Errorf("database has %d users, want at least the %d reported committed", users, len(names))
	}
}

// readCommitted sends each name the child reports committed. A line cut off by
// the kill is not a report.
func readCommitted(r io.Reader, names chan<- string) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if name, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "committed "); ok {
			names <- name
		}
	}
}

// crashChild writes until it is killed, reporting each committed Update on
// stdout.
func crashChild(t *testing.T, path string) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db, err := Open(ctx, path, discard())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("user-%07d", i)
		err := db.Update(ctx, func(w store.Writer) error {
			if err := w.CreateUser(ctx, auth.User{Username: name, Role: auth.RoleAuditor, AuthType: auth.AuthBasic, CreatedAt: time.Now()}); err != nil {
				return err
			}
			_, err := w.AppendAudit(ctx, audit.Mgmt{Time: time.Now(), Username: name, Type: audit.TypeUsers, API: "/api/v1/users", Status: "succeeded", Diff: "created user " + name})
			return err
		})
		if err != nil {
			t.Fatalf("Update %s: %v", name, err)
		}
		// One write(2) per line, straight to the pipe: no buffer to lose.
		fmt.Fprintf(os.Stdout, "committed %s\n", name)
	}
}

func BenchmarkUsersList(b *testing.B) {
	db := openTB(b, filepath.Join(b.TempDir(), "bulwark.db"))
	ctx := b.Context()
	err := db.Update(ctx, func(w store.Writer) error {
		for i := range 100 {
			u := auth.User{Username: fmt.Sprintf("user-%03d", i), Role: auth.RoleOperator, AuthType: auth.AuthBasic, PasswordHash: "$2a$10$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ", CreatedAt: time.Now(), LastModified: time.Now()}
			if err := w.CreateUser(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		users, err := db.Users(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(users) != 100 {
			b.Fatalf("Users returned %d, want 100", len(users))
		}
	}
}

func BenchmarkUpdateCreateAudit(b *testing.B) {
	db := openTB(b, filepath.Join(b.TempDir(), "bulwark.db"))
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("user-%d", i)
		i++
		err := db.Update(ctx, func(w store.Writer) error {
			if err := w.CreateUser(ctx, auth.User{Username: name, Role: auth.RoleAuditor, AuthType: auth.AuthBasic, CreatedAt: time.Now()}); err != nil {
				return err
			}
			_, err := w.AppendAudit(ctx, audit.Mgmt{Time: time.Now(), Username: name, Type: audit.TypeUsers, API: "/api/v1/users", Status: "succeeded"})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
