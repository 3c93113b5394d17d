package enforcer

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Kind bits and numbers as bpf/enforcer.h has them.
const (
	kExec    = 1
	kWrite   = 2
	kConnect = 3
	kBind    = 4
)

func kindBit(k uint32) uint32 { return 1 << k }

// ruleTable gives each rule name a stable non-zero id for the kernel maps.
// Ids are never reused, so a record still in the ring buffer after an Apply
// names the rule that denied it.
type ruleTable struct {
	mu    sync.RWMutex
	ids   map[string]uint32
	names []string
}

func (r *ruleTable) id(name string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.ids[name]; ok {
		return id
	}
	if r.ids == nil {
		r.ids = map[string]uint32{}
		r.names = []string{""}
	}
	id := uint32(len(r.names)) //nolint:gosec // G115: one id per distinct rule name
	r.ids[name] = id
	r.names = append(r.names, name)
	return id
}

func (r *ruleTable) name(id uint32) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if int(id) < len(r.names) {
		return r.names[id]
	}
	return ""
}

// fileID identifies a file: dev as unix.Mkdev(major, minor) and the inode.
type fileID struct{ dev, ino uint64 }

// compiled is a target turned into what the kernel maps and the fanotify
// decisions look up. The maps name rules by id, the fanotify rules by name.
type compiled struct {
	t      Target
	cgroup uint64
	cgDir  string
	pidErr error // why t.PID cannot be used (fanotify needs it)

	kinds      uint32 // kindBit of each kind with rules
	listenRule uint32

	execInodes    map[fileID]string
	execPaths     map[string]string
	writeInodes   map[fileID]string
	writePrefixes map[string]string

	entries entries
}

// entries are a target's kernel map entries.
type entries struct {
	execInodes    map[enforcerInodeKey]uint32
	execPaths     map[enforcerPathKey]uint32
	writeInodes   map[enforcerInodeKey]uint32
	writePrefixes map[enforcerPathKey]uint32
	net           map[enforcerNetKey]uint32
	listen        map[enforcerListenKey]uint8
}

func newEntries() entries {
	return entries{
		execInodes: map[enforcerInodeKey]uint32{}, execPaths: map[enforcerPathKey]uint32{},
		writeInodes: map[enforcerInodeKey]uint32{}, writePrefixes: map[enforcerPathKey]uint32{},
		net: map[enforcerNetKey]uint32{}, listen: map[enforcerListenKey]uint8{},
	}
}

// compile resolves a validated target against the host: its cgroup id and,
// through /proc/<PID>/root, the files its paths name.
func (e *Enforcer) compile(t Target) (*compiled, error) {
	c := &compiled{
		t:          t,
		cgDir:      e.cgroupRoot + t.CgroupPath,
		execInodes: map[fileID]string{}, execPaths: map[string]string{},
		writeInodes: map[fileID]string{}, writePrefixes: map[string]string{},
		entries: newEntries(),
	}
	id, err := inodeOf(c.cgDir)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", t.CgroupPath, err)
	}
	if t.CgroupID != 0 && t.CgroupID != id {
		return nil, fmt.Errorf("cgroup %s has id %d, not %d: it was created again", t.CgroupPath, id, t.CgroupID)
	}
	c.cgroup = id

	// The process must be in the target's cgroup: a pid that was reused by
	// another process would resolve paths in, and have fanotify watch, the
	// wrong file systems. Without a usable process the kernel maps are still
	// filled (paths match, identities given as Dev/Ino too).
	var root *os.File
	switch {
	case t.PID == 0:
		c.pidErr = errors.New("no PID given")
	case len(t.DenyExec) == 0 && len(t.DenyWrite) == 0:
	default:
		if p, err := cgroupOfTask(e.cfg.ProcRoot, uint32(t.PID)); err != nil { //nolint:gosec // G115: validated positive
			c.pidErr = fmt.Errorf("pid %d: %w", t.PID, err)
		} else if p != t.CgroupPath {
			c.pidErr = fmt.Errorf("pid %d is in cgroup %s, not %s", t.PID, p, t.CgroupPath)
		} else if f, err := os.OpenFile(e.cfg.ProcRoot+"/"+strconv.Itoa(t.PID)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			c.pidErr = fmt.Errorf("root of pid %d: %w", t.PID, err)
		} else {
			defer f.Close()
			root = f
		}
		if c.pidErr != nil {
			e.logger.Warn("enforcer: exec and write paths not resolved to files", "container", t.ContainerID, "error", c.pidErr)
		}
	}
	resolve := func(p string) (fileID, bool, bool) {
		if root == nil {
			return fileID{}, false, false
		}
		return statInRoot(root, p)
	}

	for _, r := range t.DenyExec {
		if r.Ino != 0 {
			addFirst(c.execInodes, fileID{r.Dev, r.Ino}, r.Rule)
		}
		if r.Path != "" {
			addFirst(c.execPaths, r.Path, r.Rule)
			if id, _, ok := resolve(r.Path); ok {
				addFirst(c.execInodes, id, r.Rule)
			}
		}
	}
	for _, r := range t.DenyWrite {
		addFirst(c.writePrefixes, r.Prefix, r.Rule)
		if id, regular, ok := resolve(r.Prefix); ok && regular {
			addFirst(c.writeInodes, id, r.Rule)
		}
	}

	if len(c.execInodes)+len(c.execPaths) > 0 {
		c.kinds |= kindBit(kExec)
	}
	if len(c.writeInodes)+len(c.writePrefixes) > 0 {
		c.kinds |= kindBit(kWrite)
	}
	if len(t.DenyConnect) > 0 {
		c.kinds |= kindBit(kConnect)
	}
	if t.AllowListen != nil {
		c.kinds |= kindBit(kBind)
		c.listenRule = e.rules.id(t.AllowListen.Rule)
	}

	// Kernel entries.
	en := &c.entries
	for id, rule := range c.execInodes {
		en.execInodes[inodeKey(c.cgroup, id)] = e.rules.id(rule)
	}
	for p, rule := range c.execPaths {
		en.execPaths[pathKey(c.cgroup, p+"\x00")] = e.rules.id(rule)
	}
	for id, rule := range c.writeInodes {
		en.writeInodes[inodeKey(c.cgroup, id)] = e.rules.id(rule)
	}
	for p, rule := range c.writePrefixes {
		rid := e.rules.id(rule)
		if p == "/" {
			en.writePrefixes[pathKey(c.cgroup, "/")] = rid
			continue
		}
		en.writePrefixes[pathKey(c.cgroup, p+"\x00")] = rid
		en.writePrefixes[pathKey(c.cgroup, p+"/")] = rid
	}
	for _, r := range t.DenyConnect {
		k := netKey(c.cgroup, r.Prefix, r.Port)
		if _, dup := en.net[k]; !dup {
			en.net[k] = e.rules.id(r.Rule)
		}
	}
	if l := t.AllowListen; l != nil {
		for _, p := range l.Ports {
			en.listen[enforcerListenKey{Cgroup: c.cgroup, Port: htons(p)}] = 1
		}
	}
	return c, nil
}

// addFirst keeps the first rule that names a key.
func addFirst[K comparable](m map[K]string, k K, rule string) {
	if _, ok := m[k]; !ok {
		m[k] = rule
	}
}

// statInRoot resolves p inside root the way the container would (absolute
// symbolic links stay inside it) and identifies the file it names.
func statInRoot(root *os.File, p string) (id fileID, regular, ok bool) {
	fd, err := unix.Openat2(int(root.Fd()), p, &unix.OpenHow{ //nolint:gosec // G115: a file descriptor
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fileID{}, false, false
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_TYPE, &stx); err != nil {
		return fileID{}, false, false
	}
	return fileID{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino}, stx.Mode&unix.S_IFMT == unix.S_IFREG, true
}

func inodeOf(p string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// kernelDev re-encodes a user-space st_dev as the kernel's dev_t
// (MAJOR << 20 | MINOR), which is what BPF reads from the super block.
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)&(1<<20-1)
}

func inodeKey(cg uint64, id fileID) enforcerInodeKey {
	return enforcerInodeKey{Cgroup: cg, Ino: id.ino, Dev: kernelDev(id.dev)}
}

// pathKey is an LPM key over the cgroup and s, which ends in "\x00" (an
// exact path) or "/" (everything below it).
func pathKey(cg uint64, s string) enforcerPathKey {
	k := enforcerPathKey{Plen: uint32(64 + 8*len(s)), CgLo: uint32(cg), CgHi: uint32(cg >> 32)} //nolint:gosec // G115: split in halves; len(s) ≤ 248
	for i := range len(s) {
		k.Path[i] = int8(s[i]) //nolint:gosec // G115: bytes as C chars
	}
	return k
}

// netKey is an LPM key over the cgroup, the port (network order; 0 for any)
// and the address as IPv6, IPv4 mapped; the zero prefix means any address.
func netKey(cg uint64, p netip.Prefix, port uint16) enforcerNetKey {
	k := enforcerNetKey{Plen: 64 + 16, CgLo: uint32(cg), CgHi: uint32(cg >> 32), Port: htons(port)} //nolint:gosec // G115: split in halves
	if !p.IsValid() {
		return k
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	k.Addr = p.Addr().As16()
	k.Plen += uint32(bits) //nolint:gosec // G115: 0..128
	return k
}

// htons turns a port into the value whose memory holds it in network order
// on this (little-endian) host.
func htons(p uint16) uint16 { return p<<8 | p>>8 }

// put adds or changes new's entries that old lacks or has otherwise.
func put[K comparable, V comparable](m *ebpf.Map, old, new map[K]V) error {
	var errs []error
	for k, v := range new {
		if ov, ok := old[k]; ok && ov == v {
			continue
		}
		if err := m.Put(k, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// prune deletes old's entries that new lacks.
func prune[K comparable, V any](m *ebpf.Map, old, new map[K]V) error {
	var errs []error
	for k := range old {
		if _, ok := new[k]; ok {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncEntries moves the kernel from a target's old entries to its new ones:
// new entries first, then the target's kinds, then the old entries go, so
// that a rule in both is never missing in between.
func (k *kernel) syncEntries(cg uint64, old, new entries, kinds, listenRule uint32) error {
	m := &k.maps
	errs := []error{
		put(m.ExecInodes, old.execInodes, new.execInodes),
		put(m.ExecPaths, old.execPaths, new.execPaths),
		put(m.WriteInodes, old.writeInodes, new.writeInodes),
		put(m.WritePrefixes, old.writePrefixes, new.writePrefixes),
		put(m.NetDeny, old.net, new.net),
		put(m.ListenAllow, old.listen, new.listen),
	}
	if kinds == 0 {
		if err := m.Targets.Delete(cg); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	} else {
		errs = append(errs, m.Targets.Put(cg, enforcerTargetVal{Kinds: kinds, ListenRule: listenRule}))
	}
	errs = append(errs,
		prune(m.ExecInodes, old.execInodes, new.execInodes),
		prune(m.ExecPaths, old.execPaths, new.execPaths),
		prune(m.WriteInodes, old.writeInodes, new.writeInodes),
		prune(m.WritePrefixes, old.writePrefixes, new.writePrefixes),
		prune(m.NetDeny, old.net, new.net),
		prune(m.ListenAllow, old.listen, new.listen),
	)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("update maps: %w", err)
	}
	return nil
}

// matchPrefix returns the rule of the longest prefix in prefixes that p is
// at or below.
func matchPrefix(prefixes map[string]string, p string) (string, bool) {
	if len(prefixes) == 0 || p == "" || p[0] != '/' {
		return "", false
	}
	for q := p; ; q = path.Dir(q) {
		if r, ok := prefixes[q]; ok {
			return r, true
		}
		if q == "/" {
			return "", false
		}
	}
}

// sameFanRules says whether two compilations need the same fanotify group.
func sameFanRules(a, b *compiled) bool {
	return a.t.PID == b.t.PID && a.t.CgroupPath == b.t.CgroupPath && a.t.ContainerID == b.t.ContainerID &&
		maps.Equal(a.execInodes, b.execInodes) && maps.Equal(a.execPaths, b.execPaths) &&
		maps.Equal(a.writeInodes, b.writeInodes) && maps.Equal(a.writePrefixes, b.writePrefixes)
}
