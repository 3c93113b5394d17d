// Package hostcfg reads the facts the host compliance checks need from a
// host's root directory: the Docker daemon's configuration (daemon.json and
// dockerd's command line from its systemd unit, drop-ins and environment
// files), the owner and mode of the files CIS Docker section 3 names, the
// auditd rules, and the kubelet's flags and config file.
//
// The root is a directory holding a host's file system: "/" for a Defender
// running on the host, /proc/1/root for one in a container with hostPID, a
// testdata tree in tests. Symbolic links are followed inside the root, as
// if it were "/" (/var/run → /run stays in the host's tree), never out of it.
package hostcfg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"bulwark/internal/compliance"
)

// maxConfigBytes bounds the configuration files Read parses.
const maxConfigBytes = 4 << 20

// Read reads the host at root. Components that are not installed leave
// their section nil (no Docker daemon: Docker is nil and its checks do not
// apply). A file that cannot be parsed is reported in the error, joined
// with the others; the returned Host still holds everything that could be
// read, so that one broken file does not hide the rest.
func Read(root string) (compliance.Host, error) {
	if fi, err := os.Stat(root); err != nil {
		return compliance.Host{}, fmt.Errorf("host root: %w", err)
	} else if !fi.IsDir() {
		return compliance.Host{}, fmt.Errorf("host root %s: not a directory", root)
	}
	h := &reader{fs: hostFS{root: root}}
	h.owners()
	var host compliance.Host
	if b, err := h.fs.readFile("/etc/hostname"); err == nil {
		host.Name = strings.TrimSpace(string(b))
	}
	host.Docker = h.docker()
	host.Files = h.files(host.Docker)
	host.Audit = h.audit()
	host.Kubelet = h.kubelet()
	return host, errors.Join(h.errs...)
}

// reader is one Read: the root, the names of users and groups, and the
// problems found on the way.
type reader struct {
	fs     hostFS
	users  map[uint32]string
	groups map[uint32]string
	errs   []error
	units  map[string]*unit // by unit name, loaded once
}

func (h *reader) fail(err error) { h.errs = append(h.errs, err) }

// hostFS reads files of a host root, resolving symbolic links as the host
// would: relative to the link's directory, or to the root for an absolute
// target.
type hostFS struct{ root string }

const maxLinks = 40

// resolve returns the real path of the host path p below the root.
func (f hostFS) resolve(p string) (string, error) {
	todo := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for links := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		real := filepath.Join(f.root, filepath.FromSlash(next))
		fi, err := os.Lstat(real)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(real)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		todo = append(strings.Split(strings.Trim(target, "/"), "/"), todo...)
	}
	return filepath.Join(f.root, filepath.FromSlash(cur)), nil
}

func (f hostFS) stat(p string) (fs.FileInfo, error) {
	real, err := f.resolve(p)
	if err != nil {
		return nil, err
	}
	return os.Lstat(real)
}

func (f hostFS) exists(p string) bool {
	_, err := f.stat(p)
	return err == nil
}

func (f hostFS) readFile(p string) ([]byte, error) {
	real, err := f.resolve(p)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	if fi.Size() > maxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", p, fi.Size(), maxConfigBytes)
	}
	return os.ReadFile(real)
}

// readDir lists the names in a host directory, sorted; nil if it is absent.
func (f hostFS) readDir(p string) []string {
	real, err := f.resolve(p)
	if err != nil {
		return nil
	}
	ents, err := os.ReadDir(real)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// firstExisting returns the first of the host paths that exists.
func (f hostFS) firstExisting(paths ...string) (string, bool) {
	for _, p := range paths {
		if f.exists(p) {
			return p, true
		}
	}
	return "", false
}

// binDirs are where a host keeps executables, most common first.
func binDirs() []string {
	return []string{"/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/bin", "/sbin"}
}

// findBinary returns the host path of an executable, or "".
func (f hostFS) findBinary(name string) string {
	for _, d := range binDirs() {
		p := d + "/" + name
		if fi, err := f.stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// owners reads the root's /etc/passwd and /etc/group, so that files are
// reported with the host's names for their owners.
func (h *reader) owners() {
	h.users, h.groups = map[uint32]string{}, map[uint32]string{}
	for file, m := range map[string]map[uint32]string{"/etc/passwd": h.users, "/etc/group": h.groups} {
		b, err := h.fs.readFile(file)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Split(strings.TrimSpace(line), ":")
			if len(f) < 3 || strings.HasPrefix(f[0], "#") {
				continue
			}
			id, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				continue
			}
			if _, dup := m[uint32(id)]; !dup {
				m[uint32(id)] = f[0]
			}
		}
	}
}

func (h *reader) name(m map[uint32]string, id uint32) string {
	if n, ok := m[id]; ok {
		return n
	}
	return strconv.FormatUint(uint64(id), 10)
}

// Security reports whether the host at root enforces AppArmor and SELinux,
// from /sys as the root shows it. The runtime checks report a container
// without a profile or label only on a host that has them.
func Security(root string) (appArmor, seLinux bool) {
	f := hostFS{root: root}
	if b, err := f.readFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		appArmor = strings.TrimSpace(string(b)) == "Y"
	}
	if b, err := f.readFile("/sys/fs/selinux/enforce"); err == nil {
		seLinux = strings.TrimSpace(string(b)) == "1"
	}
	return appArmor, seLinux
}
