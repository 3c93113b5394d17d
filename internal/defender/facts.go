package defender

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procFacts reads what runtime events do not carry from the host's /proc,
// for the detections: it races with the process, which may have exited or
// exec'd again, so every answer is best effort and false when unknown.
type procFacts struct{ root string }

func (f procFacts) path(pid uint32, rel string) string {
	return f.root + "/" + strconv.FormatUint(uint64(pid), 10) + "/" + rel
}

// exeChanged returns the change time of the process's executable, as
// stat'ed through /proc/PID/exe (inside the process's mount namespace).
func (f procFacts) exeChanged(pid uint32) (time.Time, bool) {
	fi, err := os.Stat(f.path(pid, "exe"))
	if err != nil {
		return time.Time{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	ctime := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	if m := fi.ModTime(); m.After(ctime) {
		return m, true
	}
	return ctime, true
}

// stdioSockets reports whether the process's standard input and output are
// both sockets.
func (f procFacts) stdioSockets(pid uint32) bool {
	for _, fd := range []string{"fd/0", "fd/1"} {
		l, err := os.Readlink(f.path(pid, fd))
		if err != nil || !strings.HasPrefix(l, "socket:") {
			return false
		}
	}
	return true
}

// setuidRoot reports whether the process runs with effective user root
// for a real user that is not: a setuid-root binary raised it.
func (f procFacts) setuidRoot(pid uint32) bool {
	fh, err := os.Open(f.path(pid, "status"))
	if err != nil {
		return false
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Uid:")
		if !ok {
			continue
		}
		ids := strings.Fields(rest) // real, effective, saved, filesystem
		return len(ids) >= 2 && ids[0] != "0" && ids[1] == "0"
	}
	return false
}
