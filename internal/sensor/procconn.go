package sensor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"bulwark/internal/event"
)

// The netlink proc connector (linux/cn_proc.h): exec, exit and fork with
// pids only, for kernels where no BPF program loads.
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventFork     = 0x00000001
	procEventExec     = 0x00000002
	procEventExit     = 0x80000000
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
)

type procConnector struct {
	f *os.File
}

func openProcConnector() (*procConnector, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: 0}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind proc connector: %w", err)
	}
	// nlmsghdr + cn_msg + op
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	le.PutUint32(msg[0:], uint32(len(msg))) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
	le.PutUint16(msg[4:], unix.NLMSG_DONE)
	le.PutUint32(msg[12:], uint32(os.Getpid())) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
	le.PutUint32(msg[16:], cnIdxProc)
	le.PutUint32(msg[20:], cnValProc)
	le.PutUint16(msg[32:], 4)
	le.PutUint32(msg[36:], procCnMcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe proc connector: %w", err)
	}
	return &procConnector{f: os.NewFile(uintptr(fd), "proc-connector")}, nil
}

func (pc *procConnector) close() error { return pc.f.Close() }

func (pc *procConnector) run(ctx context.Context, s *Sensor, out func(string, time.Time, event.Runtime)) error {
	if err := pc.f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("sensor: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = pc.f.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 8192)
	for {
		n, err := pc.f.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				s.userLoss.Add(1) // the socket overflowed: an unknown number lost
				continue
			}
			return fmt.Errorf("sensor: read proc connector: %w", err)
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(le.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				s.userLoss.Add(1)
				break
			}
			if kind, at, rt, ok := s.procEvent(b[nlmsgHdrLen:l]); ok {
				out(kind, at, rt)
			}
			b = b[(l+3)&^3:]
		}
	}
}

// procEvent decodes a cn_msg carrying a proc_event.
func (s *Sensor) procEvent(b []byte) (string, time.Time, event.Runtime, bool) {
	if len(b) < cnMsgLen+16 {
		return "", time.Time{}, event.Runtime{}, false
	}
	ev := b[cnMsgLen:]
	what := le.Uint32(ev[0:])
	at := s.dec.wall(le.Uint64(ev[8:]))
	d := ev[16:]
	var rt event.Runtime
	switch what {
	case procEventExec:
		if len(d) < 8 {
			break
		}
		pid, tgid := le.Uint32(d[0:]), le.Uint32(d[4:])
		if pid != tgid {
			break
		}
		rt.Process = s.procProcess(tgid)
		return event.KindProcessExec, at, rt, true
	case procEventFork:
		if len(d) < 16 {
			break
		}
		ptgid, cpid, ctgid := le.Uint32(d[4:]), le.Uint32(d[8:]), le.Uint32(d[12:])
		if cpid != ctgid {
			break // a thread
		}
		rt.Process = s.procProcess(ptgid)
		rt.Child = &event.Process{PID: ctgid, PPID: ptgid}
		return event.KindProcessFork, at, rt, true
	case procEventExit:
		if len(d) < 24 {
			break
		}
		pid, tgid, code := le.Uint32(d[0:]), le.Uint32(d[4:]), le.Uint32(d[8:])
		if pid != tgid {
			break
		}
		ppid := le.Uint32(d[20:])
		rt.Process = event.Process{PID: tgid, PPID: ppid}
		rt.Exit = &event.Exit{Code: int(code>>8) & 0xff, Signal: int(code & 0x7f)}
		return event.KindProcessExit, at, rt, true
	}
	return "", time.Time{}, rt, false
}

// procProcess reads what the proc connector does not say from /proc.
func (s *Sensor) procProcess(pid uint32) event.Process {
	p := event.Process{PID: pid}
	dir := s.cfg.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10)
	p.Exe = s.readlink(pid, "exe")
	p.Cwd = s.readlink(pid, "cwd")
	if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
		p.Argv = splitArgv(b)
	}
	if b, err := os.ReadFile(dir + "/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			n, _ := strconv.ParseUint(f[0], 10, 32)
			switch k {
			case "Name":
				p.Comm = f[0]
			case "PPid":
				p.PPID = uint32(n)
			case "Uid":
				p.UID = uint32(n)
			case "Gid":
				p.GID = uint32(n)
			}
		}
	}
	return p
}
