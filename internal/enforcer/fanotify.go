package enforcer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// FAN_REPORT_TID: the event names the thread, whose open flags the
	// tracepoints recorded.
	fanInitFlags  = unix.FAN_CLASS_CONTENT | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_REPORT_TID
	fanEventFlags = unix.O_RDONLY | unix.O_LARGEFILE | unix.O_CLOEXEC
	fanExecMask   = unix.FAN_OPEN_EXEC_PERM
	fanOpenMask   = unix.FAN_OPEN_PERM

	// maxIgnoreMarks bounds the files one group caches as allowed: each
	// mark holds kernel memory and counts against root's fanotify marks.
	maxIgnoreMarks = 16384

	fanMetaLen = 24 // struct fanotify_event_metadata
)

// pseudoFS are file systems that refuse fanotify permission events, or
// where they make no sense; a container's mounts of them are not watched.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "devpts": true, "mqueue": true,
	"securityfs": true, "debugfs": true, "tracefs": true, "bpf": true, "configfs": true,
	"pstore": true, "fusectl": true, "binfmt_misc": true, "efivarfs": true, "selinuxfs": true,
	"nsfs": true, "autofs": true, "rpc_pipefs": true,
}

// fanEvent is a permission event as read from the group.
type fanEvent struct {
	mask uint64
	fd   int32
	pid  int32 // the thread (FAN_REPORT_TID)
}

// parseEvents decodes what one read of a fanotify group returned. On an
// error it returns the events decoded before it, whose fds must still be
// answered and closed.
func parseEvents(b []byte) ([]fanEvent, error) {
	var out []fanEvent
	le := binary.LittleEndian
	for len(b) > 0 {
		if len(b) < fanMetaLen {
			return out, fmt.Errorf("fanotify: %d trailing bytes", len(b))
		}
		evLen := le.Uint32(b[0:])
		if v := b[4]; v != unix.FANOTIFY_METADATA_VERSION {
			return out, fmt.Errorf("fanotify: metadata version %d, want %d", v, unix.FANOTIFY_METADATA_VERSION)
		}
		if metaLen := le.Uint16(b[6:]); metaLen < fanMetaLen {
			return out, fmt.Errorf("fanotify: metadata length %d, want at least %d", metaLen, fanMetaLen)
		}
		if evLen < fanMetaLen || uint64(evLen) > uint64(len(b)) {
			return out, fmt.Errorf("fanotify: event length %d with %d bytes left", evLen, len(b))
		}
		out = append(out, fanEvent{
			mask: le.Uint64(b[8:]),
			fd:   int32(le.Uint32(b[16:])), //nolint:gosec // G115: the C int, bit for bit
			pid:  int32(le.Uint32(b[20:])), //nolint:gosec // G115: the C int, bit for bit
		})
		b = b[evLen:]
	}
	return out, nil
}

// fanGroup is one target's fanotify group: marks on every mount of the
// container, decisions by one reader goroutine, and the events it has read
// but not yet answered, which the watchdog answers when they wait too long.
type fanGroup struct {
	e    *Enforcer
	c    *compiled
	mask uint64
	f    *os.File

	ignores   atomic.Int64
	noIgnores atomic.Bool

	mu      sync.Mutex
	pending map[*pendingEvent]struct{}

	closeOnce sync.Once
	done      chan struct{}
}

type pendingEvent struct {
	ev       fanEvent
	read     time.Time
	deadline time.Time

	mu       sync.Mutex
	answered bool
	closed   bool
}

// newFanGroup creates a group watching every mount of the target's
// container and starts its reader.
func (e *Enforcer) newFanGroup(c *compiled, mask uint64) (*fanGroup, error) {
	fd, err := unix.FanotifyInit(fanInitFlags, fanEventFlags)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	g := &fanGroup{
		e: e, c: c, mask: mask, f: os.NewFile(uintptr(fd), "fanotify"),
		pending: map[*pendingEvent]struct{}{}, done: make(chan struct{}),
	}
	n, err := g.markMounts(c.t.PID)
	if err != nil {
		_ = g.f.Close()
		return nil, err
	}
	e.logger.Debug("enforcer: fanotify group", "container", c.t.ContainerID, "pid", c.t.PID, "mounts", n)
	e.groups.Store(g, struct{}{})
	e.groupsChanged(1)
	e.wg.Go(g.run)
	return g, nil
}

// markMounts marks each mount of pid's mount namespace, reached through
// /proc/<pid>/root with the container's own view of symbolic links. The
// root mount must be marked; other mounts that refuse are logged.
func (g *fanGroup) markMounts(pid int) (int, error) {
	proc := g.e.cfg.ProcRoot + "/" + strconv.Itoa(pid)
	b, err := os.ReadFile(proc + "/mountinfo")
	if err != nil {
		return 0, fmt.Errorf("mounts of pid %d: %w", pid, err)
	}
	ms, err := parseMountinfo(b)
	if err != nil {
		return 0, fmt.Errorf("mounts of pid %d: %w", pid, err)
	}
	root, err := os.OpenFile(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("root of pid %d: %w", pid, err)
	}
	defer root.Close()
	n := 0
	for _, m := range ms {
		if pseudoFS[m.fstype] {
			continue
		}
		err := g.markMount(root, m.point)
		switch {
		case err == nil:
			n++
		case m.point == "/":
			return 0, fmt.Errorf("fanotify mark of the root mount of pid %d: %w", pid, err)
		default:
			g.e.logger.Debug("enforcer: mount not watched", "pid", pid, "mount", m.point, "fstype", m.fstype, "error", err)
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("fanotify: pid %d has no root mount to watch", pid)
	}
	return n, nil
}

func (g *fanGroup) markMount(root *os.File, point string) error {
	mfd, err := unix.Openat2(int(root.Fd()), point, &unix.OpenHow{ //nolint:gosec // G115: a file descriptor
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", point, err)
	}
	defer unix.Close(mfd)
	var markErr error
	err = g.control(func(fd int) {
		markErr = unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, g.mask, unix.AT_FDCWD,
			g.e.cfg.ProcRoot+"/self/fd/"+strconv.Itoa(mfd))
	})
	return errors.Join(err, markErr)
}

// control runs fn with the group's descriptor, which cannot be closed (and
// its number reused) meanwhile.
func (g *fanGroup) control(fn func(fd int)) error {
	rc, err := g.f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) }) //nolint:gosec // G115: a file descriptor
}

// run reads and decides events until the group is closed. Whatever ends it,
// the group's descriptor is closed on the way out, and the kernel then
// allows every event it still holds: a reader that is gone never leaves a
// process waiting.
func (g *fanGroup) run() {
	defer close(g.done)
	defer g.f.Close()
	buf := make([]byte, 256*fanMetaLen)
	for {
		n, err := g.f.Read(buf)
		switch {
		case errors.Is(err, os.ErrClosed):
			return
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
			// The kernel could not open the event's file and denied that
			// event itself; go on with the next.
			g.e.logger.Warn("enforcer: fanotify read", "container", g.c.t.ContainerID, "error", err)
			continue
		case err != nil:
			g.e.logger.Error("enforcer: fanotify read; this container's exec and write rules are no longer enforced",
				"container", g.c.t.ContainerID, "error", err)
			return
		}
		evs, perr := parseEvents(buf[:n])
		ps := g.track(evs)
		for _, p := range ps {
			g.handle(p)
		}
		if perr != nil {
			g.e.logger.Error("enforcer: fanotify events; this container's exec and write rules are no longer enforced",
				"container", g.c.t.ContainerID, "error", perr)
			return
		}
	}
}

// track registers events as pending, for the watchdog, before any is
// decided.
func (g *fanGroup) track(evs []fanEvent) []*pendingEvent {
	now := time.Now()
	deadline := now.Add(g.e.cfg.DecisionTimeout)
	ps := make([]*pendingEvent, 0, len(evs))
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ev := range evs {
		if ev.fd < 0 {
			continue // FAN_NOFD: queue overflow; permission events are never dropped
		}
		p := &pendingEvent{ev: ev, read: now, deadline: deadline}
		g.pending[p] = struct{}{}
		ps = append(ps, p)
	}
	return ps
}

// answer writes the response for p unless it was answered already.
func (g *fanGroup) answer(p *pendingEvent, response uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answered || p.closed {
		return false
	}
	p.answered = true
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(p.ev.fd)) //nolint:gosec // G115: the C int, bit for bit
	binary.LittleEndian.PutUint32(b[4:], response)
	if _, err := g.f.Write(b[:]); err != nil {
		// The group is closing: the kernel answers "allow" for it.
		g.e.logger.Debug("enforcer: fanotify response", "error", err)
		return false
	}
	return true
}

// finish closes p's file and forgets it.
func (g *fanGroup) finish(p *pendingEvent) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		_ = unix.Close(int(p.ev.fd))
	}
	p.mu.Unlock()
	g.mu.Lock()
	delete(g.pending, p)
	g.mu.Unlock()
}

// expire allows every event that has waited past its deadline.
func (g *fanGroup) expire(now time.Time) {
	var late []*pendingEvent
	g.mu.Lock()
	for p := range g.pending {
		if now.After(p.deadline) {
			late = append(late, p)
		}
	}
	g.mu.Unlock()
	for _, p := range late {
		if g.answer(p, unix.FAN_ALLOW) {
			g.e.stats.timeouts.Add(1)
			g.e.logger.Warn("enforcer: fanotify decision timed out; allowed",
				"container", g.c.t.ContainerID, "tid", p.ev.pid, "timeout", g.e.cfg.DecisionTimeout)
		}
	}
}

// verdict is a decision on one event.
type verdict struct {
	allow bool
	cache uint64 // event mask to cache as allowed for this file (ignore mark); 0: none
	kind  Kind
	rule  string
	path  string
}

func (g *fanGroup) handle(p *pendingEvent) {
	defer g.finish(p)
	if h := g.e.cfg.decisionHook; h != nil {
		h()
	}
	v := g.decide(p.ev)
	response := uint32(unix.FAN_ALLOW)
	var denied Prevented
	if !v.allow {
		response = unix.FAN_DENY
		// Who asked is read before the answer: once denied, a short-lived
		// caller may exit before /proc is read, leaving the audit without
		// its process.
		tid := uint32(p.ev.pid) //nolint:gosec // G115: a thread id
		tgid, uid := g.e.idsOf(tid)
		denied = Prevented{
			Kind: v.kind, Mechanism: MechanismFanotify, Rule: v.rule,
			ContainerID: g.c.t.ContainerID, CgroupID: g.c.cgroup,
			PID: tgid, TID: tid, UID: uid, Comm: g.e.commOf(tid), Path: v.path,
		}
	}
	if !g.answer(p, response) {
		return
	}
	g.e.stats.decisions.Add(1)
	g.e.stats.decisionNs.Add(uint64(time.Since(p.read))) //nolint:gosec // G115: a positive duration
	if !v.allow {
		denied.Time = time.Now()
		g.e.report(denied)
		return
	}
	if v.cache != 0 {
		g.ignore(p.ev.fd, v.cache)
	}
}

// ignore caches a file as allowed for this group: the kernel stops
// reporting these events for it, even after it is written to.
func (g *fanGroup) ignore(fd int32, mask uint64) {
	if g.noIgnores.Load() {
		return
	}
	if g.ignores.Add(1) > maxIgnoreMarks {
		g.noIgnores.Store(true)
		return
	}
	var err error
	_ = g.control(func(gfd int) {
		err = unix.FanotifyMark(gfd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK|unix.FAN_MARK_IGNORED_SURV_MODIFY,
			mask, int(fd), "")
	})
	switch {
	case err == nil:
		g.e.stats.ignoreMarks.Add(1)
	case errors.Is(err, unix.ENOSPC):
		g.noIgnores.Store(true) // root's fanotify mark limit
	default:
		g.e.logger.Debug("enforcer: fanotify ignore mark", "error", err)
	}
}

// decide judges one event of this group's mounts.
func (g *fanGroup) decide(ev fanEvent) verdict {
	allow := verdict{allow: true}
	c := g.c
	tid := uint32(ev.pid) //nolint:gosec // G115: a thread id
	var tv enforcerTidVal
	known := g.e.k.maps.Tids.Lookup(tid, &tv) == nil && tv.Op != 0
	switch {
	case known && tv.Cgroup != c.cgroup:
		return allow // another cgroup's process through this container's mount
	case !known:
		// Not inside open*() or execve*() as a target's thread: a host
		// process (or this one) reaching into the container, or an open
		// the tracepoints did not see (io_uring, the kernel).
		if g.e.isSelf(tid) {
			return allow
		}
		p, err := cgroupOfTask(g.e.cfg.ProcRoot, tid)
		if err != nil || p != c.t.CgroupPath {
			return allow
		}
	}
	path := g.e.fdPath(ev.fd)
	id, idOK := fileIDOfFD(ev.fd)
	if ev.mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		if rule, ok := c.execInodes[id]; ok && idOK {
			return verdict{kind: KindExec, rule: rule, path: path}
		}
		if rule, ok := c.execPaths[path]; ok {
			return verdict{kind: KindExec, rule: rule, path: path}
		}
		return verdict{allow: true, cache: unix.FAN_OPEN_EXEC_PERM}
	}
	if ev.mask&unix.FAN_OPEN_PERM != 0 {
		rule, ok := c.writeInodes[id]
		ok = ok && idOK
		if !ok {
			rule, ok = matchPrefix(c.writePrefixes, path)
		}
		if !ok {
			return verdict{allow: true, cache: unix.FAN_OPEN_PERM}
		}
		write := !known || (tv.Op != opExec && isWrite(tv.Flags))
		if !write {
			return allow // reading a protected file: allowed, not cached
		}
		return verdict{kind: KindFileWrite, rule: rule, path: path}
	}
	return allow
}

// opExec is tid_val.op for a thread inside execve*(): its opens read.
const opExec = 2

// isWrite says whether open flags write to (or truncate) the file.
func isWrite(flags uint32) bool {
	return flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
}

func fileIDOfFD(fd int32) (fileID, bool) {
	var stx unix.Statx_t
	// DONT_SYNC: a network or FUSE file system answers from its cache
	// instead of making the decision wait on a server.
	if err := unix.Statx(int(fd), "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &stx); err != nil {
		return fileID{}, false
	}
	return fileID{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino}, true
}

// fdPath is the path of an event's file as the process that opened it sees
// it (the container's view: its root mount is not reachable from ours).
func (e *Enforcer) fdPath(fd int32) string {
	p, err := os.Readlink(e.cfg.ProcRoot + "/self/fd/" + strconv.Itoa(int(fd)))
	if err != nil {
		return ""
	}
	return p
}

// isSelf says whether a thread is one of this process's.
func (e *Enforcer) isSelf(tid uint32) bool {
	if int(tid) == e.selfPID {
		return true
	}
	_, err := os.Stat(e.cfg.ProcRoot + "/self/task/" + strconv.FormatUint(uint64(tid), 10))
	return err == nil
}

// idsOf returns a thread's process id and real user id from
// /proc/<tid>/status (zeros when it is gone).
func (e *Enforcer) idsOf(tid uint32) (tgid, uid uint32) {
	b, err := os.ReadFile(e.cfg.ProcRoot + "/" + strconv.FormatUint(uint64(tid), 10) + "/status")
	if err != nil {
		return 0, 0
	}
	return parseStatusIDs(b)
}

// parseStatusIDs reads the Tgid and the real Uid of /proc/<pid>/status.
func parseStatusIDs(b []byte) (tgid, uid uint32) {
	field := func(v string) uint32 {
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return 0
		}
		return uint32(n)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			tgid = field(v)
		} else if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid = field(v)
		}
	}
	return tgid, uid
}

func (e *Enforcer) commOf(tid uint32) string {
	b, err := os.ReadFile(e.cfg.ProcRoot + "/" + strconv.FormatUint(uint64(tid), 10) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// stopped says whether the group's reader has ended (closed, or failed: the
// next Apply makes a new group).
func (g *fanGroup) stopped() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// close stops the group: its marks go with its descriptor, and the kernel
// allows what it still holds.
func (g *fanGroup) close() error {
	g.closeOnce.Do(func() {
		_ = g.f.Close()
		<-g.done
		g.e.groups.Delete(g)
		g.e.groupsChanged(-1)
	})
	return nil
}

// groupsChanged counts a fanotify group made (+1) or closed (-1) and tells
// the watchdog.
func (e *Enforcer) groupsChanged(delta int64) {
	e.nGroups.Add(delta)
	select {
	case e.regroup <- struct{}{}:
	default:
	}
}

// watchdog answers fanotify events that wait past the decision timeout. It
// ticks only while a fanotify group exists.
func (e *Enforcer) watchdog() {
	every := max(e.cfg.DecisionTimeout/4, 5*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	ticking := true
	for {
		switch n := e.nGroups.Load(); {
		case n == 0 && ticking:
			t.Stop()
			ticking = false
		case n > 0 && !ticking:
			t.Reset(every)
			ticking = true
		}
		select {
		case <-e.ctx.Done():
			return
		case <-e.regroup:
		case now := <-t.C:
			e.groups.Range(func(k, _ any) bool {
				k.(*fanGroup).expire(now) //nolint:forcetypeassert // only *fanGroup is stored
				return true
			})
		}
	}
}
