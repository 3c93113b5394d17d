package defender

import (
	"testing"
	"time"

	"bulwark/internal/event"
)

// TestProcessTreeEviction: a full tree forgets the processes that exited
// first, in that order, then the oldest running one; pids taken again do
// not grow the queue of exited processes without bound.
func TestProcessTreeEviction(t *testing.T) {
	w := newTracked(nil)
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	exec := func(pid uint32, start time.Time) {
		w.record(event.KindProcessExec, start, &event.Runtime{Process: event.Process{PID: pid, StartTime: start}}, "")
	}
	exit := func(pid uint32) {
		w.record(event.KindProcessExit, t0, &event.Runtime{Process: event.Process{PID: pid}}, "")
	}
	for pid := uint32(1); pid <= forensicProcesses; pid++ {
		exec(pid, t0.Add(time.Duration(pid)*time.Second))
	}
	exit(300)
	exit(7)
	exit(300) // again: still once in the queue
	exec(1000, t0)
	exec(1001, t0)
	for _, tc := range []struct {
		pid  uint32
		want bool
	}{{300, false}, {7, false}, {1, true}, {1000, true}, {1001, true}} {
		if _, ok := w.procs[tc.pid]; ok != tc.want {
			t.Errorf("pid %d in the tree = %v, want %v (exited ones leave first, in exit order)", tc.pid, ok, tc.want)
		}
	}
	exec(1002, t0.Add(time.Hour)) // nothing exited: the earliest start leaves (1000 and 1001 started at t0)
	if len(w.procs) != forensicProcesses {
		t.Fatalf("tree has %d processes, want %d", len(w.procs), forensicProcesses)
	}
	if _, ok := w.procs[1002]; !ok {
		t.Error("pid 1002 not in the tree")
	}
	if _, a := w.procs[1000]; a {
		if _, b := w.procs[1001]; b {
			t.Error("neither pid 1000 nor 1001 (the earliest starts) was forgotten")
		}
	}

	// One pid exiting and starting again forever: the tree does not grow
	// and neither does the queue.
	for i := range 10 * forensicProcesses {
		exec(5000, t0.Add(time.Duration(i)))
		exit(5000)
	}
	if len(w.procs) > forensicProcesses || len(w.exited) > 2*forensicProcesses+1 {
		t.Errorf("after pid reuse: %d processes, %d queued exits; want at most %d and %d", len(w.procs), len(w.exited), forensicProcesses, 2*forensicProcesses+1)
	}
}

func BenchmarkProcessTreeFull(b *testing.B) {
	w := newTracked(nil)
	t0 := time.Now()
	pid := uint32(1)
	for b.Loop() {
		w.record(event.KindProcessExec, t0, &event.Runtime{Process: event.Process{PID: pid, StartTime: t0}}, "")
		w.record(event.KindProcessExit, t0, &event.Runtime{Process: event.Process{PID: pid}}, "")
		pid++
	}
}
