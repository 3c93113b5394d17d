package sensor

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bulwark/internal/event"
)

// marked matches the exec of busybox (or its applet true) whose last
// argument is mark, not the shell that passes mark on to it.
func marked(mark string) func(event.Runtime) bool {
	return func(rt event.Runtime) bool {
		argv := rt.Process.Argv
		return len(argv) > 1 && argv[len(argv)-1] == mark && (argv[0] == "/bin/busybox" || argv[0] == "/bin/true")
	}
}

// runGone runs a command to its end: the process is gone (and reaped) when
// it returns, so /proc can no longer say anything about it.
func runGone(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

// startSleep starts a process in dir that runs until the test ends, and
// returns what matches its exec.
func startSleep(tb testing.TB, dir string) func(event.Runtime) bool {
	tb.Helper()
	cmd := exec.Command("/bin/busybox", "sleep", "60")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := uint32(cmd.Process.Pid) //nolint:gosec // G115: a pid
	return func(rt event.Runtime) bool { return rt.Process.PID == pid }
}

// TestKernelCwd: the exec's cwd, and the base of a path relative to the
// cwd, are read in the kernel, so they are right for processes that exited
// before the record was read (the reader starts only after they are gone),
// across mount points and mount namespaces; a cwd past the walk's bounds is
// left to /proc, which has it while the process runs.
func TestKernelCwd(t *testing.T) {
	base := t.TempDir()
	watched := filepath.Join(base, "watched")
	s := newSensor(t, Config{WatchPaths: []string{watched}})
	fromProc := s.cwdFromProc.Load()

	mkdir := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	work := mkdir(filepath.Join(base, "work", "sub dir"))
	mkdir(watched)
	tmpfs, bind, src := mkdir(filepath.Join(base, "tmpfs")), mkdir(filepath.Join(base, "bind")), mkdir(filepath.Join(base, "src", "sub"))
	// Longer than the record's 255 bytes, and deeper than the walk's 40
	// steps while short.
	long := base
	for len(long) < pathLen+20 {
		long = filepath.Join(long, strings.Repeat("l", 50))
	}
	mkdir(long)
	deep := filepath.Join(base, strings.Repeat("d/", 42))
	mkdir(deep)

	mark := fmt.Sprintf("bwcwd-%d-", time.Now().UnixNano())
	type want struct {
		name, cwd string
		match     func(event.Runtime) bool
	}
	var wants []want
	// gone runs a shell script to its end; its last argument is the
	// marker the exec to check has in its argv.
	gone := func(name, cwd string, argv ...string) {
		m := mark + fmt.Sprint(len(wants))
		wants = append(wants, want{name, cwd, marked(m)})
		runGone(t, argv[0], append(argv[1:], m)...)
	}
	cdExec := `cd "$1" && exec /bin/busybox true "$2"`
	gone("exited before it was read", work, "/bin/sh", "-c", cdExec, "sh", work)
	gone("the root", "/", "/bin/sh", "-c", cdExec, "sh", "/")
	gone("a tmpfs mounted in a new mount namespace", filepath.Join(tmpfs, "in"), "unshare", "-m", "/bin/sh", "-c",
		`mount -t tmpfs bwtest "$1" && mkdir "$1/in" && cd "$1/in" && exec /bin/busybox true "$2"`, "sh", tmpfs)
	gone("a bind mount: the mount point's path, not the source's", filepath.Join(bind, "sub"), "unshare", "-m", "/bin/sh", "-c",
		`mount --bind "$1" "$2" && cd "$2/sub" && exec /bin/busybox true "$3"`, "sh", filepath.Dir(src), bind)
	gone("longer than the record: left to /proc, gone", "", "/bin/sh", "-c", cdExec, "sh", long)
	gone("deeper than the walk's bound: left to /proc, gone", "", "/bin/sh", "-c", cdExec, "sh", deep)

	// Still running when read: /proc has the cwd the kernel could not give.
	alive := startSleep(t, long)
	wants = append(wants, want{"longer than the record: left to /proc, running", long, alive})

	// A relative create by a process that is gone before it is read: it
	// was user-space loss; and one outside the watched paths stays filtered.
	runGone(t, "/bin/sh", "-c", `cd "$1" && echo x > relative && cd "$2" && echo x > quiet`, "sh", watched, work)
	rel := filepath.Join(watched, "relative")

	c := run(t, s)
	for _, w := range wants {
		t.Run(w.name, func(t *testing.T) {
			rt := c.wait(t, w.name, event.KindProcessExec, w.match)
			if rt.Process.Cwd != w.cwd {
				t.Errorf("exec cwd = %q, want %q", rt.Process.Cwd, w.cwd)
			}
		})
	}
	t.Run("relative create", func(t *testing.T) {
		c.wait(t, "relative create", event.KindFileCreate, func(rt event.Runtime) bool { return rt.File.Path == rel })
		if n := c.count(event.KindFileCreate, func(rt event.Runtime) bool { return strings.HasPrefix(rt.File.Path, work) }); n != 0 {
			t.Errorf("%d creates reported under the unwatched %s", n, work)
		}
	})
	// The two cut cwds and the running one went to /proc; others on the
	// machine may have too.
	if n := s.cwdFromProc.Load() - fromProc; n < 3 {
		t.Errorf("cwd read from /proc %d times, want at least 3 (two cut, one running)", n)
	}
}

// TestKernelCwdContainer: inside a runc container the cwd is the
// container's own path (from its root, after pivot_root), also on a tmpfs
// mounted in it, and for processes gone before they are read.
func TestKernelCwdContainer(t *testing.T) {
	requirePrivileged(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("needs runc (scripts/setup.sh installs it)")
	}
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "srv/app", "scratch", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), raw, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "true", "mkdir"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	mark := fmt.Sprintf("bwcwdc-%d-", time.Now().UnixNano())
	var spec map[string]any
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["cwd"] = "/srv/app"
	proc["args"] = []string{"/bin/sh", "-c",
		"/bin/true " + mark + "1; mkdir /scratch/sub && cd /scratch/sub && exec /bin/true " + mark + "2"}
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
		"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"},
	})
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	s := newSensor(t, Config{})
	id := fmt.Sprintf("bwcwd-%d", time.Now().UnixNano())
	state := t.TempDir()
	if out, err := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id).CombinedOutput(); err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	c := run(t, s)
	for _, w := range []struct{ mark, cwd string }{{mark + "1", "/srv/app"}, {mark + "2", "/scratch/sub"}} {
		rt := c.wait(t, "container exec", event.KindProcessExec, marked(w.mark))
		if rt.Process.Cwd != w.cwd {
			t.Errorf("container exec %s: cwd = %q, want %q", w.mark, rt.Process.Cwd, w.cwd)
		}
	}
}

// TestKernelCwdRefused: where the kernel refuses the programs with the cwd
// walk, the same probes run without it, say so, and the cwd comes from /proc
// as before (so a process already gone has none).
func TestKernelCwdRefused(t *testing.T) {
	s := newSensor(t, Config{refuseCwdWalk: true})
	degraded := map[string]bool{}
	for _, p := range s.Probes() {
		if !p.Active && p.Degraded != "" {
			t.Errorf("probe %s: inactive but degraded: %+v", p.Name, p)
		}
		degraded[p.Name] = p.Degraded != ""
	}
	for name, want := range map[string]bool{
		"sched/sched_process_exec": true, "syscalls/sys_enter_openat": true, "syscalls/sys_enter_renameat2": true,
		"sched/sched_process_exit": false, "sched_process_fork": false, "syscalls/sys_exit_connect": false,
	} {
		if degraded[name] != want {
			t.Errorf("probe %s: degraded %v, want %v", name, degraded[name], want)
		}
	}

	dir := t.TempDir()
	mark := fmt.Sprintf("bwcwdr-%d", time.Now().UnixNano())
	runGone(t, "/bin/sh", "-c", `cd "$1" && exec /bin/busybox true `+mark+"-gone", "sh", dir)
	alive := startSleep(t, dir)
	c := run(t, s)
	if rt := c.wait(t, "exec, gone", event.KindProcessExec, marked(mark+"-gone")); rt.Process.Cwd != "" {
		t.Errorf("exec of a process gone before it was read: cwd = %q without the kernel's walk, want none", rt.Process.Cwd)
	}
	if rt := c.wait(t, "exec, running", event.KindProcessExec, alive); rt.Process.Cwd != dir {
		t.Errorf("exec of a running process: cwd = %q, want %q from /proc", rt.Process.Cwd, dir)
	}
}
