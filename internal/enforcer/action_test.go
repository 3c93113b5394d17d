package enforcer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"bulwark/internal/runtime/runctest"
)

// actionEnv carries an actionSpec to TestHelperAction: a child process that
// moves itself into a target's cgroup and tries one action there. The
// enforcer keys on the cgroup, so this tests what busybox in a container
// cannot do (a datagram without connect, an executable mapping).
const actionEnv = "BULWARK_ENFORCER_ACTION"

type actionSpec struct {
	CgroupProcs string // <cgroup2>/<path>/cgroup.procs to join
	Action      string // "sendto", "mmap-exec", "mmap-read", "mprotect-exec"
	Addr        string // sendto: ip:port
	Path        string // the file to map
}

// TestHelperAction is not a test: it is the child process of tryAction.
func TestHelperAction(t *testing.T) {
	raw := os.Getenv(actionEnv)
	if raw == "" {
		t.Skip("the child process of tryAction")
	}
	var spec actionSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("action spec: %v", err)
	}
	if err := os.WriteFile(spec.CgroupProcs, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		t.Fatalf("join %s: %v", spec.CgroupProcs, err)
	}
	fmt.Printf("RESULT %s\n", errnoName(doAction(spec)))
}

func doAction(spec actionSpec) error {
	switch spec.Action {
	case "sendto":
		ap, err := netip.ParseAddrPort(spec.Addr)
		if err != nil {
			return err
		}
		family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()})
		if ap.Addr().Is4() {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, []byte("x"), 0, sa)
	case "mmap-exec", "mmap-read", "mprotect-exec":
		f, err := os.Open(spec.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		prot := unix.PROT_READ
		if spec.Action == "mmap-exec" {
			prot |= unix.PROT_EXEC
		}
		b, err := unix.Mmap(int(f.Fd()), 0, 4096, prot, unix.MAP_PRIVATE) //nolint:gosec // G115: a file descriptor
		if err != nil {
			return err
		}
		defer unix.Munmap(b) //nolint:errcheck // test helper
		if spec.Action == "mprotect-exec" {
			return unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC)
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", spec.Action)
}

func errnoName(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return "error: " + err.Error()
}

// tryAction runs one action in a child process in the container's cgroup
// and returns its result: "ok" or the errno's name.
func tryAction(t *testing.T, c *runctest.Container, spec actionSpec) string {
	t.Helper()
	spec.CgroupProcs = filepath.Join(mustCgroupRoot(t), c.CgroupPath, "cgroup.procs")
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperAction$", "-test.count=1") //nolint:gosec // G204: this test binary
	cmd.Env = append(os.Environ(), actionEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("action %s: %v\n%s", spec.Action, err, out)
	}
	for line := range strings.Lines(string(out)) {
		if r, ok := strings.CutPrefix(strings.TrimSpace(line), "RESULT "); ok {
			return r
		}
	}
	t.Fatalf("action %s: no result\n%s", spec.Action, out)
	return ""
}

// TestSendtoDenied: a datagram sent without connect to a denied port is
// refused like a connect.
func TestSendtoDenied(t *testing.T) {
	requirePrivileged(t)
	for name, cfg := range configs(t) {
		t.Run(name, func(t *testing.T) {
			e, audits := startEnforcer(t, cfg)
			mech := wantMechanism(t, e, KindConnect)
			c := startContainer(t, runctest.Options{})
			port := freePort(t)
			tg := target(c)
			tg.DenyConnect = []ConnectRule{{Rule: "no-udp-port", Port: uint16(port)}} //nolint:gosec // G115: a port
			if err := e.Apply(t.Context(), []Target{tg}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			for _, tc := range []struct {
				addr, want string
			}{
				{"127.0.0.1:" + strconv.Itoa(port), "EPERM"},
				{"[::1]:" + strconv.Itoa(port), "EPERM"},
				{"127.0.0.1:" + strconv.Itoa(port+1), "ok"},
			} {
				if got := tryAction(t, c, actionSpec{Action: "sendto", Addr: tc.addr}); got != tc.want {
					t.Errorf("sendto %s from the container's cgroup = %s, want %s", tc.addr, got, tc.want)
				}
			}
			p := audits.wait(t, "sendto", func(p Prevented) bool { return p.Kind == KindConnect && p.Rule == "no-udp-port" })
			if p.Mechanism != mech || int(p.Addr.Port()) != port {
				t.Errorf("audit = %+v, want mechanism %s, port %d", p, mech, port)
			}
		})
	}
}

// TestExecMappingDenied: with BPF LSM, mapping a denied file executable is
// denied as its exec is (the dynamic loader run directly would otherwise
// run it); mapping it for reading is not.
func TestExecMappingDenied(t *testing.T) {
	requirePrivileged(t)
	e, audits := startEnforcer(t, Config{})
	if m := e.Mechanisms().Exec; m.Mechanism != MechanismBPFLSM {
		if os.Getenv(wantEnv) == string(MechanismBPFLSM) {
			t.Fatalf("Mechanisms().Exec = %+v, want bpf-lsm (%s is set)", m, wantEnv)
		}
		t.Skipf("executable mappings are denied only by BPF LSM; exec here: %+v", m)
	}
	c := startContainer(t, runctest.Options{})
	dir := t.TempDir()
	denied, allowed := filepath.Join(dir, "denied"), filepath.Join(dir, "allowed")
	writeFile(t, denied, make([]byte, 8192), 0o755)
	writeFile(t, allowed, make([]byte, 8192), 0o755)
	var st unix.Stat_t
	if err := unix.Stat(denied, &st); err != nil {
		t.Fatal(err)
	}
	tg := target(c)
	tg.DenyExec = []ExecRule{{Rule: "deny-mapped", Dev: st.Dev, Ino: st.Ino}}
	if err := e.Apply(t.Context(), []Target{tg}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, tc := range []struct {
		action, path, want string
	}{
		{"mmap-exec", denied, "EPERM"},
		{"mprotect-exec", denied, "EPERM"},
		{"mmap-read", denied, "ok"},
		{"mmap-exec", allowed, "ok"},
	} {
		if got := tryAction(t, c, actionSpec{Action: tc.action, Path: tc.path}); got != tc.want {
			t.Errorf("%s %s from the container's cgroup = %s, want %s", tc.action, filepath.Base(tc.path), got, tc.want)
		}
	}
	audits.wait(t, "executable mapping", func(p Prevented) bool { return p.Kind == KindExec && p.Rule == "deny-mapped" })
}
