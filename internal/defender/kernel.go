package defender

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/collection"
	"bulwark/internal/enforcer"
	"bulwark/internal/event"
	"bulwark/internal/runtime"
	rp "bulwark/internal/runtimepolicy"
)

// Enforce modes (Config.Enforce).
const (
	// EnforceAuto denies what runtime rules prevent with the best kernel
	// mechanism this host has, and stops containers for block rules.
	EnforceAuto = "auto"
	// EnforceOff only audits: nothing is denied and no container is
	// stopped.
	EnforceOff = "off"
)

// kernelEnforcer is the Defender's Enforcer: internal/enforcer, with each
// container located (its own cgroup and a process in it) through the
// container runtime's records.
type kernelEnforcer struct {
	enf        *enforcer.Enforcer
	rcfg       runtime.Config
	res        *runtime.Resolver // containers the runc state roots do not list
	cgroupRoot string
	procRoot   string
	logger     *slog.Logger

	mu      sync.Mutex
	running map[string]runtime.Info // by container ID, as last listed
	labels  map[string]rp.Deny      // enforcer rule names → rule and detection
}

// Bounds of one container's kernel rules: port ranges are expanded into
// ports, and the enforcer's maps are shared by every container.
const (
	maxPorts  = 4096 // per target, for connect and for the listen allow list
	maxGlob   = 1024 // files a glob may name
	maxLabels = 65536
)

// binDirs are where an exec rule that names a program (not a path) denies
// it: the directories of a container's PATH.
var binDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}

// multiCall are binaries that are many programs: denying one of their
// applets would deny all of them, the shell included.
var multiCall = map[string]bool{"busybox": true, "toybox": true}

func newKernelEnforcer(cfg Config, logger *slog.Logger) (*kernelEnforcer, error) {
	rcfg := runtime.DefaultConfig()
	rcfg.ProcRoot = cfg.ProcRoot
	if cfg.RuncRoots != nil {
		rcfg.RuncRoots = cfg.RuncRoots
	}
	root, err := runtime.FindCgroup2(cfg.ProcRoot)
	if err != nil {
		return nil, err
	}
	rcfg.CgroupRoot = root
	res, err := runtime.New(rcfg, logger)
	if err != nil {
		return nil, err
	}
	enf, err := enforcer.New(enforcer.Config{Cgroup2Root: root, ProcRoot: cfg.ProcRoot}, logger)
	if err != nil {
		return nil, err
	}
	return &kernelEnforcer{
		enf: enf, rcfg: rcfg, res: res, cgroupRoot: root, procRoot: cfg.ProcRoot, logger: logger,
		running: map[string]runtime.Info{}, labels: map[string]rp.Deny{},
	}, nil
}

// kindOf maps the enforcer's kinds onto runtime policy's.
var kindOf = map[enforcer.Kind]string{
	enforcer.KindExec: rp.EnforceExec, enforcer.KindFileWrite: rp.EnforceWrite,
	enforcer.KindConnect: rp.EnforceConnect, enforcer.KindBind: rp.EnforceListen,
}

// Mechanisms implements Enforcer.
func (k *kernelEnforcer) Mechanisms() []bulwarkv1.Mechanism {
	m := k.enf.Mechanisms()
	out := make([]bulwarkv1.Mechanism, 0, len(enforcer.Kinds))
	for _, kind := range enforcer.Kinds {
		c := m.For(kind)
		out = append(out, bulwarkv1.Mechanism{Kind: kindOf[kind], Mechanism: string(c.Mechanism), Reason: c.Reason})
	}
	return out
}

// mechanismFor is the mechanism of one runtime policy kind.
func (k *kernelEnforcer) mechanismFor(kind string) enforcer.Mechanism {
	for ek, rk := range kindOf {
		if rk == kind {
			return k.enf.Mechanisms().For(ek).Mechanism
		}
	}
	return enforcer.MechanismNone
}

// label names a rule and detection for the enforcer, which reports the
// name with each denial; labelDeny reads it back.
func (k *kernelEnforcer) label(d rp.Deny) string {
	s := d.Detection + ":" + d.Rule
	if len(s) > 256 { // the enforcer's bound on a rule name
		sum := sha256.Sum256([]byte(s))
		s = s[:256-17] + "#" + hex.EncodeToString(sum[:8])
	}
	k.mu.Lock()
	if len(k.labels) >= maxLabels {
		// Only an unbounded stream of distinct rules gets here; a denial
		// still in flight then reads its label back from the text.
		clear(k.labels)
	}
	k.labels[s] = d
	k.mu.Unlock()
	return s
}

func (k *kernelEnforcer) labelDeny(s string) rp.Deny {
	k.mu.Lock()
	d, ok := k.labels[s]
	k.mu.Unlock()
	if ok {
		return d
	}
	det, rule, _ := strings.Cut(s, ":")
	return rp.Deny{Rule: rule, Detection: det}
}

// Apply implements Enforcer: each container is located (its own cgroup, a
// process of it for its root and mounts), its rules are mapped onto the
// enforcer's, and the enforcer applies them all. The host is not enforced:
// the enforcer denies the actions of container cgroups only.
func (k *kernelEnforcer) Apply(ctx context.Context, targets []EnforceTarget) []EnforceStatus {
	sts := make([]EnforceStatus, len(targets))
	var ets []enforcer.Target
	var index []int      // ets[j] is targets[index[j]]
	var kinds [][]string // the kinds each of ets has rules of
	relisted := false
	for i, t := range targets {
		st := &sts[i]
		st.ContainerID = t.ContainerID
		if t.ContainerID == "" {
			for _, kind := range wantedKinds(t.Enforcement) {
				st.Notes = append(st.Notes, kind+": the kernel enforcer denies the actions of containers, not of the host; the host's are audited")
			}
			continue
		}
		if !relisted && !k.listed(t.ContainerID) {
			// Started since the last list, or again under the same ID.
			k.list()
			relisted = true
		}
		cgPath, pid, gone, err := k.locate(t)
		switch {
		case gone:
			st.Gone = true
			continue
		case err != nil:
			st.Retry = true
			for _, kind := range wantedKinds(t.Enforcement) {
				st.Notes = append(st.Notes, kind+": not enforced yet: "+err.Error())
			}
			continue
		}
		root, err := openRoot(k.procRoot, pid)
		if err != nil {
			k.logger.Warn("enforcement: the container's root is not readable; paths are not resolved", slog.String("container", t.ContainerID), slog.Any("err", err))
		}
		et, ks, notes := mapTarget(t, cgPath, pid, root, k.label)
		root.close()
		st.Notes = notes
		ets, index, kinds = append(ets, et), append(index, i), append(kinds, ks)
	}

	failed := map[int]error{}
	err := k.enf.Apply(ctx, ets)
	for _, e := range flatten(err) {
		if te, ok := errors.AsType[*enforcer.TargetError](e); ok {
			failed[te.Index] = te.Err
			continue
		}
		if errors.Is(e, enforcer.ErrClosed) || errors.Is(e, context.Canceled) || errors.Is(e, context.DeadlineExceeded) {
			for j := range ets {
				failed[j] = e // Apply stopped: nothing is known to be in force
			}
			continue
		}
		// The rest is about removing the targets no longer wanted.
		k.logger.Warn("enforcement: remove what no target needs", slog.Any("err", e))
	}
	for j, i := range index {
		st := &sts[i]
		if ferr := failed[j]; ferr != nil {
			if _, err := os.Stat(k.cgroupRoot + ets[j].CgroupPath); errors.Is(err, os.ErrNotExist) {
				st.Gone, st.Notes = true, nil
				continue
			}
			st.Retry = true
			for _, kind := range kinds[j] {
				st.Notes = append(st.Notes, kind+": not enforced: "+ferr.Error())
			}
			continue
		}
		for _, kind := range kinds[j] {
			if k.mechanismFor(kind) != enforcer.MechanismNone {
				st.Kinds = append(st.Kinds, kind)
			}
		}
	}
	return sts
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // a join's members, not a chain
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// wantedKinds are the kinds of action an enforcement asks the kernel to
// deny.
func wantedKinds(e rp.Enforcement) []string {
	var out []string
	if len(e.Exec) > 0 || e.Drift != nil {
		out = append(out, rp.EnforceExec)
	}
	if len(e.Write) > 0 {
		out = append(out, rp.EnforceWrite)
	}
	if len(e.ConnectPorts)+len(e.ConnectCIDRs) > 0 {
		out = append(out, rp.EnforceConnect)
	}
	if e.ListenAllowed != nil || len(e.ListenDenied) > 0 {
		out = append(out, rp.EnforceListen)
	}
	return out
}

// listed says whether the last list of the runtime's containers has id,
// with its init still in its cgroup.
func (k *kernelEnforcer) listed(id string) bool {
	k.mu.Lock()
	info, ok := k.running[id]
	k.mu.Unlock()
	if !ok || info.InitPID <= 0 {
		return false
	}
	p, err := cgroupOf(k.procRoot, info.InitPID)
	return err == nil && p == info.CgroupPath
}

// list reads the containers the runtime runs now; false when it could not.
func (k *kernelEnforcer) list() ([]RunningContainer, bool) {
	infos, err := runtime.Running(k.rcfg, k.logger)
	if err != nil {
		k.logger.Warn("list containers", slog.Any("err", err))
		return nil, false
	}
	running := make(map[string]runtime.Info, len(infos))
	out := make([]RunningContainer, 0, len(infos))
	for _, info := range infos {
		running[info.Container.ID] = info
		rc := RunningContainer{Container: info.Container}
		if info.CgroupPath != "" && info.CgroupPath != "/" {
			rc.CgroupID, _ = runtime.CgroupIDOfPath(k.cgroupRoot + info.CgroupPath)
		}
		out = append(out, rc)
	}
	k.mu.Lock()
	k.running = running
	k.mu.Unlock()
	return out, true
}

// locate finds a container's own cgroup (relative to the cgroup2 root) and
// a process in it that has entered the container's root: its init, else the
// oldest such. (While runc starts a container, its first processes in the
// cgroup are still in the host's root and mounts, which the enforcer must
// never watch.) gone: the cgroup no longer exists.
func (k *kernelEnforcer) locate(t EnforceTarget) (cgPath string, pid int, gone bool, err error) {
	k.mu.Lock()
	info, ok := k.running[t.ContainerID]
	k.mu.Unlock()
	if (!ok || info.CgroupPath == "" || info.CgroupPath == "/") && t.CgroupID != 0 {
		info, ok = k.res.Lookup(t.CgroupID)
		if !ok {
			return "", 0, true, nil // neither listed nor in the cgroup tree
		}
	}
	if info.CgroupPath == "" || info.CgroupPath == "/" {
		return "", 0, false, errors.New("the container's cgroup is not known yet")
	}
	dir := k.cgroupRoot + info.CgroupPath
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", 0, true, nil
	}
	if info.InitPID > 0 && k.inContainer(info.InitPID, info.CgroupPath) {
		return info.CgroupPath, info.InitPID, false, nil
	}
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		return "", 0, false, fmt.Errorf("processes of cgroup %s: %w", info.CgroupPath, err)
	}
	type proc struct {
		pid   int
		start uint64
	}
	var procs []proc
	for i, f := range strings.Fields(string(b)) {
		if i == maxProcs {
			break
		}
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			if start, ok := startTicks(k.procRoot, n); ok {
				procs = append(procs, proc{n, start})
			}
		}
	}
	slices.SortFunc(procs, func(a, b proc) int { return cmp.Compare(a.start, b.start) })
	for _, p := range procs {
		if k.inContainer(p.pid, info.CgroupPath) {
			return info.CgroupPath, p.pid, false, nil
		}
	}
	return "", 0, false, fmt.Errorf("no process of cgroup %s is in the container's root yet", info.CgroupPath)
}

// inContainer says whether pid is in cgroup cgPath with a root directory
// of its own, not the host's.
func (k *kernelEnforcer) inContainer(pid int, cgPath string) bool {
	if p, err := cgroupOf(k.procRoot, pid); err != nil || p != cgPath {
		return false
	}
	var root, host unix.Stat_t
	if unix.Stat(k.procRoot+"/"+strconv.Itoa(pid)+"/root/", &root) != nil {
		return false
	}
	if unix.Stat(k.procRoot+"/1/root/", &host) != nil {
		return true // the host's root is not known: nothing to tell it from
	}
	return root.Dev != host.Dev || root.Ino != host.Ino
}

// maxProcs bounds the processes of a cgroup looked at for its oldest.
const maxProcs = 256

// startTicks is when a process started, in clock ticks since boot
// (/proc/<pid>/stat field 22).
func startTicks(procRoot string, pid int) (uint64, bool) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold anything.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 { // fields 3…22
		return 0, false
	}
	n, err := strconv.ParseUint(fields[19], 10, 64)
	return n, err == nil
}

// cgroupOf is a process's cgroup2 path.
func cgroupOf(procRoot string, pid int) (string, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup2 line")
}

// watch keeps the defense's list of containers current. A cgroup created or
// removed (inotify on the cgroup tree; where that fails, cgroup.stat's counts
// looked at every poll) starts a while in which the runc state roots are
// looked at every poll (a new container's runc state is written once its
// init is set up); the containers are listed again whenever their state
// files changed, and every relistEvery anyway. Nothing wakes while nothing
// changes.
func (k *kernelEnforcer) watch(ctx context.Context, d *defense) {
	const (
		poll        = 50 * time.Millisecond
		settle      = 3 * time.Second
		relistEvery = 30 * time.Second
	)
	cgroups, err := watchCgroups(ctx, k.cgroupRoot, k.logger)
	if err != nil {
		k.logger.Warn("defense: cannot watch the cgroup tree; looking at its counts every 50ms instead", "error", err)
	}
	// The first settle starts now: a container made since Run listed them,
	// before the watch began, is listed at once or when its state is written.
	t := time.NewTicker(poll)
	defer t.Stop()
	relist := time.NewTicker(relistEvery)
	defer relist.Stop()
	cgStamp, _ := cgroupStamp(k.cgroupRoot)
	stStamp := stateStamp(k.rcfg.RuncRoots)
	changed, list := time.Now(), true
	for {
		if list {
			if cs, ok := k.list(); ok {
				d.containersRunning(cs)
			}
			relist.Reset(relistEvery)
		}
		list = false
		select {
		case <-ctx.Done():
			return
		case _, ok := <-cgroups:
			if !ok { // the watch failed (its warning says why): poll from now on
				cgroups, list = nil, true
				cgStamp, _ = cgroupStamp(k.cgroupRoot)
			}
			changed = time.Now()
			t.Reset(poll)
		case <-relist.C:
			list = true
		case now := <-t.C:
			if cgroups == nil {
				if s, ok := cgroupStamp(k.cgroupRoot); ok && s != cgStamp {
					cgStamp, changed = s, now
				}
			}
			if now.Sub(changed) < settle {
				if s := stateStamp(k.rcfg.RuncRoots); s != stStamp {
					stStamp, list = s, true
				}
			} else if cgroups != nil {
				t.Stop()
			}
		}
	}
}

// stateStamp is what changes in the runc state roots when a container is
// created, changes state or is deleted: each state directory and its
// state.json's modification time.
func stateStamp(patterns []string) string {
	var b strings.Builder
	for _, p := range patterns {
		dirs := []string{p}
		if strings.ContainsAny(p, "*?[") {
			dirs, _ = filepath.Glob(p)
		}
		for _, dir := range dirs {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				var mtime int64
				if fi, err := os.Stat(filepath.Join(dir, e.Name(), "state.json")); err == nil {
					mtime = fi.ModTime().UnixNano()
				}
				fmt.Fprintf(&b, "%s/%s %d\n", dir, e.Name(), mtime)
			}
		}
	}
	return b.String()
}

// cgroupStamp is what changes in the root's cgroup.stat when a cgroup is
// created or removed anywhere below it.
func cgroupStamp(root string) (string, bool) {
	b, err := os.ReadFile(root + "/cgroup.stat")
	if err != nil {
		return "", false
	}
	var s strings.Builder
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "nr_descendants ") || strings.HasPrefix(line, "nr_dying_descendants ") {
			s.WriteString(line)
		}
	}
	return s.String(), s.Len() > 0
}

// forward hands every denial the enforcer reports to the Defender until
// ctx ends or the enforcer closes.
func (k *kernelEnforcer) forward(ctx context.Context, to func(Prevented)) {
	for {
		select {
		case <-ctx.Done():
			return
		case p, ok := <-k.enf.Events():
			if !ok {
				return
			}
			to(k.prevented(p))
		}
	}
}

// prevented maps the enforcer's audit of a denial onto the Defender's.
func (k *kernelEnforcer) prevented(p enforcer.Prevented) Prevented {
	d := k.labelDeny(p.Rule)
	out := Prevented{
		Time: p.Time, Kind: kindOf[p.Kind], ContainerID: p.ContainerID, CgroupID: p.CgroupID, PID: p.PID,
		Path: p.Path, Rule: d.Rule, Detection: d.Detection, Mechanism: string(p.Mechanism),
	}
	if p.Addr.IsValid() {
		out.Addr, out.Port = p.Addr.Addr().Unmap().String(), p.Addr.Port()
	}
	// The acting process: for a denied exec, the one that tried it.
	if exe, err := os.Readlink(k.procRoot + "/" + strconv.FormatUint(uint64(p.PID), 10) + "/exe"); err == nil && p.PID != 0 {
		out.Exe = exe
	} else {
		out.Exe = p.Comm
	}
	return out
}

// Close removes every piece of kernel state the enforcer installed.
func (k *kernelEnforcer) Close() error { return k.enf.Close() }

// runtimeStopper stops containers through their runtime (runc, or
// containerd's ctr for containerd's and docker's), for block rules.
type runtimeStopper struct {
	rcfg   runtime.Config
	logger *slog.Logger
}

// Stop implements Stopper.
func (s runtimeStopper) Stop(ctx context.Context, c event.Container) error {
	infos, err := runtime.Running(s.rcfg, s.logger)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(infos, func(in runtime.Info) bool { return in.Container.ID == c.ID })
	if i < 0 {
		return fmt.Errorf("container %s is not running (not in the runc state roots)", c.ID)
	}
	root := path.Dir(infos[i].StateDir)
	ref := enforcer.ContainerRef{ID: c.ID}
	switch infos[i].Container.Runtime {
	case runtime.RuntimeContainerd:
		ref.Runtime, ref.Namespace = enforcer.RuntimeContainerd, path.Base(root)
	case runtime.RuntimeDocker:
		ref.Runtime = enforcer.RuntimeDocker
	default:
		ref.Runtime, ref.Root = enforcer.RuntimeRunc, root
	}
	return enforcer.StopContainer(ctx, ref)
}

// containerRoot reads a container's files through its root directory,
// resolving paths as the container would: absolute symbolic links stay
// inside it.
type containerRoot struct {
	f     *os.File
	multi map[fileKey]string // multi-call binaries of the container, by identity
}

// fileKey identifies a file.
type fileKey struct{ dev, ino uint64 }

// openRoot opens the root of pid's mount namespace; nil (and why) when it
// cannot be read.
func openRoot(procRoot string, pid int) (*containerRoot, error) {
	f, err := os.OpenFile(procRoot+"/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return newContainerRoot(f), nil
}

func newContainerRoot(f *os.File) *containerRoot {
	r := &containerRoot{f: f, multi: map[fileKey]string{}}
	for _, dir := range []string{"/bin", "/usr/bin", "/sbin", "/usr/sbin"} {
		for name := range multiCall {
			if id, ok := r.stat(dir + "/" + name); ok {
				r.multi[id] = name
			}
		}
	}
	return r
}

func (r *containerRoot) close() {
	if r != nil {
		_ = r.f.Close()
	}
}

// open opens p inside the root.
func (r *containerRoot) open(p string, flags uint64) (int, error) {
	return unix.Openat2(int(r.f.Fd()), p, &unix.OpenHow{ //nolint:gosec // G115: a file descriptor
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// stat identifies the regular file p names, symbolic links followed.
func (r *containerRoot) stat(p string) (fileKey, bool) {
	if r == nil {
		return fileKey{}, false
	}
	fd, err := r.open(p, unix.O_PATH)
	if err != nil {
		return fileKey{}, false
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_TYPE, &stx); err != nil || stx.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileKey{}, false
	}
	return fileKey{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino}, true
}

// names lists a directory, at most maxGlob entries.
func (r *containerRoot) names(dir string) []string {
	if r == nil {
		return nil
	}
	fd, err := r.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), dir) //nolint:gosec // G115: a file descriptor
	defer f.Close()
	names, _ := f.Readdirnames(maxGlob)
	slices.Sort(names)
	return names
}

// multiCallOf says which multi-call binary p is, "" when none.
func (r *containerRoot) multiCallOf(p string) string {
	id, ok := r.stat(p)
	if !ok {
		return ""
	}
	return r.multi[id]
}

// mapTarget maps the enforcement of one container onto the enforcer's
// target: rules are named by label (rule and detection), programs named
// without a path are denied in binDirs, globs are expanded over the files
// that exist in root (nil: not resolved), port ranges into ports. It
// returns the kinds the target has rules of, and notes ("<kind>: …") on
// what of the enforcement the kernel will not deny.
func mapTarget(t EnforceTarget, cgPath string, pid int, root *containerRoot, label func(rp.Deny) string) (enforcer.Target, []string, []string) {
	e := t.Enforcement
	et := enforcer.Target{ContainerID: t.ContainerID, CgroupPath: cgPath, PID: pid}
	var notes []string
	note := func(kind, format string, args ...any) {
		n := kind + ": " + fmt.Sprintf(format, args...)
		if !slices.Contains(notes, n) {
			notes = append(notes, n)
		}
	}

	// exec
	seen := map[string]bool{}
	denyExec := func(p string, d rp.Deny) {
		if seen[p] {
			return
		}
		seen[p] = true
		if err := checkPath(p); err != nil {
			note(rp.EnforceExec, "%s: %v", d.Rule, err)
			return
		}
		if m := root.multiCallOf(p); m != "" && !multiCall[path.Base(p)] {
			note(rp.EnforceExec, "%s is %s, a multi-call binary: the kernel denies files, not applets, and denying it would deny all of them; it is audited", p, m)
			return
		}
		et.DenyExec = append(et.DenyExec, enforcer.ExecRule{Rule: label(d), Path: p})
	}
	for _, x := range e.Exec {
		switch {
		case x.Path != "" && !hasGlob(x.Path):
			denyExec(path.Clean(x.Path), x.Deny)
		case x.Path != "":
			dir, base := path.Split(path.Clean(x.Path))
			if hasGlob(dir) || root == nil {
				note(rp.EnforceExec, "%q: the kernel denies files, and only a glob in the last path element is matched against the container's files; it is audited", x.Path)
				continue
			}
			for _, n := range root.names(dir) {
				if collection.Glob(base, n) {
					denyExec(path.Join(dir, n), x.Deny)
				}
			}
			note(rp.EnforceExec, "%q is a glob: the files it matched when the policy was applied are denied, later ones are audited", x.Path)
		case hasGlob(x.Name):
			for _, dir := range binDirs {
				for _, n := range root.names(dir) {
					if collection.Glob(x.Name, n) {
						denyExec(path.Join(dir, n), x.Deny)
					}
				}
			}
			note(rp.EnforceExec, "programs named %q are denied in %s when they were there as the policy was applied; others are audited", x.Name, strings.Join(binDirs, ", "))
		case x.Name != "":
			for _, dir := range binDirs {
				denyExec(path.Join(dir, x.Name), x.Deny)
			}
			note(rp.EnforceExec, "programs named %q are denied in %s; elsewhere they are audited", x.Name, strings.Join(binDirs, ", "))
		}
	}
	if e.Drift != nil {
		for _, p := range t.DriftPaths {
			denyExec(p, *e.Drift)
		}
	}

	// file-write
	for _, w := range e.Write {
		p := w.Prefix
		if p == "" {
			p = "/"
		}
		if err := checkPath(p); err != nil {
			note(rp.EnforceWrite, "%s: %v", w.Rule, err)
			continue
		}
		et.DenyWrite = append(et.DenyWrite, enforcer.WriteRule{Rule: label(w.Deny), Prefix: p})
	}

	// connect
	ports := 0
	for _, c := range e.ConnectPorts {
		lo, hi, ok := portBounds(c.Ports)
		switch {
		case !ok:
			note(rp.EnforceConnect, "port range %d-%d is not valid", c.Ports.Start, c.Ports.End)
			continue
		case ports+(hi-lo+1) > maxPorts:
			note(rp.EnforceConnect, "ports %d-%d: more than %d ports in one container; connects there are audited", lo, hi, maxPorts)
			continue
		}
		for port := lo; port <= hi; port++ {
			et.DenyConnect = append(et.DenyConnect, enforcer.ConnectRule{Rule: label(c.Deny), Port: uint16(port)}) //nolint:gosec // G115: 1..65535
			ports++
		}
	}
	for _, c := range e.ConnectCIDRs {
		if !c.Prefix.IsValid() {
			note(rp.EnforceConnect, "network %s is not valid", c.Prefix)
			continue
		}
		et.DenyConnect = append(et.DenyConnect, enforcer.ConnectRule{Rule: label(c.Deny), Prefix: c.Prefix.Masked()})
	}

	// listen: the enforcer allows a list of ports and denies binds to others.
	if e.ListenAllowed != nil {
		var allowed []uint16
		ok := true
		for _, r := range e.ListenAllowed {
			lo, hi, valid := portBounds(r)
			if !valid || len(allowed)+(hi-lo+1) > maxPorts {
				ok = false
				break
			}
			for port := lo; port <= hi; port++ {
				allowed = append(allowed, uint16(port)) //nolint:gosec // G115: 1..65535
			}
		}
		if ok {
			et.AllowListen = &enforcer.ListenRule{Rule: label(e.ListenRule), Ports: allowed}
		} else {
			note(rp.EnforceListen, "the allowed listening ports are more than %d or not valid; listening elsewhere is audited", maxPorts)
		}
	}
	if len(e.ListenDenied) > 0 {
		note(rp.EnforceListen, "denied listening ports are audited: the kernel enforcer denies binds outside an allowed list only")
	}

	var kinds []string
	if len(et.DenyExec) > 0 {
		kinds = append(kinds, rp.EnforceExec)
	}
	if len(et.DenyWrite) > 0 {
		kinds = append(kinds, rp.EnforceWrite)
	}
	if len(et.DenyConnect) > 0 {
		kinds = append(kinds, rp.EnforceConnect)
	}
	if et.AllowListen != nil {
		kinds = append(kinds, rp.EnforceListen)
	}
	return et, kinds, notes
}

// portBounds are a range's first and last port.
func portBounds(r rp.PortRange) (lo, hi int, ok bool) {
	lo, hi = r.Start, r.End
	if hi == 0 {
		hi = lo
	}
	return lo, hi, lo >= 1 && hi <= 65535 && lo <= hi
}

func hasGlob(s string) bool { return strings.ContainsAny(s, "*?") }

// checkPath is what the enforcer accepts as a path: absolute, clean, at
// most 247 bytes, no NUL.
func checkPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	case len(p) > 247:
		return fmt.Errorf("path %.32q… is longer than 247 bytes", p)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	}
	return nil
}
