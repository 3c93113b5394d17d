// Package sensor is the Defender's runtime sensor: eBPF programs on
// tracepoints and raw tracepoints (bpf/sensor.bpf.c) report process, file,
// network, privilege, namespace, ptrace and module events through one ring
// buffer, and this package decodes them into event.Runtime.
//
// It uses only hooks that every CO-RE kernel has (no kprobes, no BPF
// trampolines). Each probe that cannot attach is reported with its reason by
// Probes and the sensor runs with the rest; when nothing loads at all it falls
// back to the netlink proc connector (exec, exit and fork; pids only, the rest
// read from /proc).
//
// What is resolved where:
//   - exec: the file name and argv (first 512 bytes, Truncated when longer)
//     come from the kernel, and so does the cwd: the exec program walks the
//     task's fs->pwd up to its fs->root (dentry parents, and mount points
//     through struct mount), so the cwd is the path the process sees (inside
//     a container, the container's) and is there for processes that exited
//     before the record was read. The walk is bounded (40 steps, components
//     and mount crossings, and 255 bytes); a cwd past the bounds, or one the
//     walk cannot place under the root, is read from /proc/<pid>/cwd when the
//     record is decoded, which is racy (empty when the process is gone).
//   - file: paths are what the syscall was given (inside a container, the
//     container's view). Absolute paths are filtered in the kernel against the
//     watched prefixes; relative ones are joined in user space and filtered
//     then: with the cwd the kernel read at syscall entry (AT_FDCWD, the same
//     walk), else with /proc/<pid>/cwd or /proc/<pid>/fd/<dfd>, as is
//     fchmod's fd. /proc is racy: a process that exited (or closed the fd)
//     before decoding cannot be resolved, and such an event is counted as
//     user-space loss rather than dropped silently. File events are attempts
//     seen at syscall entry: the syscall may still fail, and O_CREAT is
//     reported as file.create even when the file existed.
//   - A kernel whose verifier refuses the programs with the cwd walk gets
//     them without it (the same object, loaded again with cwd_walk = 0):
//     those probes say so in ProbeStatus.Degraded and the cwd comes from
//     /proc as above.
//   - network: connect's destination is read at entry, the local end and the
//     result at exit; accept and listen read the socket behind the fd in the
//     kernel at syscall exit (so listen knows a port it picked itself). For
//     accept, Src is the peer and Dst the local end (the flow's direction);
//     for listen, Src is the bound address. MPTCP sockets (Go listens with
//     MPTCP by default) are reported as tcp.
//
// Privileges: New needs CAP_SYS_ADMIN (standing in for CAP_BPF and
// CAP_PERFMON, which the Defender's capability set lacks) and nothing else
// on kernels that charge BPF memory to the cgroup (5.11+); resolving paths of
// other processes from /proc needs CAP_SYS_PTRACE. TestLeastPrivilege checks
// this with exactly the Defender's capabilities.
package sensor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"bulwark/internal/event"
	"bulwark/internal/ringwait"
)

// drainEvery bounds how long a record waits in the ring buffer while records
// come: after a pass that read some, the reader waits at most drainEvery and
// reads what was written meanwhile without a wakeup (the kernel otherwise
// wakes it once a quarter of the buffer is pending). Each drain costs the
// Defender a few thread wakeups whatever it finds, so a busy host is drained
// in batches: 40 ms held the Defender's context switches in an exec storm to
// two thirds of what 10 ms cost. After a pass that read nothing the reader
// sets no timer: the programs force a wakeup for a record written to an
// empty buffer drainEvery after the last such wakeup (emit in
// bpf/sensor.bpf.c), so an idle Defender sleeps until there is something to
// read.
const drainEvery = 40 * time.Millisecond

// DefaultRingBufferBytes is the ring buffer size when Config leaves it 0.
// The reader maps its data pages twice (so that a record wrapping around
// the end reads as one), so it counts twice in the Defender's RSS: 4 MiB
// costs 8 MiB of resident memory and holds about 3,700 exec records (1,112
// bytes with the cwd), some 35 times what the reader falls behind by in an
// exec storm.
const DefaultRingBufferBytes = 4 << 20

// SensitivePaths are always watched for file events, whatever Config says.
var SensitivePaths = []string{
	"/etc", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/lib", "/usr/lib", "/boot",
	"/root/.ssh", "/var/spool/cron",
}

// Config configures a Sensor.
type Config struct {
	// RingBufferBytes is the kernel ring buffer size: a power of two and a
	// multiple of the page size. 0 means DefaultRingBufferBytes.
	RingBufferBytes int
	// WatchPaths are absolute path prefixes whose writes, creates, unlinks,
	// renames and chmods are reported, in addition to SensitivePaths.
	WatchPaths []string
	// ReadPaths are absolute paths (files, or directories for everything
	// under them) whose opens for reading are reported as file.read: a few
	// secrets, at least 8 bytes long each. Reads are the most frequent file
	// syscall; keep the list short.
	ReadPaths []string
	// ProcRoot is where procfs is mounted; "" means /proc.
	ProcRoot string

	// procConnector forces the proc connector fallback (tests).
	procConnector bool
	// refuseCwdWalk treats every program with the kernel's cwd walk as
	// refused by the verifier, so that the variant without it runs (tests).
	refuseCwdWalk bool
}

// ProbeStatus says whether one probe runs, and if not, why.
type ProbeStatus struct {
	Name   string // the hook: "syscalls/sys_enter_openat", "sched_process_fork", "proc connector"
	Kind   string // tracepoint, raw_tp, netlink
	Active bool
	Error  string // why it is not active
	// Degraded says, for an active probe, what it does without and why,
	// when the kernel refused its full program and a reduced one runs: the
	// exec and file probes without the in-kernel cwd walk read the cwd from
	// /proc instead.
	Degraded string `json:",omitempty"`
}

// Sensor reports runtime events from the kernel.
type Sensor struct {
	cfg     Config
	logger  *slog.Logger
	watched []string // cleaned prefixes, built-in and configured
	read    []string // cleaned ReadPaths

	objs   sensorMaps
	progs  []*ebpf.Program
	links  []link.Link
	ring   *ringwait.Reader
	probes []ProbeStatus
	pc     *procConnector // non-nil: the fallback runs instead of BPF

	userLoss    atomic.Uint64
	cwdFromProc atomic.Uint64 // records whose cwd the kernel left to /proc/<pid>/cwd
	dec         *decoder
	noCwdSpec   *ebpf.CollectionSpec // the programs with cwd_walk = 0, made when first needed

	closeOnce sync.Once
	closeErr  error
}

// New loads the BPF programs and attaches every probe it can.
func New(cfg Config, logger *slog.Logger) (*Sensor, error) {
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = DefaultRingBufferBytes
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	watched, read, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	s := &Sensor{cfg: cfg, logger: logger, watched: watched, read: read, dec: newDecoder(bootNs())}
	var bpfErr error
	if cfg.procConnector {
		bpfErr = errors.New("proc connector requested")
	} else {
		bpfErr = s.loadBPF()
	}
	if bpfErr == nil {
		return s, nil
	}
	_ = s.closeBPF() // what loaded before the failure; the error that matters is bpfErr
	pc, err := openProcConnector()
	if err != nil {
		return nil, fmt.Errorf("sensor: eBPF: %w; proc connector: %w", bpfErr, err)
	}
	logger.Warn("sensor: eBPF unavailable, falling back to the netlink proc connector (exec, exit, fork only)",
		"error", bpfErr)
	s.pc = pc
	s.probes = append(s.probes, ProbeStatus{Name: "proc connector", Kind: "netlink", Active: true,
		Error: "fallback: eBPF unavailable: " + bpfErr.Error()})
	return s, nil
}

func validate(cfg Config) (watched, read []string, err error) {
	var errs []error
	n := cfg.RingBufferBytes
	if n < os.Getpagesize() || n&(n-1) != 0 || n > 1<<30 {
		errs = append(errs, fmt.Errorf("RingBufferBytes %d: want a power of two between the page size and 1 GiB", n))
	}
	for _, p := range append(slices.Clone(SensitivePaths), cfg.WatchPaths...) {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("WatchPaths %q: not absolute", p))
			continue
		}
		p = filepath.Clean(p)
		if len(p) >= pathLen-1 {
			errs = append(errs, fmt.Errorf("WatchPaths %q: longer than %d bytes", p, pathLen-2))
			continue
		}
		if !slices.Contains(watched, p) {
			watched = append(watched, p)
		}
	}
	if len(watched) > 500 {
		errs = append(errs, fmt.Errorf("WatchPaths: %d prefixes, at most 500", len(watched)))
	}
	for _, p := range cfg.ReadPaths {
		switch c := filepath.Clean(p); {
		case !filepath.IsAbs(p):
			errs = append(errs, fmt.Errorf("ReadPaths %q: not absolute", p))
		case len(c) < 8 || len(c) >= pathLen-1:
			errs = append(errs, fmt.Errorf("ReadPaths %q: want 8 to %d bytes", p, pathLen-2))
		case !slices.Contains(read, c):
			read = append(read, c)
		}
	}
	if len(read) > 30 {
		errs = append(errs, fmt.Errorf("ReadPaths: %d paths, at most 30", len(read)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("sensor config: %w", err)
	}
	return watched, read, nil
}

// bootNs is the wall clock at CLOCK_MONOTONIC zero, which bpf_ktime_get_ns
// and task->start_time count from.
func bootNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}

func (s *Sensor) loadBPF() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock rlimit: %w", err)
	}
	spec, err := loadSensor()
	if err != nil {
		return fmt.Errorf("read BPF object: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(s.cfg.RingBufferBytes)                                //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
	if err := spec.Variables["wakeup_bytes"].Set(uint64(s.cfg.RingBufferBytes / 4)); err != nil { //nolint:gosec // validated: a power of two up to 1 GiB
		return fmt.Errorf("set wakeup threshold: %w", err)
	}
	if err := spec.Variables["wake_after_ns"].Set(uint64(drainEvery)); err != nil {
		return fmt.Errorf("set wakeup interval: %w", err)
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return fmt.Errorf("create maps: %w", err)
	}
	for _, p := range s.watched {
		if err := s.watch(s.objs.Watch, p); err != nil {
			return err
		}
	}
	for _, p := range s.read {
		if err := s.watch(s.objs.Readwatch, p); err != nil {
			return err
		}
		// The path's first 8 bytes, as the program reads them into a u64.
		if err := s.objs.Readfirst.Put(binary.LittleEndian.Uint64([]byte(p[:8])), uint8(1)); err != nil {
			return fmt.Errorf("read watch %s: %w", p, err)
		}
	}
	repl := map[string]*ebpf.Map{
		"events": s.objs.Events, "lost": s.objs.Lost, "pending": s.objs.Pending,
		"scratch": s.objs.Scratch, "settings": s.objs.Settings, "watch": s.objs.Watch,
		"readwatch": s.objs.Readwatch, "readfirst": s.objs.Readfirst, "last_wakeup": s.objs.LastWakeup,
	}
	for name := range spec.Maps {
		// Each program is loaded on its own (attach): a map left out here
		// would be a copy of its own in every program.
		if !strings.HasPrefix(name, ".") && repl[name] == nil {
			return fmt.Errorf("sensor: map %s is not shared between the programs", name)
		}
	}
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	slices.Sort(names)
	active := 0
	for _, name := range names {
		st := s.attach(spec, name, repl)
		if st.Active {
			active++
		} else {
			s.logger.Warn("sensor: probe not active", "probe", st.Name, "error", st.Error)
		}
		s.probes = append(s.probes, st)
	}
	if active == 0 {
		return fmt.Errorf("no probe attached (first error: %s)", s.probes[0].Error)
	}
	if s.ring, err = ringwait.New(s.objs.Events); err != nil {
		return err
	}
	return nil
}

// attach loads one program on its own, so that a program the verifier or
// the kernel refuses costs only its own probe. A program with the cwd walk
// that the kernel refuses (verifiers differ between kernels) is loaded again
// without it.
func (s *Sensor) attach(spec *ebpf.CollectionSpec, name string, repl map[string]*ebpf.Map) ProbeStatus {
	section := spec.Programs[name].SectionName
	kind, target, _ := strings.Cut(section, "/")
	st := ProbeStatus{Name: target, Kind: kind}
	walks := walksCwd(spec, name)
	var prog *ebpf.Program
	var err error
	degraded := ""
	if walks && s.cfg.refuseCwdWalk {
		err = errors.New("refused on request (test)")
	} else {
		prog, err = loadProgram(spec, name, repl)
	}
	if err != nil && walks {
		if s.noCwdSpec == nil {
			fb := spec.Copy()
			if err := fb.Variables["cwd_walk"].Set(uint32(0)); err != nil {
				st.Error = "load: " + err.Error()
				return st
			}
			s.noCwdSpec = fb
		}
		var err2 error
		if prog, err2 = loadProgram(s.noCwdSpec, name, repl); err2 == nil {
			degraded = "cwd read from /proc when the record is read (racy): the kernel refused the program with the cwd walk: " + err.Error()
			err = nil
		}
	}
	if err != nil {
		st.Error = "load: " + err.Error()
		return st
	}
	s.progs = append(s.progs, prog)
	var l link.Link
	switch kind {
	case "tracepoint":
		group, tp, _ := strings.Cut(target, "/")
		l, err = link.Tracepoint(group, tp, prog, nil)
	case "raw_tp":
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: prog})
	default:
		err = fmt.Errorf("unknown section %q", section)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.Error = "not on this kernel: " + err.Error()
	case err != nil:
		st.Error = "attach: " + err.Error()
	default:
		s.links = append(s.links, l)
		st.Active = true
		if st.Degraded = degraded; degraded != "" {
			s.logger.Warn("sensor: probe runs without the in-kernel cwd walk", "probe", target, "reason", degraded)
		}
	}
	return st
}

func loadProgram(spec *ebpf.CollectionSpec, name string, repl map[string]*ebpf.Map) (*ebpf.Program, error) {
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "P", Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`),
	}})
	v := reflect.New(typ)
	if err := spec.LoadAndAssign(v.Interface(), &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return nil, err
	}
	return v.Elem().Field(0).Interface().(*ebpf.Program), nil
}

// walksCwd says whether program name reads cwd_walk, the switch of the
// kernel's cwd walk: its instructions load the variable's .rodata offset.
func walksCwd(spec *ebpf.CollectionSpec, name string) bool {
	v, ok := spec.Variables["cwd_walk"]
	if !ok {
		return false
	}
	for _, ins := range spec.Programs[name].Instructions {
		if ins.Reference() == v.SectionName && uint32(ins.Constant>>32) == v.Offset { //nolint:gosec // G115: the offset half of a map value load
			return true
		}
	}
	return false
}

// watch puts prefix into an LPM map of watched paths (watch, readwatch).
func (s *Sensor) watch(m *ebpf.Map, prefix string) error {
	var k sensorWatchKey
	add := func(p string) error {
		k = sensorWatchKey{Plen: uint32(8 * len(p))} //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		for i := range len(p) {
			k.Path[i] = int8(p[i]) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		}
		if err := m.Put(&k, uint8(1)); err != nil {
			return fmt.Errorf("watch %s: %w", prefix, err)
		}
		return nil
	}
	if prefix == "/" {
		return add("/")
	}
	if err := add(prefix + "/"); err != nil {
		return err
	}
	return add(prefix + "\x00")
}

// isWatched applies the kernel's prefix rule to a path resolved in user space.
func (s *Sensor) isWatched(p string) bool {
	for _, w := range s.watched {
		if w == "/" || p == w || (strings.HasPrefix(p, w) && p[len(w)] == '/') {
			return true
		}
	}
	return false
}

// onlyProcess narrows every probe to one process (tests).
func (s *Sensor) onlyProcess(tgid uint32) error {
	return s.objs.Settings.Put(uint32(0), sensorSettingsVal{OnlyTgid: tgid})
}

// Run reads events and calls out for each, in ring buffer order, until ctx
// ends. out runs on Run's goroutine; while it blocks, the kernel keeps
// writing until the ring buffer is full and then counts what it drops.
func (s *Sensor) Run(ctx context.Context, out func(kind string, at time.Time, rt event.Runtime)) error {
	if s.pc != nil {
		return s.pc.run(ctx, s, out)
	}
	var rec ringbuf.Record
	var r record
	for {
		read := 0
		for {
			ok, err := s.ring.Read(&rec)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
					return nil
				}
				return fmt.Errorf("sensor: read ring buffer: %w", err)
			}
			if !ok {
				break // empty
			}
			read++
			if err := s.dec.decode(rec.RawSample, &r); err != nil {
				s.userLoss.Add(1)
				s.logger.Debug("sensor: undecodable record", "error", err, "bytes", len(rec.RawSample))
				continue
			}
			if !s.enrich(&r) {
				continue
			}
			out(r.kind, r.at, r.rt)
		}
		if ctx.Err() != nil {
			return nil
		}
		// Records came: wait at most drainEvery for those written without
		// a wakeup. None came for a whole drainEvery: the next record
		// wakes the reader (see drainEvery).
		var deadline time.Time
		if read > 0 {
			deadline = time.Now().Add(drainEvery)
		}
		if err := s.ring.Wait(ctx, deadline); err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("sensor: %w", err)
		}
	}
}

// enrich resolves what the kernel left to user space and applies the
// watched-path filter to paths resolved here. false: drop the record.
func (s *Sensor) enrich(r *record) bool {
	pid := r.rt.Process.PID
	switch r.kind {
	case event.KindProcessExec:
		if r.flags&fCwd == 0 {
			// The kernel's walk was cut or could not tell, or is off on
			// this kernel: the process may still be there.
			r.rt.Process.Cwd = s.readlink(pid, "cwd")
			s.cwdFromProc.Add(1)
		}
		// An exec through /proc/self/exe (busybox applets, runc) or a file
		// descriptor (fexecve) names no file: say which it is. A memfd
		// reads "/memfd:NAME (deleted)", which is what it is.
		if exe := r.rt.Process.Exe; strings.HasPrefix(exe, "/proc/") || strings.HasPrefix(exe, "/dev/fd/") {
			if real := s.readlink(pid, "exe"); real != "" {
				r.rt.Process.Exe = real
			}
		}
		if !filepath.IsAbs(r.rt.Process.Exe) && r.rt.Process.Cwd != "" {
			r.rt.Process.Exe = filepath.Join(r.rt.Process.Cwd, r.rt.Process.Exe)
		}
	case event.KindFileCreate, event.KindFileWrite, event.KindFileUnlink, event.KindFileRename, event.KindFileChmod, event.KindFileRead:
		f := r.file
		check := false
		if r.flags&fByFD != 0 {
			f.Path = s.readlink(pid, "fd/"+strconv.Itoa(int(r.dfd)))
			check = true
		} else if r.flags&fPathRel != 0 {
			f.Path = s.join(r, r.dfd, f.Path)
			check = true
		}
		if r.flags&fPath2Rel != 0 {
			f.NewPath = s.join(r, r.dfd2, f.NewPath)
			check = true
		}
		if check {
			if f.Path == "" || (r.kind == event.KindFileRename && f.NewPath == "") {
				s.userLoss.Add(1) // gone before we could tell where it wrote
				return false
			}
			if !s.isWatched(f.Path) && (r.kind != event.KindFileRename || !s.isWatched(f.NewPath)) {
				return false
			}
		}
		r.rt.File = &f
	case event.KindNetConnect, event.KindNetAccept, event.KindNetListen:
		n := r.net
		r.rt.Net = &n
	}
	return true
}

// join makes rel, relative to dfd, absolute: with the cwd the kernel read
// at the syscall when it could, or else from /proc.
func (s *Sensor) join(r *record, dfd int32, rel string) string {
	base := "cwd"
	if dfd != atFDCWD {
		base = "fd/" + strconv.Itoa(int(dfd))
	} else if r.flags&fCwd != 0 {
		return filepath.Join(r.cwd, rel)
	} else {
		s.cwdFromProc.Add(1)
	}
	dir := s.readlink(r.rt.Process.PID, base)
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, rel)
}

func (s *Sensor) readlink(pid uint32, rel string) string {
	p, err := os.Readlink(s.cfg.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/" + rel)
	if err != nil {
		return ""
	}
	return p
}

// Probes reports every probe and whether it is active.
func (s *Sensor) Probes() []ProbeStatus {
	return slices.Clone(s.probes)
}

// Loss returns the events lost so far: in the kernel (ring buffer full, or a
// path that could not be read) and in user space (undecodable records,
// relative paths that could no longer be resolved).
func (s *Sensor) Loss() (kernel, user uint64) {
	for _, n := range s.kernelLoss() {
		kernel += n
	}
	return kernel, s.userLoss.Load()
}

// KernelLossByKind returns the kernel's loss so far by record kind (exec,
// file, connect, …): ring buffer full plus unreadable user memory.
func (s *Sensor) KernelLossByKind() map[string]uint64 {
	slots := s.kernelLoss()
	out := make(map[string]uint64, kMax)
	for k := kExec; k < kMax; k++ {
		out[kindNames[k]] = slots[k] + slots[kMax+k]
	}
	return out
}

// kernelLoss returns the kernel's loss counters summed over CPUs, by slot:
// [kind] ring buffer full, [kMax+kind] unreadable user memory.
func (s *Sensor) kernelLoss() [2 * kMax]uint64 {
	var out [2 * kMax]uint64
	if s.objs.Lost == nil {
		return out
	}
	var perCPU []uint64
	for i := range out {
		if err := s.objs.Lost.Lookup(uint32(i), &perCPU); err != nil {
			continue
		}
		for _, n := range perCPU {
			out[i] += n
		}
	}
	return out
}

// Close detaches every probe and frees the maps.
func (s *Sensor) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.ring != nil {
			errs = append(errs, s.ring.Close())
		}
		errs = append(errs, s.closeBPF())
		if s.pc != nil {
			errs = append(errs, s.pc.close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Sensor) closeBPF() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	for _, p := range s.progs {
		errs = append(errs, p.Close())
	}
	s.progs = nil
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}
