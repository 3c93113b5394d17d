package enforcer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"bulwark/internal/ringwait"
)

// lsmListPath lists the kernel's active LSMs (securityfs).
const lsmListPath = "/sys/kernel/security/lsm"

// tracepoints the fanotify decisions need, by program: syscall entries record
// the thread's open flags, exits forget them. openat and execve exist on
// every architecture; the others are attached where the kernel has them.
var tracepoints = []struct {
	prog, name string
	required   bool
}{
	{"enter_openat", "sys_enter_openat", true},
	{"exit_openat", "sys_exit_openat", true},
	{"enter_execve", "sys_enter_execve", true},
	{"exit_execve", "sys_exit_execve", true},
	{"enter_openat2", "sys_enter_openat2", false},
	{"exit_openat2", "sys_exit_openat2", false},
	{"enter_open", "sys_enter_open", false},
	{"exit_open", "sys_exit_open", false},
	{"enter_creat", "sys_enter_creat", false},
	{"exit_creat", "sys_exit_creat", false},
	{"enter_open_by_handle_at", "sys_enter_open_by_handle_at", false},
	{"exit_open_by_handle_at", "sys_exit_open_by_handle_at", false},
	{"enter_execveat", "sys_enter_execveat", false},
	{"exit_execveat", "sys_exit_execveat", false},
}

// loadKernel creates the maps, probes each mechanism and loads (and, where
// they are global, attaches) the programs of the mechanisms chosen.
func loadKernel(cfg Config, logger *slog.Logger) (*kernel, Mechanisms, error) {
	var m Mechanisms
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, m, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	spec, err := loadEnforcer()
	if err != nil {
		return nil, m, fmt.Errorf("read BPF object: %w", err)
	}
	k := &kernel{spec: spec}
	if err := spec.LoadAndAssign(&k.maps, nil); err != nil {
		return nil, m, fmt.Errorf("create maps: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = k.close()
		}
	}()
	repl := k.maps.replacements()

	lsmWhy := probeLSM(spec, cfg)
	if lsmWhy == "" {
		scratch, err := ebpf.NewMap(spec.Maps["scratch"])
		if err != nil {
			lsmWhy = "create task storage: " + err.Error()
		} else {
			k.scratch = scratch
			repl["scratch"] = scratch
		}
	}
	lsm := func(prog, hook string) string {
		if lsmWhy != "" {
			return "bpf-lsm: " + lsmWhy
		}
		p, err := loadProgram(spec, prog, repl)
		if err != nil {
			return fmt.Sprintf("bpf-lsm: load lsm/%s: %v", hook, err)
		}
		k.progs = append(k.progs, p)
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			return fmt.Sprintf("bpf-lsm: attach lsm/%s: %v", hook, err)
		}
		k.links = append(k.links, l)
		return ""
	}

	fanWhy := probeFanotify()
	var tpWhy string
	tpDone := false
	needTracepoints := func() string {
		if !tpDone {
			tpDone = true
			tpWhy = k.attachTracepoints(spec, repl, logger)
		}
		return tpWhy
	}

	// exec: also executable mappings (ld.so run directly, libraries), where
	// the kernel has the hooks; fanotify cannot tell those from reads.
	if why := lsm("lsm_exec", "bprm_check_security"); why == "" {
		m.Exec = Choice{Mechanism: MechanismBPFLSM}
		for _, h := range [][2]string{{"lsm_mmap_exec", "mmap_file"}, {"lsm_mprotect_exec", "file_mprotect"}} {
			if why := lsm(h[0], h[1]); why != "" {
				logger.Warn("enforcer: executable mappings of denied files are not denied", "hook", h[1], "error", why)
			}
		}
	} else if fanWhy == "" {
		m.Exec = Choice{Mechanism: MechanismFanotify, Reason: why}
		if tp := needTracepoints(); tp != "" {
			// Without them every exec decision reads the process's cgroup
			// from /proc: slower, still correct.
			logger.Warn("enforcer: exec decisions without syscall tracepoints", "error", tp)
		}
	} else {
		m.Exec = Choice{Mechanism: MechanismNone, Reason: why + "; fanotify: " + fanWhy}
	}

	// file-write
	if why := lsm("lsm_file_open", "file_open"); why == "" {
		m.FileWrite = Choice{Mechanism: MechanismBPFLSM}
	} else if fanWhy != "" {
		m.FileWrite = Choice{Mechanism: MechanismNone, Reason: why + "; fanotify: " + fanWhy}
	} else if tp := needTracepoints(); tp != "" {
		m.FileWrite = Choice{Mechanism: MechanismNone, Reason: why + "; fanotify needs the open flags from syscall tracepoints: " + tp}
	} else {
		m.FileWrite = Choice{Mechanism: MechanismFanotify, Reason: why}
	}

	// connect and bind
	cg := func(names ...string) ([]cgProg, Choice) {
		if _, err := findCgroup2FromEnv(cfg); err != nil {
			return nil, Choice{Mechanism: MechanismNone, Reason: "cgroup-bpf: " + err.Error()}
		}
		var ps []cgProg
		for _, name := range names {
			p, err := loadProgram(spec, name, repl)
			if err != nil {
				return nil, Choice{Mechanism: MechanismNone, Reason: fmt.Sprintf("cgroup-bpf: load %s: %v", spec.Programs[name].SectionName, err)}
			}
			k.progs = append(k.progs, p)
			ps = append(ps, cgProg{p, spec.Programs[name].AttachType})
		}
		return ps, Choice{Mechanism: MechanismCgroupBPF}
	}
	if why := lsm("lsm_connect", "socket_connect"); why == "" {
		m.Connect = Choice{Mechanism: MechanismBPFLSM}
		if why := lsm("lsm_sendmsg", "socket_sendmsg"); why != "" {
			logger.Warn("enforcer: datagrams sent without connect are not checked", "error", why)
		}
	} else {
		var c Choice
		k.cgConnect, c = cg("cg_connect4", "cg_connect6", "cg_sendmsg4", "cg_sendmsg6")
		c.Reason = joinReasons(why, c.Reason)
		m.Connect = c
	}
	if why := lsm("lsm_bind", "socket_bind"); why == "" {
		m.Bind = Choice{Mechanism: MechanismBPFLSM}
	} else {
		var c Choice
		k.cgBind, c = cg("cg_bind4", "cg_bind6")
		c.Reason = joinReasons(why, c.Reason)
		m.Bind = c
	}

	if k.ring, err = ringwait.New(k.maps.Events); err != nil {
		return nil, m, err
	}
	ok = true
	return k, m, nil
}

func joinReasons(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// findCgroup2FromEnv says whether cgroup BPF can be attached at all: it
// needs a cgroup2 hierarchy.
func findCgroup2FromEnv(cfg Config) (string, error) {
	if cfg.Cgroup2Root != "" {
		return cfg.Cgroup2Root, nil
	}
	procRoot := cfg.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	return findCgroup2(procRoot)
}

// probeLSM returns "" when BPF LSM programs load, attach and run here, or
// why not.
func probeLSM(spec *ebpf.CollectionSpec, cfg Config) string {
	if cfg.DisableBPFLSM {
		return "disabled by configuration"
	}
	if b, err := os.ReadFile(lsmListPath); err == nil {
		active := strings.TrimSpace(string(b))
		if !slices.Contains(strings.Split(active, ","), "bpf") {
			return fmt.Sprintf("bpf is not among the kernel's active LSMs (%s): add it to lsm= on the kernel command line", active)
		}
	}
	var obj struct {
		Prog  *ebpf.Program `ebpf:"lsm_probe"`
		Probe *ebpf.Map     `ebpf:"probe"`
	}
	if err := spec.LoadAndAssign(&obj, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			// cilium/ebpf's hint about MEMLOCK does not apply: it was removed.
			return "load lsm/file_open: operation not permitted (this kernel refuses BPF trampoline programs)"
		}
		return "load lsm/file_open: " + err.Error()
	}
	defer obj.Prog.Close()
	defer obj.Probe.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: obj.Prog})
	if err != nil {
		return "attach lsm/file_open: " + err.Error()
	}
	defer l.Close()
	if err := obj.Probe.Put(uint32(0), uint64(os.Getpid())); err != nil { //nolint:gosec // G115: a pid is positive
		return "set up the LSM probe: " + err.Error()
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		return "open " + os.DevNull + ": " + err.Error()
	}
	_ = f.Close()
	var n uint64
	if err := obj.Probe.Lookup(uint32(1), &n); err != nil {
		return "read the LSM probe: " + err.Error()
	}
	if n == 0 {
		return "lsm/file_open attached but did not run: bpf is not among the kernel's active LSMs"
	}
	return ""
}

// probeFanotify returns "" when fanotify permission events for open and
// exec are available, or why not.
func probeFanotify() string {
	fd, err := unix.FanotifyInit(fanInitFlags, fanEventFlags)
	if err != nil {
		return "fanotify_init(FAN_CLASS_CONTENT): " + err.Error()
	}
	defer unix.Close(fd)
	// A private directory, so that no other process's open waits on this
	// group while it exists.
	dir, err := os.MkdirTemp("", "bulwark-fanotify-probe-")
	if err != nil {
		return "fanotify probe: " + err.Error()
	}
	defer os.Remove(dir)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, dir); err != nil {
		return "fanotify_mark(FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM): " + err.Error()
	}
	return ""
}

// attachTracepoints loads the syscall tracepoint programs and attaches them
// once, to learn that they attach: "" when the required ones did. They are
// then detached again until a fanotify group needs them (tracepointsOn):
// a host without exec or write rules for fanotify would otherwise pay two
// BPF programs on every open and exec of every process.
func (k *kernel) attachTracepoints(spec *ebpf.CollectionSpec, repl map[string]*ebpf.Map, logger *slog.Logger) string {
	var tps []tracepoint
	for _, tp := range tracepoints {
		p, err := loadProgram(spec, tp.prog, repl)
		if err == nil {
			k.progs = append(k.progs, p)
			var l link.Link
			if l, err = link.Tracepoint("syscalls", tp.name, p, nil); err == nil {
				k.tpLinks = append(k.tpLinks, l)
				tps = append(tps, tracepoint{tp.name, p})
				continue
			}
		}
		if tp.required {
			return fmt.Sprintf("tracepoint syscalls/%s: %v", tp.name, err)
		}
		logger.Debug("enforcer: optional tracepoint not attached", "tracepoint", tp.name, "error", err)
	}
	k.tps = tps
	if err := k.tracepointsOff(); err != nil {
		return "detach the syscall tracepoints: " + err.Error()
	}
	return ""
}

// tracepoint is a loaded syscall tracepoint program and where it attaches.
type tracepoint struct {
	name string
	prog *ebpf.Program
}

// tracepointsOn attaches the syscall tracepoints that attachTracepoints
// loaded, unless they are attached.
func (k *kernel) tracepointsOn() error {
	if len(k.tpLinks) > 0 || len(k.tps) == 0 {
		return nil
	}
	for _, tp := range k.tps {
		l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
		if err != nil {
			return errors.Join(fmt.Errorf("attach tracepoint syscalls/%s: %w", tp.name, err), k.tracepointsOff())
		}
		k.tpLinks = append(k.tpLinks, l)
	}
	return nil
}

// tracepointsOff detaches the syscall tracepoints and forgets what they
// recorded: a thread inside open*() as they went never had its exit seen,
// and its entry must not judge an open of its after they come back.
func (k *kernel) tracepointsOff() error {
	if len(k.tpLinks) == 0 {
		return nil
	}
	err := closeLinks(k.tpLinks)
	k.tpLinks = nil
	var tid uint32
	var tv enforcerTidVal
	var stale []uint32
	it := k.maps.Tids.Iterate()
	for it.Next(&tid, &tv) {
		stale = append(stale, tid)
	}
	err = errors.Join(err, it.Err())
	for _, tid := range stale {
		if derr := k.maps.Tids.Delete(tid); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
			err = errors.Join(err, derr)
		}
	}
	return err
}

// closeLinks detaches ls. Each detach waits for an RCU grace period: in
// parallel, they overlap.
func closeLinks(ls []link.Link) error {
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Go(func() { errs[i] = l.Close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// loadProgram loads one program of the object on its own, with the shared
// maps, so that one the kernel refuses costs only its own mechanism.
func loadProgram(spec *ebpf.CollectionSpec, name string, repl map[string]*ebpf.Map) (*ebpf.Program, error) {
	if _, ok := spec.Programs[name]; !ok {
		return nil, fmt.Errorf("no program %q in the object", name)
	}
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "P", Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`),
	}})
	v := reflect.New(typ)
	if err := spec.LoadAndAssign(v.Interface(), &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return nil, err
	}
	return v.Elem().Field(0).Interface().(*ebpf.Program), nil
}
