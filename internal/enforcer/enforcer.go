// Package enforcer denies actions of container processes before they happen:
// executing a file, opening a file for writing, connecting to an address and
// binding to a port. The caller gets EPERM and the action never runs; each
// denial is reported as a Prevented audit naming the rule and the mechanism.
//
// The Defender compiles its runtime rules into Targets, one per container
// cgroup, and calls Apply with the whole desired state whenever it changes
// (at start from the policy stored on disk, before the Console is
// reachable). Enforcement is keyed by cgroup id: a process in any other
// cgroup, such as the same binary run on the host, is never denied.
//
// Mechanisms are probed by New, best first for each kind (Mechanisms says
// which one enforces each kind and why a better one is missing):
//
//   - BPF LSM (bprm_check_security, and mmap_file and file_mprotect for
//     executable mappings; file_open; socket_connect and socket_sendmsg;
//     socket_bind): the decision is made in the kernel from maps keyed by
//     cgroup. Probed by loading and attaching a trivial lsm/file_open program
//     and checking that it runs, which needs "bpf" in the kernel's lsm= list
//     and a kernel that allows BPF trampolines.
//   - fanotify permission events for exec and file-write: FAN_OPEN_EXEC_PERM
//     and FAN_OPEN_PERM on each mount of the container's mount namespace, one
//     fanotify group per container, decided in user space on the event
//     process's cgroup, the file's identity and its path as the container
//     sees it. fanotify does not say whether an open is for writing: syscall
//     tracepoints record each target thread's open flags while it is inside
//     open*() or execve*(); they are attached while a fanotify group exists,
//     and cost nothing when none does. Allowed files are cached in the
//     kernel with ignore marks, so a file is judged once per container.
//   - cgroup BPF connect4/6, sendmsg4/6 (datagrams sent without connect)
//     and bind4/6 programs attached to the container's cgroup2 directory,
//     for connect and bind.
//
// Fail safe: nothing is pinned. Every program, link, map and fanotify group
// lives in this process's file descriptors, so when the Defender exits or is
// killed the kernel detaches all of it and answers any permission event still
// pending with "allow": a dead Defender never blocks the host, and a
// restarted one takes enforcement back by applying the stored policy again.
// The cost is that nothing is enforced between the death and the restart. A
// watchdog answers "allow" to any fanotify event not decided within
// Config.DecisionTimeout, so a stuck decision (a hung FUSE mount, say) cannot
// hang the container's processes either, and the Defender's own threads are
// always allowed.
//
// Limits, by mechanism: rules match the path as the container sees it and
// the file's identity; renaming or hard-linking a file to a denied path after
// Apply is not an open and is not prevented, nor is creating a file (O_CREAT
// creates it before the open is refused) or truncate(2) by path. A container
// mount made after Apply is watched by fanotify only from the next Apply.
// With fanotify, an open whose flags are unknown (io_uring, the kernel on a
// process's behalf) is treated as a write when the path is denied, and
// mapping a denied file executable (the dynamic loader run directly on it)
// is not denied: only BPF LSM sees mappings. Only the target cgroup itself is
// covered, not cgroups below it.
//
// Privileges: CAP_SYS_ADMIN (BPF, fanotify, cgroup attach) and reading
// /proc/<pid> of container processes (CAP_SYS_PTRACE).
package enforcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"bulwark/internal/ringwait"
)

// Defaults for Config fields left zero.
const (
	DefaultDecisionTimeout = time.Second
	DefaultEventBuffer     = 4096
)

// Config configures an Enforcer.
type Config struct {
	// Cgroup2Root is where cgroup2 is mounted: /sys/fs/cgroup on a pure v2
	// host, /sys/fs/cgroup/unified on a hybrid one. "" finds it in
	// /proc/self/mountinfo.
	Cgroup2Root string
	// ProcRoot is where the host's procfs is mounted; "" means /proc.
	ProcRoot string
	// DisableBPFLSM uses the fallbacks even where BPF LSM works.
	DisableBPFLSM bool
	// DecisionTimeout bounds a fanotify decision: an event still undecided
	// after it is allowed (and counted). 0 means DefaultDecisionTimeout.
	DecisionTimeout time.Duration
	// EventBuffer is how many Prevented audits wait for the reader of
	// Events before new ones are dropped (and counted). 0 means
	// DefaultEventBuffer.
	EventBuffer int

	// decisionHook, when set, runs before each fanotify decision (tests:
	// a slow or stuck decision).
	decisionHook func()
}

// Stats counts what the enforcer did since New.
type Stats struct {
	Decisions     uint64        // fanotify permission events answered
	DecisionTime  time.Duration // spent deciding them in user space (from reading the event to answering it)
	Denied        uint64        // actions denied, all mechanisms
	Timeouts      uint64        // fanotify events allowed by the watchdog
	IgnoreMarks   uint64        // files cached as allowed with fanotify ignore marks
	KernelLost    uint64        // audits the kernel could not write (ring buffer full)
	DroppedEvents uint64        // audits dropped because Events was not read
}

// Enforcer denies the actions its targets' rules name.
type Enforcer struct {
	cfg        Config
	logger     *slog.Logger
	cgroupRoot string
	mech       Mechanisms
	bootNs     int64
	selfPID    int

	k *kernel

	mu      sync.Mutex // serializes Apply and Close
	rules   ruleTable
	applied map[uint64]*applied // by cgroup id
	names   atomic.Pointer[map[uint64]string]
	closed  bool
	groups  sync.Map // *fanGroup → struct{}: the watchdog's view
	nGroups atomic.Int64
	regroup chan struct{} // nudges the watchdog when a group comes or goes

	events chan Prevented
	stats  struct {
		decisions, decisionNs, denied, timeouts, ignoreMarks, dropped atomic.Uint64
	}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New probes the mechanisms, loads the BPF programs they need and starts
// reporting. It enforces nothing until Apply.
func New(cfg Config, logger *slog.Logger) (*Enforcer, error) {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.DecisionTimeout == 0 {
		cfg.DecisionTimeout = DefaultDecisionTimeout
	}
	if cfg.EventBuffer == 0 {
		cfg.EventBuffer = DefaultEventBuffer
	}
	var errs []error
	if cfg.DecisionTimeout < 0 {
		errs = append(errs, fmt.Errorf("DecisionTimeout %v: negative", cfg.DecisionTimeout))
	}
	if cfg.EventBuffer < 0 {
		errs = append(errs, fmt.Errorf("EventBuffer %d: negative", cfg.EventBuffer))
	}
	if cfg.Cgroup2Root != "" && !filepath.IsAbs(cfg.Cgroup2Root) {
		errs = append(errs, fmt.Errorf("Cgroup2Root %q: not absolute", cfg.Cgroup2Root))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("enforcer config: %w", err)
	}
	root := cfg.Cgroup2Root
	if root == "" {
		var err error
		if root, err = findCgroup2(cfg.ProcRoot); err != nil {
			return nil, fmt.Errorf("enforcer: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Enforcer{
		cfg: cfg, logger: logger, cgroupRoot: root, bootNs: bootNs(), selfPID: os.Getpid(),
		applied: map[uint64]*applied{},
		events:  make(chan Prevented, cfg.EventBuffer),
		regroup: make(chan struct{}, 1),
		ctx:     ctx, cancel: cancel,
	}
	e.names.Store(&map[uint64]string{})
	k, mech, err := loadKernel(cfg, logger)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("enforcer: %w", err)
	}
	e.k, e.mech = k, mech
	for _, kind := range Kinds {
		c := mech.For(kind)
		logger.Info("enforcer: mechanism", "kind", kind, "mechanism", c.Mechanism, "reason", c.Reason)
	}
	if k.ring != nil {
		e.wg.Go(e.readRing)
	}
	e.wg.Go(e.watchdog)
	return e, nil
}

// Mechanisms says which mechanism enforces each kind of rule on this host,
// as probed by New.
func (e *Enforcer) Mechanisms() Mechanisms { return e.mech }

// Events delivers an audit for every action denied. It is closed by Close.
// Read it promptly: audits that do not fit its buffer are dropped and
// counted in Stats.DroppedEvents (the actions are denied all the same).
func (e *Enforcer) Events() <-chan Prevented { return e.events }

// Stats returns the counters so far.
func (e *Enforcer) Stats() Stats {
	return Stats{
		Decisions:     e.stats.decisions.Load(),
		DecisionTime:  time.Duration(e.stats.decisionNs.Load()), //nolint:gosec // G115: a sum of durations
		Denied:        e.stats.denied.Load(),
		Timeouts:      e.stats.timeouts.Load(),
		IgnoreMarks:   e.stats.ignoreMarks.Load(),
		KernelLost:    e.k.lost(),
		DroppedEvents: e.stats.dropped.Load(),
	}
}

// report delivers an audit without ever blocking a decision.
func (e *Enforcer) report(p Prevented) {
	e.stats.denied.Add(1)
	select {
	case e.events <- p:
	default:
		e.stats.dropped.Add(1)
	}
}

// containerOf names the container of a cgroup, for audits.
func (e *Enforcer) containerOf(cg uint64) string {
	return (*e.names.Load())[cg]
}

// Close removes every piece of kernel state the enforcer installed: fanotify
// groups (answering what is pending), cgroup attachments, LSM and
// tracepoint links, maps. Enforcement stops. Events is closed.
func (e *Enforcer) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var errs []error
	for cg, a := range e.applied {
		errs = append(errs, a.close())
		delete(e.applied, cg)
	}
	e.mu.Unlock()
	e.cancel()
	errs = append(errs, e.k.closeReader())
	e.wg.Wait()
	errs = append(errs, e.k.close())
	close(e.events)
	return errors.Join(errs...)
}

// readRing turns the kernel's records of denied actions into audits.
func (e *Enforcer) readRing() {
	var rec ringbuf.Record
	for {
		ok, err := e.k.ring.Read(&rec)
		if err == nil && !ok {
			err = e.k.ring.Wait(e.ctx, time.Time{})
			if err == nil {
				continue
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) || e.ctx.Err() != nil {
				return
			}
			e.logger.Error("enforcer: read ring buffer", "error", err)
			return
		}
		r, err := decodePrevented(rec.RawSample)
		if err != nil {
			e.logger.Warn("enforcer: undecodable record", "error", err, "bytes", len(rec.RawSample))
			continue
		}
		e.report(e.audit(r))
	}
}

func (e *Enforcer) audit(r record) Prevented {
	p := Prevented{
		Time:        time.Unix(0, e.bootNs+int64(r.ktime)), //nolint:gosec // G115: nanoseconds since boot fit an int64 for 292 years
		Kind:        r.kind,
		Mechanism:   r.mech,
		Rule:        e.rules.name(r.rule),
		ContainerID: e.containerOf(r.cgroup),
		CgroupID:    r.cgroup,
		PID:         r.pid,
		TID:         r.tid,
		UID:         r.uid,
		Comm:        r.comm,
		Path:        r.path,
		Addr:        r.addr,
	}
	return p
}

// kernel holds the BPF objects: the maps shared by every mechanism and the
// programs and links each mechanism loaded.
type kernel struct {
	spec    *ebpf.CollectionSpec
	maps    commonMaps
	scratch *ebpf.Map // task storage of the LSM programs
	progs   []*ebpf.Program
	links   []link.Link
	// The syscall tracepoints the fanotify decisions read, loaded when
	// fanotify is a mechanism here, attached (tpLinks) while a fanotify
	// group needs them.
	tps     []tracepoint
	tpLinks []link.Link
	// cgroup BPF programs, attached to each target's cgroup by Apply.
	cgConnect, cgBind []cgProg
	ring              *ringwait.Reader
}

// cgProg is a cgroup BPF program and where it attaches.
type cgProg struct {
	prog   *ebpf.Program
	attach ebpf.AttachType
}

// commonMaps are the maps every mechanism shares.
type commonMaps struct {
	Targets       *ebpf.Map `ebpf:"targets"`
	ExecInodes    *ebpf.Map `ebpf:"exec_inodes"`
	ExecPaths     *ebpf.Map `ebpf:"exec_paths"`
	WriteInodes   *ebpf.Map `ebpf:"write_inodes"`
	WritePrefixes *ebpf.Map `ebpf:"write_prefixes"`
	NetDeny       *ebpf.Map `ebpf:"net_deny"`
	ListenAllow   *ebpf.Map `ebpf:"listen_allow"`
	Tids          *ebpf.Map `ebpf:"tids"`
	Events        *ebpf.Map `ebpf:"events"`
	Lost          *ebpf.Map `ebpf:"lost"`
}

func (m *commonMaps) replacements() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"targets": m.Targets, "exec_inodes": m.ExecInodes, "exec_paths": m.ExecPaths,
		"write_inodes": m.WriteInodes, "write_prefixes": m.WritePrefixes, "net_deny": m.NetDeny,
		"listen_allow": m.ListenAllow, "tids": m.Tids, "events": m.Events, "lost": m.Lost,
	}
}

func (m *commonMaps) close() error {
	var errs []error
	for _, mp := range []*ebpf.Map{m.Targets, m.ExecInodes, m.ExecPaths, m.WriteInodes, m.WritePrefixes,
		m.NetDeny, m.ListenAllow, m.Tids, m.Events, m.Lost} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

func (k *kernel) lost() uint64 {
	if k == nil || k.maps.Lost == nil {
		return 0
	}
	var n uint64
	if err := k.maps.Lost.Lookup(uint32(0), &n); err != nil {
		return 0
	}
	return n
}

func (k *kernel) closeReader() error {
	if k.ring == nil {
		return nil
	}
	return k.ring.Close()
}

func (k *kernel) close() error {
	errs := []error{closeLinks(slices.Concat(k.links, k.tpLinks))}
	k.links, k.tpLinks = nil, nil
	for _, p := range k.progs {
		errs = append(errs, p.Close())
	}
	k.progs = nil
	errs = append(errs, k.maps.close())
	if k.scratch != nil {
		errs = append(errs, k.scratch.Close())
	}
	return errors.Join(errs...)
}
