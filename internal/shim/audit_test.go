package shim_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"bulwark/api/shimv1"
	"bulwark/internal/shim"
)

func TestReadAudits(t *testing.T) {
	if got, err := shim.ReadAudits(filepath.Join(t.TempDir(), "absent"), 10); err != nil || len(got) != 0 {
		t.Fatalf("ReadAudits(absent dir) = %v, %v; want nothing", got, err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte, age time.Duration) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if age > 0 {
			old := time.Now().Add(-age)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec := func(id string) []byte {
		b, _ := json.Marshal(shimv1.Audit{V: 1, Verdict: shimv1.VerdictFailOpenTimeout, Command: "create", Container: shimv1.Container{ID: id}})
		return b
	}
	write("1700000000000000002-7.json", rec("second"), 0)
	write("1700000000000000001-12345.json", rec("first"), 0)
	write("1700000000000000003-1.json", []byte("{not json"), 0)
	write("1700000000000000004-1.json", rec("fourth"), 0)
	write(".tmp-fresh", []byte("half"), 0)
	write(".tmp-old", []byte("half"), 2*time.Minute)
	write("notes.txt", []byte("x"), 0)

	got, err := shim.ReadAudits(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, af := range got {
		if af.Err != nil {
			ids = append(ids, "bad:"+filepath.Base(af.Path))
			continue
		}
		ids = append(ids, af.Audit.Container.ID)
	}
	want := []string{"first", "second", "bad:1700000000000000003-1.json"}
	if len(ids) != len(want) {
		t.Fatalf("ReadAudits(max 3) = %q, want %q", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Errorf("ReadAudits(max 3)[%d] = %q, want %q (oldest first, bad records reported)", i, ids[i], want[i])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-old")); !os.IsNotExist(err) {
		t.Error("a temporary file older than a minute was kept")
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-fresh")); err != nil {
		t.Error("a temporary file being written was removed")
	}
}
