package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"bulwark/internal/event"
)

// Bounds of a process's argv, as the sensor applies them to exec events.
const (
	MaxArgs      = 32
	MaxArgvBytes = 4096 // of /proc/<pid>/cmdline, NUL separators included
)

const (
	pfKthread = 0x00200000 // PF_KTHREAD in /proc/<pid>/stat flags
	userHZ    = 100        // USER_HZ: the unit of /proc/<pid>/stat times on every Linux ABI
)

// Proc is a process found in /proc, with its container (nil on the host).
type Proc struct {
	Process   event.Process
	Container *event.Container
}

// ScanProcs lists the processes that are running now, kernel threads left
// out, each with its container: what the Defender knows of the processes
// that started before it. Processes that exit during the scan are skipped;
// fields that cannot be read (exe of another user's process without
// privilege…) are left empty.
func (r *Resolver) ScanProcs() ([]Proc, error) {
	ents, err := os.ReadDir(r.cfg.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("scan processes: %w", err)
	}
	boot := r.bootTime()
	var procs []Proc
	exes := make(map[uint32]string)
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || !e.IsDir() {
			continue
		}
		p, ok := r.readProc(uint32(pid), boot)
		if !ok {
			continue
		}
		exes[p.Process.PID] = p.Process.Exe
		procs = append(procs, p)
	}
	for i := range procs {
		procs[i].Process.ParentExe = exes[procs[i].Process.PPID]
	}
	slices.SortFunc(procs, func(a, b Proc) int { return int(a.Process.PID) - int(b.Process.PID) })
	return procs, nil
}

// readProc reads one process; false for a kernel thread or a process that
// is gone.
func (r *Resolver) readProc(pid uint32, boot time.Time) (Proc, bool) {
	dir := filepath.Join(r.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, false
	}
	st, ok := parseStat(b)
	if !ok || st.flags&pfKthread != 0 {
		return Proc{}, false
	}
	p := event.Process{PID: pid, PPID: st.ppid, Comm: st.comm}
	if !boot.IsZero() {
		p.StartTime = boot.Add(time.Duration(st.startTicks) * (time.Second / userHZ))
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.UID, p.GID = parseIDs(status)
	}
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	p.Cwd, _ = os.Readlink(filepath.Join(dir, "cwd"))
	p.Argv, p.Truncated = readArgv(filepath.Join(dir, "cmdline"))

	var c *event.Container
	if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		if path, ok := parseCgroup2(cg); ok {
			if id, err := CgroupIDOfPath(filepath.Join(r.cfg.CgroupRoot, path)); err == nil {
				p.CgroupID = id
				r.Learn(id, path)
				if ct, ok := r.Container(id); ok {
					c = &ct
				}
			}
		}
	}
	return Proc{Process: p, Container: c}, true
}

type procStat struct {
	comm       string
	ppid       uint32
	flags      uint64
	startTicks int64
}

// parseStat parses /proc/<pid>/stat. comm may hold spaces and parentheses:
// it runs from the first '(' to the last ')'.
func parseStat(b []byte) (procStat, bool) {
	var st procStat
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return st, false
	}
	st.comm = string(b[open+1 : end])
	// After comm: state(3) ppid(4) pgrp session tty_nr tpgid flags(9) … starttime(22).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return st, false
	}
	ppid, err1 := strconv.ParseUint(f[1], 10, 32)
	flags, err2 := strconv.ParseUint(f[6], 10, 64)
	start, err3 := strconv.ParseInt(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return st, false
	}
	st.ppid, st.flags, st.startTicks = uint32(ppid), flags, start
	return st, true
}

// parseIDs returns the real uid and gid from /proc/<pid>/status, as
// bpf_get_current_uid_gid() reports them.
func parseIDs(status []byte) (uid, gid uint32) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "Uid" && k != "Gid") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			continue
		}
		if k == "Uid" {
			uid = uint32(n)
		} else {
			gid = uint32(n)
		}
	}
	return uid, gid
}

// readArgv reads a cmdline file within MaxArgvBytes and MaxArgs.
func readArgv(path string) ([]string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxArgvBytes+1))
	if err != nil {
		return nil, false
	}
	return splitArgv(b)
}

// splitArgv splits NUL-separated arguments, cut to MaxArgvBytes and MaxArgs.
func splitArgv(b []byte) ([]string, bool) {
	truncated := false
	if len(b) > MaxArgvBytes {
		b, truncated = b[:MaxArgvBytes], true
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, truncated
	}
	parts := bytes.Split(b, []byte{0})
	if len(parts) > MaxArgs {
		parts, truncated = parts[:MaxArgs], true
	}
	argv := make([]string, len(parts))
	for i, p := range parts {
		argv[i] = string(p)
	}
	return argv, truncated
}

// parseCgroup2 returns the cgroup2 path from /proc/<pid>/cgroup's "0::" line.
func parseCgroup2(b []byte) (string, bool) {
	for line := range strings.Lines(string(b)) {
		if path, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			return path, strings.HasPrefix(path, "/")
		}
	}
	return "", false
}

// bootTime is when the host booted: now minus /proc/uptime, which counts
// from the same clock as process start times (to 10ms).
func (r *Resolver) bootTime() time.Time {
	b, err := os.ReadFile(filepath.Join(r.cfg.ProcRoot, "uptime"))
	if err != nil {
		return time.Time{}
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}
	}
	return r.cfg.Now().Add(-time.Duration(up * float64(time.Second))).Round(10 * time.Millisecond)
}
