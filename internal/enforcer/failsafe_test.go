package enforcer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"bulwark/internal/runtime/runctest"
)

// helperEnv carries a helperSpec to TestHelperEnforcer in a child process:
// an enforcing process the test can kill -9.
const helperEnv = "BULWARK_ENFORCER_HELPER"

type helperSpec struct {
	Target        Target
	DisableBPFLSM bool
	// Stuck makes every fanotify decision block forever (and the watchdog
	// wait an hour): the permission events stay pending until the process
	// dies.
	Stuck bool
}

// TestHelperEnforcer is not a test: it is the enforcing child process of
// TestKill. It applies the target, says READY and waits to be killed.
func TestHelperEnforcer(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("the enforcing child process of TestKill")
	}
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("helper spec: %v", err)
	}
	cfg := Config{DisableBPFLSM: spec.DisableBPFLSM}
	if spec.Stuck {
		cfg.DecisionTimeout = time.Hour
		cfg.decisionHook = func() { select {} }
	}
	e, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := e.Apply(context.Background(), []Target{spec.Target}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	fmt.Println("READY")
	select {}
}

// helper is a running enforcing child process.
type helper struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func startHelper(t *testing.T, spec helperSpec) *helper {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperEnforcer$", "-test.count=1") //nolint:gosec // G204: this test binary
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	h := &helper{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = h.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the enforcing helper: %v", err)
	}
	t.Cleanup(func() { h.kill(t) })
	ready := make(chan error, 1)
	go func() { ready <- readUntil(out, "READY") }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("enforcing helper did not get ready: %v\n%s", err, h.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("enforcing helper not ready after 60s\n%s", h.stderr)
	}
	return h
}

// kill sends SIGKILL to the helper (only to it, by pid) and reaps it.
func (h *helper) kill(t *testing.T) {
	t.Helper()
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
}

// TestKill: kill -9 of an enforcing process leaves the host and the
// container usable, even with permission events pending on it, and leaves
// no BPF program attached; a new enforcer takes enforcement back.
func TestKill(t *testing.T) {
	requirePrivileged(t)
	c := startContainer(t, runctest.Options{Files: []string{"/usr/local/bin/echo"}})
	tg := target(c)
	tg.DenyExec = []ExecRule{{Rule: "deny-tool", Path: "/usr/local/bin/echo"}}
	tg.DenyWrite = []WriteRule{{Rule: "protect-passwd", Prefix: "/etc/passwd"}}
	tg.DenyConnect = []ConnectRule{{Rule: "no-10", Prefix: netip.MustParsePrefix("10.0.0.0/8")}}

	denied := func(t *testing.T) {
		t.Helper()
		out, errOut := c.Sh(t, `/usr/local/bin/echo DENIED-RAN; echo "status=$?"`)
		if strings.Contains(out, "DENIED-RAN") || !strings.Contains(errOut, "Operation not permitted") {
			t.Fatalf("denied exec under the enforcing helper: stdout %q stderr %q; want EPERM", out, errOut)
		}
	}
	usable := func(t *testing.T) {
		t.Helper()
		// The container: what was denied runs, writes work.
		out, errOut := c.Sh(t, `/usr/local/bin/echo NOW-RUNS; echo ok >> /etc/passwd && echo WRITE-OK`)
		if !strings.Contains(out, "NOW-RUNS") || !strings.Contains(out, "WRITE-OK") {
			t.Errorf("container after the enforcer died: stdout %q stderr %q; want the exec and the write to work", out, errOut)
		}
		// The host: execs and opens.
		if out, err := hostRun(t, "/bin/sh", "-c", "cat /etc/passwd >/dev/null && echo HOST-OK"); err != nil || !strings.Contains(out, "HOST-OK") {
			t.Errorf("host exec and open after the enforcer died: %q, %v", out, err)
		}
		// No program of the dead enforcer is attached to the cgroup.
		dir, err := os.Open(filepath.Join(mustCgroupRoot(t), c.CgroupPath))
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: at}) //nolint:gosec // G115: a file descriptor
			if err != nil {
				t.Fatalf("query cgroup programs: %v", err)
			}
			if len(res.Programs) != 0 {
				t.Errorf("cgroup %s after the enforcer died: %d %v programs attached, want 0", c.CgroupPath, len(res.Programs), at)
			}
		}
	}

	t.Run("enforcing", func(t *testing.T) {
		h := startHelper(t, helperSpec{Target: tg})
		denied(t)
		h.kill(t)
		usable(t)
	})

	t.Run("decisions pending", func(t *testing.T) {
		h := startHelper(t, helperSpec{Target: tg, DisableBPFLSM: true, Stuck: true})
		// runc exec's process waits on a permission event the helper never
		// answers.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var out bytes.Buffer
		pending := c.Command(ctx, "/bin/echo", "PENDING-DONE")
		pending.Stdout, pending.Stderr = &out, &out
		if err := pending.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- pending.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("exec in the container finished (%v, %q) while its permission event was pending", err, out.String())
		case <-time.After(2 * time.Second):
		}
		h.kill(t)
		select {
		case err := <-done:
			if err != nil || !strings.Contains(out.String(), "PENDING-DONE") {
				t.Errorf("exec pending when the enforcer was killed: %v, %q; want it to run", err, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("exec pending when the enforcer was killed still waits 20s later")
		}
		usable(t)
	})

	t.Run("restart takes enforcement back", func(t *testing.T) {
		h := startHelper(t, helperSpec{Target: tg})
		denied(t)
		h.kill(t)
	})
}

func mustCgroupRoot(t *testing.T) string {
	t.Helper()
	root, err := findCgroup2("/proc")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestWatchdog: a fanotify decision that takes longer than the timeout is
// allowed by the watchdog, so a stuck decision does not hang the container.
func TestWatchdog(t *testing.T) {
	requirePrivileged(t)
	var slow atomic.Bool
	e, _ := startEnforcer(t, Config{
		DisableBPFLSM:   true,
		DecisionTimeout: 100 * time.Millisecond,
		decisionHook: func() {
			if slow.Load() {
				time.Sleep(400 * time.Millisecond)
			}
		},
	})
	c := startContainer(t, runctest.Options{})
	tg := target(c)
	tg.DenyExec = []ExecRule{{Rule: "deny-nothing-here", Path: "/nonexistent"}}
	if err := e.Apply(t.Context(), []Target{tg}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	slow.Store(true)
	start := time.Now()
	out, errOut := c.Sh(t, "/bin/echo WATCHDOG-OK")
	slow.Store(false)
	if !strings.Contains(out, "WATCHDOG-OK") {
		t.Errorf("exec with slow decisions: stdout %q stderr %q", out, errOut)
	}
	if st := e.Stats(); st.Timeouts == 0 {
		t.Errorf("Stats() = %+v after decisions slower than the timeout, want Timeouts > 0 (took %v)", st, time.Since(start))
	}
}

// TestApplyReplaces: Apply sets the whole state; a target left out loses
// its enforcement (and its cgroup programs), listing it again restores it.
func TestApplyReplaces(t *testing.T) {
	requirePrivileged(t)
	e, _ := startEnforcer(t, Config{})
	c := startContainer(t, runctest.Options{Files: []string{"/usr/local/bin/echo"}})
	tg := target(c)
	tg.DenyExec = []ExecRule{{Rule: "deny-tool", Path: "/usr/local/bin/echo"}}
	tg.DenyConnect = []ConnectRule{{Rule: "no-10", Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
	run := func(t *testing.T, wantDenied bool) {
		t.Helper()
		out, errOut := c.Sh(t, `/usr/local/bin/echo RAN`)
		if got := !strings.Contains(out, "RAN"); got != wantDenied {
			t.Errorf("exec denied = %v, want %v (stdout %q stderr %q)", got, wantDenied, out, errOut)
		}
	}
	for i, step := range []struct {
		targets    []Target
		wantDenied bool
	}{
		{[]Target{tg}, true},
		{nil, false},
		{[]Target{tg}, true},
	} {
		if err := e.Apply(t.Context(), step.targets); err != nil {
			t.Fatalf("step %d: Apply: %v", i, err)
		}
		run(t, step.wantDenied)
		if e.Mechanisms().Connect.Mechanism == MechanismCgroupBPF {
			dir, err := os.Open(filepath.Join(mustCgroupRoot(t), c.CgroupPath))
			if err != nil {
				t.Fatal(err)
			}
			res, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: ebpf.AttachCGroupInet4Connect}) //nolint:gosec // G115: a file descriptor
			_ = dir.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[step.wantDenied]; len(res.Programs) != want {
				t.Errorf("step %d: %d connect4 programs on the cgroup, want %d", i, len(res.Programs), want)
			}
		}
	}

	// A bad target is named and does not keep the good one from applying.
	bad := Target{ContainerID: "bad", CgroupPath: runctest.NewID("/no-such-cgroup-")}
	err := e.Apply(t.Context(), []Target{bad, tg})
	if err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("Apply(bad, good) = %v, want an error naming the bad target", err)
	}
	var te *TargetError
	if !errors.As(err, &te) || te.Index != 0 || te.Target != "bad" {
		t.Errorf("Apply(bad, good) = %v, want a *TargetError of target 0 (bad)", err)
	}
	run(t, true)

	// An invalid update of an enforced target keeps its previous rules.
	broken := tg
	broken.DenyExec = []ExecRule{{Path: "/usr/local/bin/echo"}} // no rule name
	err = e.Apply(t.Context(), []Target{broken})
	if err == nil || !strings.Contains(err.Error(), "keeps its previous rules") {
		t.Errorf("Apply(invalid update) = %v, want an error saying the target keeps its rules", err)
	}
	run(t, true)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Apply(t.Context(), []Target{tg}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	run(t, false)
}

// TestStopContainer: a "block" stops the container through runc.
func TestStopContainer(t *testing.T) {
	requirePrivileged(t)
	c := startContainer(t, runctest.Options{})
	if err := StopContainer(t.Context(), ContainerRef{ID: c.ID, Runtime: RuntimeRunc}); err != nil {
		t.Fatalf("StopContainer(%s): %v", c.ID, err)
	}
	if st := c.State(t); st != "" {
		t.Errorf("runc state %s after StopContainer = %q; want it gone", c.ID, st)
	}
	// Gone, or a zombie its new parent has not reaped yet.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.InitPID)); err == nil {
		if _, rest, _ := strings.Cut(string(b), ") "); !strings.HasPrefix(rest, "Z") {
			t.Errorf("container init %d after StopContainer: %s; want it dead", c.InitPID, b)
		}
	}
	if err := StopContainer(t.Context(), ContainerRef{ID: c.ID}); err == nil {
		t.Errorf("StopContainer of a container that is gone = nil, want an error")
	}
}

// TestStopContainerd: a "block" stops a containerd container (its task)
// through ctr, against a containerd this test starts with its own root,
// state and socket.
func TestStopContainerd(t *testing.T) {
	requirePrivileged(t)
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (Debian package containerd)", bin)
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	writeFile(t, filepath.Join(dir, "config.toml"), []byte(config), 0o644)
	var logb bytes.Buffer
	daemon := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	daemon.Stdout, daemon.Stderr = &logb, &logb
	daemon.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := daemon.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	const ns = "bwtest"
	ctr := func(args ...string) (string, error) {
		// Not the test's context: the cleanup runs ctr after it is canceled.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "--namespace", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	id := runctest.NewID("bwctd-")
	t.Cleanup(func() {
		_, _ = ctr("task", "kill", "--signal", "SIGKILL", id)
		_, _ = ctr("task", "delete", id)
		_, _ = ctr("container", "delete", id)
		_ = daemon.Process.Signal(syscall.SIGTERM)
		_ = daemon.Wait()
		// runc's state root of the namespace, made by containerd's shim;
		// empty once the task is deleted.
		_ = os.Remove("/run/containerd/runc/" + ns)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not up after 20s:\n%s", logb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rootfs := runctest.Busybox(t)
	if out, err := ctr("run", "-d", "--rootfs", rootfs, id, "/bin/sleep", "600"); err != nil {
		t.Fatalf("ctr run: %v\n%s", err, out)
	}
	if out, _ := ctr("task", "ls"); !strings.Contains(out, id) || !strings.Contains(out, "RUNNING") {
		t.Fatalf("ctr task ls = %q, want %s running", out, id)
	}

	if err := StopContainer(t.Context(), ContainerRef{ID: id, Runtime: RuntimeContainerd, Address: sock, Namespace: ns}); err != nil {
		t.Fatalf("StopContainer(%s): %v", id, err)
	}
	if out, _ := ctr("task", "ls"); strings.Contains(out, id) {
		t.Errorf("ctr task ls after StopContainer = %q, want no task %s", out, id)
	}
}

// TestPIDOutsideCgroup: a target whose PID is not in its cgroup (a reused
// pid) is not used to resolve paths or to choose the mounts fanotify
// watches; path rules still hold where the kernel matches them.
func TestPIDOutsideCgroup(t *testing.T) {
	requirePrivileged(t)
	e, _ := startEnforcer(t, Config{})
	c := startContainer(t, runctest.Options{Files: []string{"/usr/local/bin/echo"}})
	tg := target(c)
	tg.PID = os.Getpid() // this test, in another cgroup
	tg.DenyExec = []ExecRule{{Rule: "deny-tool", Path: "/usr/local/bin/echo"}}
	err := e.Apply(t.Context(), []Target{tg})
	switch e.Mechanisms().Exec.Mechanism {
	case MechanismFanotify:
		if err == nil || !strings.Contains(err.Error(), "not "+c.CgroupPath) {
			t.Errorf("Apply(target with a pid outside its cgroup) = %v, want an error saying the pid is not in %s", err, c.CgroupPath)
		}
	case MechanismBPFLSM:
		if err != nil {
			t.Errorf("Apply(target with a pid outside its cgroup) = %v, want nil with BPF LSM", err)
		}
		out, errOut := c.Sh(t, `/usr/local/bin/echo RAN`)
		if strings.Contains(out, "RAN") || !strings.Contains(errOut, "Operation not permitted") {
			t.Errorf("exec of a denied path with BPF LSM: stdout %q stderr %q, want EPERM", out, errOut)
		}
	}
}
