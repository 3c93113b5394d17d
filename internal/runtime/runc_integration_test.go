package runtime_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
	"bulwark/internal/runtime"
	"bulwark/internal/runtime/runctest"
)

// TestRunc starts a real busybox container with runc and resolves it the
// way the Defender will: from its init's cgroup id, with the default
// configuration (the host's /proc, cgroup2 mount and /run/runc).
func TestRunc(t *testing.T) {
	runctest.Require(t)
	r, err := runtime.New(runtime.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New(default config): %v", err)
	}
	// Looked up before the container exists: the host's own cgroup.
	self := cgroupOf(t, r, "self")
	if c, ok := r.Container(self); ok {
		t.Errorf("Container(this test's cgroup %d) = %+v, want a host process", self, c)
	}

	ctr := runctest.Run(t, runctest.Options{
		Args: []string{"sleep", "30"}, ReadonlyRoot: true,
		Annotations: map[string]string{
			"io.kubernetes.pod.name":      "web-0",
			"io.kubernetes.pod.namespace": "prod",
			"io.bulwark.image":            "registry.local/web:1.2",
		},
	})
	id, pid, bundle := ctr.ID, ctr.InitPID, ctr.Bundle

	cgroupID := cgroupOf(t, r, strconv.Itoa(pid))
	if direct, err := runtime.CgroupIDOfPath(filepath.Join(r.CgroupRoot(), id)); err != nil || direct != cgroupID {
		t.Errorf("CgroupIDOfPath(<root>/%s) = %d, %v; want the init's cgroup %d", id, direct, err, cgroupID)
	}

	want := event.Container{ID: id, Image: "registry.local/web:1.2", Pod: "web-0", Namespace: "prod", Runtime: "runc"}
	info, ok := r.Lookup(cgroupID)
	if !ok {
		t.Fatalf("Lookup(%d) ok = false for container %s (cgroup root %s)", cgroupID, id, r.CgroupRoot())
	}
	if diff := cmp.Diff(want, info.Container); diff != "" {
		t.Errorf("Lookup(%d) container mismatch (-want +got):\n%s", cgroupID, diff)
	}
	if info.InitPID != pid || info.Bundle != bundle || info.CgroupPath != "/"+id || info.Created.IsZero() {
		t.Errorf("Lookup(%d) = %+v; want init pid %d, bundle %s, cgroup /%s, a creation time", cgroupID, info, pid, bundle, id)
	}
	if c, ok := r.Container(self); ok {
		t.Errorf("Container(this test's cgroup) = %+v, want a host process", c)
	}

	procs, err := r.ScanProcs()
	if err != nil {
		t.Fatalf("ScanProcs: %v", err)
	}
	found := false
	for _, p := range procs {
		switch p.Process.PID {
		case uint32(pid):
			found = true
			if p.Container == nil || *p.Container != want {
				t.Errorf("ScanProcs() container of init %d = %+v, want %+v", pid, p.Container, want)
			}
			if p.Process.CgroupID != cgroupID || p.Process.Comm != "sleep" || !slices.Equal(p.Process.Argv, []string{"sleep", "30"}) {
				t.Errorf("ScanProcs() init = %+v; want comm sleep, argv [sleep 30], cgroup %d", p.Process, cgroupID)
			}
		case uint32(os.Getpid()):
			if p.Container != nil {
				t.Errorf("ScanProcs() container of this test = %+v, want nil", p.Container)
			}
		}
	}
	if !found {
		t.Errorf("ScanProcs() lacks the container's init %d", pid)
	}

	// Once the container is gone, pruning forgets it.
	ctr.Delete(t)
	if n := r.Prune(); n < 1 {
		t.Errorf("Prune() after the container's exit = %d, want ≥ 1", n)
	}
	if c, ok := r.Container(cgroupID); ok {
		t.Errorf("Container(%d) after exit and prune = %+v, want none", cgroupID, c)
	}
}

// cgroupOf returns the cgroup id of /proc/<pid>, as the sensor reports it.
func cgroupOf(t testing.TB, r *runtime.Resolver, pid string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			id, err := runtime.CgroupIDOfPath(filepath.Join(r.CgroupRoot(), path))
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
	}
	t.Fatalf("/proc/%s/cgroup has no cgroup2 line:\n%s", pid, b)
	return 0
}
