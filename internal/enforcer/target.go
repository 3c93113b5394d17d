package enforcer

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"
)

// Kind is a kind of action the enforcer can deny.
type Kind string

// The kinds of action.
const (
	KindExec      Kind = "exec"       // executing a file
	KindFileWrite Kind = "file-write" // opening a file for writing (or truncating it)
	KindConnect   Kind = "connect"    // connect(2) on an IPv4 or IPv6 socket
	KindBind      Kind = "bind"       // bind(2) to a port other than the allowed listen ports
)

// Kinds lists every kind, in a stable order.
var Kinds = []Kind{KindExec, KindFileWrite, KindConnect, KindBind}

// Mechanism is how the kernel is made to deny a kind of action.
type Mechanism string

// The mechanisms, best first for each kind.
const (
	MechanismBPFLSM    Mechanism = "bpf-lsm"    // BPF LSM programs decide in the kernel
	MechanismFanotify  Mechanism = "fanotify"   // fanotify permission events, decided in user space
	MechanismCgroupBPF Mechanism = "cgroup-bpf" // cgroup BPF connect/bind programs
	MechanismNone      Mechanism = "none"       // nothing on this host can deny this kind
)

// Choice is the mechanism enforcing one kind and, when it is not the best
// one, why the better ones are not available.
type Choice struct {
	Mechanism Mechanism `json:"mechanism"`
	Reason    string    `json:"reason,omitempty"`
}

// Mechanisms is the mechanism per kind, as probed when the enforcer started.
type Mechanisms struct {
	Exec      Choice `json:"exec"`
	FileWrite Choice `json:"fileWrite"`
	Connect   Choice `json:"connect"`
	Bind      Choice `json:"bind"`
}

// For returns the choice for one kind.
func (m Mechanisms) For(k Kind) Choice {
	switch k {
	case KindExec:
		return m.Exec
	case KindFileWrite:
		return m.FileWrite
	case KindConnect:
		return m.Connect
	case KindBind:
		return m.Bind
	}
	return Choice{Mechanism: MechanismNone, Reason: "unknown kind " + string(k)}
}

// Target is one cgroup (a container) and the compiled rules that apply to
// its processes. Rules name the runtime rule they come from, so that an audit
// says which rule prevented the action; when several rules deny the same
// thing, the first one listed is named.
type Target struct {
	// ContainerID is reported in audits.
	ContainerID string
	// CgroupPath is the container's cgroup relative to the cgroup2 mount,
	// as in /proc/<pid>/cgroup's "0::" line: "/<id>" for plain runc,
	// "/kubepods.slice/…/cri-containerd-<id>.scope" under Kubernetes.
	// Processes in cgroups below it are not covered.
	CgroupPath string
	// CgroupID, when set, must equal the inode of CgroupPath: a cgroup that
	// was removed and created again under the same path is refused.
	CgroupID uint64
	// PID is a process of the container (its init). Its root and mounts,
	// read through /proc/<PID>, resolve exec paths to files and tell the
	// fanotify mechanism which mounts to watch. Required when exec or write
	// rules are enforced by fanotify.
	PID int

	DenyExec    []ExecRule
	DenyWrite   []WriteRule
	DenyConnect []ConnectRule
	// AllowListen, when set, denies binds to every port not in it.
	AllowListen *ListenRule
}

// ExecRule denies executing a file, named by its path inside the container
// and/or by its identity. A path is matched two ways: as the resolved path of
// the file being executed (so a file created at that path after Apply is
// denied too), and by the identity of the file the path resolves to at Apply
// (so a hard link or another path to the same file is denied). A path that
// is a symbolic link resolves to its target: denying a busybox applet link
// denies busybox.
type ExecRule struct {
	Rule string
	Path string // absolute, inside the container
	// Dev and Ino identify a file as stat(2) reports it (st_dev, st_ino).
	// Both zero: identified by Path only.
	Dev, Ino uint64
}

// WriteRule denies opening for writing (or truncating) any file at or below
// Prefix, inside the container. A prefix that names an existing regular
// file at Apply is also matched by that file's identity, so that a hard link
// to it elsewhere does not get around the rule.
type WriteRule struct {
	Rule   string
	Prefix string // absolute path inside the container; "/" denies every write
}

// ConnectRule denies connecting to an address range and port. The zero
// Prefix means any address (IPv4 and IPv6); port 0 means any port.
type ConnectRule struct {
	Rule   string
	Prefix netip.Prefix
	Port   uint16
}

// ListenRule lists the only ports a container may bind to. Binding to port 0
// (let the kernel choose, as clients do) is always allowed.
type ListenRule struct {
	Rule  string
	Ports []uint16
}

// Prevented is the audit of an action the kernel refused before it happened.
type Prevented struct {
	Time        time.Time
	Kind        Kind
	Mechanism   Mechanism
	Rule        string
	ContainerID string
	CgroupID    uint64
	PID         uint32 // thread group id, in the host's PID namespace
	TID         uint32
	UID         uint32 // real user id, in the host's user namespace
	Comm        string
	// Path is the file, as the container sees it (exec and file-write). It
	// may be empty when the kernel could not produce it.
	Path string
	// Addr is the destination (connect) or the local address (bind).
	Addr netip.AddrPort
}

const (
	maxPathLen   = 247 // bytes, so that "P/" fits the kernel's 248-byte key path
	maxRuleName  = 256
	maxCgroupLen = 4096
)

// validate reports every problem of a target, so that a bad rule compiled
// by the caller is named rather than silently dropped.
func (t *Target) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case t.CgroupPath == "":
		bad("CgroupPath is empty")
	case !strings.HasPrefix(t.CgroupPath, "/"):
		bad("CgroupPath %q: not absolute", t.CgroupPath)
	case path.Clean(t.CgroupPath) != t.CgroupPath:
		bad("CgroupPath %q: not clean (want %q)", t.CgroupPath, path.Clean(t.CgroupPath))
	case t.CgroupPath == "/":
		bad("CgroupPath %q: the root cgroup holds the host, not a container", t.CgroupPath)
	case len(t.CgroupPath) > maxCgroupLen:
		bad("CgroupPath: longer than %d bytes", maxCgroupLen)
	}
	if t.PID < 0 {
		bad("PID %d: negative", t.PID)
	}
	rule := func(what string, i int, name string) {
		if name == "" {
			bad("%s[%d]: Rule is empty", what, i)
		} else if len(name) > maxRuleName {
			bad("%s[%d]: Rule longer than %d bytes", what, i, maxRuleName)
		}
	}
	for i, r := range t.DenyExec {
		rule("DenyExec", i, r.Rule)
		if r.Path == "" && r.Dev == 0 && r.Ino == 0 {
			bad("DenyExec[%d]: neither Path nor Dev/Ino", i)
		}
		if r.Path != "" {
			if err := checkPath(r.Path); err != nil {
				bad("DenyExec[%d]: %w", i, err)
			}
		}
		if (r.Dev == 0) != (r.Ino == 0) {
			bad("DenyExec[%d]: Dev and Ino go together (got %d, %d)", i, r.Dev, r.Ino)
		}
	}
	for i, r := range t.DenyWrite {
		rule("DenyWrite", i, r.Rule)
		if err := checkPath(r.Prefix); err != nil {
			bad("DenyWrite[%d]: %w", i, err)
		}
	}
	for i, r := range t.DenyConnect {
		rule("DenyConnect", i, r.Rule)
		if r.Prefix != (netip.Prefix{}) && !r.Prefix.IsValid() {
			bad("DenyConnect[%d]: invalid prefix %s", i, r.Prefix)
		}
	}
	if l := t.AllowListen; l != nil {
		rule("AllowListen", 0, l.Rule)
	}
	return errors.Join(errs...)
}

func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q: not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q: not clean (want %q)", p, path.Clean(p))
	case len(p) > maxPathLen:
		return fmt.Errorf("path %q: longer than %d bytes", p[:32]+"…", maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q: contains a NUL byte", p)
	}
	return nil
}
