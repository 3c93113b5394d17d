package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoCgroup2 means the host has no cgroup2 mount: cgroup ids (which are
// cgroup2 inode numbers) cannot be mapped to anything.
var ErrNoCgroup2 = errors.New("no cgroup2 mount")

// FindCgroup2 returns where cgroup2 is mounted, from procRoot/self/mountinfo:
// /sys/fs/cgroup on a pure cgroup v2 host, /sys/fs/cgroup/unified on a hybrid
// one. With several cgroup2 mounts it prefers those two, then the first.
func FindCgroup2(procRoot string) (string, error) {
	name := filepath.Join(procRoot, "self", "mountinfo")
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional…] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fstype, _, _ := strings.Cut(post, " "); fstype != "cgroup2" {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 {
			continue
		}
		found = append(found, unescapeMount(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if len(found) == 0 {
		return "", ErrNoCgroup2
	}
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, m := range found {
			if m == want {
				return m, nil
			}
		}
	}
	return found[0], nil
}

// unescapeMount undoes the octal escapes (\040 for a space…) of mountinfo.
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

// CgroupIDOfPath returns the cgroup id of a cgroup2 directory: its inode
// number, which is what bpf_get_current_cgroup_id() reports for a task in it.
func CgroupIDOfPath(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup id: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("cgroup id of %s: no inode", path)
	}
	return st.Ino, nil
}

// walkCgroups maps the inode of every directory under root to its path
// relative to root ("/" for the root, "/a/b" below it). Directories that
// vanish during the walk are skipped.
func walkCgroups(root string) (map[uint64]string, error) {
	id, err := CgroupIDOfPath(root)
	if err != nil {
		return nil, err
	}
	paths := map[uint64]string{id: "/"}
	var walk func(dir, rel string)
	walk = func(dir, rel string) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return // removed meanwhile
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				continue
			}
			child := rel + "/" + e.Name()
			if rel == "/" {
				child = "/" + e.Name()
			}
			paths[st.Ino] = child
			walk(filepath.Join(dir, e.Name()), child)
		}
	}
	walk(root, "/")
	return paths, nil
}

// treeStamp is the cgroup2 root's count of live and dying descendants: it
// changes when a cgroup is created or removed anywhere in the tree. false:
// the kernel (or a fake tree) has no cgroup.stat.
func treeStamp(root string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.stat"))
	if err != nil {
		return "", false
	}
	var stamp strings.Builder
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "nr_descendants ") || strings.HasPrefix(line, "nr_dying_descendants ") {
			stamp.WriteString(line)
		}
	}
	return stamp.String(), stamp.Len() > 0
}
