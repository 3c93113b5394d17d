package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Running lists the containers of the runc state roots in cfg whose init
// process is alive (created or running; not stopped, not yet deleted), named
// as the resolver names them: the runtime of the state root, annotations
// from the state and the bundle's config.json, docker's name and image. It
// needs no cgroup2 mount, so that a Defender without the sensor can still
// find its containers. Info.Bundle says where each container's config.json
// is.
func Running(cfg Config, logger *slog.Logger) ([]Info, error) {
	cfg = cfg.withDefaults()
	r := &Resolver{cfg: cfg, logger: logger}
	var out []Info
	seen := map[string]bool{}
	for _, root := range stateRoots(cfg.RuncRoots) {
		ents, err := os.ReadDir(root.dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list containers in %s: %w", root.dir, err)
		}
		for _, e := range ents {
			id := e.Name()
			if !e.IsDir() || !safeComponent(id) || seen[id] {
				continue
			}
			st, err := readState(filepath.Join(root.dir, id, "state.json"))
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					logger.Warn("read runc state", "path", filepath.Join(root.dir, id, "state.json"), "err", err)
				}
				continue
			}
			if !r.alive(st) {
				continue
			}
			seen[id] = true
			info, _ := r.describe(pattern{id: id, runtime: root.runtime, strong: true}, "", root, st, true)
			info.CgroupPath = cgroupPathOf(cfg, st)
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container.ID < out[j].Container.ID })
	return out, nil
}

// alive reports whether a state's init process still runs: its pid exists
// and, where runc recorded it, started when the state says.
func (r *Resolver) alive(st runcState) bool {
	if st.InitProcessPid <= 0 {
		return false
	}
	b, err := os.ReadFile(filepath.Join(r.cfg.ProcRoot, strconv.Itoa(st.InitProcessPid), "stat"))
	if err != nil {
		return false
	}
	ps, ok := parseStat(b)
	if !ok {
		return false
	}
	return st.InitProcessStart == 0 || uint64(ps.startTicks) == st.InitProcessStart //nolint:gosec // start ticks are never negative
}

// cgroupPathOf is the state's cgroup2 path below the cgroup root, as far as
// it can be told without knowing the mount: runc records the absolute path.
func cgroupPathOf(cfg Config, st runcState) string {
	abs := st.CgroupPaths[""]
	if abs == "" {
		return ""
	}
	for _, mount := range []string{cfg.CgroupRoot, "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if mount == "" {
			continue
		}
		rel, err := filepath.Rel(mount, abs)
		switch {
		case err != nil || rel == ".." || strings.HasPrefix(rel, "../"):
		case rel == ".":
			return "/"
		default:
			return "/" + filepath.ToSlash(rel)
		}
	}
	return ""
}

// Commands returns the command names (/proc/<pid>/comm) of the processes
// in a container's cgroup and its descendants, sorted and without
// duplicates: what the sshd check looks for. cgroupPath is Info.CgroupPath.
func Commands(cfg Config, cgroupPath string) ([]string, error) {
	cfg = cfg.withDefaults()
	if cfg.CgroupRoot == "" {
		root, err := FindCgroup2(cfg.ProcRoot)
		if err != nil {
			return nil, err
		}
		cfg.CgroupRoot = root
	}
	if cgroupPath == "" || cgroupPath == "/" {
		return nil, fmt.Errorf("commands of cgroup %q: not a container's cgroup", cgroupPath)
	}
	var names []string
	dir := filepath.Join(cfg.CgroupRoot, filepath.FromSlash(cgroupPath))
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // a child cgroup removed meanwhile
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, pid := range strings.Fields(string(b)) {
			if comm, err := os.ReadFile(filepath.Join(cfg.ProcRoot, pid, "comm")); err == nil {
				names = append(names, strings.TrimSpace(string(comm)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commands of cgroup %s: %w", cgroupPath, err)
	}
	sort.Strings(names)
	return slices.Compact(names), nil
}
