//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"bulwark/internal/runtime/runctest"
)

// Runtime defense end to end: a real Console, a sensing and enforcing
// Defender and real runc containers. What the kernel denies fails with
// EPERM before it happens; the audits at the Console say so, by which rule
// and mechanism.

type defendedOpts struct {
	image       string   // io.bulwark.image: what the rules' collections match
	hostNetwork bool     // share the host's network namespace (the test's loopback listeners)
	files       []string // copies of busybox at these paths (files of their own, not applet links)
}

// runDefended starts a busybox container whose init sleeps, in runc's
// default root, where the Defender looks; it is killed and deleted by its
// ID when the test ends.
func runDefended(t *testing.T, o defendedOpts) *runctest.Container {
	t.Helper()
	return runctest.Run(t, runctest.Options{Prefix: "bwdef-", Annotations: map[string]string{"io.bulwark.image": o.image},
		HostNetwork: o.hostNetwork, Files: o.files})
}

// deniedExec is the script line that runs the denied busybox copy and the
// allowed applet after it.
const deniedExec = `/usr/local/bin/echo DENIED-RAN; echo "status=$?"; /bin/echo ALLOWED-RAN`

// checkDenied asserts that the denied binary fails with EPERM without
// printing, and that the allowed one runs.
func checkDenied(t *testing.T, c *runctest.Container) {
	t.Helper()
	out, errOut := c.Sh(t, deniedExec)
	if strings.Contains(out, "DENIED-RAN") {
		t.Errorf("the denied binary ran in the container: stdout %q", out)
	}
	if !strings.Contains(out, "status=126") || !strings.Contains(errOut, "Operation not permitted") {
		t.Errorf("the denied exec: stdout %q, stderr %q; want status 126 and EPERM", out, errOut)
	}
	if !strings.Contains(out, "ALLOWED-RAN") {
		t.Errorf("the allowed /bin/echo did not run: stdout %q, stderr %q", out, errOut)
	}
}

// startEnforcingDefender runs a sensing, enforcing Defender (the shim off,
// never this machine's runc) and waits until it is connected with its
// enforcer up.
func startEnforcingDefender(t *testing.T, c *consoleProc, bundle, state string) *proc {
	t.Helper()
	started := time.Now()
	p := start(t, nil, "bulwark-defender", "--bundle", bundle, "--state-dir", state, "--compliance=false", "--shim=off")
	waitFor(t, "the enforcing defender", 30*time.Second, func() bool {
		st := status(t, state) // an earlier Defender's is older than started
		if st.UpdatedAt.Before(started) || st.Runtime == nil || len(st.Runtime.Enforcement) == 0 {
			return false
		}
		for _, m := range st.Runtime.Enforcement {
			if m.Mechanism == "none" {
				t.Fatalf("the Defender enforces nothing for %s here: %s", m.Kind, m.Reason)
			}
		}
		return c == nil || st.Connected
	})
	return p
}

// waitEnforced waits until the Defender says the kernel denies kind in the
// container.
func waitEnforced(t *testing.T, state, containerID, kind string) {
	t.Helper()
	waitFor(t, kind+" enforced in "+containerID, 30*time.Second, func() bool {
		st := status(t, state)
		if st.Runtime == nil {
			return false
		}
		for _, w := range st.Runtime.Enforced {
			if w.Container == containerID && slices.Contains(w.Kinds, kind) {
				return true
			}
		}
		return false
	})
}

// putRuntimePolicy sets the container runtime rules and waits until the
// Defender has them.
func putRuntimePolicy(t *testing.T, c *consoleProc, state, policy string) {
	t.Helper()
	before := status(t, state).PolicyRevision
	c.api(t, "PUT", "/api/v1/policies/runtime/container", policy, nil)
	waitFor(t, "the policy on the defender", 20*time.Second, func() bool { return status(t, state).PolicyRevision > before })
}

type defenseAudit struct {
	runtimeAuditView
	Mechanism string `json:"mechanism"`
	Blocked   bool   `json:"blocked"`
}

func (c *consoleProc) defenseAudits(t *testing.T, containerID string) []defenseAudit {
	t.Helper()
	var as []defenseAudit
	c.api(t, "GET", "/api/v1/audits/runtime/container?type=audit&limit=1000&container="+containerID, "", &as)
	return as
}

// waitAudit waits for an audit of the container that ok accepts.
func (c *consoleProc) waitAudit(t *testing.T, containerID, what string, ok func(defenseAudit) bool) defenseAudit {
	t.Helper()
	var as []defenseAudit
	deadline := time.Now().Add(30 * time.Second)
	for {
		as = c.defenseAudits(t, containerID)
		if i := slices.IndexFunc(as, ok); i >= 0 {
			return as[i]
		}
		if time.Now().After(deadline) {
			for _, a := range as {
				t.Logf("audit: %+v", a)
			}
			t.Fatalf("no audit of %s at the Console after 30s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mechanisms is GET /api/v1/defenders' mechanism per kind for a Defender.
func (c *consoleProc) mechanisms(t *testing.T, id string) map[string]string {
	t.Helper()
	var ds []struct {
		ID     string `json:"_id"`
		Sensor *struct {
			Enforcement []struct {
				Kind      string `json:"kind"`
				Mechanism string `json:"mechanism"`
			} `json:"enforcement"`
		} `json:"sensor"`
	}
	c.api(t, "GET", "/api/v1/defenders", "", &ds)
	out := map[string]string{}
	for _, d := range ds {
		if d.ID == id && d.Sensor != nil {
			for _, m := range d.Sensor.Enforcement {
				out[m.Kind] = m.Mechanism
			}
		}
	}
	return out
}

// kernelState is what enforcement leaves in the kernel that the tests can
// see: loaded BPF programs ("id:name") and fanotify groups (pid/fd).
type kernelState struct {
	progs   []string
	fanGrps []string
}

func readKernelState(t *testing.T) kernelState {
	t.Helper()
	var ks kernelState
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		t.Fatalf("bpftool prog show: %v", err)
	}
	var progs []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		t.Fatalf("bpftool prog show: %v", err)
	}
	for _, p := range progs {
		ks.progs = append(ks.progs, fmt.Sprintf("%d:%s", p.ID, p.Name))
	}
	ks.fanGrps = fanotifyGroups(0)
	return ks
}

// fanotifyGroups lists the fanotify descriptors of pid (0: every process)
// as "pid/fd".
func fanotifyGroups(pid int) []string {
	dirs := []string{"/proc/" + strconv.Itoa(pid)}
	if pid == 0 {
		dirs, _ = filepath.Glob("/proc/[0-9]*")
	}
	var out []string
	for _, dir := range dirs {
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			if target, _ := os.Readlink(dir + "/fd/" + fd.Name()); target == "anon_inode:[fanotify]" {
				out = append(out, filepath.Base(dir)+"/"+fd.Name())
			}
		}
	}
	return out
}

// heldPrograms are the ids of the BPF programs pid holds (program and link
// descriptors).
func heldPrograms(t *testing.T, pid int) []int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, fd := range fds {
		target, _ := os.Readlink(filepath.Join(dir, fd.Name()))
		if target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link" && target != "anon_inode:bpf-link" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

// leakCheck records the kernel state now and, when the test ends (after
// every process and container of it is gone), fails if a BPF program or a
// fanotify group that the test's Defenders held is still there. Only
// programs named like theirs count: other processes of the machine may load
// their own meanwhile.
type leakCheck struct {
	before kernelState
	mu     sync.Mutex
	names  map[string]bool // names of the programs the Defenders held
	ids    map[int]bool
}

func checkLeaks(t *testing.T) *leakCheck {
	t.Helper()
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("needs bpftool (scripts/setup.sh installs it)")
	}
	lc := &leakCheck{before: readKernelState(t), names: map[string]bool{}, ids: map[int]bool{}}
	t.Cleanup(func() {
		var after kernelState
		deadline := time.Now().Add(10 * time.Second) // the kernel frees programs after an RCU grace period
		for {
			after = readKernelState(t)
			if len(lc.leaked(after)) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if left := lc.leaked(after); len(left) > 0 {
			t.Errorf("kernel state left after the test: %v", left)
		}
		lc.mu.Lock()
		if len(lc.ids) == 0 {
			t.Errorf("no Defender of the test was seen holding BPF programs: nothing was checked")
		}
		t.Logf("the Defenders held %d BPF programs (%d names); none is loaded after the test; BPF programs loaded: %d before, %d after",
			len(lc.ids), len(lc.names), len(lc.before.progs), len(after.progs))
		lc.mu.Unlock()
		if len(after.fanGrps) > len(lc.before.fanGrps) {
			t.Errorf("fanotify groups before the test %v, after %v", lc.before.fanGrps, after.fanGrps)
		}
	})
	return lc
}

// hold notes what a Defender holds now, and returns how many programs.
func (lc *leakCheck) hold(t *testing.T, pid int) int {
	t.Helper()
	ids := heldPrograms(t, pid)
	progs := readKernelState(t).progs
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, id := range ids {
		lc.ids[id] = true
		for _, p := range progs {
			if idStr, name, _ := strings.Cut(p, ":"); idStr == strconv.Itoa(id) {
				lc.names[name] = true
			}
		}
	}
	return len(ids)
}

// leaked lists the programs of the Defenders (by id, or by name when
// loaded during the test) still loaded.
func (lc *leakCheck) leaked(after kernelState) []string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []string
	for _, p := range after.progs {
		idStr, name, _ := strings.Cut(p, ":")
		id, _ := strconv.Atoi(idStr)
		if lc.ids[id] || lc.names[name] && !slices.Contains(lc.before.progs, p) {
			out = append(out, p)
		}
	}
	return out
}

// loopback is a TCP listener of the test on 127.0.0.1 that reads one line
// from each connection, then closes it.
type loopback struct {
	ln    net.Listener
	port  int
	mu    sync.Mutex
	lines []string
	conns int
}

func listenLoopback(t *testing.T) *loopback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &loopback{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns++
			l.mu.Unlock()
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				l.mu.Lock()
				l.lines = append(l.lines, strings.TrimSpace(line))
				l.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return l
}

func (l *loopback) seen() (conns int, lines []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns, slices.Clone(l.lines)
}

// TestRuntimeDefensePrevents: runtime rules PUT at the Console are enforced
// by a sensing Defender in real runc containers. A denied binary fails
// with EPERM and prints nothing while an allowed one runs, and the same
// file runs on the host; a write to /etc/passwd is denied while reading it
// and writing /tmp work; a connect to a denied port fails with EPERM while
// another port works; a block rule leaves its container stopped. Every
// denial's audit at the Console says prevented, the rule and the
// mechanism, and GET /api/v1/defenders shows the mechanism of each kind.
func TestRuntimeDefensePrevents(t *testing.T) {
	needPrivileges(t)
	lc := checkLeaks(t)
	c := startConsole(t, t.TempDir(), freePort(t), freePort(t))
	state := t.TempDir()
	d := startEnforcingDefender(t, c, c.bundle(t, "defender"), state)
	mech := c.mechanisms(t, "defender")
	for _, kind := range []string{"exec", "file-write", "connect", "listen"} {
		if m := mech[kind]; m == "" || m == "none" {
			t.Fatalf("GET /api/v1/defenders: mechanism of %s = %q, want one that enforces it (all: %v)", kind, m, mech)
		}
	}
	t.Logf("mechanisms: %v", mech)

	denied, allowed := listenLoopback(t), listenLoopback(t)
	putRuntimePolicy(t, c, state, fmt.Sprintf(`{"rules":[
	 {"name":"deny tool","collections":[{"name":"denied","images":["registry.local/denied:*"]}],
	  "processes":{"deniedList":{"effect":"prevent","paths":["/usr/local/bin/echo"]}}},
	 {"name":"lock accounts","collections":[{"name":"files","images":["registry.local/files:*"]}],
	  "filesystem":{"deniedList":{"effect":"prevent","paths":["/etc/passwd"]}}},
	 {"name":"no port %d","collections":[{"name":"net","images":["registry.local/net:*"]}],
	  "network":{"outboundPorts":{"effect":"prevent","denied":[{"start":%d}]}}},
	 {"name":"stop tool","collections":[{"name":"blocked","images":["registry.local/blocked:*"]}],
	  "processes":{"deniedList":{"effect":"block","paths":["/usr/local/bin/echo"]}}}]}`, denied.port, denied.port))

	t.Run("exec", func(t *testing.T) {
		ctr := runDefended(t, defendedOpts{image: "registry.local/denied:1", files: []string{"/usr/local/bin/echo"}})
		waitEnforced(t, state, ctr.ID, "exec")
		checkDenied(t, ctr)
		if n := lc.hold(t, d.cmd.Process.Pid); n == 0 {
			t.Errorf("the Defender holds no BPF program")
		}
		if fan := fanotifyGroups(d.cmd.Process.Pid); len(fan) == 0 && mech["exec"] == "fanotify" {
			t.Errorf("the Defender holds no fanotify group while fanotify enforces exec in a container")
		}
		// The same file on the host (another collection: no rule) runs.
		out, err := exec.Command(filepath.Join(ctr.Rootfs, "usr/local/bin/echo"), "HOST-RAN").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "HOST-RAN") {
			t.Errorf("the denied file run on the host: %q, %v; want it to run", out, err)
		}
		a := c.waitAudit(t, ctr.ID, "the denied exec", func(a defenseAudit) bool { return a.Prevented })
		if a.RuleName != "deny tool" || a.Mechanism != mech["exec"] || a.AttackType != "explicitlyDeniedProcess" || a.Effect != "prevent" ||
			!strings.Contains(a.Msg, "/usr/local/bin/echo") {
			t.Errorf("audit = %+v; want prevented by rule %q with %s, explicitlyDeniedProcess of /usr/local/bin/echo", a, "deny tool", mech["exec"])
		}
	})

	t.Run("file-write", func(t *testing.T) {
		ctr := runDefended(t, defendedOpts{image: "registry.local/files:1"})
		waitEnforced(t, state, ctr.ID, "file-write")
		out, errOut := ctr.Sh(t, `echo owned >> /etc/passwd; echo "status=$?"; cat /etc/passwd; echo tmp-ok > /tmp/f && cat /tmp/f`)
		if !strings.Contains(out, "status=1") || !strings.Contains(errOut, "Operation not permitted") {
			t.Errorf("the write to /etc/passwd: stdout %q, stderr %q; want status 1 and EPERM", out, errOut)
		}
		if !strings.Contains(out, "root:x:0:0") || !strings.Contains(out, "tmp-ok") {
			t.Errorf("reading /etc/passwd or writing /tmp did not work: stdout %q, stderr %q", out, errOut)
		}
		if b, _ := os.ReadFile(filepath.Join(ctr.Rootfs, "etc/passwd")); strings.Contains(string(b), "owned") {
			t.Errorf("/etc/passwd was written: %q", b)
		}
		a := c.waitAudit(t, ctr.ID, "the denied write", func(a defenseAudit) bool { return a.Prevented })
		if a.RuleName != "lock accounts" || a.Mechanism != mech["file-write"] || a.AttackType != "explicitlyDeniedFile" || !strings.Contains(a.Msg, "/etc/passwd") {
			t.Errorf("audit = %+v; want prevented by rule %q with %s, explicitlyDeniedFile of /etc/passwd", a, "lock accounts", mech["file-write"])
		}
		time.Sleep(2 * time.Second) // what the sensor saw of the write reaches the Console too
		for _, a := range c.defenseAudits(t, ctr.ID) {
			if !a.Prevented {
				t.Errorf("an audit says the denied write was not prevented: %+v", a)
			}
		}
	})

	t.Run("connect", func(t *testing.T) {
		ctr := runDefended(t, defendedOpts{image: "registry.local/net:1", hostNetwork: true})
		waitEnforced(t, state, ctr.ID, "connect")
		out, errOut := ctr.Sh(t, fmt.Sprintf(`echo denied | nc 127.0.0.1 %d; echo "status=$?"; echo allowed | nc 127.0.0.1 %d; echo "status2=$?"`, denied.port, allowed.port))
		if !strings.Contains(out, "status=1") || !strings.Contains(errOut, "Operation not permitted") {
			t.Errorf("the connect to denied port %d: stdout %q, stderr %q; want status 1 and EPERM", denied.port, out, errOut)
		}
		if !strings.Contains(out, "status2=0") {
			t.Errorf("the connect to port %d: stdout %q, stderr %q; want it to work", allowed.port, out, errOut)
		}
		waitFor(t, "the allowed connection's line", 5*time.Second, func() bool {
			_, lines := allowed.seen()
			return slices.Contains(lines, "allowed")
		})
		if n, lines := denied.seen(); n != 0 {
			t.Errorf("the denied port accepted %d connections (%q)", n, lines)
		}
		name := fmt.Sprintf("no port %d", denied.port)
		a := c.waitAudit(t, ctr.ID, "the denied connect", func(a defenseAudit) bool { return a.Prevented })
		if a.RuleName != name || a.Mechanism != mech["connect"] || a.AttackType != "explicitlyDeniedOutboundPort" || !strings.Contains(a.Msg, strconv.Itoa(denied.port)) {
			t.Errorf("audit = %+v; want prevented by rule %q with %s, explicitlyDeniedOutboundPort", a, name, mech["connect"])
		}
		time.Sleep(2 * time.Second)
		for _, a := range c.defenseAudits(t, ctr.ID) {
			if !a.Prevented {
				t.Errorf("an audit says a connect was not prevented: %+v", a)
			}
		}
	})

	t.Run("block", func(t *testing.T) {
		ctr := runDefended(t, defendedOpts{image: "registry.local/blocked:1", files: []string{"/usr/local/bin/echo"}})
		waitEnforced(t, state, ctr.ID, "exec")
		out, errOut := ctr.Sh(t, `/usr/local/bin/echo DENIED-RAN; echo "status=$?"`)
		if strings.Contains(out, "DENIED-RAN") || !strings.Contains(errOut, "Operation not permitted") {
			t.Errorf("the blocked exec: stdout %q, stderr %q; want EPERM before it ran", out, errOut)
		}
		waitFor(t, "the container to be stopped", 20*time.Second, func() bool {
			st := ctr.State(t)
			return st == "" || st == "stopped"
		})
		a := c.waitAudit(t, ctr.ID, "the block", func(a defenseAudit) bool { return a.Blocked })
		if a.RuleName != "stop tool" || a.Effect != "block" || !a.Prevented || a.Mechanism != mech["exec"] {
			t.Errorf("audit = %+v; want the exec prevented by rule %q with %s, and the container blocked", a, "stop tool", mech["exec"])
		}
	})

	// The containers are gone: so is their enforcement.
	waitFor(t, "the Defender to drop the fanotify groups of the containers gone", 20*time.Second, func() bool {
		return len(fanotifyGroups(d.cmd.Process.Pid)) == 0
	})
	lc.hold(t, d.cmd.Process.Pid)
	d.kill(syscall.SIGTERM)
}

// TestRuntimeDefenseFromDiskWhileConsoleDown: a Defender restarted while
// the Console is down prevents the denied exec with the policy it stored,
// and the audit reaches the Console once it is back.
func TestRuntimeDefenseFromDiskWhileConsoleDown(t *testing.T) {
	needPrivileges(t)
	lc := checkLeaks(t)
	dataDir := t.TempDir()
	apiPort, chPort := freePort(t), freePort(t)
	c := startConsole(t, dataDir, apiPort, chPort)
	b := c.bundle(t, "offline")
	state := t.TempDir()
	d := startEnforcingDefender(t, c, b, state)
	putRuntimePolicy(t, c, state, `{"rules":[{"name":"deny tool","collections":[{"name":"denied","images":["registry.local/denied:*"]}],
	  "processes":{"deniedList":{"effect":"prevent","paths":["/usr/local/bin/echo"]}}}]}`)
	ctr := runDefended(t, defendedOpts{image: "registry.local/denied:1", files: []string{"/usr/local/bin/echo"}})
	waitEnforced(t, state, ctr.ID, "exec")
	checkDenied(t, ctr)

	c.kill(syscall.SIGTERM)
	lc.hold(t, d.cmd.Process.Pid)
	d.kill(syscall.SIGTERM)
	// A stopped Defender leaves nothing enforced.
	if out, _ := ctr.Sh(t, deniedExec); !strings.Contains(out, "DENIED-RAN") {
		t.Fatalf("with the Defender stopped the binary still does not run: %q", out)
	}

	d = startEnforcingDefender(t, nil, b, state)
	waitFor(t, "the restarted defender on its stored policy", 10*time.Second, func() bool {
		st := status(t, state)
		return st.PolicySource == "disk" && !st.Connected
	})
	waitEnforced(t, state, ctr.ID, "exec")
	checkDenied(t, ctr)

	c = startConsole(t, dataDir, apiPort, chPort)
	a := c.waitAudit(t, ctr.ID, "the exec denied while the Console was down", func(a defenseAudit) bool {
		return a.Prevented && a.RuleName == "deny tool"
	})
	if a.AttackType != "explicitlyDeniedProcess" {
		t.Errorf("audit = %+v, want explicitlyDeniedProcess", a)
	}
	lc.hold(t, d.cmd.Process.Pid)
	d.kill(syscall.SIGTERM)
}

// TestRuntimeDefenseSurvivesKill: kill -9 of an enforcing Defender leaves
// the host usable (the kernel drops its enforcement with it: execs and
// opens in and out of the container work, the denied ones too) and a
// restarted Defender takes enforcement back.
func TestRuntimeDefenseSurvivesKill(t *testing.T) {
	needPrivileges(t)
	lc := checkLeaks(t)
	c := startConsole(t, t.TempDir(), freePort(t), freePort(t))
	b := c.bundle(t, "killed")
	state := t.TempDir()
	d := startEnforcingDefender(t, c, b, state)
	putRuntimePolicy(t, c, state, `{"rules":[{"name":"lockdown","collections":[{"name":"denied","images":["registry.local/denied:*"]}],
	  "processes":{"deniedList":{"effect":"prevent","paths":["/usr/local/bin/echo"]}},
	  "filesystem":{"deniedList":{"effect":"prevent","paths":["/etc/passwd"]}}}]}`)
	ctr := runDefended(t, defendedOpts{image: "registry.local/denied:1", files: []string{"/usr/local/bin/echo"}})
	waitEnforced(t, state, ctr.ID, "exec")
	waitEnforced(t, state, ctr.ID, "file-write")
	checkDenied(t, ctr)

	pid := d.cmd.Process.Pid
	if lc.hold(t, pid) == 0 {
		t.Fatal("the Defender holds no BPF program")
	}
	d.kill(syscall.SIGKILL)

	// Everything works, in the container and on the host.
	out, errOut := ctr.Sh(t, deniedExec+`; echo more >> /etc/passwd && echo write-ok; cat /etc/passwd; echo tmp-ok > /tmp/f && cat /tmp/f`)
	for _, want := range []string{"DENIED-RAN", "ALLOWED-RAN", "write-ok", "root:x:0:0", "tmp-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("after kill -9, in the container: stdout %q, stderr %q; want %q", out, errOut, want)
		}
	}
	hostFile := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(hostFile, []byte("ok"), 0o600); err != nil {
		t.Errorf("after kill -9, a write on the host: %v", err)
	}
	if out, err := exec.Command(filepath.Join(ctr.Rootfs, "usr/local/bin/echo"), "HOST-RAN").CombinedOutput(); err != nil || !strings.Contains(string(out), "HOST-RAN") {
		t.Errorf("after kill -9, an exec on the host: %q, %v", out, err)
	}

	d = startEnforcingDefender(t, c, b, state)
	waitEnforced(t, state, ctr.ID, "exec")
	checkDenied(t, ctr)
	if out, errOut := ctr.Sh(t, `echo again >> /etc/passwd; echo "status=$?"`); !strings.Contains(out, "status=1") || !strings.Contains(errOut, "Operation not permitted") {
		t.Errorf("the restarted Defender does not deny the write: stdout %q, stderr %q", out, errOut)
	}
	lc.hold(t, d.cmd.Process.Pid)
	d.kill(syscall.SIGTERM)
}
