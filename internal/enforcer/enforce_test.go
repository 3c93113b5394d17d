package enforcer

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"bulwark/internal/porttest"
	"bulwark/internal/runtime/runctest"
)

// configs are the enforcer configurations every mechanism test runs with:
// the best this host offers and, where that is BPF LSM, the fallbacks too.
func configs(tb testing.TB) map[string]Config {
	tb.Helper()
	out := map[string]Config{"best": {}}
	if os.Getenv(wantEnv) == string(MechanismBPFLSM) {
		out["fallback"] = Config{DisableBPFLSM: true}
	}
	return out
}

func TestMechanisms(t *testing.T) {
	requirePrivileged(t)
	for name, cfg := range configs(t) {
		t.Run(name, func(t *testing.T) {
			e, _ := startEnforcer(t, cfg)
			m := e.Mechanisms()
			t.Logf("Mechanisms() = %+v", m)
			for _, k := range Kinds {
				c := m.For(k)
				if c.Mechanism == MechanismNone {
					t.Errorf("Mechanisms().For(%s) = %+v: nothing enforces it", k, c)
				}
				if c.Mechanism != MechanismBPFLSM && c.Reason == "" {
					t.Errorf("Mechanisms().For(%s) = %+v: a fallback without the reason", k, c)
				}
			}
			if cfg.DisableBPFLSM {
				if !strings.Contains(m.Exec.Reason, "disabled by configuration") {
					t.Errorf("Mechanisms().Exec.Reason = %q, want it to say BPF LSM was disabled", m.Exec.Reason)
				}
				if m.Exec.Mechanism != MechanismFanotify || m.FileWrite.Mechanism != MechanismFanotify ||
					m.Connect.Mechanism != MechanismCgroupBPF || m.Bind.Mechanism != MechanismCgroupBPF {
					t.Errorf("Mechanisms() with BPF LSM disabled = %+v, want fanotify and cgroup-bpf", m)
				}
			}
			if os.Getenv(wantEnv) == string(MechanismBPFLSM) && !cfg.DisableBPFLSM {
				for _, k := range Kinds {
					if c := m.For(k); c.Mechanism != MechanismBPFLSM {
						t.Errorf("Mechanisms().For(%s) = %+v, want bpf-lsm", k, c)
					}
				}
			}
		})
	}
}

// TestExecDenied: a denied binary in a container never runs, the exec fails
// with EPERM; an allowed one runs; the same file run on the host runs.
func TestExecDenied(t *testing.T) {
	requirePrivileged(t)
	for name, cfg := range configs(t) {
		t.Run(name, func(t *testing.T) {
			e, audits := startEnforcer(t, cfg)
			mech := wantMechanism(t, e, KindExec)
			c := startContainer(t, runctest.Options{Files: []string{"/usr/local/bin/echo"}})
			tg := target(c)
			tg.DenyExec = []ExecRule{
				{Rule: "deny-tool", Path: "/usr/local/bin/echo"},
				{Rule: "deny-late", Path: "/tmp/later/echo"}, // created after Apply
			}
			if err := e.Apply(t.Context(), []Target{tg}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			// A hard link made after Apply: another path, the same file.
			mkdir(t, filepath.Join(c.Rootfs, "tmp/later"))
			if err := os.Link(filepath.Join(c.Rootfs, "usr/local/bin/echo"), filepath.Join(c.Rootfs, "tmp/echo")); err != nil {
				t.Fatal(err)
			}
			bb, err := os.ReadFile(runctest.BusyboxPath)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(c.Rootfs, "tmp/later/echo"), bb, 0o755)

			for _, tc := range []struct {
				name, path, rule string
			}{
				{"denied path", "/usr/local/bin/echo", "deny-tool"},
				{"hard link to a denied file", "/tmp/echo", "deny-tool"},
				{"file created at a denied path after Apply", "/tmp/later/echo", "deny-late"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					out, errOut := c.Sh(t, tc.path+` DENIED-RAN; echo "status=$?"; /bin/echo ALLOWED-RAN`)
					t.Logf("stdout %q stderr %q", out, errOut)
					if strings.Contains(out, "DENIED-RAN") {
						t.Errorf("exec %s in the container ran: stdout %q", tc.path, out)
					}
					if !strings.Contains(out, "status=126") || !strings.Contains(errOut, "Operation not permitted") {
						t.Errorf("exec %s in the container: stdout %q stderr %q; want status 126 and EPERM", tc.path, out, errOut)
					}
					if !strings.Contains(out, "ALLOWED-RAN") {
						t.Errorf("allowed /bin/echo in the container did not run: stdout %q stderr %q", out, errOut)
					}
					p := audits.wait(t, "exec "+tc.path, func(p Prevented) bool {
						return p.Kind == KindExec && p.Rule == tc.rule && p.ContainerID == c.ID
					})
					if p.Mechanism != mech || p.PID == 0 || p.CgroupID == 0 || p.Time.IsZero() {
						t.Errorf("audit = %+v; want mechanism %s, a pid, a cgroup and a time", p, mech)
					}
					if age := time.Since(p.Time); age < 0 || age > time.Minute {
						t.Errorf("audit time %v is %v from now", p.Time, age)
					}
				})
			}

			// The same file, run from the host (another cgroup), runs.
			out, err := hostRun(t, filepath.Join(c.Rootfs, "usr/local/bin/echo"), "HOST-RAN")
			if err != nil || !strings.Contains(out, "HOST-RAN") {
				t.Errorf("the denied file run on the host: %q, %v; want it to run", out, err)
			}
		})
	}
}

// TestWriteDenied: writing /etc/passwd in a container is denied, reading it
// and writing /tmp are allowed.
func TestWriteDenied(t *testing.T) {
	requirePrivileged(t)
	for name, cfg := range configs(t) {
		t.Run(name, func(t *testing.T) {
			e, audits := startEnforcer(t, cfg)
			mech := wantMechanism(t, e, KindFileWrite)
			c := startContainer(t, runctest.Options{})
			mkdir(t, filepath.Join(c.Rootfs, "root/.ssh"))
			tg := target(c)
			tg.DenyWrite = []WriteRule{
				{Rule: "protect-passwd", Prefix: "/etc/passwd"},
				{Rule: "protect-ssh", Prefix: "/root/.ssh"},
			}
			if mech == MechanismFanotify && e.tracepointsAttached() {
				t.Error("syscall tracepoints attached before any fanotify rule: every open on the host pays for them")
			}
			if err := e.Apply(t.Context(), []Target{tg}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if mech == MechanismFanotify && !e.tracepointsAttached() {
				t.Error("syscall tracepoints not attached with a fanotify write rule")
			}
			passwd := filepath.Join(c.Rootfs, "etc/passwd")
			before, err := os.ReadFile(passwd)
			if err != nil {
				t.Fatal(err)
			}

			out, errOut := c.Sh(t, `cat /etc/passwd >/dev/null && echo READ-OK
echo evil >> /etc/passwd; echo "append=$?"
echo evil > /etc/passwd; echo "trunc=$?"
ln /etc/passwd /tmp/pw && echo evil >> /tmp/pw; echo "link=$?"
echo key > /root/.ssh/authorized_keys; echo "ssh=$?"
echo data > /tmp/f && cat /tmp/f && echo TMP-OK`)
			for _, want := range []string{"READ-OK", "append=1", "trunc=1", "link=1", "ssh=1", "data", "TMP-OK"} {
				if !strings.Contains(out, want) {
					t.Errorf("container script: stdout lacks %q\nstdout: %s\nstderr: %s", want, out, errOut)
				}
			}
			if !strings.Contains(errOut, "Operation not permitted") {
				t.Errorf("container script: stderr %q, want EPERM", errOut)
			}
			after, err := os.ReadFile(passwd)
			if err != nil || string(after) != string(before) {
				t.Errorf("/etc/passwd after the denied writes = %q, %v; want %q", after, err, before)
			}
			// O_CREAT creates the file before the open is refused: it
			// exists, but nothing was written to it.
			if b, err := os.ReadFile(filepath.Join(c.Rootfs, "root/.ssh/authorized_keys")); err == nil && len(b) > 0 {
				t.Errorf("authorized_keys = %q, want nothing written", b)
			}

			p := audits.wait(t, "write /etc/passwd", func(p Prevented) bool {
				return p.Kind == KindFileWrite && p.Rule == "protect-passwd" && p.Path == "/etc/passwd"
			})
			if p.Mechanism != mech || p.ContainerID != c.ID {
				t.Errorf("audit = %+v; want mechanism %s, container %s", p, mech, c.ID)
			}
			audits.wait(t, "write through a hard link", func(p Prevented) bool {
				return p.Kind == KindFileWrite && p.Rule == "protect-passwd" && p.Path == "/tmp/pw"
			})
			audits.wait(t, "write under /root/.ssh", func(p Prevented) bool {
				return p.Kind == KindFileWrite && p.Rule == "protect-ssh" && p.Path == "/root/.ssh/authorized_keys"
			})

			// The host writes the same file, by its host path and through
			// the container's own mount (/proc/<pid>/root): from another
			// process, and from this one, whose threads the enforcer always
			// allows (its own decisions must not wait on themselves).
			through := filepath.Join("/proc", strconv.Itoa(c.InitPID), "root/etc/passwd")
			decided := e.Stats().Decisions
			for _, p := range []string{passwd, through} {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatalf("open %s for writing from the enforcing process: %v", p, err)
				}
				if _, err := f.WriteString("host:x:1:1::/:/bin/sh\n"); err != nil {
					t.Errorf("write %s from the enforcing process: %v", p, err)
				}
				_ = f.Close()
			}
			if mech == MechanismFanotify {
				// Counted just after the answer that let the open return.
				deadline := time.Now().Add(2 * time.Second)
				for e.Stats().Decisions == decided && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if e.Stats().Decisions == decided {
					t.Errorf("Stats().Decisions = %d before and after this process opened %s: want its own event decided", decided, through)
				}
			}
			if out, err := hostRun(t, "/bin/sh", "-c", "echo other:x:2:2::/:/bin/sh >> "+through+" && echo HOST-WROTE"); err != nil || !strings.Contains(out, "HOST-WROTE") {
				t.Errorf("another host process writing %s: %q, %v", through, out, err)
			}

			if mech != MechanismFanotify {
				return
			}
			// Without rules the tracepoints go; with rules again they come
			// back before the group judges: reads allowed, writes denied.
			if err := e.Apply(t.Context(), nil); err != nil {
				t.Fatalf("Apply(nil): %v", err)
			}
			if e.tracepointsAttached() {
				t.Error("syscall tracepoints still attached after the last fanotify rule went")
			}
			if err := e.Apply(t.Context(), []Target{tg}); err != nil {
				t.Fatalf("Apply again: %v", err)
			}
			if !e.tracepointsAttached() {
				t.Error("syscall tracepoints not attached again with the rule back")
			}
			out, errOut = c.Sh(t, `cat /etc/passwd >/dev/null && echo READ-OK; echo evil >> /etc/passwd; echo "append=$?"`)
			if !strings.Contains(out, "READ-OK") || !strings.Contains(out, "append=1") {
				t.Errorf("with the rule back: stdout %q, stderr %q; want READ-OK and append=1", out, errOut)
			}
		})
	}
}

// listen opens a TCP listener on loopback that records what each
// connection sends.
func listen(t *testing.T, network, addr string) (port int, got <-chan string) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 64)
			n, _ := conn.Read(b)
			ch <- string(b[:n])
			_ = conn.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, ch
}

// TestConnectAndBindDenied: a connect to a denied port fails with EPERM,
// another port works; a bind to a port outside the allowed listen ports
// fails, an allowed one works.
func TestConnectAndBindDenied(t *testing.T) {
	requirePrivileged(t)
	for name, cfg := range configs(t) {
		t.Run(name, func(t *testing.T) {
			e, audits := startEnforcer(t, cfg)
			mechConnect := wantMechanism(t, e, KindConnect)
			mechBind := wantMechanism(t, e, KindBind)
			c := startContainer(t, runctest.Options{HostNetwork: true})

			denied, deniedGot := listen(t, "tcp4", "127.0.0.1:0")
			allowed, allowedGot := listen(t, "tcp4", "127.0.0.1:0")
			denied6, denied6Got := listen(t, "tcp6", "[::1]:0")
			free := freePort(t)
			listenPort := freePort(t)
			tg := target(c)
			tg.DenyConnect = []ConnectRule{
				{Rule: "no-loopback-port", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Port: uint16(denied)}, //nolint:gosec // G115: a port
				{Rule: "no-port-anywhere", Port: uint16(denied6)},                                              //nolint:gosec // G115: a port
				{Rule: "no-10-net", Prefix: netip.MustParsePrefix("10.0.0.0/8")},
			}
			tg.AllowListen = &ListenRule{Rule: "listen-only", Ports: []uint16{uint16(listenPort)}} //nolint:gosec // G115: a port
			if err := e.Apply(t.Context(), []Target{tg}); err != nil {
				t.Fatalf("Apply: %v", err)
			}

			ports := func(s string) string {
				r := strings.NewReplacer("DENIED", strconv.Itoa(denied), "ALLOWED", strconv.Itoa(allowed),
					"V6PORT", strconv.Itoa(denied6), "FREE", strconv.Itoa(free), "LISTEN", strconv.Itoa(listenPort))
				return r.Replace(s)
			}
			out, errOut := c.Sh(t, ports(`echo to-denied | nc 127.0.0.1 DENIED; echo "denied=$?"
echo to-allowed | nc 127.0.0.1 ALLOWED; echo "allowed=$?"
echo to-v6 | nc ::1 V6PORT; echo "v6=$?"
echo to-10 | timeout 2 nc 10.1.2.3 80; echo "ten=$?"
nc -l -p FREE </dev/null; echo "bind=$?"
nc -l -p LISTEN </dev/null >/tmp/listened 2>&1 &
sleep 1`))
			for _, want := range []string{"allowed=0"} {
				if !strings.Contains(out, want) {
					t.Errorf("container script: stdout lacks %q\nstdout: %s\nstderr: %s", want, out, errOut)
				}
			}
			for _, bad := range []string{"denied=0", "v6=0", "ten=0", "bind=0"} {
				if strings.Contains(out, bad) {
					t.Errorf("container script: %q, want failure\nstdout: %s\nstderr: %s", bad, out, errOut)
				}
			}
			if n := strings.Count(errOut, "Operation not permitted"); n < 4 {
				t.Errorf("container script: %d EPERM errors, want 4 (denied, v6, 10/8, bind)\nstderr: %s", n, errOut)
			}
			select {
			case s := <-allowedGot:
				if s != "to-allowed\n" {
					t.Errorf("allowed port received %q, want %q", s, "to-allowed\n")
				}
			case <-time.After(5 * time.Second):
				t.Errorf("allowed port received nothing")
			}
			for name, ch := range map[string]<-chan string{"denied": deniedGot, "denied v6": denied6Got} {
				select {
				case s := <-ch:
					t.Errorf("%s port received %q", name, s)
				default:
				}
			}
			// The allowed listen port is bound in the container.
			conn, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(listenPort), 5*time.Second)
			if err != nil {
				t.Errorf("connect to the container's allowed listen port %d: %v", listenPort, err)
			} else {
				_ = conn.Close()
			}

			p := audits.wait(t, "connect to the denied port", func(p Prevented) bool {
				return p.Kind == KindConnect && p.Rule == "no-loopback-port"
			})
			if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(denied)); p.Addr != want || p.Mechanism != mechConnect || p.ContainerID != c.ID || p.Comm != "nc" { //nolint:gosec // G115: a port
				t.Errorf("audit = %+v; want %v by %s in %s, comm nc", p, want, mechConnect, c.ID)
			}
			audits.wait(t, "connect over IPv6", func(p Prevented) bool {
				return p.Kind == KindConnect && p.Rule == "no-port-anywhere" && p.Addr == netip.AddrPortFrom(netip.IPv6Loopback(), uint16(denied6)) //nolint:gosec // G115: a port
			})
			audits.wait(t, "connect to 10/8", func(p Prevented) bool {
				return p.Kind == KindConnect && p.Rule == "no-10-net" && p.Addr.Port() == 80
			})
			p = audits.wait(t, "bind", func(p Prevented) bool {
				return p.Kind == KindBind && p.Rule == "listen-only" && int(p.Addr.Port()) == free
			})
			if p.Mechanism != mechBind {
				t.Errorf("bind audit mechanism = %s, want %s", p.Mechanism, mechBind)
			}

			// The host is not restricted.
			hc, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(denied), 5*time.Second)
			if err != nil {
				t.Errorf("host connect to the port denied in the container: %v", err)
			} else {
				_ = hc.Close()
			}
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := porttest.Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
