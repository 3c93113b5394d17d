package runtime_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
	"bulwark/internal/runtime"
)

// TestRunc starts a real busybox container with runc and resolves it the
// way the Defender will: from its init's cgroup id, with the default
// configuration (the host's /proc, cgroup2 mount and /run/runc).
func TestRunc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged: needs root to run a runc container")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("needs runc (scripts/setup.sh installs it)")
	}
	const busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("needs a static %s (busybox-static; scripts/setup.sh installs it): %v", busybox, err)
	}

	id := "bwtest-" + randomHex(t)
	bundle := t.TempDir()
	buildBundle(t, runc, bundle, busybox, map[string]string{
		"io.kubernetes.pod.name":      "web-0",
		"io.kubernetes.pod.namespace": "prod",
		"io.bulwark.image":            "registry.local/web:1.2",
	})

	r, err := runtime.New(runtime.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New(default config): %v", err)
	}
	// Looked up before the container exists: the host's own cgroup.
	self := cgroupOf(t, r, "self")
	if c, ok := r.Container(self); ok {
		t.Errorf("Container(this test's cgroup %d) = %+v, want a host process", self, c)
	}

	pidFile := filepath.Join(bundle, "init.pid")
	runcCmd(t, runc, bundle, "run", "-d", "--pid-file", pidFile, id)
	t.Cleanup(func() { stopContainer(t, runc, id) })
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}

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
	stopContainer(t, runc, id)
	if n := r.Prune(); n < 1 {
		t.Errorf("Prune() after the container's exit = %d, want ≥ 1", n)
	}
	if c, ok := r.Container(cgroupID); ok {
		t.Errorf("Container(%d) after exit and prune = %+v, want none", cgroupID, c)
	}
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildBundle makes an OCI bundle whose rootfs is busybox and whose process
// sleeps for 30s without a terminal.
func buildBundle(t testing.TB, runc, bundle, busybox string, annotations map[string]string) {
	t.Helper()
	bin := filepath.Join(bundle, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "sleep", "true", "echo", "cat", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	runcCmd(t, runc, bundle, "spec")
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatalf("parse runc spec: %v", err)
	}
	proc, ok := spec["process"].(map[string]any)
	if !ok {
		t.Fatalf("runc spec has no process: %s", b)
	}
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "30"}
	spec["annotations"] = annotations
	if b, err = json.MarshalIndent(spec, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runcCmd runs runc in dir. The container's stdio is /dev/null: with a pipe,
// a detached container would keep it open and Wait would not return.
func runcCmd(t testing.TB, runc, dir string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, runc, args...)
	cmd.Dir = dir
	logFile, err := os.CreateTemp(t.TempDir(), "runc-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logFile.Name())
		t.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// stopContainer kills and deletes the container this test started; it is
// idempotent.
func stopContainer(t testing.TB, runc, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, runc, "state", id).Run(); err != nil {
		return // not there (any more)
	}
	_ = exec.CommandContext(ctx, runc, "kill", id, "KILL").Run() // may have exited already
	if out, err := exec.CommandContext(ctx, runc, "delete", "-f", id).CombinedOutput(); err != nil {
		t.Errorf("runc delete -f %s: %v\n%s", id, err, out)
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
