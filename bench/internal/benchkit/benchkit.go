// Package benchkit holds what the benchmark programs under bench/ share:
// the processes they start (signalled only by their own PIDs), a free
// loopback port, a process's CPU ticks from /proc, CPU pinning for runs with
// reserved CPUs, and small helpers.
package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"bulwark/internal/porttest"
)

// Proc is a process a benchmark started; it is only ever signalled by its
// PID.
type Proc struct {
	Cmd  *exec.Cmd
	Out  *bytes.Buffer // stdout and stderr together
	done chan struct{}
	logf func(format string, args ...any)
}

// Start starts cmd with its output collected in Out. logf reports a process
// that had to be killed.
func Start(cmd *exec.Cmd, logf func(format string, args ...any)) (*Proc, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, Out: &out, done: make(chan struct{}), logf: logf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.logf("pid %d did not stop within %s; killing it", p.PID(), grace)
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// FreePort returns a TCP port free on 127.0.0.1 a moment ago, outside the
// kernel's ephemeral range (package porttest).
func FreePort() (int, error) { return porttest.Free() }

// CPUTicks is utime+stime of a process in clock ticks, from /proc/<pid>/stat.
func CPUTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + s, errors.Join(err1, err2)
}

// ContextSwitches is the voluntary and involuntary context switches of every
// thread of a process so far, from /proc/<pid>/task/*/status: how often it
// woke. Threads that ended are not counted.
func ContextSwitches(pid int) (int64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		for line := range strings.Lines(string(raw)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("/proc/%d/task/%s/status: %s: %w", pid, t.Name(), k, err)
				}
				n += c
			}
		}
	}
	return n, nil
}

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Tail is the last n bytes of s, marked when cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// CPUs splits this machine's CPUs for a run with reserved CPUs: reserved
// (the Console's and the Defender's, as system-reserved CPUs are for a
// node's agents) and the rest (the workload's). reserved < 0: no split, both
// nil.
func CPUs(reserved int) (bulwark, workload []int, err error) {
	if reserved < 0 {
		return nil, nil, nil
	}
	n := runtime.NumCPU()
	if reserved >= n || n < 2 {
		return nil, nil, fmt.Errorf("cannot reserve CPU %d of %d: the workload needs at least one other", reserved, n)
	}
	for c := range n {
		if c != reserved {
			workload = append(workload, c)
		}
	}
	return []int{reserved}, workload, nil
}

// Pinned runs f on an OS thread whose CPU affinity is cpus, so that the
// processes f starts (they inherit the thread's affinity) and the system
// calls f makes run there; the thread's affinity is restored after. Empty
// cpus: f runs as it is.
func Pinned(cpus []int, f func() error) error {
	if len(cpus) == 0 {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("CPU affinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPUs %v: %w", cpus, err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &old) }()
	return f()
}

// PinProcess sets the CPU affinity of every thread of this process to cpus;
// threads it starts later inherit it from the thread that starts them.
func PinProcess(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d to CPUs %v: %w", tid, cpus, err)
		}
	}
	return nil
}

// HeldPrograms returns the ids of the BPF programs pid holds through a
// program or link fd (bpftool here cannot name a program's holders).
func HeldPrograms(pid int) ([]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || (target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link" && target != "anon_inode:bpf-link") {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(info)) {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids, nil
}

// LoadAvg is the 1, 5 and 15 minute load averages, "?" when unknown.
func LoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// CPUModel is the CPU's model name from /proc/cpuinfo.
func CPUModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// Median is the middle of xs (the mean of the two middle ones for an even
// count); xs must not be empty.
func Median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ProcessCPU is the user and system time of this process and of its children
// it has waited for, so far.
func ProcessCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// Workers runs w workers, worker k doing operations k, k+w, k+2w… of n, and
// returns how long they took together. A worker stops at its first error.
func Workers(n, w int, op func(i int) error) (time.Duration, error) {
	errs := make([]error, w)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range w {
		wg.Go(func() {
			for i := k; i < n; i += w {
				if err := op(i); err != nil {
					errs[k] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// ForkExecWait runs prog with argv and attr and waits for it: the exec
// storms' operation. An exit other than 0 is an error.
func ForkExecWait(prog string, argv []string, attr *syscall.ProcAttr) error {
	pid, err := syscall.ForkExec(prog, argv, attr)
	if err != nil {
		return fmt.Errorf("fork+exec %s: %w", prog, err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return fmt.Errorf("wait %d: %w", pid, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("%s %q: status %v", prog, argv[1:], ws)
	}
	return nil
}

// OpenWriteClose opens path with O_CREAT|O_WRONLY|O_TRUNC, writes payload and
// closes it: the write storms' operation.
func OpenWriteClose(path string, payload []byte) error {
	fd, err := syscall.Open(path, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	_, werr := syscall.Write(fd, payload)
	cerr := syscall.Close(fd)
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("close: %w", cerr)
	}
	return nil
}
