// Package storetest is the conformance suite for store.Store: every adapter
// runs it from its own tests, so that the SQLite and PostgreSQL stores behave
// the same to the Console.
package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/store"
)

// Run runs the suite. open must return a new, empty store for each call and
// arrange for it to be closed when the test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"Errors", testErrors},
		{"AccessKeys", testAccessKeys},
		{"Audits", testAudits},
		{"AuditLimits", testAuditLimits},
		{"Settings", testSettings},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"UpdatePanics", testUpdatePanics},
		{"UpdateReadsOwnWrites", testUpdateReadsOwnWrites},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"TimePrecision", testTimePrecision},
		{"Defenders", testDefenders},
		{"DefenderCerts", testDefenderCerts},
		{"UpdateDefenderState", testUpdateDefenderState},
		{"AppendEvents", testAppendEvents},
		{"EventFilters", testEventFilters},
		{"EventLimits", testEventLimits},
		{"RuntimeEventFilters", testRuntimeEventFilters},
		{"EventCursor", testEventCursor},
		{"Policies", testPolicies},
		{"FleetRollsBack", testFleetRollsBack},
		{"ComplianceResults", testComplianceResults},
		{"ComplianceFilters", testComplianceFilters},
		{"RuntimeModels", testRuntimeModels},
		{"Incidents", testIncidents},
		{"AdmissionAudits", testAdmissionAudits},
		{"AdmissionAuditsPrune", testAdmissionAuditsPrune},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, open(t))
		})
	}
}

// base is a time with every nanosecond digit set, so that truncation shows.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func newUser(name string, role auth.Role) auth.User {
	return auth.User{
		Username:          name,
		Role:              role,
		AuthType:          auth.AuthBasic,
		PasswordHash:      "$2a$10$hash-of-" + name,
		CreatedAt:         at(time.Minute),
		LastModified:      at(2 * time.Minute),
		PasswordChangedAt: at(time.Minute),
	}
}

func newKey(id, owner string) auth.AccessKey {
	return auth.AccessKey{
		ID:         id,
		Username:   owner,
		Name:       "key " + id,
		SecretHash: "$2a$10$secret-of-" + id,
		CreatedAt:  at(time.Hour),
	}
}

// update runs fn in s.Update and fails the test on an error.
func update(tb testing.TB, s store.Store, fn func(w store.Writer) error) {
	tb.Helper()
	if err := s.Update(tb.Context(), fn); err != nil {
		tb.Fatalf("Update: %v", err)
	}
}

func createUsers(tb testing.TB, s store.Store, users ...auth.User) {
	tb.Helper()
	update(tb, s, func(w store.Writer) error {
		for _, u := range users {
			if err := w.CreateUser(tb.Context(), u); err != nil {
				return err
			}
		}
		return nil
	})
}

var (
	sortUsers = cmpopts.SortSlices(func(a, b auth.User) bool { return a.Username < b.Username })
	sortKeys  = cmpopts.SortSlices(func(a, b auth.AccessKey) bool { return a.ID < b.ID })
)

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice, bob := newUser("alice", auth.RoleAdmin), newUser("bob", auth.RoleAuditor)
	createUsers(t, s, alice, bob)

	got, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatalf("User(alice): %v", err)
	}
	if diff := cmp.Diff(alice, got); diff != "" {
		t.Errorf("User(alice) mismatch (-want +got):\n%s", diff)
	}
	list, err := s.Users(ctx)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	if diff := cmp.Diff([]auth.User{alice, bob}, list, sortUsers); diff != "" {
		t.Errorf("Users mismatch (-want +got):\n%s", diff)
	}

	changed := alice
	changed.Role = auth.RoleOperator
	changed.PasswordHash = "$2a$10$new"
	changed.LastModified = at(time.Hour)
	changed.PasswordChangedAt = at(time.Hour)
	update(t, s, func(w store.Writer) error { return w.UpdateUser(ctx, changed) })
	if got, err = s.User(ctx, "alice"); err != nil {
		t.Fatalf("User(alice) after UpdateUser: %v", err)
	}
	if diff := cmp.Diff(changed, got); diff != "" {
		t.Errorf("User(alice) after UpdateUser mismatch (-want +got):\n%s", diff)
	}

	update(t, s, func(w store.Writer) error { return w.DeleteUser(ctx, "bob") })
	if _, err := s.User(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(bob) after DeleteUser: err = %v, want ErrNotFound", err)
	}
	if list, err = s.Users(ctx); err != nil {
		t.Fatalf("Users after DeleteUser: %v", err)
	}
	if diff := cmp.Diff([]auth.User{changed}, list); diff != "" {
		t.Errorf("Users after DeleteUser mismatch (-want +got):\n%s", diff)
	}
}

func testErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	createUsers(t, s, newUser("alice", auth.RoleAdmin))
	update(t, s, func(w store.Writer) error { return w.CreateAccessKey(ctx, newKey("k1", "alice")) })

	tests := []struct {
		name string
		fn   func(w store.Writer) error
		want error
	}{
		{"duplicate user", func(w store.Writer) error { return w.CreateUser(ctx, newUser("alice", auth.RoleAuditor)) }, store.ErrConflict},
		{"duplicate access key", func(w store.Writer) error { return w.CreateAccessKey(ctx, newKey("k1", "alice")) }, store.ErrConflict},
		{"access key of missing user", func(w store.Writer) error { return w.CreateAccessKey(ctx, newKey("k2", "nobody")) }, store.ErrNotFound},
		{"get missing user", func(w store.Writer) error { _, err := w.User(ctx, "nobody"); return err }, store.ErrNotFound},
		{"update missing user", func(w store.Writer) error { return w.UpdateUser(ctx, newUser("nobody", auth.RoleAdmin)) }, store.ErrNotFound},
		{"delete missing user", func(w store.Writer) error { return w.DeleteUser(ctx, "nobody") }, store.ErrNotFound},
		{"get missing access key", func(w store.Writer) error { _, err := w.AccessKey(ctx, "nope"); return err }, store.ErrNotFound},
		{"delete missing access key", func(w store.Writer) error { return w.DeleteAccessKey(ctx, "nope") }, store.ErrNotFound},
		{"get missing setting", func(w store.Writer) error { _, err := w.Setting(ctx, "nope"); return err }, store.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Update(ctx, tc.fn); !errors.Is(err, tc.want) {
				t.Errorf("Update = %v, want %v", err, tc.want)
			}
		})
	}

	// The same reads outside an Update.
	reads := []struct {
		name string
		fn   func() error
	}{
		{"User", func() error { _, err := s.User(ctx, "nobody"); return err }},
		{"AccessKey", func() error { _, err := s.AccessKey(ctx, "nope"); return err }},
		{"Setting", func() error { _, err := s.Setting(ctx, "nope"); return err }},
	}
	for _, tc := range reads {
		t.Run("store "+tc.name, func(t *testing.T) {
			if err := tc.fn(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(missing) = %v, want ErrNotFound", tc.name, err)
			}
		})
	}

	// A failed write leaves what was there.
	got, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatalf("User(alice): %v", err)
	}
	if diff := cmp.Diff(newUser("alice", auth.RoleAdmin), got); diff != "" {
		t.Errorf("User(alice) after conflicting CreateUser mismatch (-want +got):\n%s", diff)
	}
}

func testAccessKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	createUsers(t, s, newUser("alice", auth.RoleAdmin), newUser("bob", auth.RoleOperator))
	k1 := newKey("k1", "alice")
	k1.Role = auth.RoleAuditor
	k1.ExpiresAt = at(30 * 24 * time.Hour)
	k2, k3 := newKey("k2", "alice"), newKey("k3", "bob")
	update(t, s, func(w store.Writer) error {
		for _, k := range []auth.AccessKey{k1, k2, k3} {
			if err := w.CreateAccessKey(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})

	got, err := s.AccessKey(ctx, "k1")
	if err != nil {
		t.Fatalf("AccessKey(k1): %v", err)
	}
	if diff := cmp.Diff(k1, got); diff != "" {
		t.Errorf("AccessKey(k1) mismatch (-want +got):\n%s", diff)
	}
	checkKeys := func(t *testing.T, username string, want []auth.AccessKey) {
		t.Helper()
		got, err := s.AccessKeys(ctx, username)
		if err != nil {
			t.Fatalf("AccessKeys(%q): %v", username, err)
		}
		if diff := cmp.Diff(want, got, sortKeys, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("AccessKeys(%q) mismatch (-want +got):\n%s", username, diff)
		}
	}
	checkKeys(t, "alice", []auth.AccessKey{k1, k2})
	checkKeys(t, "bob", []auth.AccessKey{k3})
	checkKeys(t, "", []auth.AccessKey{k1, k2, k3})
	checkKeys(t, "nobody", nil)

	used := at(2 * time.Hour)
	if err := s.TouchAccessKey(ctx, "k2", used.UnixNano()); err != nil {
		t.Fatalf("TouchAccessKey(k2): %v", err)
	}
	k2.LastUsedAt = used
	if got, err = s.AccessKey(ctx, "k2"); err != nil {
		t.Fatalf("AccessKey(k2): %v", err)
	}
	if diff := cmp.Diff(k2, got); diff != "" {
		t.Errorf("AccessKey(k2) after TouchAccessKey mismatch (-want +got):\n%s", diff)
	}

	update(t, s, func(w store.Writer) error { return w.DeleteAccessKey(ctx, "k1") })
	if _, err := s.AccessKey(ctx, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AccessKey(k1) after DeleteAccessKey: err = %v, want ErrNotFound", err)
	}
	checkKeys(t, "alice", []auth.AccessKey{k2})

	// Deleting a user deletes their keys.
	update(t, s, func(w store.Writer) error { return w.DeleteUser(ctx, "alice") })
	if _, err := s.AccessKey(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AccessKey(k2) after DeleteUser(alice): err = %v, want ErrNotFound", err)
	}
	checkKeys(t, "alice", nil)
	checkKeys(t, "", []auth.AccessKey{k3})
}

func testAudits(t *testing.T, s store.Store) {
	ctx := t.Context()
	records := []audit.Mgmt{
		{Time: at(1 * time.Second), Username: "alice", Type: audit.TypeLogin, API: "/api/v1/authenticate", Status: "succeeded", SourceIP: "10.0.0.1"},
		{Time: at(2 * time.Second), Username: "alice", Type: audit.TypeUsers, Method: "POST", API: "/api/v1/users", Status: "succeeded", Diff: "created user bob with role auditor"},
		{Time: at(3 * time.Second), Username: "bob", Type: audit.TypeLogin, API: "/api/v1/authenticate", Status: "failed", SourceIP: "2001:db8::1"},
		{Time: at(4 * time.Second), Username: "bob", Type: audit.TypeKeys, Method: "POST", API: "/api/v1/access-keys", Status: "succeeded"},
		{Time: at(5 * time.Second), Username: "alice", Type: audit.TypeSettings, Method: "PUT", API: "/api/v1/settings", Status: "succeeded"},
		// The same instant as the one before: the later append is the newer.
		{Time: at(5 * time.Second), Username: "alice", Type: audit.TypeLogin, API: "/api/v1/authenticate", Status: "succeeded"},
	}
	update(t, s, func(w store.Writer) error {
		seen := map[int64]bool{}
		for i := range records {
			id, err := w.AppendAudit(ctx, records[i])
			if err != nil {
				return err
			}
			if id == 0 || seen[id] {
				return fmt.Errorf("AppendAudit #%d returned ID %d, want a new non-zero ID", i, id)
			}
			seen[id] = true
			records[i].ID = id
		}
		return nil
	})
	// pick returns records[i] for each i, as the newest-first answer lists them.
	pick := func(is ...int) []audit.Mgmt {
		var out []audit.Mgmt
		for _, i := range is {
			out = append(out, records[i])
		}
		return out
	}

	tests := []struct {
		name   string
		filter audit.Filter
		want   []audit.Mgmt
	}{
		{"all", audit.Filter{}, pick(5, 4, 3, 2, 1, 0)},
		{"username", audit.Filter{Username: "bob"}, pick(3, 2)},
		{"type", audit.Filter{Type: audit.TypeLogin}, pick(5, 2, 0)},
		{"username and type", audit.Filter{Username: "alice", Type: audit.TypeLogin}, pick(5, 0)},
		{"since is inclusive", audit.Filter{Since: at(4 * time.Second)}, pick(5, 4, 3)},
		{"until is exclusive", audit.Filter{Until: at(3 * time.Second)}, pick(1, 0)},
		{"since and until", audit.Filter{Since: at(2 * time.Second), Until: at(4 * time.Second)}, pick(2, 1)},
		{"since in another zone", audit.Filter{Since: at(4 * time.Second).In(time.FixedZone("UTC-7", -7*3600))}, pick(5, 4, 3)},
		{"limit", audit.Filter{Limit: 2}, pick(5, 4)},
		{"offset", audit.Filter{Offset: 4}, pick(1, 0)},
		{"limit and offset", audit.Filter{Limit: 2, Offset: 1}, pick(4, 3)},
		{"filter and page", audit.Filter{Username: "alice", Limit: 2, Offset: 1}, pick(4, 1)},
		{"offset past the end", audit.Filter{Offset: 10}, nil},
		{"no match", audit.Filter{Username: "carol"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Audits(ctx, tc.filter)
			if err != nil {
				t.Fatalf("Audits(%+v): %v", tc.filter, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Audits(%+v) mismatch (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

func testAuditLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 1005
	update(t, s, func(w store.Writer) error {
		for i := range n {
			if _, err := w.AppendAudit(ctx, audit.Mgmt{Time: at(time.Duration(i) * time.Millisecond), Username: "alice", Type: audit.TypeLogin, API: "/api/v1/authenticate", Status: "succeeded"}); err != nil {
				return err
			}
		}
		return nil
	})

	tests := []struct {
		name   string
		filter audit.Filter
		want   int // records returned
		newest time.Time
	}{
		{"default limit", audit.Filter{}, 100, at((n - 1) * time.Millisecond)},
		{"negative limit is the default", audit.Filter{Limit: -1}, 100, at((n - 1) * time.Millisecond)},
		{"limit is capped", audit.Filter{Limit: 5000}, 1000, at((n - 1) * time.Millisecond)},
		{"last page", audit.Filter{Limit: 10, Offset: 1000}, 5, at(4 * time.Millisecond)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Audits(ctx, tc.filter)
			if err != nil {
				t.Fatalf("Audits(%+v): %v", tc.filter, err)
			}
			if len(got) != tc.want {
				t.Fatalf("Audits(%+v) returned %d records, want %d", tc.filter, len(got), tc.want)
			}
			if !got[0].Time.Equal(tc.newest) {
				t.Errorf("Audits(%+v)[0].Time = %v, want %v", tc.filter, got[0].Time, tc.newest)
			}
			for i := 1; i < len(got); i++ {
				if !got[i].Time.Before(got[i-1].Time) {
					t.Fatalf("Audits(%+v): record %d at %v is not older than record %d at %v", tc.filter, i, got[i].Time, i-1, got[i-1].Time)
				}
			}
		})
	}
}

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	type step struct {
		name      string
		key       string
		value     []byte
		ifAbsent  bool
		wantStore bool // for ifAbsent: whether it should store
		want      []byte
	}
	steps := []step{
		{name: "put", key: "k", value: []byte("v1"), want: []byte("v1")},
		{name: "put replaces", key: "k", value: []byte("v2"), want: []byte("v2")},
		{name: "put if absent keeps", key: "k", value: []byte("v3"), ifAbsent: true, wantStore: false, want: []byte("v2")},
		{name: "put if absent stores", key: "new", value: []byte{0, 1, 2, 0xff}, ifAbsent: true, wantStore: true, want: []byte{0, 1, 2, 0xff}},
		{name: "empty value is set", key: "empty", value: []byte{}, want: []byte{}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			update(t, s, func(w store.Writer) error {
				if !st.ifAbsent {
					return w.PutSetting(ctx, st.key, st.value)
				}
				stored, err := w.PutSettingIfAbsent(ctx, st.key, st.value)
				if err != nil {
					return err
				}
				if stored != st.wantStore {
					t.Errorf("PutSettingIfAbsent(%q) = %v, want %v", st.key, stored, st.wantStore)
				}
				return nil
			})
			got, err := s.Setting(ctx, st.key)
			if err != nil {
				t.Fatalf("Setting(%q): %v", st.key, err)
			}
			if diff := cmp.Diff(st.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Setting(%q) mismatch (-want +got):\n%s", st.key, diff)
			}
		})
	}
}

var errAbort = errors.New("abort")

// writeEverything writes one of each kind of record as name.
func writeEverything(w store.Writer, tb testing.TB, name string) error {
	ctx := tb.Context()
	if err := w.CreateUser(ctx, newUser(name, auth.RoleAdmin)); err != nil {
		return err
	}
	if err := w.CreateAccessKey(ctx, newKey("key-"+name, name)); err != nil {
		return err
	}
	if _, err := w.AppendAudit(ctx, audit.Mgmt{Time: base, Username: name, Type: audit.TypeUsers, API: "/api/v1/users", Status: "succeeded"}); err != nil {
		return err
	}
	return w.PutSetting(ctx, "setting-"+name, []byte(name))
}

// checkNothing fails the test when anything writeEverything(name) writes exists.
func checkNothing(tb testing.TB, s store.Store, name string) {
	tb.Helper()
	ctx := tb.Context()
	if _, err := s.User(ctx, name); !errors.Is(err, store.ErrNotFound) {
		tb.Errorf("User(%s) = %v, want ErrNotFound", name, err)
	}
	if _, err := s.AccessKey(ctx, "key-"+name); !errors.Is(err, store.ErrNotFound) {
		tb.Errorf("AccessKey(key-%s) = %v, want ErrNotFound", name, err)
	}
	if got, err := s.Audits(ctx, audit.Filter{Username: name}); err != nil || len(got) != 0 {
		tb.Errorf("Audits(%s) = %v, %v; want none", name, got, err)
	}
	if _, err := s.Setting(ctx, "setting-"+name); !errors.Is(err, store.ErrNotFound) {
		tb.Errorf("Setting(setting-%s) = %v, want ErrNotFound", name, err)
	}
}

func testUpdateRollsBack(t *testing.T, s store.Store) {
	err := s.Update(t.Context(), func(w store.Writer) error {
		if err := writeEverything(w, t, "alice"); err != nil {
			return err
		}
		return fmt.Errorf("validate: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update = %v, want the error fn returned", err)
	}
	checkNothing(t, s, "alice")

	// The store is still usable.
	update(t, s, func(w store.Writer) error { return writeEverything(w, t, "bob") })
	if _, err := s.User(t.Context(), "bob"); err != nil {
		t.Errorf("User(bob) after a rolled-back Update: %v", err)
	}
}

func testUpdatePanics(t *testing.T, s store.Store) {
	func() {
		defer func() {
			r := recover()
			if err, ok := r.(error); !ok || !errors.Is(err, errAbort) {
				t.Errorf("Update recovered %v, want the panic to continue with %v", r, errAbort)
			}
		}()
		_ = s.Update(t.Context(), func(w store.Writer) error {
			if err := writeEverything(w, t, "alice"); err != nil {
				return err
			}
			panic(errAbort)
		})
		t.Errorf("Update returned after fn panicked")
	}()
	checkNothing(t, s, "alice")
	update(t, s, func(w store.Writer) error { return writeEverything(w, t, "bob") })
}

func testUpdateReadsOwnWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	update(t, s, func(w store.Writer) error {
		if err := writeEverything(w, t, "alice"); err != nil {
			return err
		}
		if _, err := w.User(ctx, "alice"); err != nil {
			t.Errorf("User(alice) in the Update that created it: %v", err)
		}
		if keys, err := w.AccessKeys(ctx, "alice"); err != nil || len(keys) != 1 {
			t.Errorf("AccessKeys(alice) in the Update that created one = %v, %v; want 1 key", keys, err)
		}
		if got, err := w.Audits(ctx, audit.Filter{Username: "alice"}); err != nil || len(got) != 1 {
			t.Errorf("Audits(alice) in the Update that appended one = %v, %v; want 1 record", got, err)
		}
		if _, err := w.Setting(ctx, "setting-alice"); err != nil {
			t.Errorf("Setting(setting-alice) in the Update that put it: %v", err)
		}
		return nil
	})
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("user-%d-%d", g, i)
				err := s.Update(ctx, func(w store.Writer) error {
					if err := w.CreateUser(ctx, newUser(name, auth.RoleAuditor)); err != nil {
						return err
					}
					_, err := w.AppendAudit(ctx, audit.Mgmt{Time: time.Now(), Username: name, Type: audit.TypeUsers, API: "/api/v1/users", Status: "succeeded"})
					return err
				})
				if err != nil {
					t.Errorf("Update creating %s: %v", name, err)
					return
				}
				// Reads run alongside the writers.
				if _, err := s.User(ctx, name); err != nil {
					t.Errorf("User(%s) after its Update: %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()

	users, err := s.Users(ctx)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	if len(users) != workers*each {
		t.Errorf("Users returned %d users, want %d", len(users), workers*each)
	}
	audits, err := s.Audits(ctx, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatalf("Audits: %v", err)
	}
	if len(audits) != workers*each {
		t.Errorf("Audits returned %d records, want %d", len(audits), workers*each)
	}
}

func testTimePrecision(t *testing.T, s store.Store) {
	ctx := t.Context()
	zone := time.FixedZone("UTC+5:45", 5*3600+45*60)
	tests := []struct {
		name string
		at   time.Time
	}{
		{"nanoseconds", base},
		{"another zone", time.Date(2031, 12, 31, 23, 59, 59, 999999999, zone)},
		{"monotonic reading", time.Now()},
		{"before 1970", time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := auth.User{Username: fmt.Sprintf("u%d", i), Role: auth.RoleAdmin, AuthType: auth.AuthBasic, CreatedAt: tc.at, LastModified: tc.at}
			k := auth.AccessKey{ID: fmt.Sprintf("k%d", i), Username: u.Username, CreatedAt: tc.at, ExpiresAt: tc.at}
			var id int64
			update(t, s, func(w store.Writer) error {
				if err := w.CreateUser(ctx, u); err != nil {
					return err
				}
				if err := w.CreateAccessKey(ctx, k); err != nil {
					return err
				}
				var err error
				id, err = w.AppendAudit(ctx, audit.Mgmt{Time: tc.at, Username: u.Username, Type: audit.TypeUsers})
				return err
			})

			gotU, err := s.User(ctx, u.Username)
			if err != nil {
				t.Fatalf("User: %v", err)
			}
			// cmp compares times with Equal: the instant must survive, not the zone.
			if diff := cmp.Diff(u, gotU); diff != "" {
				t.Errorf("User mismatch (-want +got):\n%s", diff)
			}
			if !gotU.PasswordChangedAt.IsZero() {
				t.Errorf("User.PasswordChangedAt = %v, want the zero time", gotU.PasswordChangedAt)
			}
			gotK, err := s.AccessKey(ctx, k.ID)
			if err != nil {
				t.Fatalf("AccessKey: %v", err)
			}
			if diff := cmp.Diff(k, gotK); diff != "" {
				t.Errorf("AccessKey mismatch (-want +got):\n%s", diff)
			}
			if !gotK.LastUsedAt.IsZero() {
				t.Errorf("AccessKey.LastUsedAt = %v, want the zero time", gotK.LastUsedAt)
			}
			gotA, err := s.Audits(ctx, audit.Filter{Username: u.Username})
			if err != nil {
				t.Fatalf("Audits: %v", err)
			}
			want := []audit.Mgmt{{ID: id, Time: tc.at, Username: u.Username, Type: audit.TypeUsers}}
			if diff := cmp.Diff(want, gotA); diff != "" {
				t.Errorf("Audits mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
