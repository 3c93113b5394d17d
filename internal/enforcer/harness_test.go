package enforcer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wantEnv names the mechanism the privileged tests must find for exec and
// file-write ("bpf-lsm" in the qemu VM of make vmtest). Unset: whatever the
// host offers, as long as it is not "none".
const wantEnv = "BULWARK_ENFORCER_WANT"

// requirePrivileged skips unless the test can load BPF programs and run
// runc containers, and mounts the kernel filesystems a fresh machine lacks.
func requirePrivileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("enforcer tests load eBPF programs and run runc containers: run them as root (they run in CI)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		tb.Skip("enforcer tests need kernel BTF (/sys/kernel/btf/vmlinux): " + err.Error())
	}
	for _, m := range []struct{ dir, fs string }{
		{"/sys/kernel/tracing", "tracefs"}, {"/sys/fs/bpf", "bpf"}, {"/sys/kernel/security", "securityfs"},
	} {
		if !isMountpoint(m.dir) {
			if err := unix.Mount("none", m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
				tb.Fatalf("mount %s on %s: %v", m.fs, m.dir, err)
			}
		}
	}
}

func isMountpoint(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	ms, err := parseMountinfo(b)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.point == dir {
			return true
		}
	}
	return false
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ tb testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// audits collects what an enforcer reports.
type audits struct {
	mu   sync.Mutex
	list []Prevented
	more chan struct{}
}

// startEnforcer creates an enforcer that is closed when the test ends, and
// collects its audits.
func startEnforcer(tb testing.TB, cfg Config) (*Enforcer, *audits) {
	tb.Helper()
	e, err := New(cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	a := &audits{more: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range e.Events() {
			a.mu.Lock()
			a.list = append(a.list, p)
			a.mu.Unlock()
			select {
			case a.more <- struct{}{}:
			default:
			}
		}
	}()
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		<-done
	})
	return e, a
}

// wait returns the first audit that matches, failing after 10 s.
func (a *audits) wait(tb testing.TB, what string, match func(Prevented) bool) Prevented {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	for {
		a.mu.Lock()
		for _, p := range a.list {
			if match(p) {
				a.mu.Unlock()
				return p
			}
		}
		got := fmt.Sprintf("%+v", a.list)
		a.mu.Unlock()
		select {
		case <-a.more:
		case <-deadline:
			tb.Fatalf("no audit for %s after 10s; got %s", what, got)
		}
	}
}

// wantMechanism returns the mechanism the test must see for a kind, and
// fails when the host enforces nothing for it.
func wantMechanism(tb testing.TB, e *Enforcer, k Kind) Mechanism {
	tb.Helper()
	c := e.Mechanisms().For(k)
	if want := os.Getenv(wantEnv); want != "" && !e.cfg.DisableBPFLSM && c.Mechanism != Mechanism(want) {
		tb.Fatalf("Mechanisms().For(%s) = %+v, want %s (%s is set)", k, c, want, wantEnv)
	}
	if c.Mechanism == MechanismNone {
		tb.Fatalf("Mechanisms().For(%s) = %+v: nothing enforces it here", k, c)
	}
	return c.Mechanism
}

// container is a runc container with a busybox root file system.
type container struct {
	id         string
	bundle     string
	rootfs     string
	pid        int
	cgroupPath string
	runc       string
}

// containerOpts shapes a test container.
type containerOpts struct {
	hostNetwork bool
	// files are copies of busybox at these paths inside the container
	// (distinct files, unlike the applet links).
	files []string
}

// startContainer runs a container whose init sleeps, and removes it when
// the test ends.
func startContainer(tb testing.TB, opts containerOpts) *container {
	tb.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		tb.Skip("needs runc (scripts/setup.sh installs it)")
	}
	const busybox = "/bin/busybox"
	bb, err := os.ReadFile(busybox)
	if err != nil {
		tb.Fatalf("needs a static %s (busybox-static): %v", busybox, err)
	}
	c := &container{id: "bwenf-" + randomHex(tb), bundle: tb.TempDir(), runc: runc}
	c.rootfs = filepath.Join(c.bundle, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "root", "usr/local/bin", "proc", "sys", "dev"} {
		mkdir(tb, filepath.Join(c.rootfs, d))
	}
	writeFile(tb, filepath.Join(c.rootfs, "bin/busybox"), bb, 0o755)
	for _, applet := range []string{"sh", "sleep", "true", "echo", "cat", "ls", "ln", "nc", "timeout", "mkdir", "cp", "kill"} {
		if err := os.Symlink("busybox", filepath.Join(c.rootfs, "bin", applet)); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range opts.files {
		mkdir(tb, filepath.Dir(filepath.Join(c.rootfs, f)))
		writeFile(tb, filepath.Join(c.rootfs, f), bb, 0o755)
	}
	writeFile(tb, filepath.Join(c.rootfs, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)

	c.cmd(tb, "spec")
	path := filepath.Join(c.bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		tb.Fatalf("parse runc spec: %v", err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "600"}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
	if opts.hostNetwork {
		linux := spec["linux"].(map[string]any)
		var ns []any
		for _, n := range linux["namespaces"].([]any) {
			if n.(map[string]any)["type"] != "network" {
				ns = append(ns, n)
			}
		}
		linux["namespaces"] = ns
	}
	if b, err = json.Marshal(spec); err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, path, b, 0o644)

	pidFile := filepath.Join(c.bundle, "init.pid")
	c.cmd(tb, "run", "-d", "--pid-file", pidFile, c.id)
	tb.Cleanup(func() { c.stop(tb) })
	b, err = os.ReadFile(pidFile)
	if err != nil {
		tb.Fatal(err)
	}
	if c.pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		tb.Fatalf("pid file %q: %v", b, err)
	}
	if c.cgroupPath, err = cgroupOfTask("/proc", uint32(c.pid)); err != nil { //nolint:gosec // G115: a pid
		tb.Fatalf("cgroup of the container's init: %v", err)
	}
	return c
}

// target is the container as the Defender would describe it, without rules.
func (c *container) target() Target {
	return Target{ContainerID: c.id, CgroupPath: c.cgroupPath, PID: c.pid}
}

// cmd runs runc in the bundle directory and fails the test on error. The
// container's stdio is a file: with a pipe, a detached container would keep
// it open and Wait would not return.
func (c *container) cmd(tb testing.TB, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.runc, args...)
	cmd.Dir = c.bundle
	log, err := os.CreateTemp(tb.TempDir(), "runc-*.log")
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		tb.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// sh runs a shell script in the container (runc exec) and returns its
// stdout and stderr. A non-zero exit is not an error: scripts print what
// the test checks.
func (c *container) sh(tb testing.TB, script string) (stdout, stderr string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, c.runc, "exec", c.id, "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("runc exec %s sh -c %q: timed out\nstdout: %s\nstderr: %s", c.id, script, out.String(), errb.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		tb.Fatalf("runc exec %s: %v", c.id, err)
	}
	return out.String(), errb.String()
}

// stop kills and deletes the container; it is idempotent.
func (c *container) stop(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, c.runc, "state", c.id).Run(); err != nil {
		return
	}
	_ = exec.CommandContext(ctx, c.runc, "kill", "--all", c.id, "KILL").Run()
	if out, err := exec.CommandContext(ctx, c.runc, "delete", "-f", c.id).CombinedOutput(); err != nil {
		tb.Errorf("runc delete -f %s: %v\n%s", c.id, err, out)
	}
}

func randomHex(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func mkdir(tb testing.TB, dir string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
}

func writeFile(tb testing.TB, path string, b []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		tb.Fatal(err)
	}
}

// hostRun runs a command on the host, bounded so that a hang fails the test.
func hostRun(tb testing.TB, name string, args ...string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		tb.Fatalf("%s %s: still running after 20s", name, strings.Join(args, " "))
	}
	return string(out), err
}

// readLines reads lines from r until one equals want.
func readUntil(r io.Reader, want string) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == want {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
