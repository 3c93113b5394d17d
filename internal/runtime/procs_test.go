package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
)

// fakeProc is one process of a fake /proc.
type fakeProc struct {
	pid, ppid     int
	comm          string
	flags         uint64
	startTicks    uint64
	uid, gid      int
	exe, cwd      string
	cmdline       string // NUL-separated
	cgroup        string // the "0::" path; "" writes no cgroup file
	onlyDirectory bool   // a process that exited during the scan
}

func writeProc(t testing.TB, proc string, p fakeProc) {
	t.Helper()
	dir := filepath.Join(proc, fmt.Sprint(p.pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if p.onlyDirectory {
		return
	}
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime prio nice threads itreal starttime vsize …
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 %d 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10 0 0 0\n",
		p.pid, p.comm, p.ppid, p.pid, p.pid, p.flags, p.startTicks)
	files := map[string]string{
		"stat":    stat,
		"status":  fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t%d\t0\t0\t0\nGid:\t%d\t0\t0\t0\n", p.comm, p.uid, p.gid),
		"cmdline": p.cmdline,
	}
	if p.cgroup != "" {
		files["cgroup"] = "4:memory:/whatever\n0::" + p.cgroup + "\n"
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"exe": p.exe, "cwd": p.cwd} {
		if target == "" {
			continue
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestScanProcs(t *testing.T) {
	h := newHost(t)
	proc := filepath.Join(h.dir, "proc")
	if err := os.MkdirAll(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "uptime"), []byte("1000.00 1900.00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerID := hexID('a')
	rootID := h.mkCgroup(t, "/")
	ctrCgroup := h.mkCgroup(t, "/docker/"+dockerID)
	h.writeDocker(t, dockerID, "/web", "nginx:1.25")

	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("a%d", i))
	}
	long := strings.Repeat("x", 5000)
	for _, p := range []fakeProc{
		{pid: 1, ppid: 0, comm: "systemd", startTicks: 10, exe: "/usr/lib/systemd/systemd", cwd: "/", cmdline: "/sbin/init\x00splash\x00", cgroup: "/"},
		{pid: 2, ppid: 0, comm: "kthreadd", flags: pfKthread | 0x40, startTicks: 10},
		{pid: 77, ppid: 2, comm: "kworker/0:1", flags: pfKthread, startTicks: 20},
		{pid: 100, ppid: 1, comm: "my (odd) name", startTicks: 50_000, uid: 1000, gid: 1001, exe: "/bin/busybox", cwd: "/srv", cmdline: strings.Join(many, "\x00") + "\x00", cgroup: "/docker/" + dockerID},
		{pid: 101, ppid: 100, comm: "long", startTicks: 60_000, exe: "/bin/long", cmdline: "/bin/long\x00" + long + "\x00", cgroup: "/docker/" + dockerID},
		{pid: 102, onlyDirectory: true},
		{pid: 103, ppid: 1, comm: "no-cgroup", startTicks: 70_000, cmdline: ""},
	} {
		writeProc(t, proc, p)
	}
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil { // not a pid
		t.Fatal(err)
	}

	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cfg := h.config()
	cfg.Now = func() time.Time { return now }
	r := newResolver(t, cfg)
	got, err := r.ScanProcs()
	if err != nil {
		t.Fatalf("ScanProcs: %v", err)
	}
	boot := now.Add(-1000 * time.Second)
	ctr := &event.Container{ID: dockerID, Name: "web", Image: "nginx:1.25", Runtime: "docker"}
	want := []Proc{
		{Process: event.Process{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd", Cwd: "/", Argv: []string{"/sbin/init", "splash"},
			StartTime: boot.Add(100 * time.Millisecond), CgroupID: rootID}},
		{Process: event.Process{PID: 100, PPID: 1, UID: 1000, GID: 1001, Comm: "my (odd) name", Exe: "/bin/busybox", Cwd: "/srv",
			Argv: many[:MaxArgs], Truncated: true, StartTime: boot.Add(500 * time.Second), CgroupID: ctrCgroup, ParentExe: "/usr/lib/systemd/systemd"},
			Container: ctr},
		{Process: event.Process{PID: 101, PPID: 100, Comm: "long", Exe: "/bin/long",
			Argv: []string{"/bin/long", long[:MaxArgvBytes-len("/bin/long\x00")]}, Truncated: true,
			StartTime: boot.Add(600 * time.Second), CgroupID: ctrCgroup, ParentExe: "/bin/busybox"},
			Container: ctr},
		{Process: event.Process{PID: 103, PPID: 1, Comm: "no-cgroup", StartTime: boot.Add(700 * time.Second), ParentExe: "/usr/lib/systemd/systemd"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ScanProcs() mismatch (-want +got):\n%s", diff)
	}
}

func TestScanProcsThisHost(t *testing.T) {
	r, err := New(Config{}, discard())
	if err != nil {
		t.Skipf("no cgroup2 here: %v", err)
	}
	procs, err := r.ScanProcs()
	if err != nil {
		t.Fatalf("ScanProcs: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	path, ok := parseCgroup2(cg)
	if !ok {
		t.Fatalf("no 0:: line in /proc/self/cgroup:\n%s", cg)
	}
	wantCgroup, err := CgroupIDOfPath(filepath.Join(r.CgroupRoot(), path))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.Process.Comm == "kthreadd" {
			t.Errorf("ScanProcs() includes kernel thread %+v", p.Process)
		}
		if p.Process.PID != uint32(os.Getpid()) {
			continue
		}
		if p.Process.Exe != exe || p.Process.PPID != uint32(os.Getppid()) || len(p.Process.Argv) == 0 ||
			p.Process.CgroupID != wantCgroup || p.Process.UID != uint32(os.Getuid()) {
			t.Errorf("ScanProcs() self = %+v; want exe %s, ppid %d, cgroup %d, uid %d", p.Process, exe, os.Getppid(), wantCgroup, os.Getuid())
		}
		if age := time.Since(p.Process.StartTime); age < -time.Second || age > 10*time.Minute {
			t.Errorf("ScanProcs() self StartTime = %v, %v ago", p.Process.StartTime, age)
		}
		return
	}
	t.Errorf("ScanProcs() lacks this process (pid %d)", os.Getpid())
}

func TestSplitArgv(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      []string
		truncated bool
	}{
		{"empty", "", nil, false},
		{"one", "sleep\x00", []string{"sleep"}, false},
		{"two, no trailing NUL", "sleep\x0030", []string{"sleep", "30"}, false},
		{"empty argument", "a\x00\x00b\x00", []string{"a", "", "b"}, false},
		{"setproctitle", "nginx: worker process", []string{"nginx: worker process"}, false},
		{"32 args", strings.Repeat("a\x00", 32), strings.Split(strings.Repeat("a,", 32)[:63], ","), false},
		{"33 args", strings.Repeat("a\x00", 33), strings.Split(strings.Repeat("a,", 32)[:63], ","), true},
		{"exactly 4 KiB", strings.Repeat("y", MaxArgvBytes-1) + "\x00", []string{strings.Repeat("y", MaxArgvBytes-1)}, false},
		{"over 4 KiB", strings.Repeat("y", MaxArgvBytes+10), []string{strings.Repeat("y", MaxArgvBytes)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			if len(in) > MaxArgvBytes+1 {
				in = in[:MaxArgvBytes+1] // what readArgv reads
			}
			got, truncated := splitArgv(in)
			if diff := cmp.Diff(tc.want, got); diff != "" || truncated != tc.truncated {
				t.Errorf("splitArgv(%.20q) truncated = %v, want %v; argv (-want +got):\n%s", tc.in, truncated, tc.truncated, diff)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 10 1000 10 0\n"))
	f.Add([]byte("9 (a) b) c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21\n"))
	f.Add([]byte("(("))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, ok := parseStat(b)
		if !ok && st.ppid != 0 {
			t.Errorf("parseStat(%q) = %+v, false: fields set on failure", b, st)
		}
	})
}

func FuzzParseCgroup2(f *testing.F) {
	f.Add([]byte("4:memory:/x\n0::/docker/abc\n"))
	f.Add([]byte("0::"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if path, ok := parseCgroup2(b); ok && !strings.HasPrefix(path, "/") {
			t.Errorf("parseCgroup2(%q) = %q, true: not absolute", b, path)
		}
	})
}
