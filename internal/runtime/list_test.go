package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
)

// writeProc writes a /proc/<pid>/stat whose start time is start ticks.
func (h *host) writeProc(t testing.TB, pid int, comm string, start uint64) {
	t.Helper()
	dir := filepath.Join(h.dir, "proc", fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 100 18446744073709551615", pid, comm, pid, pid, start)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunning(t *testing.T) {
	h := newHost(t)
	// Every state written by writeState has init pid 4242, started at tick 1234.
	h.writeProc(t, 4242, "sleep", 1234)
	webBundle := h.writeState(t, h.runc, "web", "/web", nil, map[string]string{
		AnnotBulwarkImage: "registry.local/web:1.2", AnnotPodName: "web-0", AnnotPodNamespace: "prod",
	})
	h.writeState(t, filepath.Join(h.containerd, "k8s.io"), "api", "/kubepods/api", map[string]string{
		AnnotCRIName: "api", AnnotCRIImage: "registry.local/api:3", AnnotCRISandboxName: "api-7f9", AnnotCRISandboxNS: "shop",
	}, nil)
	const dockerID = "4f66ad9a0b2e8c3d1f5a7b9c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e"
	h.writeState(t, h.dockerRunc, dockerID, "/system.slice/docker-"+dockerID+".scope", nil, nil)
	h.writeDocker(t, dockerID, "/nginx", "nginx:1.27")

	// A stopped container (its init gone) and one whose pid was reused.
	gone := h.writeState(t, h.runc, "gone", "/gone", nil, nil)
	writeJSON(t, filepath.Join(h.runc, "gone", "state.json"), map[string]any{"id": "gone", "init_process_pid": 999999, "config": map[string]any{"labels": []string{"bundle=" + gone}}})
	writeJSON(t, filepath.Join(h.runc, "reused", "state.json"), map[string]any{"id": "reused", "init_process_pid": 4242, "init_process_start": 1, "config": map[string]any{}})
	// A state being written: not JSON yet.
	if err := os.MkdirAll(filepath.Join(h.runc, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.runc, "partial", "state.json"), []byte(`{"id":`), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := Running(h.config(), discard())
	if err != nil {
		t.Fatalf("Running: %v", err)
	}
	type brief struct {
		Container event.Container
		Bundle    string
		InitPID   int
		Cgroup    string
	}
	var gotBrief []brief
	for _, i := range got {
		gotBrief = append(gotBrief, brief{i.Container, filepath.Base(i.Bundle), i.InitPID, i.CgroupPath})
	}
	want := []brief{
		{event.Container{ID: dockerID, Name: "nginx", Image: "nginx:1.27", Runtime: RuntimeDocker}, dockerID, 4242, "/system.slice/docker-" + dockerID + ".scope"},
		{event.Container{ID: "api", Name: "api", Image: "registry.local/api:3", Pod: "api-7f9", Namespace: "shop", Runtime: RuntimeContainerd}, "api", 4242, "/kubepods/api"},
		{event.Container{ID: "web", Image: "registry.local/web:1.2", Pod: "web-0", Namespace: "prod", Runtime: RuntimeRunc}, filepath.Base(webBundle), 4242, "/web"},
	}
	if diff := cmp.Diff(want, gotBrief); diff != "" {
		t.Errorf("Running() mismatch (-want +got):\n%s", diff)
	}

	// No state roots at all is no containers, not an error.
	cfg := h.config()
	cfg.RuncRoots = []string{filepath.Join(h.dir, "absent")}
	if got, err := Running(cfg, discard()); err != nil || len(got) != 0 {
		t.Errorf("Running(no roots) = %v, %v; want none", got, err)
	}
}

func TestCommands(t *testing.T) {
	h := newHost(t)
	cfg := h.config()
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The container's cgroup and a child cgroup, with three processes (one
	// gone since the listing), and a sibling container's cgroup.
	write(filepath.Join(h.cgroup, "web", "cgroup.procs"), "10\n11\n")
	write(filepath.Join(h.cgroup, "web", "sub", "cgroup.procs"), "12\n13\n")
	write(filepath.Join(h.cgroup, "other", "cgroup.procs"), "20\n")
	for pid, comm := range map[string]string{"10": "nginx", "11": "nginx", "12": "sshd", "20": "redis-server"} {
		write(filepath.Join(h.dir, "proc", pid, "comm"), comm+"\n")
	}
	got, err := Commands(cfg, "/web")
	if err != nil {
		t.Fatalf("Commands(/web): %v", err)
	}
	if want := []string{"nginx", "sshd"}; !cmp.Equal(got, want) {
		t.Errorf("Commands(/web) = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "/", "/absent"} {
		if got, err := Commands(cfg, bad); err == nil {
			t.Errorf("Commands(%q) = %q, nil; want an error", bad, got)
		}
	}
}
