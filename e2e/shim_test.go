//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"bulwark/api/shimv1"
	"bulwark/internal/event"
	"bulwark/internal/runtime/runctest"
	"bulwark/internal/shim"
)

const blockedHostPID = `bulwark: blocked by rule "prod-strict": 5515 - Do not share the host's process namespace`

// The policy of the acceptance tests: host PID blocks, in every container.
const strictPolicy = `{"rules":[{"name":"prod-strict","collections":[{"name":"all","images":["*"]}],
 "condition":{"vulnerabilities":[{"id":5515,"block":true}]}}]}`

// runcCopy is a copy of the system's runc in a directory of the test: the
// shim is installed there, never in place of the system's runc.
func runcCopy(t *testing.T) string {
	t.Helper()
	runctest.Require(t)
	return runctest.RuncCopy(t)
}

// shimBundle makes a busybox bundle that sleeps; hostPID drops its pid
// namespace. The CRI annotations make it a Kubernetes container to the
// compliance engine (CRI check IDs).
func shimBundle(t *testing.T, hostPID bool) string {
	t.Helper()
	return runctest.Bundle(t, runctest.Options{Args: []string{"sleep", "60"}, ReadonlyRoot: true, HostPID: hostPID,
		Annotations: map[string]string{
			"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": "web",
			"io.kubernetes.cri.sandbox-name": "web-0", "io.kubernetes.cri.sandbox-namespace": "prod",
			"io.kubernetes.cri.image-name": "registry.local/web:1.2",
		}})
}

// runcRun runs `runc run -d` of a bundle with the given runc binary and a
// state root of the test's own, and removes the container at the end.
func runcRun(t *testing.T, runc, root, bundle, id string) (stderr string, elapsed time.Duration, err error) {
	t.Helper()
	dir := t.TempDir()
	out, ferr := os.Create(filepath.Join(dir, "stdout"))
	if ferr != nil {
		t.Fatal(ferr)
	}
	errf, ferr := os.Create(filepath.Join(dir, "stderr"))
	if ferr != nil {
		t.Fatal(ferr)
	}
	t.Cleanup(func() { runctest.Delete(t, root, id) }) // with the system's runc
	cmd := exec.Command(runc, "--root", root, "run", "--detach", "--bundle", bundle, id)
	// Files, not pipes: the detached container keeps runc's stdio, and
	// waiting for a pipe would wait for the container.
	cmd.Stdout, cmd.Stderr = out, errf
	start := time.Now()
	err = cmd.Run()
	elapsed = time.Since(start)
	out.Close()
	errf.Close()
	b, _ := os.ReadFile(errf.Name())
	stderr = string(b)
	return stderr, elapsed, err
}

func shimState(t *testing.T, stateDir string) (shim.State, string) {
	t.Helper()
	st := status(t, stateDir)
	if st.Shim == nil || len(st.Shim.Runc) == 0 {
		return "", ""
	}
	return st.Shim.Runc[0].State, st.Shim.LastError
}

func shimDecisions(t *testing.T, dataDir string) []event.ShimDecision {
	t.Helper()
	var out []event.ShimDecision
	for _, e := range storedEvents(t, dataDir) {
		if e.Kind != event.KindShimDecision {
			continue
		}
		var d event.ShimDecision
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// TestShimBlocksHostPID: with a rule blocking host PID, the Defender puts
// the shim in place of (a copy of) runc; a busybox container with a pid
// namespace starts, one without is refused with the rule's reason and
// leaves no state; both decisions reach the Console; without the rule the
// original runc is back, byte for byte.
func TestShimBlocksHostPID(t *testing.T) {
	runc := runcCopy(t)
	orig, _ := os.ReadFile(runc)
	dataDir := t.TempDir()
	c := startConsole(t, dataDir, freePort(t), freePort(t))
	state := t.TempDir()
	startDefender(t, c.bundle(t, "shim-host"), state, "--shim=auto", "--shim-runc", runc, "--shim-binary", filepath.Join(bin, "bulwark-shim"), "--shim-timeout", "20s")
	waitFor(t, "the defender to connect", 30*time.Second, func() bool { return c.defender(t, "shim-host").Connected })
	waitFor(t, "the defender to report runc without the shim", 10*time.Second, func() bool {
		st, _ := shimState(t, state)
		return st == shim.StateNotInstalled
	})

	c.api(t, "PUT", "/api/v1/policies/compliance/container", strictPolicy, nil)
	waitFor(t, "the shim to be installed", 20*time.Second, func() bool { st, _ := shimState(t, state); return st == shim.StateInstalled })

	root := t.TempDir()
	okID, badID := runctest.NewID("bwshim-ok-"), runctest.NewID("bwshim-bad-")
	if stderr, _, err := runcRun(t, runc, root, shimBundle(t, false), okID); err != nil {
		t.Fatalf("runc run of a container with a pid namespace: %v\n%s", err, stderr)
	}
	if st := runctest.State(t, root, okID); st != "running" {
		t.Errorf("container %s is %q, want running", okID, st)
	}
	stderr, _, err := runcRun(t, runc, root, shimBundle(t, true), badID)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || stderr != blockedHostPID+"\n" {
		t.Errorf("runc run of a host-PID container: %v, stderr %q; want exit 1 and %q", err, stderr, blockedHostPID)
	}
	if st := runctest.State(t, root, badID); st != "" {
		t.Errorf("refused container %s has state %q, want none", badID, st)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("runc root holds %d containers, want only %s", len(entries), okID)
	}

	c.api(t, "PUT", "/api/v1/policies/compliance/container", `{"rules":[{"name":"alert only"}]}`, nil)
	waitFor(t, "the shim to be removed", 20*time.Second, func() bool { st, _ := shimState(t, state); return st == shim.StateNotInstalled })
	if got, _ := os.ReadFile(runc); !bytes.Equal(got, orig) {
		t.Error("runc is not byte-identical after the shim was removed")
	}

	waitFor(t, "the spool to drain", 20*time.Second, func() bool { return status(t, state).Spool.Depth == 0 })
	c.kill(syscall.SIGTERM)
	var verdicts []string
	for _, d := range shimDecisions(t, dataDir) {
		verdicts = append(verdicts, d.Container.ID+" "+d.Verdict)
		if d.Container.ID == badID && (d.Rule != "prod-strict" || d.Message != blockedHostPID || len(d.Findings) == 0 ||
			d.Findings[0].Check != "host-pid" || d.Container.Image != "registry.local/web:1.2" || d.Container.Pod != "web-0") {
			t.Errorf("the refusal's event = %+v, want the rule, the message, the host-pid finding and the container's facts", d)
		}
	}
	slices.Sort(verdicts)
	if want := []string{badID + " blocked", okID + " allowed"}; !slices.Equal(verdicts, want) {
		t.Errorf("shim.decision events = %q, want %q", verdicts, want)
	}
}

// TestShimFailOpenTimeout: a Defender socket that accepts but never
// answers, with a 2 s timeout: the container is created after 2 s ± 0.3 s
// and an audit record is left, which a Defender then sends to the Console.
func TestShimFailOpenTimeout(t *testing.T) {
	runc := runcCopy(t)
	shimDir := filepath.Join(t.TempDir(), "shim")
	paths := shim.PathsIn(shimDir)
	out, err := exec.Command(filepath.Join(bin, "bulwark-defender"), "shim", "install", "--shim-runc", runc,
		"--shim-binary", filepath.Join(bin, "bulwark-shim"), "--shim-dir", shimDir).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark-defender shim install: %v\n%s", err, out)
	}
	settings, _ := json.Marshal(shimv1.Settings{V: 1, TimeoutMS: 2000})
	if err := os.MkdirAll(shimDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths.Settings, settings, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", paths.Socket)
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-hold; conn.Close() }() // read nothing, answer nothing
		}
	}()

	root := t.TempDir()
	// Container creation through the shim, wall clock, must be 2 s ± 0.3 s.
	// On a loaded machine one process start can take that much more, so a
	// second attempt is allowed when the shim's own clock says it waited
	// right; the audit records of both are checked.
	var ids []string
	for attempt := 1; ; attempt++ {
		id := runctest.NewID("bwshim-slow-")
		ids = append(ids, id)
		stderr, elapsed, err := runcRun(t, runc, root, shimBundle(t, true), id)
		if err != nil {
			t.Fatalf("runc run with a silent Defender: %v\n%s", err, stderr)
		}
		if st := runctest.State(t, root, id); st != "running" {
			t.Errorf("container %s is %q, want running (fail open)", id, st)
		}
		files, err := shim.ReadAudits(paths.AuditDir, 10)
		if err != nil || len(files) != attempt {
			t.Fatalf("audit records = %+v, %v; want %d", files, err, attempt)
		}
		a := files[attempt-1]
		if a.Err != nil || a.Audit.Verdict != shimv1.VerdictFailOpenTimeout || a.Audit.Container.ID != id {
			t.Fatalf("audit record = %+v, want a fail-open-timeout for %s", a, id)
		}
		waited := time.Duration(a.Audit.ElapsedMS) * time.Millisecond
		t.Logf("attempt %d: runc run took %v; the shim waited %v by its own clock", attempt, elapsed, waited)
		if waited < 2*time.Second || waited > 2100*time.Millisecond {
			t.Fatalf("the shim waited %v for a decision, want 2 s", waited)
		}
		if elapsed >= 1700*time.Millisecond && elapsed <= 2300*time.Millisecond {
			break
		}
		if attempt == 2 {
			t.Fatalf("container created after %v, want 2 s ± 0.3 s", elapsed)
		}
	}
	close(hold)
	ln.Close()

	// A Defender (manual mode: it leaves the installation alone) sends the
	// record to the Console.
	dataDir := t.TempDir()
	c := startConsole(t, dataDir, freePort(t), freePort(t))
	state := t.TempDir()
	startDefender(t, c.bundle(t, "shim-slow"), state, "--shim", "manual", "--shim-dir", shimDir, "--shim-runc", runc)
	waitFor(t, "the audit record to be collected", 20*time.Second, func() bool {
		entries, _ := os.ReadDir(paths.AuditDir)
		return len(entries) == 0
	})
	waitFor(t, "the spool to drain", 30*time.Second, func() bool {
		st := status(t, state)
		return st.Connected && st.Spool.Depth == 0
	})
	c.kill(syscall.SIGTERM)
	ds := shimDecisions(t, dataDir)
	var got []string
	for _, d := range ds {
		if d.Verdict == shimv1.VerdictFailOpenTimeout && d.RecordedBy == "shim" && d.ElapsedMS >= 2000 {
			got = append(got, d.Container.ID)
		}
	}
	if slices.Sort(got); len(ds) != len(ids) || !slices.Equal(got, slices.Sorted(slices.Values(ids))) {
		t.Errorf("shim.decision events = %+v, want the shim's fail-open-timeout for %q after 2 s", ds, ids)
	}
}

// TestShimInstallCommand: install twice is a no-op, uninstall restores a
// byte-identical runc, and an unknown binary is refused.
func TestShimInstallCommand(t *testing.T) {
	runc := runcCopy(t)
	orig, _ := os.ReadFile(runc)
	shimDir := filepath.Join(t.TempDir(), "shim")
	shimCmd := func(action string, target string) (string, error) {
		out, err := exec.Command(filepath.Join(bin, "bulwark-defender"), "shim", action, "--shim-runc", target,
			"--shim-binary", filepath.Join(bin, "bulwark-shim"), "--shim-dir", shimDir).CombinedOutput()
		return string(out), err
	}
	if out, err := shimCmd("install", runc); err != nil || !strings.Contains(out, `"state": "installed"`) {
		t.Fatalf("shim install: %v\n%s", err, out)
	}
	stamp := func(p string) string {
		fi, err := os.Stat(p)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(fi.Sys().(*syscall.Stat_t).Ino, fi.Size(), fi.ModTime().UnixNano())
	}
	before := []string{stamp(runc), stamp(runc + shimv1.OriginalSuffix), stamp(runc + shimv1.ManifestSuffix)}
	if out, err := shimCmd("install", runc); err != nil {
		t.Fatalf("second shim install: %v\n%s", err, out)
	}
	if after := []string{stamp(runc), stamp(runc + shimv1.OriginalSuffix), stamp(runc + shimv1.ManifestSuffix)}; !slices.Equal(before, after) {
		t.Errorf("the second install touched files: %q → %q", before, after)
	}
	// The shim answers for runc in between.
	if out, err := exec.Command(runc, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "runc version") {
		t.Errorf("runc --version through the shim = %q, %v", out, err)
	}
	for range 2 {
		if out, err := shimCmd("uninstall", runc); err != nil || !strings.Contains(out, `"state": "not-installed"`) {
			t.Fatalf("shim uninstall: %v\n%s", err, out)
		}
		if got, _ := os.ReadFile(runc); !bytes.Equal(got, orig) {
			t.Fatal("runc is not byte-identical after uninstall")
		}
	}
	script := filepath.Join(t.TempDir(), "runc")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho not runc\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := shimCmd("install", script); err == nil || !strings.Contains(out, "not a runc binary") {
		t.Errorf("shim install over a non-runc binary: %v\n%s; want a refusal", err, out)
	}
}

// TestShimContainerd: containerd (started by the test on its own root,
// state and socket) running containers through the shim: the refusal's
// reason is in ctr's error; a clean container runs.
func TestShimContainerd(t *testing.T) {
	runc := runcCopy(t)
	for _, need := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(need); err != nil {
			t.Skipf("needs %s (scripts/setup.sh installs the containerd package): %v", need, err)
		}
	}
	dataDir := t.TempDir()
	c := startConsole(t, dataDir, freePort(t), freePort(t))
	state := t.TempDir()
	startDefender(t, c.bundle(t, "shim-containerd"), state, "--shim=auto", "--shim-runc", runc, "--shim-binary", filepath.Join(bin, "bulwark-shim"))
	waitFor(t, "the defender to connect", 30*time.Second, func() bool { return c.defender(t, "shim-containerd").Connected })
	c.api(t, "PUT", "/api/v1/policies/compliance/container", strictPolicy, nil)
	waitFor(t, "the shim to be installed", 20*time.Second, func() bool { st, _ := shimState(t, state); return st == shim.StateInstalled })

	ctd := startContainerd(t)
	rootfs := runctest.Busybox(t)
	okID, badID := runctest.NewID("bwctd-ok-"), runctest.NewID("bwctd-bad-")
	if out, err := ctd.ctr("run", "--rm", "--null-io", "--runc-binary", runc, "--rootfs", rootfs, okID, "/bin/true"); err != nil {
		t.Fatalf("ctr run of a clean container through the shim: %v\n%s", err, out)
	}
	out, err := ctd.ctr("run", "--rm", "--null-io", "--runc-binary", runc, "--with-ns", "pid:/proc/1/ns/pid", "--rootfs", rootfs, badID, "/bin/true")
	if err == nil || !strings.Contains(out, blockedHostPID) {
		t.Errorf("ctr run of a host-PID container: %v\n%s\nwant an error with %q", err, out, blockedHostPID)
	}
	if out, _ := ctd.ctr("containers", "list", "-q"); strings.Contains(out, badID) {
		// ctr run creates the container record before the task; the task
		// was refused, so remove the record as a user would.
		_, _ = ctd.ctr("containers", "delete", badID)
	}
	if st := runctest.State(t, "/run/containerd/runc/"+ctd.namespace, badID); st != "" {
		t.Errorf("runc state of the refused container = %q, want none", st)
	}
}

// containerdProc is a containerd the test started on its own directories.
type containerdProc struct {
	address, namespace string
}

func startContainerd(t *testing.T) *containerdProc {
	t.Helper()
	dir, err := os.MkdirTemp("", "bwctd-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := filepath.Join(dir, "config.toml")
	address := filepath.Join(dir, "c.sock")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), address, address+".ttrpc")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfg)
	p := startCmd(t, cmd, nil)
	ctd := &containerdProc{address: address, namespace: runctest.NewID("bwe2e-")}
	// runc's state root of the namespace, made by containerd's shim.
	t.Cleanup(func() { _ = os.Remove("/run/containerd/runc/" + ctd.namespace) })
	waitFor(t, "containerd to serve", 20*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("containerd exited:\n%s", p.out.String())
		default:
		}
		_, err := ctd.ctr("version")
		return err == nil
	})
	return ctd
}

func (c *containerdProc) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.address, "--namespace", c.namespace}, args...)...).CombinedOutput()
	return string(out), err
}
