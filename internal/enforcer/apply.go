package enforcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cilium/ebpf/link"
)

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("enforcer closed")

// TargetError is why one target of an Apply is not (fully) enforced. Apply
// joins one for each such target, so that a caller can tell which targets
// are in force: errors.As finds the first, and the joined error's
// Unwrap() []error lists them all.
type TargetError struct {
	Index  int    // in the targets given to Apply
	Target string // its ContainerID, or its CgroupPath when that is empty
	Err    error
}

func (e *TargetError) Error() string {
	return fmt.Sprintf("target %d (%s): %v", e.Index, e.Target, e.Err)
}

func (e *TargetError) Unwrap() error { return e.Err }

// applied is what one target has installed.
type applied struct {
	c       *compiled
	connect []link.Link // cgroup BPF connect4/6
	bind    []link.Link // cgroup BPF bind4/6
	fan     *fanGroup
}

func (a *applied) close() error {
	var errs []error
	for _, l := range slices.Concat(a.connect, a.bind) {
		errs = append(errs, l.Close())
	}
	a.connect, a.bind = nil, nil
	if a.fan != nil {
		errs = append(errs, a.fan.close())
		a.fan = nil
	}
	return errors.Join(errs...)
}

// Apply makes targets the whole enforced state: targets new or changed
// since the last Apply are installed, targets no longer listed are removed.
// Every target that cannot be applied is named in the error (a
// *TargetError each) and the others are applied: one with invalid rules keeps the rules it had (a bad update
// does not lift a container's protection), one whose cgroup is gone loses
// its enforcement. Rules of a kind whose mechanism is MechanismNone are
// accepted and not enforced.
func (e *Enforcer) Apply(ctx context.Context, targets []Target) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	var errs []error
	want := map[uint64]*compiled{}
	index := map[uint64]int{}
	seen := map[string]bool{}
	for i, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := t.ContainerID
		if name == "" {
			name = t.CgroupPath
		}
		if err := t.validate(); err != nil {
			if a := e.appliedAt(t.CgroupPath); a != nil && !seen[t.CgroupPath] {
				seen[t.CgroupPath] = true
				want[a.c.cgroup] = a.c
				index[a.c.cgroup] = i
				err = fmt.Errorf("%w (it keeps its previous rules)", err)
			}
			errs = append(errs, &TargetError{Index: i, Target: name, Err: err})
			continue
		}
		if seen[t.CgroupPath] {
			errs = append(errs, &TargetError{Index: i, Target: name, Err: fmt.Errorf("cgroup %s listed twice", t.CgroupPath)})
			continue
		}
		seen[t.CgroupPath] = true
		c, err := e.compile(t)
		if err != nil {
			errs = append(errs, &TargetError{Index: i, Target: name, Err: err})
			continue
		}
		want[c.cgroup] = c
		index[c.cgroup] = i
	}

	// Names for audits: keep those of removed targets until the next Apply,
	// so that a record still in flight names its container.
	names := map[uint64]string{}
	for cg, a := range e.applied {
		names[cg] = a.c.t.ContainerID
	}
	for cg, c := range want {
		names[cg] = c.t.ContainerID
	}
	e.names.Store(&names)

	for cg, a := range e.applied {
		if _, ok := want[cg]; ok {
			continue
		}
		errs = append(errs, e.remove(a))
		delete(e.applied, cg)
	}
	for cg, c := range want {
		a := e.applied[cg]
		if a == nil {
			a = &applied{c: &compiled{entries: newEntries()}}
			e.applied[cg] = a
		}
		if err := e.install(a, c); err != nil {
			name := c.t.ContainerID
			if name == "" {
				name = c.t.CgroupPath
			}
			errs = append(errs, &TargetError{Index: index[cg], Target: name, Err: err})
		}
	}
	if !e.fanotifyInUse() {
		errs = append(errs, e.k.tracepointsOff())
	}
	return errors.Join(errs...)
}

// fanotifyInUse says whether a target has a fanotify group.
func (e *Enforcer) fanotifyInUse() bool {
	for _, a := range e.applied {
		if a.fan != nil {
			return true
		}
	}
	return false
}

// appliedAt returns what is installed for a cgroup path, if anything.
func (e *Enforcer) appliedAt(cgroupPath string) *applied {
	for _, a := range e.applied {
		if a.c.t.CgroupPath == cgroupPath {
			return a
		}
	}
	return nil
}

// enforced masks a target's kinds to those a mechanism enforces here.
func (e *Enforcer) enforced(kinds uint32) uint32 {
	for k, kind := range map[uint32]Kind{kExec: KindExec, kWrite: KindFileWrite, kConnect: KindConnect, kBind: KindBind} {
		if e.mech.For(kind).Mechanism == MechanismNone {
			kinds &^= kindBit(k)
		}
	}
	return kinds
}

// install moves a target from what it has installed to c.
func (e *Enforcer) install(a *applied, c *compiled) error {
	old := a.c
	kinds := e.enforced(c.kinds)
	if err := e.k.syncEntries(c.cgroup, old.entries, c.entries, kinds, c.listenRule); err != nil {
		return err
	}
	a.c = c
	var errs []error

	// cgroup BPF
	if e.mech.Connect.Mechanism == MechanismCgroupBPF {
		ls, err := e.attachCgroup(a.connect, kinds&kindBit(kConnect) != 0, c.cgDir, e.k.cgConnect)
		a.connect = ls
		errs = append(errs, err)
	}
	if e.mech.Bind.Mechanism == MechanismCgroupBPF {
		ls, err := e.attachCgroup(a.bind, kinds&kindBit(kBind) != 0, c.cgDir, e.k.cgBind)
		a.bind = ls
		errs = append(errs, err)
	}

	// fanotify
	var mask uint64
	if e.mech.Exec.Mechanism == MechanismFanotify && kinds&kindBit(kExec) != 0 {
		mask |= fanExecMask
	}
	if e.mech.FileWrite.Mechanism == MechanismFanotify && kinds&kindBit(kWrite) != 0 {
		mask |= fanOpenMask
	}
	switch {
	case mask == 0:
		if a.fan != nil {
			errs = append(errs, a.fan.close())
			a.fan = nil
		}
	case a.fan != nil && !a.fan.stopped() && a.fan.mask == mask && sameFanRules(a.fan.c, c):
		// The same rules: the group (and its cache of allowed files) stays,
		// with the compilation it was built from.
	default:
		if c.pidErr != nil {
			errs = append(errs, fmt.Errorf("fanotify enforcement of exec and write rules needs a process of the container: %w", c.pidErr))
			if a.fan != nil {
				errs = append(errs, a.fan.close())
				a.fan = nil
			}
			break
		}
		// The open flags of the group's first decision are in the tids map
		// only if the tracepoints were attached before that open began.
		if err := e.k.tracepointsOn(); err != nil {
			errs = append(errs, fmt.Errorf("fanotify decisions without the open flags (reads of protected files are denied as writes): %w", err))
		}
		// The new group is complete before the old one goes: for a moment
		// both answer, never neither.
		g, err := e.newFanGroup(c, mask)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if a.fan != nil {
			errs = append(errs, a.fan.close())
		}
		a.fan = g
	}
	return errors.Join(errs...)
}

// attachCgroup attaches progs to dir when want and they are not attached
// yet, or detaches them when not want.
func (e *Enforcer) attachCgroup(have []link.Link, want bool, dir string, progs []cgProg) ([]link.Link, error) {
	if !want {
		var errs []error
		for _, l := range have {
			errs = append(errs, l.Close())
		}
		return nil, errors.Join(errs...)
	}
	if len(have) > 0 {
		return have, nil
	}
	var ls []link.Link
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: p.attach, Program: p.prog})
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, fmt.Errorf("attach cgroup BPF to %s: %w", dir, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// remove takes a target's enforcement away: the kinds first, so that the
// kernel stops consulting its entries, then the entries and attachments.
func (e *Enforcer) remove(a *applied) error {
	err := e.k.syncEntries(a.c.cgroup, a.c.entries, newEntries(), 0, 0)
	e.logger.Debug("enforcer: target removed", slog.String("container", a.c.t.ContainerID), slog.Uint64("cgroup", a.c.cgroup))
	return errors.Join(err, a.close())
}
