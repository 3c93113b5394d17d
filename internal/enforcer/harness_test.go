package enforcer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"bulwark/internal/runtime/runctest"
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

// tracepointsAttached says whether the fanotify decisions' syscall
// tracepoints are attached.
func (e *Enforcer) tracepointsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.k.tpLinks) > 0
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

// startContainer runs a busybox container whose init sleeps, in runc's
// default root (where StopContainer looks); the test's cleanup deletes it.
func startContainer(tb testing.TB, opts runctest.Options) *runctest.Container {
	tb.Helper()
	opts.Prefix = "bwenf-"
	return runctest.Run(tb, opts)
}

// target is the container as the Defender would describe it, without rules.
func target(c *runctest.Container) Target {
	return Target{ContainerID: c.ID, CgroupPath: c.CgroupPath, PID: c.InitPID}
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
