package defender

import (
	"slices"
	"time"

	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

// Bounds of what the Defender keeps per container for forensics.
const (
	forensicEvents    = 256  // recent events in the ring
	forensicProcesses = 512  // processes in the tree
	driftPaths        = 4096 // files written since start, for drift
)

// tracked is what the Defender keeps about one container (or the host):
// its identity, when it started, what it wrote since, and a forensic
// record of its recent processes and events.
type tracked struct {
	container *event.Container // nil for the host
	cgroupID  uint64
	start     time.Time // earliest process start seen
	lastSeen  time.Time

	written map[string]bool // files written since start (bounded)
	procs   map[uint32]*event.ForensicProcess
	exited  []*event.ForensicProcess // in the order they exited; some may have left procs since
	ring    []event.ForensicEvent    // circular, next at head
	head    int
	full    bool
	dropped uint64

	lastForensics time.Time // when a record was last sent
	blocked       bool      // stopped (or being stopped) for a block effect

	enforce EnforceStatus // what the last Apply put in force
	listed  bool          // the runtime lists it: forgotten only once it is not
	gone    bool          // the container no longer exists

	// The rule that decides for the workload, as of policy generation
	// ruleGen: deciding walks every rule's collections, so not per event.
	rule    rp.Rule
	ruleOK  bool
	ruleGen uint64
}

func newTracked(c *event.Container) *tracked {
	return &tracked{container: c, written: map[string]bool{}, procs: map[uint32]*event.ForensicProcess{},
		ring: make([]event.ForensicEvent, forensicEvents)}
}

// started notes a process of the workload: the earliest start is the
// workload's, and its cgroup the workload's.
func (w *tracked) started(p *event.Process) {
	if !p.StartTime.IsZero() && (w.start.IsZero() || p.StartTime.Before(w.start)) {
		w.start = p.StartTime
	}
	if w.cgroupID == 0 {
		w.cgroupID = p.CgroupID
	}
}

// record adds one event to the forensic record and the process tree;
// audit names the detections it raised, if any.
func (w *tracked) record(kind string, at time.Time, rt *event.Runtime, audit string) {
	p := &rt.Process
	w.lastSeen = at
	switch kind {
	case event.KindProcessExec:
		w.addProcess(&event.ForensicProcess{PID: p.PID, PPID: p.PPID, UID: p.UID, Exe: p.Exe, Argv: p.Argv, Start: p.StartTime})
	case event.KindProcessFork:
		if c := rt.Child; c != nil {
			parent := w.procs[p.PID]
			fp := &event.ForensicProcess{PID: c.PID, PPID: p.PID, UID: c.UID, Start: c.StartTime}
			if parent != nil {
				fp.Exe, fp.Argv = parent.Exe, parent.Argv
			}
			w.addProcess(fp)
		}
		return // forks are in the tree; the ring keeps what they did
	case event.KindProcessExit:
		if p.TID == 0 || p.TID == p.PID { // the process, not one of its threads
			if fp := w.procs[p.PID]; fp != nil && fp.Exited == nil {
				t := at
				fp.Exited = &t
				w.exited = append(w.exited, fp)
			}
		}
	}
	e := event.ForensicEvent{Time: at, Kind: kind, PID: p.PID, Exe: p.Exe, File: rt.File, Net: rt.Net, Audit: audit}
	if e.Exe == "" {
		if fp := w.procs[p.PID]; fp != nil {
			e.Exe = fp.Exe
		}
	}
	if w.full {
		w.dropped++
	}
	w.ring[w.head] = e
	w.head = (w.head + 1) % len(w.ring)
	if w.head == 0 {
		w.full = true
	}
}

// addProcess puts p into the tree, making room by forgetting the process
// that exited first, or when none has, the one that started first.
func (w *tracked) addProcess(p *event.ForensicProcess) {
	if _, ok := w.procs[p.PID]; !ok && len(w.procs) >= forensicProcesses {
		w.evict()
	}
	w.procs[p.PID] = p
	if len(w.exited) > 2*forensicProcesses {
		// Exited processes whose pid was taken again are no longer in
		// procs: drop them from the queue, or it grows without an eviction.
		w.exited = slices.DeleteFunc(w.exited, func(q *event.ForensicProcess) bool { return w.procs[q.PID] != q })
	}
}

// evict forgets one process. Every exec and fork of a busy container or
// host comes here once its tree is full: exited processes leave in order
// without a walk over the tree.
func (w *tracked) evict() {
	for len(w.exited) > 0 {
		q := w.exited[0]
		w.exited[0] = nil
		w.exited = w.exited[1:]
		if w.procs[q.PID] == q {
			delete(w.procs, q.PID)
			return
		}
	}
	var victim uint32
	var when time.Time
	for pid, q := range w.procs {
		if victim == 0 || q.Start.Before(when) {
			victim, when = pid, q.Start
		}
	}
	delete(w.procs, victim)
}

// markWritten remembers a file written after the container started.
func (w *tracked) markWritten(path string) {
	if path == "" || len(w.written) >= driftPaths && !w.written[path] {
		return
	}
	w.written[path] = true
}

// writtenPaths lists the files written since start, sorted.
func (w *tracked) writtenPaths() []string {
	out := make([]string, 0, len(w.written))
	for p := range w.written {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// live reports whether a process of the workload still runs.
func (w *tracked) live() bool {
	for _, p := range w.procs {
		if p.Exited == nil {
			return true
		}
	}
	return false
}

// forensics is the record as sent to the Console.
func (w *tracked) forensics(host, reason string) event.Forensics {
	f := event.Forensics{Host: host, Container: w.container, Reason: reason, Dropped: w.dropped,
		Processes: make([]event.ForensicProcess, 0, len(w.procs)), Events: []event.ForensicEvent{}}
	for _, p := range w.procs {
		f.Processes = append(f.Processes, *p)
	}
	slices.SortFunc(f.Processes, func(a, b event.ForensicProcess) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return int(a.PID) - int(b.PID)
	})
	if w.full {
		f.Events = append(f.Events, w.ring[w.head:]...)
	}
	f.Events = append(f.Events, w.ring[:w.head]...)
	return f
}
