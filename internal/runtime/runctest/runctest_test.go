package runctest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"bulwark/internal/runtime/runctest"
)

// TestRun starts containers in a runc root of the test's own and checks
// what Run promises: the ID, the init and its cgroup, the options in the
// running container, Exec, Sh and State, and a Delete that leaves nothing
// behind in the root or the cgroup tree.
func TestRun(t *testing.T) {
	root := t.TempDir()
	c := runctest.Run(t, runctest.Options{
		Prefix: "bwrt-", Root: root, Args: []string{"sleep", "77"},
		Annotations: map[string]string{"io.bulwark.image": "registry.local/rt:1"},
		Applets:     []string{"id"}, Files: []string{"/usr/local/bin/echo"},
	})
	if !strings.HasPrefix(c.ID, "bwrt-") || len(c.ID) != len("bwrt-")+12 || c.Root != root || c.Rootfs != filepath.Join(c.Bundle, "rootfs") {
		t.Errorf("Run() = %+v; want ID bwrt-<12 hex>, root %s, rootfs in the bundle", c, root)
	}
	if st := c.State(t); st != "running" {
		t.Errorf("State() = %q, want running", st)
	}
	if cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.InitPID), "cmdline")); err != nil || string(cmdline) != "sleep\x0077\x00" {
		t.Errorf("init %d cmdline = %q, %v; want sleep 77", c.InitPID, cmdline, err)
	}
	if c.CgroupPath != "/"+c.ID {
		t.Errorf("CgroupPath = %q, want /%s (runc's cgroupfs layout)", c.CgroupPath, c.ID)
	}
	if out := c.Exec(t, "/bin/id", "-u"); strings.TrimSpace(out) != "0" {
		t.Errorf("Exec(id -u) = %q, want 0", out)
	}
	if out := c.Exec(t, "/usr/local/bin/echo", "a copy"); out != "a copy\n" {
		t.Errorf("Exec(the busybox copy) = %q, want %q", out, "a copy\n")
	}
	if a, b := inode(t, filepath.Join(c.Rootfs, "bin/busybox")), inode(t, filepath.Join(c.Rootfs, "usr/local/bin/echo")); a == b {
		t.Errorf("the copy of busybox is busybox itself (inode %d), want a file of its own", a)
	}
	if _, err := c.TryExec(t, "/bin/sh", "-c", "exit 3"); err == nil {
		t.Error("TryExec(exit 3) = nil, want the exit")
	}
	stdout, stderr := c.Sh(t, "echo out; echo err >&2; echo w > /tmp/f && cat /tmp/f; exit 1")
	if stdout != "out\nw\n" || stderr != "err\n" {
		t.Errorf("Sh() = %q, %q; want out and w on stdout, err on stderr (a writable root)", stdout, stderr)
	}
	config, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil || !strings.Contains(string(config), `"io.bulwark.image": "registry.local/rt:1"`) {
		t.Errorf("config.json = %s, %v; want the annotation", config, err)
	}
	// Its own pid and network namespaces.
	for _, ns := range []string{"pid", "net"} {
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		ctr, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(c.InitPID), "ns", ns))
		if err != nil || ctr == host {
			t.Errorf("%s namespace of the init = %q, %v; want its own, not the host's %q", ns, ctr, err, host)
		}
	}

	shared := runctest.Run(t, runctest.Options{Root: root, HostPID: true, HostNetwork: true, ReadonlyRoot: true})
	for _, ns := range []string{"pid", "net"} {
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		if ctr, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(shared.InitPID), "ns", ns)); err != nil || ctr != host {
			t.Errorf("%s namespace of the host-namespace init = %q, %v; want the host's %q", ns, ctr, err, host)
		}
	}
	if _, stderr := shared.Sh(t, "echo w > /f"); !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("a write to the read-only root: stderr %q, want EROFS", stderr)
	}

	for _, x := range []*runctest.Container{c, shared} {
		x.Delete(t)
		x.Delete(t) // again: nothing there, no error
		if st := x.State(t); st != "" {
			t.Errorf("State() of %s after Delete = %q, want none", x.ID, st)
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", x.CgroupPath)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s after Delete: %v, want it removed", x.CgroupPath, err)
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(x.InitPID))); err == nil {
			if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(x.InitPID), "cmdline")); strings.HasPrefix(string(b), "sleep") {
				t.Errorf("init %d of %s still runs after Delete", x.InitPID, x.ID)
			}
		}
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Errorf("runc root after Delete holds %v, %v; want nothing", entries, err)
	}
}

// TestDelete removes a container that the test started without Run (as
// through the shim's runc), by its root and ID.
func TestDelete(t *testing.T) {
	runc := runctest.Require(t)
	root := t.TempDir()
	bundle := runctest.Bundle(t, runctest.Options{})
	id := runctest.NewID("bwdel-")
	log, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	t.Cleanup(func() { runctest.Delete(t, root, id) })
	// A file, not a pipe: the detached container holds runc's stdio.
	cmd := exec.CommandContext(t.Context(), runc, "--root", root, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 1 {
		t.Fatalf("runc root after run holds %v, %v; want the container", entries, err)
	}
	runctest.Delete(t, root, id)
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Errorf("runc root after Delete holds %v, %v; want nothing", entries, err)
	}
	runctest.Delete(t, root, id) // not there: nothing to do
}

// TestBusybox is a root file system with busybox and its usual applets.
func TestBusybox(t *testing.T) {
	runctest.Require(t)
	rootfs := runctest.Busybox(t, "/opt/x")
	for _, p := range []string{"bin/busybox", "opt/x", "etc/passwd"} {
		if fi, err := os.Stat(filepath.Join(rootfs, p)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, want a file", p, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", target, err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
