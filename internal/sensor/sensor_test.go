package sensor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"bulwark/internal/event"
)

// requirePrivileged skips unless the test can load BPF programs, and mounts
// the kernel filesystems a fresh machine lacks.
func requirePrivileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("sensor tests load eBPF programs: run them as root (they run in CI)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		tb.Skip("sensor tests need kernel BTF (/sys/kernel/btf/vmlinux): " + err.Error())
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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

type got struct {
	kind string
	at   time.Time
	rt   event.Runtime
}

// collector keeps what a running sensor reported.
type collector struct {
	mu     sync.Mutex
	events []got
}

func (c *collector) add(kind string, at time.Time, rt event.Runtime) {
	c.mu.Lock()
	c.events = append(c.events, got{kind, at, rt})
	c.mu.Unlock()
}

func (c *collector) find(kind string, match func(event.Runtime) bool) (event.Runtime, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.kind == kind && match(e.rt) {
			return e.rt, true
		}
	}
	return event.Runtime{}, false
}

func (c *collector) count(kind string, match func(event.Runtime) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if e.kind == kind && match(e.rt) {
			n++
		}
	}
	return n
}

// wait returns the first event of kind that matches, or fails the test.
func (c *collector) wait(tb testing.TB, what, kind string, match func(event.Runtime) bool) event.Runtime {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if rt, ok := c.find(kind, match); ok {
			return rt
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("%s: no %s event within 10s", what, kind)
	return event.Runtime{}
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ tb testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newSensor starts a sensor for the test and checks, when the test ends,
// that Close detached and freed every program it loaded.
func newSensor(tb testing.TB, cfg Config) *Sensor {
	tb.Helper()
	requirePrivileged(tb)
	s, err := New(cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	var ids []ebpf.ProgramID
	for _, p := range s.progs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, id)
			}
		}
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, id := range ids {
			for {
				p, err := ebpf.NewProgramFromID(id)
				if err != nil {
					break
				}
				p.Close()
				if time.Now().After(deadline) {
					tb.Errorf("program %d still loaded after Close", id)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	return s
}

// run starts Run in the background; it stops before the sensor closes.
func run(tb testing.TB, s *Sensor) *collector {
	tb.Helper()
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, c.add) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	return c
}

func startSensor(tb testing.TB, cfg Config) (*Sensor, *collector) {
	tb.Helper()
	s := newSensor(tb, cfg)
	return s, run(tb, s)
}

func TestProcessEvents(t *testing.T) {
	_, c := startSensor(t, Config{})
	mark := fmt.Sprintf("bulwark-sensor-%d", time.Now().UnixNano())
	cmd := exec.Command("/bin/busybox", "true", mark, "two words")
	cmd.Dir = t.TempDir()
	if err := cmd.Run(); err != nil {
		t.Fatalf("busybox true: %v", err)
	}
	pid := uint32(cmd.Process.Pid)
	self := uint32(os.Getpid())

	ex := c.wait(t, "busybox exec", event.KindProcessExec, func(rt event.Runtime) bool { return rt.Process.PID == pid })
	p := ex.Process
	if p.PPID != self || p.Exe != "/bin/busybox" || p.Comm != "busybox" || p.CgroupID == 0 || p.Truncated {
		t.Errorf("exec = %+v, want ppid %d, exe /bin/busybox, comm busybox, a cgroup id", p, self)
	}
	if want := []string{"/bin/busybox", "true", mark, "two words"}; strings.Join(p.Argv, "|") != strings.Join(want, "|") {
		t.Errorf("exec argv = %q, want %q", p.Argv, want)
	}
	if d := time.Since(p.StartTime); d < 0 || d > time.Minute {
		t.Errorf("exec start time %v is %v ago", p.StartTime, d)
	}

	fk := c.wait(t, "fork", event.KindProcessFork, func(rt event.Runtime) bool { return rt.Child != nil && rt.Child.PID == pid })
	if fk.Process.PID != self {
		t.Errorf("fork parent = %d, want %d", fk.Process.PID, self)
	}
	c.wait(t, "exit 0", event.KindProcessExit, func(rt event.Runtime) bool {
		return rt.Process.PID == pid && rt.Exit.Code == 0 && rt.Exit.Signal == 0
	})

	t.Run("executable change time", func(t *testing.T) {
		raw, err := os.ReadFile("/bin/busybox")
		if err != nil {
			t.Fatal(err)
		}
		fresh := filepath.Join(t.TempDir(), "busybox")
		if err := os.WriteFile(fresh, raw, 0o755); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(fresh)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		ctime := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
		cmd := exec.Command(fresh, "true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pid := uint32(cmd.Process.Pid)
		rt := c.wait(t, "exec of a fresh file", event.KindProcessExec, func(rt event.Runtime) bool { return rt.Process.PID == pid })
		if !rt.Process.ExeChanged.Equal(ctime) {
			t.Errorf("ExeChanged = %v, want the file's change time %v", rt.Process.ExeChanged, ctime)
		}
	})
	t.Run("exec through /proc/self/exe", func(t *testing.T) {
		// busybox sh runs applets by exec'ing itself this way, with the
		// applet's name as argv[0].
		cmd := exec.Command("/bin/busybox", "sh", "-c", "exec -a sleep /proc/self/exe 1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		pid := uint32(cmd.Process.Pid)
		rt := c.wait(t, "exec of /proc/self/exe", event.KindProcessExec, func(rt event.Runtime) bool {
			return rt.Process.PID == pid && len(rt.Process.Argv) > 0 && rt.Process.Argv[0] == "sleep"
		})
		if rt.Process.Exe != "/bin/busybox" && rt.Process.Exe != "/usr/bin/busybox" {
			t.Errorf("exe = %q, want busybox's path, not /proc/self/exe", rt.Process.Exe)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		cmd := exec.Command("/bin/sh", "-c", "exit 7")
		_ = cmd.Run()
		pid := uint32(cmd.Process.Pid)
		rt := c.wait(t, "sh exit 7", event.KindProcessExit, func(rt event.Runtime) bool { return rt.Process.PID == pid })
		if rt.Exit.Code != 7 || rt.Exit.Signal != 0 {
			t.Errorf("exit = %+v, want code 7", rt.Exit)
		}
	})
	t.Run("killed", func(t *testing.T) {
		cmd := exec.Command("/bin/busybox", "sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pid := uint32(cmd.Process.Pid)
		rt := c.wait(t, "sleep killed", event.KindProcessExit, func(rt event.Runtime) bool { return rt.Process.PID == pid })
		if rt.Exit.Signal != int(unix.SIGKILL) {
			t.Errorf("exit = %+v, want signal 9", rt.Exit)
		}
	})
	t.Run("relative exe and cwd", func(t *testing.T) {
		// The cwd is read from /proc at decode time: keep the process alive.
		dir := t.TempDir()
		if err := os.Symlink("/bin/busybox", filepath.Join(dir, "sleep")); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("./sleep", "1")
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		pid := uint32(cmd.Process.Pid)
		rt := c.wait(t, "./sleep", event.KindProcessExec, func(rt event.Runtime) bool { return rt.Process.PID == pid })
		if rt.Process.Cwd != dir || rt.Process.Exe != filepath.Join(dir, "sleep") {
			t.Errorf("exec cwd, exe = %q, %q, want %q, %q", rt.Process.Cwd, rt.Process.Exe, dir, filepath.Join(dir, "sleep"))
		}
	})
}

func TestFileEvents(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	_, c := startSensor(t, Config{WatchPaths: []string{dir}})
	self := uint32(os.Getpid())
	at := func(path string) func(event.Runtime) bool {
		return func(rt event.Runtime) bool { return rt.File != nil && rt.File.Path == path && rt.Process.PID == self }
	}

	if err := os.WriteFile(filepath.Join(outside, "quiet"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := filepath.Join(dir, "created")
	if err := os.WriteFile(created, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := c.wait(t, "create", event.KindFileCreate, at(created))
	if rt.File.Mode != 0o600 || rt.File.Flags&unix.O_CREAT == 0 || rt.Syscall != "openat" {
		t.Errorf("create = %+v (%s), want mode 0600, O_CREAT, openat", rt.File, rt.Syscall)
	}
	if _, ok := c.find(event.KindFileCreate, at(filepath.Join(outside, "quiet"))); ok {
		t.Errorf("a write outside the watched paths was reported")
	}

	f, err := os.OpenFile(created, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.wait(t, "write", event.KindFileWrite, at(created))
	// fchmod: the path comes from /proc/<pid>/fd/<fd> when the event is
	// decoded, so the file stays open until then.
	if err := f.Chmod(0o640); err != nil {
		t.Fatal(err)
	}
	rt = c.wait(t, "fchmod", event.KindFileChmod, func(rt event.Runtime) bool { return at(created)(rt) && rt.Syscall == "fchmod" })
	f.Close()
	if rt.File.Mode != 0o640 {
		t.Errorf("fchmod mode = %o, want 640", rt.File.Mode)
	}
	if err := os.Chmod(created, 0o644); err != nil {
		t.Fatal(err)
	}
	c.wait(t, "chmod", event.KindFileChmod, func(rt event.Runtime) bool { return at(created)(rt) && rt.File.Mode == 0o644 })

	renamed := filepath.Join(dir, "renamed")
	if err := os.Rename(created, renamed); err != nil {
		t.Fatal(err)
	}
	rt = c.wait(t, "rename", event.KindFileRename, at(created))
	if rt.File.NewPath != renamed {
		t.Errorf("rename new path = %q, want %q", rt.File.NewPath, renamed)
	}
	// Moving a file into a watched directory is reported by its new path.
	intoWatch := filepath.Join(outside, "moved-in")
	if err := os.WriteFile(intoWatch, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(intoWatch, filepath.Join(dir, "moved-in")); err != nil {
		t.Fatal(err)
	}
	c.wait(t, "rename into", event.KindFileRename, at(intoWatch))

	if err := os.Remove(renamed); err != nil {
		t.Fatal(err)
	}
	c.wait(t, "unlink", event.KindFileUnlink, at(renamed))

	// A relative path is joined with the process's cwd in user space.
	cmd := exec.Command("/bin/sh", "-c", "echo x > relative && sleep 1")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := uint32(cmd.Process.Pid)
	c.wait(t, "relative create", event.KindFileCreate, func(rt event.Runtime) bool {
		return rt.Process.PID == pid && rt.File.Path == filepath.Join(dir, "relative")
	})
	if n := c.count(event.KindFileCreate, func(rt event.Runtime) bool { return strings.HasPrefix(rt.File.Path, outside+"/") }); n != 0 {
		t.Errorf("%d events under the unwatched %s", n, outside)
	}
}

// TestReadEvents: opens for reading are reported for the configured paths
// only, by absolute path, and a write to them stays a write.
func TestReadEvents(t *testing.T) {
	dir := t.TempDir()
	secret, keys := filepath.Join(dir, "secret"), filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{secret, filepath.Join(dir, "plain"), filepath.Join(keys, "id_ed25519")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, c := startSensor(t, Config{ReadPaths: []string{secret, keys}})
	self := uint32(os.Getpid())
	at := func(path string) func(event.Runtime) bool {
		return func(rt event.Runtime) bool { return rt.File != nil && rt.File.Path == path && rt.Process.PID == self }
	}
	for _, f := range []string{filepath.Join(dir, "plain"), secret, filepath.Join(keys, "id_ed25519")} {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	rt := c.wait(t, "read of the secret", event.KindFileRead, at(secret))
	if rt.File.Flags&(unix.O_WRONLY|unix.O_RDWR) != 0 || rt.Syscall != "openat" {
		t.Errorf("read = %+v (%s), want a read-only openat", rt.File, rt.Syscall)
	}
	c.wait(t, "read under the keys directory", event.KindFileRead, at(filepath.Join(keys, "id_ed25519")))
	if _, ok := c.find(event.KindFileRead, at(filepath.Join(dir, "plain"))); ok {
		t.Error("a read of a file not in ReadPaths was reported")
	}
	// A write to a read path is no read (and, unwatched, not reported).
	if err := os.WriteFile(secret, []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := c.count(event.KindFileRead, at(secret)); n != 1 {
		t.Errorf("%d reads of the secret reported, want 1 (the write is none)", n)
	}
}

func TestNetworkEvents(t *testing.T) {
	_, c := startSensor(t, Config{})
	self := uint32(os.Getpid())
	for _, tc := range []struct{ name, network, addr, family string }{
		{"ipv4", "tcp4", "127.0.0.1", "inet"},
		{"ipv6", "tcp6", "::1", "inet6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, net.JoinHostPort(tc.addr, "0"))
			if err != nil {
				t.Skipf("listen %s: %v", tc.network, err)
			}
			defer ln.Close()
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			rt := c.wait(t, "listen", event.KindNetListen, func(rt event.Runtime) bool {
				return rt.Process.PID == self && rt.Net.SrcPort == port
			})
			if rt.Net.Protocol != "tcp" || rt.Net.Family != tc.family || rt.Net.SrcAddr != tc.addr {
				t.Errorf("listen = %+v, want tcp %s %s", rt.Net, tc.family, tc.addr)
			}

			accepted := make(chan net.Conn, 1)
			go func() {
				conn, err := ln.Accept()
				if err == nil {
					accepted <- conn
				}
				close(accepted)
			}()
			conn, err := net.Dial(tc.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if a := <-accepted; a != nil {
				defer a.Close()
			}
			src := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
			rt = c.wait(t, "connect", event.KindNetConnect, func(rt event.Runtime) bool {
				return rt.Process.PID == self && rt.Net.DstPort == port
			})
			want := event.Net{Protocol: "tcp", Family: tc.family, SrcAddr: tc.addr, SrcPort: src, DstAddr: tc.addr, DstPort: port}
			if *rt.Net != want || (rt.Result != 0 && rt.Result != -int64(unix.EINPROGRESS)) {
				t.Errorf("connect = %+v result %d, want %+v and 0 or -EINPROGRESS", *rt.Net, rt.Result, want)
			}
			rt = c.wait(t, "accept", event.KindNetAccept, func(rt event.Runtime) bool {
				return rt.Process.PID == self && rt.Net.DstPort == port
			})
			want = event.Net{Protocol: "tcp", Family: tc.family, SrcAddr: tc.addr, SrcPort: src, DstAddr: tc.addr, DstPort: port}
			if *rt.Net != want {
				t.Errorf("accept = %+v, want %+v", *rt.Net, want)
			}
		})
	}
	t.Run("udp", func(t *testing.T) {
		conn, err := net.Dial("udp4", "127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rt := c.wait(t, "udp connect", event.KindNetConnect, func(rt event.Runtime) bool {
			return rt.Process.PID == self && rt.Net.DstPort == 9
		})
		if rt.Net.Protocol != "udp" || rt.Net.SrcPort != uint16(conn.LocalAddr().(*net.UDPAddr).Port) {
			t.Errorf("udp connect = %+v", *rt.Net)
		}
	})
}

func TestPrivilegeEvents(t *testing.T) {
	_, c := startSensor(t, Config{})
	self := uint32(os.Getpid())

	cmd := exec.Command("setpriv", "--reuid=65534", "/bin/true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("setpriv: %v: %s", err, out)
	}
	pid := uint32(cmd.Process.Pid)
	rt := c.wait(t, "setpriv --reuid", event.KindSetuid, func(rt event.Runtime) bool { return rt.Process.PID == pid })
	if rt.Setuid.UID != 65534 {
		t.Errorf("setuid = %+v (%s), want uid 65534", rt.Setuid, rt.Syscall)
	}

	cmd = exec.Command("unshare", "--uts", "/bin/true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unshare: %v: %s", err, out)
	}
	pid = uint32(cmd.Process.Pid)
	rt = c.wait(t, "unshare --uts", event.KindUnshare, func(rt event.Runtime) bool { return rt.Process.PID == pid })
	if rt.Ns.Flags&unix.CLONE_NEWUTS == 0 {
		t.Errorf("unshare flags = %#x, want CLONE_NEWUTS", rt.Ns.Flags)
	}

	// These fail on purpose: the events are seen at syscall entry.
	_ = unix.Setns(-1, unix.CLONE_NEWNET)
	rt = c.wait(t, "setns", event.KindSetns, func(rt event.Runtime) bool { return rt.Process.PID == self && rt.Ns.FD == -1 })
	if rt.Ns.Flags != unix.CLONE_NEWNET {
		t.Errorf("setns flags = %#x, want CLONE_NEWNET", rt.Ns.Flags)
	}
	_, _, _ = unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_SEIZE, 0x7ffffff0, 0)
	rt = c.wait(t, "ptrace", event.KindPtrace, func(rt event.Runtime) bool { return rt.Process.PID == self })
	if rt.Ptrace.Request != unix.PTRACE_SEIZE || rt.Ptrace.TargetPID != 0x7ffffff0 {
		t.Errorf("ptrace = %+v", rt.Ptrace)
	}
	_ = unix.Capset(&unix.CapUserHeader{Version: 0, Pid: 0}, &unix.CapUserData{})
	c.wait(t, "capset", event.KindCapset, func(rt event.Runtime) bool { return rt.Process.PID == self })
}

// TestLoss pauses the reader, writes more file events than a 4 KiB ring
// buffer holds, and checks that every one was either delivered or counted.
func TestLoss(t *testing.T) {
	dir := t.TempDir()
	s := newSensor(t, Config{RingBufferBytes: 4096, WatchPaths: []string{dir}})
	if err := s.onlyProcess(uint32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	before := s.kernelLoss()
	const n = 2000
	for i := range n {
		fd, err := unix.Open(filepath.Join(dir, "f"+strconv.Itoa(i)), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	after := s.kernelLoss()
	lost := int(after[kFile] - before[kFile] + after[kMax+kFile] - before[kMax+kFile])
	if lost == 0 {
		t.Fatalf("no loss counted for %d events into a 4 KiB ring buffer", n)
	}
	c := run(t, s)
	inDir := func(rt event.Runtime) bool { return filepath.Dir(rt.File.Path) == dir }
	deadline := time.Now().Add(10 * time.Second)
	for c.count(event.KindFileCreate, inDir) < n-lost && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // nothing more may arrive
	received := c.count(event.KindFileCreate, inDir)
	if received+lost != n {
		t.Errorf("received %d + lost %d = %d, want %d", received, lost, received+lost, n)
	}
	kernel, _ := s.Loss()
	if kernel < uint64(lost) {
		t.Errorf("Loss() kernel = %d, want at least %d", kernel, lost)
	}
	t.Logf("%d file events: %d delivered, %d lost in the kernel", n, received, lost)
}

func TestProbesReported(t *testing.T) {
	s := newSensor(t, Config{})
	active := map[string]bool{}
	for _, p := range s.Probes() {
		if p.Name == "" || p.Kind == "" {
			t.Errorf("probe %+v: no name or kind", p)
		}
		if p.Active == (p.Error != "") {
			t.Errorf("probe %+v: want either Active or an Error", p)
		}
		// The kernels tested (this one, and Debian's in scripts/vmtest.sh)
		// take every program whole: the cwd walk too. A probe may be
		// missing only for want of its tracepoint, never refused by the
		// verifier.
		if p.Degraded != "" {
			t.Errorf("probe %s: degraded: %s", p.Name, p.Degraded)
		}
		if !p.Active && !strings.HasPrefix(p.Error, "not on this kernel") {
			t.Errorf("probe %s refused by this kernel: %s", p.Name, p.Error)
		}
		active[p.Name] = p.Active
	}
	for _, name := range []string{
		"sched/sched_process_exec", "sched/sched_process_exit", "sched_process_fork",
		"syscalls/sys_enter_openat", "syscalls/sys_enter_connect", "syscalls/sys_exit_connect",
		"syscalls/sys_exit_accept4", "syscalls/sys_exit_listen", "syscalls/sys_enter_setuid",
	} {
		if !active[name] {
			t.Errorf("probe %s not active", name)
		}
	}
}

const lpEnv = "BULWARK_SENSOR_LEAST_PRIVILEGE_OUT"

// The Defender's capabilities: NET_ADMIN SYS_ADMIN SYS_PTRACE AUDIT_CONTROL MKNOD SETFCAP.
var defenderCaps = []string{"net_admin", "sys_admin", "sys_ptrace", "audit_control", "mknod", "setfcap"}

const defenderCapMask = 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_SYS_PTRACE |
	1<<unix.CAP_AUDIT_CONTROL | 1<<unix.CAP_MKNOD | 1<<unix.CAP_SETFCAP

// TestLeastPrivilege runs New in a child that has only the Defender's
// capabilities and checks that every probe active as full root is active
// there too. (CAP_BPF and CAP_PERFMON are not in the set: CAP_SYS_ADMIN
// stands in for both; CAP_SYS_RESOURCE is not needed because the kernel
// charges BPF memory to the cgroup.)
func TestLeastPrivilege(t *testing.T) {
	if out := os.Getenv(lpEnv); out != "" {
		leastPrivilegeChild(t, out)
		return
	}
	requirePrivileged(t)
	root := newSensor(t, Config{}).Probes()

	out := filepath.Join(t.TempDir(), "probes.json")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	caps := "-all,+" + strings.Join(defenderCaps, ",+")
	cmd := exec.Command("setpriv", "--inh-caps="+caps, "--ambient-caps="+caps, "--bounding-set="+caps,
		"--", exe, "-test.run=^TestLeastPrivilege$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), lpEnv+"="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child with the Defender's capabilities: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var child []ProbeStatus
	if err := json.Unmarshal(b, &child); err != nil {
		t.Fatal(err)
	}
	active := map[string]ProbeStatus{}
	for _, p := range child {
		active[p.Name] = p
	}
	for _, p := range root {
		if p.Active && !active[p.Name].Active {
			t.Errorf("probe %s: active as root, not with %v: %s", p.Name, defenderCaps, active[p.Name].Error)
		}
	}
}

func leastPrivilegeChild(t *testing.T, out string) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil || eff != defenderCapMask {
				t.Fatalf("CapEff = %s, want %#x", strings.TrimSpace(v), uint64(defenderCapMask))
			}
		}
	}
	s, err := New(Config{}, testLogger(t))
	if err != nil {
		t.Fatalf("New with the Defender's capabilities: %v", err)
	}
	defer s.Close()
	b, err := json.Marshal(s.Probes())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestProcConnectorFallback(t *testing.T) {
	requirePrivileged(t)
	s, err := New(Config{procConnector: true}, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if p := s.Probes(); len(p) != 1 || p[0].Kind != "netlink" || !p[0].Active || !strings.Contains(p[0].Error, "fallback") {
		t.Errorf("Probes() = %+v, want the proc connector, active, saying it is a fallback", p)
	}
	c := run(t, s)
	time.Sleep(50 * time.Millisecond) // the subscription is asynchronous
	cmd := exec.Command("/bin/busybox", "sh", "-c", "sleep 0.3; exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	pid := uint32(cmd.Process.Pid)
	c.wait(t, "fork", event.KindProcessFork, func(rt event.Runtime) bool { return rt.Child.PID == pid })
	rt := c.wait(t, "exec", event.KindProcessExec, func(rt event.Runtime) bool { return rt.Process.PID == pid })
	if rt.Process.PPID != uint32(os.Getpid()) {
		t.Errorf("exec ppid = %d, want %d", rt.Process.PPID, os.Getpid())
	}
	rt = c.wait(t, "exit", event.KindProcessExit, func(rt event.Runtime) bool { return rt.Process.PID == pid })
	if rt.Exit.Code != 3 {
		t.Errorf("exit = %+v, want code 3", rt.Exit)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{RingBufferBytes: DefaultRingBufferBytes}, true},
		{"not a power of two", Config{RingBufferBytes: 5000}, false},
		{"below a page", Config{RingBufferBytes: 1024}, false},
		{"relative watch path", Config{RingBufferBytes: 4096, WatchPaths: []string{"tmp"}}, false},
		{"watch path", Config{RingBufferBytes: 4096, WatchPaths: []string{"/srv/app/"}}, true},
		{"read path", Config{RingBufferBytes: 4096, ReadPaths: []string{"/etc/shadow", "/root/.ssh/"}}, true},
		{"relative read path", Config{RingBufferBytes: 4096, ReadPaths: []string{"etc/shadow"}}, false},
		{"short read path", Config{RingBufferBytes: 4096, ReadPaths: []string{"/etc/x"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := validate(tc.cfg)
			if (err == nil) != tc.ok {
				t.Errorf("validate(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
			}
		})
	}
}

func TestIsWatched(t *testing.T) {
	s := &Sensor{watched: []string{"/etc", "/srv/app"}}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/etc", true}, {"/etc/passwd", true}, {"/etcetera", false}, {"/srv/app/x/y", true},
		{"/srv/application", false}, {"/tmp/x", false},
	} {
		if got := s.isWatched(tc.path); got != tc.want {
			t.Errorf("isWatched(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

// TestIdleReaderWoken: after a quiet spell the reader waits without a timer
// (see drainEvery), so a lone record is read only if the kernel wakes it: a
// record written to an empty ring buffer drainEvery after the last wakeup
// forces one. Each lone write below must arrive.
func TestIdleReaderWoken(t *testing.T) {
	dir := t.TempDir()
	s, c := startSensor(t, Config{WatchPaths: []string{dir}})
	if err := s.onlyProcess(uint32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		time.Sleep(5 * drainEvery) // quiet: the reader is past its last deadline
		path := filepath.Join(dir, "lone-"+strconv.Itoa(i))
		start := time.Now()
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c.wait(t, "a lone write after a quiet spell", event.KindFileCreate, func(rt event.Runtime) bool { return rt.File != nil && rt.File.Path == path })
		t.Logf("lone write %d read after %s", i, time.Since(start).Round(time.Millisecond))
	}
}
