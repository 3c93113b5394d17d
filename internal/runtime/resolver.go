// Package runtime is the Defender's adapter to container runtimes' metadata.
// It maps the cgroup id that every sensor event carries (the inode of the
// task's cgroup2 directory, as bpf_get_current_cgroup_id() reports it) to the
// container the task runs in, names that container from its runtime's
// records (runc state, the OCI bundle's config.json annotations, docker's
// config.v2.json), and lists the processes that were running before the
// Defender started.
//
// It reads only the host's files: the cgroup2 mount, /proc, runc state
// roots and the docker data root, all configurable so that tests (and a
// Defender that sees the host under /host) can point elsewhere.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"bulwark/internal/event"
)

// settleTime is how long after a cgroup is first looked up the resolver
// keeps looking for runtime records it did not find: runc creates a
// container's cgroup (and runs runc init in it) before it writes state.json.
const settleTime = 5 * time.Second

// pendingRecheck is how often a cgroup that has no runtime record yet, in
// its first settleTime, is looked at again. It is much shorter than
// RescanInterval because a container's first events (its entrypoint, the
// first `runc exec`) come within milliseconds of its state being written,
// and a re-check costs only a few stat calls.
const pendingRecheck = 10 * time.Millisecond

// Config says where the host's cgroup, process and runtime files are.
type Config struct {
	// CgroupRoot is the cgroup2 mount; empty: found in ProcRoot/self/mountinfo.
	CgroupRoot string
	// ProcRoot is procfs; empty: /proc.
	ProcRoot string
	// RuncRoots are runc --root directories, globs allowed (containerd has
	// one per namespace). A root with a path element "containerd" is
	// containerd's (its last element is the namespace), "docker" docker's.
	// nil: DefaultRuncRoots.
	RuncRoots []string
	// DockerRoot is docker's data root; empty: /var/lib/docker.
	DockerRoot string
	// RescanInterval is the least time between two walks of the cgroup2
	// tree for unknown cgroup ids; zero: 100ms.
	RescanInterval time.Duration
	// PruneInterval is how often Run drops cached cgroups that no longer
	// exist; zero: 30s.
	PruneInterval time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// DefaultRuncRoots are where runc, containerd (per namespace) and docker
// keep runc state on a host.
func DefaultRuncRoots() []string {
	return []string{"/run/runc", "/run/containerd/runc/*", "/run/docker/runtime-runc/moby"}
}

// DefaultConfig is the configuration for a Defender that sees the host's
// own /proc, /sys and /run.
func DefaultConfig() Config {
	return Config{
		ProcRoot:       "/proc",
		RuncRoots:      DefaultRuncRoots(),
		DockerRoot:     "/var/lib/docker",
		RescanInterval: 100 * time.Millisecond,
		PruneInterval:  30 * time.Second,
		Now:            time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ProcRoot == "" {
		c.ProcRoot = d.ProcRoot
	}
	if c.RuncRoots == nil {
		c.RuncRoots = d.RuncRoots
	}
	if c.DockerRoot == "" {
		c.DockerRoot = d.DockerRoot
	}
	if c.RescanInterval <= 0 {
		c.RescanInterval = d.RescanInterval
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = d.PruneInterval
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Info is what the resolver knows about a container.
type Info struct {
	Container event.Container
	// CgroupPath is the container's own cgroup relative to the cgroup2
	// root: the looked-up cgroup or an ancestor of it.
	CgroupPath string
	StateDir   string    // runc state directory, when found
	Bundle     string    // OCI bundle, when known
	InitPID    int       // host pid of the container's init, when known
	Created    time.Time // when runc created it, when known
}

// Stats describes the resolver's cache.
type Stats struct {
	Entries    int    // cached cgroup ids (containers and host cgroups)
	Containers int    // of which resolve to a container
	Cgroups    int    // cgroup2 directories known from the last walk
	Walks      uint64 // walks of the cgroup2 tree
	Misses     uint64 // lookups of ids not in the tree as last walked
	Pruned     uint64 // entries dropped because their cgroup is gone
}

// Resolver maps cgroup ids to containers. It is safe for concurrent use.
type Resolver struct {
	cfg    Config
	logger *slog.Logger

	mu       sync.Mutex
	paths    map[uint64]string // cgroup id → path below CgroupRoot
	entries  map[uint64]*entry
	lastWalk time.Time
	stamp    string // treeStamp at lastWalk
	walks    uint64
	misses   uint64
	pruned   uint64
}

type entry struct {
	path     string // the looked-up cgroup
	info     Info
	ok       bool // a container
	complete bool // nothing left to find out
	first    time.Time
	checked  time.Time
}

// New returns a resolver for the host cfg describes.
func New(cfg Config, logger *slog.Logger) (*Resolver, error) {
	cfg = cfg.withDefaults()
	if cfg.CgroupRoot == "" {
		root, err := FindCgroup2(cfg.ProcRoot)
		if err != nil {
			return nil, err
		}
		cfg.CgroupRoot = root
	}
	if fi, err := os.Stat(cfg.CgroupRoot); err != nil {
		return nil, fmt.Errorf("cgroup root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("cgroup root %s: not a directory", cfg.CgroupRoot)
	}
	return &Resolver{
		cfg:     cfg,
		logger:  logger,
		paths:   make(map[uint64]string),
		entries: make(map[uint64]*entry),
	}, nil
}

// CgroupRoot is the cgroup2 mount the resolver reads.
func (r *Resolver) CgroupRoot() string { return r.cfg.CgroupRoot }

// Container returns the container a task in cgroup cgroupID runs in, or
// false for a host task (or a cgroup the resolver cannot find yet).
func (r *Resolver) Container(cgroupID uint64) (event.Container, bool) {
	info, ok := r.Lookup(cgroupID)
	return info.Container, ok
}

// Lookup is Container with everything the resolver knows.
//
// A cgroup id is found by walking the cgroup2 tree, at most once per
// RescanInterval: a lookup of an id created after the last walk returns
// false until the next walk is allowed, so that a burst of events from a new
// container costs one walk.
func (r *Resolver) Lookup(cgroupID uint64) (Info, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	if e := r.entries[cgroupID]; e != nil {
		if !e.complete && now.Sub(e.checked) >= min(pendingRecheck, r.cfg.RescanInterval) && now.Sub(e.first) < settleTime {
			r.resolve(e, now)
		}
		return e.info, e.ok
	}
	path, ok := r.paths[cgroupID]
	if !ok {
		r.misses++
		if !r.lastWalk.IsZero() && now.Sub(r.lastWalk) < r.cfg.RescanInterval {
			// Too soon for another walk, unless cgroups were created or
			// removed since the last one: the first events of a new
			// container (its entrypoint's exec) must not pass as the host's.
			if stamp, ok := treeStamp(r.cfg.CgroupRoot); !ok || stamp == r.stamp {
				return Info{}, false
			}
		}
		r.walk(now)
		if path, ok = r.paths[cgroupID]; !ok {
			return Info{}, false
		}
	}
	e := &entry{path: path, first: now}
	r.resolve(e, now)
	r.entries[cgroupID] = e
	return e.info, e.ok
}

// walk rebuilds the id → path map. r.mu is held.
func (r *Resolver) walk(now time.Time) {
	r.lastWalk = now
	r.walks++
	r.stamp, _ = treeStamp(r.cfg.CgroupRoot) // before the walk: a change during it triggers the next
	paths, err := walkCgroups(r.cfg.CgroupRoot)
	if err != nil {
		r.logger.Warn("walk cgroup2 tree", "root", r.cfg.CgroupRoot, "err", err)
		return
	}
	r.paths = paths
}

// resolve fills e from its path and the runtimes' records. r.mu is held.
//
// The path's components are tried deepest first, so that a container's
// child cgroups resolve to it and a nested container to itself.
func (r *Resolver) resolve(e *entry, now time.Time) {
	e.checked = now
	e.info, e.ok, e.complete = Info{}, false, true
	comps := splitCgroup(e.path)
	if len(comps) == 0 {
		return // the root cgroup: host
	}
	e.complete = false // a host cgroup may yet get a runc state dir
	underKube := false
	for _, c := range comps {
		if strings.HasPrefix(c, "kubepods") {
			underKube = true
		}
	}
	roots := stateRoots(r.cfg.RuncRoots)
	for i := len(comps) - 1; i >= 0; i-- {
		name, parent := comps[i], ""
		if i > 0 {
			parent = comps[i-1]
		}
		cgPath := "/" + strings.Join(comps[:i+1], "/")
		if p, ok := matchComponent(parent, name, underKube); ok {
			root, st, found := r.findState(roots, p.id, "")
			e.info, e.complete = r.describe(p, cgPath, root, st, found)
			e.ok = true
			return
		}
		// Plain runc and containerd's /<namespace>/<id>: arbitrary names,
		// so only a state dir for this very cgroup makes it a container.
		if !safeComponent(name) {
			continue
		}
		if root, st, found := r.findState(roots, name, cgPath); found {
			e.info, e.complete = r.describe(pattern{id: name}, cgPath, root, st, true)
			e.ok = true
			return
		}
	}
}

// findState looks for id's state.json under roots. With cgPath set, a state
// that records another cgroup2 path is not this container's.
func (r *Resolver) findState(roots []stateRoot, id, cgPath string) (stateRoot, runcState, bool) {
	for _, root := range roots {
		path := root.dir + "/" + id + "/state.json"
		st, err := readState(path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				r.logger.Warn("read runc state", "path", path, "err", err)
			}
			continue
		}
		if cg := st.CgroupPaths[""]; cgPath != "" && cg != "" && !r.sameCgroup(cg, cgPath) {
			continue
		}
		return root, st, true
	}
	return stateRoot{}, runcState{}, false
}

// sameCgroup says whether abs, a cgroup2 directory as runc recorded it, is
// path below the cgroup root. runc may have recorded it under another mount
// point of cgroup2 than the resolver's (a Defender that sees the host's
// /sys under /host).
func (r *Resolver) sameCgroup(abs, path string) bool {
	mount, ok := strings.CutSuffix(abs, path)
	if !ok {
		return false
	}
	return mount == r.cfg.CgroupRoot || strings.HasSuffix(mount, "/sys/fs/cgroup") || strings.HasSuffix(mount, "/sys/fs/cgroup/unified")
}

// describe names the container p found. complete says whether the runtime's
// records were found (otherwise they are looked for again).
func (r *Resolver) describe(p pattern, cgPath string, root stateRoot, st runcState, found bool) (Info, bool) {
	info := Info{CgroupPath: cgPath}
	runtime := p.runtime
	var ann map[string]string
	complete := false
	if found {
		complete = true
		info.StateDir = root.dir + "/" + p.id
		info.Bundle, info.InitPID, info.Created = st.Bundle, st.InitProcessPid, st.Created
		ann = st.annotations()
		if st.Bundle != "" {
			a, err := readOCIAnnotations(st.Bundle)
			switch {
			case err == nil:
				ann = withFallback(a, ann)
			case !errors.Is(err, os.ErrNotExist):
				r.logger.Warn("read OCI config", "bundle", st.Bundle, "err", err)
			}
		}
		if !p.strong {
			runtime = root.runtime
		}
	}
	var docker *dockerConfig
	if runtime == RuntimeDocker {
		c, err := readDockerConfig(r.cfg.DockerRoot, p.id)
		switch {
		case err == nil:
			docker, complete = &c, true
		case !errors.Is(err, os.ErrNotExist):
			r.logger.Warn("read docker config", "container", p.id, "err", err)
		}
	}
	info.Container = containerOf(p.id, runtime, ann, docker)
	return info, complete
}

// Forget drops what the resolver knows about a cgroup, e.g. once the
// Defender has seen it removed.
func (r *Resolver) Forget(cgroupID uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries, cgroupID)
	delete(r.paths, cgroupID)
}

// Prune walks the cgroup2 tree and drops the cached cgroups that are gone.
// It returns how many it dropped.
func (r *Resolver) Prune() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.walk(r.cfg.Now())
	n := 0
	for id, e := range r.entries {
		if r.paths[id] != e.path {
			delete(r.entries, id)
			n++
		}
	}
	r.pruned += uint64(n)
	return n
}

// Run prunes the cache every PruneInterval until ctx is done.
func (r *Resolver) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n := r.Prune(); n > 0 {
				r.logger.Debug("pruned exited cgroups", "count", n)
			}
		}
	}
}

// Stats describes the cache.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Entries: len(r.entries), Cgroups: len(r.paths), Walks: r.walks, Misses: r.misses, Pruned: r.pruned}
	for _, e := range r.entries {
		if e.ok {
			s.Containers++
		}
	}
	return s
}

// Learn records a cgroup's path found some other way: a /proc scan, or the
// sensor's cgroup_mkdir tracepoint, which saves a walk of the tree. path is
// relative to the cgroup2 root ("/docker/<id>").
func (r *Resolver) Learn(cgroupID uint64, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.paths[cgroupID]; !ok {
		r.paths[cgroupID] = path
	}
}
