package sensor

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"bulwark/internal/event"
)

// BenchmarkExecProgram measures what the exec program (tp_exec) costs in the
// kernel, in the exec path of the workload, with the kernel's own figures
// (kernel.bpf_stats_enabled=1; run_time_ns and run_cnt as `bpftool prog show`
// reports them): with the cwd walk, and without it (the variant a kernel that
// refuses the walk gets). An op is a fork, exec and wait of /bin/busybox true
// whose cwd is "/", a test's temporary directory (3 components deep) or one
// 8 deep; bpf-ns/run is the program's mean
// run time over every exec on the machine meanwhile (runs/op says how many
// were the storm's). Timing: run it alone,
//
//	flock /tmp/bench.lock go test -run '^$' -bench Program -benchtime 5000x -count 3 ./internal/sensor/
func BenchmarkExecProgram(b *testing.B) {
	argv := []string{"/bin/busybox", "true"}
	benchProgram(b, "tp_exec", true, func(b *testing.B, dir string) {
		attr := &syscall.ProcAttr{Dir: dir}
		for b.Loop() {
			pid, err := syscall.ForkExec(argv[0], argv, attr)
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRelativeOpenProgram is BenchmarkExecProgram for openat's
// program and an open for writing of a path relative to the cwd (the
// program walks the cwd for it), and close; not in "/".
func BenchmarkRelativeOpenProgram(b *testing.B) {
	benchProgram(b, "sys_enter_openat", false, func(b *testing.B, dir string) {
		b.Chdir(dir)
		for b.Loop() {
			fd, err := syscall.Open("bench-file", syscall.O_WRONLY|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			syscall.Close(fd)
		}
	})
}

// benchProgram runs op in a sub-benchmark per variant (the kernel's cwd
// walk or not) and cwd, and reports prog's mean run time.
func benchProgram(b *testing.B, prog string, inRoot bool, op func(b *testing.B, dir string)) {
	requirePrivileged(b)
	const sysctl = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(sysctl)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(sysctl, []byte("1"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.WriteFile(sysctl, old, 0o644) })

	tmp := b.TempDir()
	deep := filepath.Join(tmp, "a", "b", "c", "d", "e")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		b.Fatal(err)
	}
	type dir struct{ name, dir string }
	var dirs []dir
	if inRoot {
		dirs = append(dirs, dir{"root", "/"})
	}
	for _, d := range []string{tmp, deep} {
		dirs = append(dirs, dir{strconv.Itoa(strings.Count(d, "/")) + "deep", d})
	}
	for _, v := range []struct {
		name string
		cfg  Config
	}{{"cwd=kernel", Config{}}, {"cwd=proc", Config{refuseCwdWalk: true}}} {
		s := newSensor(b, v.cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, func(string, time.Time, event.Runtime) {}) }()
		id := programID(b, s, prog)
		for _, d := range dirs {
			b.Run(v.name+"/dir="+d.name, func(b *testing.B) {
				ns0, n0 := bpftoolRunStats(b, id)
				op(b, d.dir)
				ns1, n1 := bpftoolRunStats(b, id)
				if n1 <= n0 {
					b.Fatalf("%s ran %d times during %d ops", prog, n1-n0, b.N)
				}
				b.ReportMetric(float64(ns1-ns0)/float64(n1-n0), "bpf-ns/run")
				b.ReportMetric(float64(n1-n0)/float64(b.N), "runs/op")
			})
		}
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	}
}

// programID is the kernel's id of the sensor's program name.
func programID(tb testing.TB, s *Sensor, name string) int {
	tb.Helper()
	for _, p := range s.progs {
		info, err := p.Info()
		if err != nil || info.Name != name {
			continue
		}
		if id, ok := info.ID(); ok {
			return int(id)
		}
	}
	tb.Fatalf("%s is not loaded", name)
	return 0
}

// bpftoolRunStats returns a program's run_time_ns and run_cnt as bpftool
// reports them.
func bpftoolRunStats(tb testing.TB, id int) (ns, n uint64) {
	tb.Helper()
	out, err := exec.Command("bpftool", "prog", "show", "id", strconv.Itoa(id), "--json").Output()
	if err != nil {
		tb.Fatalf("bpftool prog show id %d: %v", id, err)
	}
	var st struct {
		RunTimeNs uint64 `json:"run_time_ns"`
		RunCnt    uint64 `json:"run_cnt"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		tb.Fatalf("bpftool prog show id %d: %v: %s", id, err, out)
	}
	return st.RunTimeNs, st.RunCnt
}
