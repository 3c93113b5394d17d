package enforcer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mount is one line of /proc/<pid>/mountinfo.
type mount struct {
	point  string // where it is mounted, in that process's mount namespace
	fstype string
}

// maxMounts bounds what is read of a container's mountinfo, which its
// processes control (they may mount things).
const maxMounts = 4096

// parseMountinfo reads the mount point and file system type of each line.
// A container controls its mountinfo: malformed lines are errors, and no
// more than maxMounts are accepted.
func parseMountinfo(data []byte) ([]mount, error) {
	var out []mount
	for n, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		// id parent major:minor root mountpoint options [optional…] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, fmt.Errorf("mountinfo line %d: no separator", n+1)
		}
		fields := strings.Fields(pre)
		if len(fields) < 6 {
			return nil, fmt.Errorf("mountinfo line %d: %d fields before the separator, want at least 6", n+1, len(fields))
		}
		fstype, _, _ := strings.Cut(post, " ")
		if fstype == "" {
			return nil, fmt.Errorf("mountinfo line %d: no file system type", n+1)
		}
		point := unescapeMount(fields[4])
		if !strings.HasPrefix(point, "/") {
			return nil, fmt.Errorf("mountinfo line %d: mount point %q not absolute", n+1, point)
		}
		if len(out) == maxMounts {
			return nil, fmt.Errorf("mountinfo: more than %d mounts", maxMounts)
		}
		out = append(out, mount{point: point, fstype: unescapeMount(fstype)})
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// errNoCgroup2 means the host has no cgroup2 mount.
var errNoCgroup2 = errors.New("no cgroup2 mount")

// findCgroup2 returns where cgroup2 is mounted: /sys/fs/cgroup on a pure v2
// host, /sys/fs/cgroup/unified on a hybrid one, else the first found.
func findCgroup2(procRoot string) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "self", "mountinfo"))
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	ms, err := parseMountinfo(b)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	var found []string
	for _, m := range ms {
		if m.fstype == "cgroup2" {
			found = append(found, m.point)
		}
	}
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, p := range found {
			if p == want {
				return p, nil
			}
		}
	}
	if len(found) == 0 {
		return "", errNoCgroup2
	}
	return found[0], nil
}

// cgroupOfTask returns a task's cgroup2 path from /proc/<tid>/cgroup.
func cgroupOfTask(procRoot string, tid uint32) (string, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.FormatUint(uint64(tid), 10) + "/cgroup")
	if err != nil {
		return "", err
	}
	return parseCgroup2Line(b)
}

// parseCgroup2Line finds the "0::<path>" line of /proc/<pid>/cgroup.
func parseCgroup2Line(b []byte) (string, error) {
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup2 line")
}
