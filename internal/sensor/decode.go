package sensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"bulwark/internal/event"
)

// Record kinds and syscalls, as enum bw_kind and enum bw_op in bpf/sensor.h.
const (
	kExec uint32 = iota + 1
	kExit
	kFork
	kFile
	kConnect
	kAccept
	kListen
	kSetuid
	kCapset
	kSetns
	kUnshare
	kPtrace
	kModule
	kMax
)

// kindNames names the loss counter of each record kind.
var kindNames = [kMax]string{
	kExec: "exec", kExit: "exit", kFork: "fork", kFile: "file", kConnect: "connect",
	kAccept: "accept", kListen: "listen", kSetuid: "setuid", kCapset: "capset",
	kSetns: "setns", kUnshare: "unshare", kPtrace: "ptrace", kModule: "module",
}

const (
	opNone uint32 = iota
	opOpenat
	opOpenat2
	opOpen
	opCreat
	opUnlinkat
	opUnlink
	opRenameat2
	opRenameat
	opRename
	opFchmodat
	opFchmodat2
	opChmod
	opFchmod
	opConnect
	opAccept
	opAccept4
	opListen
	opSetuid
	opSetgid
	opSetreuid
	opSetregid
	opSetresuid
	opSetresgid
	opSetfsuid
	opSetfsgid
	opCapset
	opSetns
	opUnshare
	opPtrace
	opInitModule
	opFinitModule
	opMax
)

var opNames = [opMax]string{
	opOpenat: "openat", opOpenat2: "openat2", opOpen: "open", opCreat: "creat",
	opUnlinkat: "unlinkat", opUnlink: "unlink", opRenameat2: "renameat2", opRenameat: "renameat",
	opRename: "rename", opFchmodat: "fchmodat", opFchmodat2: "fchmodat2", opChmod: "chmod",
	opFchmod: "fchmod", opConnect: "connect", opAccept: "accept", opAccept4: "accept4",
	opListen: "listen", opSetuid: "setuid", opSetgid: "setgid", opSetreuid: "setreuid",
	opSetregid: "setregid", opSetresuid: "setresuid", opSetresgid: "setresgid",
	opSetfsuid: "setfsuid", opSetfsgid: "setfsgid", opCapset: "capset", opSetns: "setns",
	opUnshare: "unshare", opPtrace: "ptrace", opInitModule: "init_module",
	opFinitModule: "finit_module",
}

// hdr.flags
const (
	fArgvTrunc = 1
	fPathRel   = 2
	fPath2Rel  = 4
	fByFD      = 8
	fRead      = 16
	fCwd       = 32  // the record carries the cwd, resolved in the kernel
	fCwdTrunc  = 64  // the cwd was past the kernel walk's bounds
	fPathOnly  = 128 // a file record that ends with its path's NUL
)

// Record layout (bpf/sensor.h); TestLayout checks these against the BTF of
// the compiled object.
const (
	hdrSize         = 64
	execSize        = 1112
	exitSize        = 72
	forkSize        = 80
	filePath        = 84  // where a file record's path begins
	fileSize        = 600 // without the cwd
	fileCwdSize     = 864 // with it (fCwd)
	netSize         = 120
	genSize         = 160
	pathLen         = 256
	argvLen         = 512
	nameLen         = 64
	atFDCWD         = -100
	oCreat          = 0o100
	afInet          = 2
	afInet6         = 10
	ipprotoTCP      = 6
	ipprotoUDP      = 17
	ipprotoICMP     = 1
	ipprotoIPv6ICMP = 58
	ipprotoMPTCP    = 262
)

var errShort = errors.New("short record")

// decoder turns ring buffer records into events. It belongs to the one
// goroutine that reads the ring buffer and is not safe for concurrent use.
type decoder struct {
	bootNs int64               // wall clock ns at CLOCK_MONOTONIC 0
	comms  map[[16]byte]string // interned comm strings: comms repeat, allocations should not
}

func newDecoder(bootNs int64) *decoder {
	return &decoder{bootNs: bootNs, comms: make(map[[16]byte]string, 256)}
}

func (d *decoder) wall(ktime uint64) time.Time {
	return time.Unix(0, d.bootNs+int64(ktime)) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
}

func (d *decoder) comm(b []byte) string {
	var k [16]byte
	copy(k[:], b)
	if s, ok := d.comms[k]; ok {
		return s
	}
	s := cstring(b)
	if len(d.comms) >= 4096 {
		clear(d.comms)
	}
	d.comms[k] = s
	return s
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

var le = binary.LittleEndian

// record is a decoded record before user-space enrichment.
type record struct {
	kind  string
	at    time.Time
	rt    event.Runtime
	flags uint32
	dfd   int32 // file: base of a relative path, or the fd of fchmod
	dfd2  int32
	cwd   string // resolved in the kernel (fCwd), or ""
	file  event.File
	net   event.Net
}

// decode fills r from one ring buffer record. It resolves nothing on the
// host: enrich does that.
func (d *decoder) decode(b []byte, r *record) error {
	if len(b) < hdrSize {
		return errShort
	}
	kind := le.Uint32(b[16:])
	op := le.Uint32(b[20:])
	r.flags = le.Uint32(b[44:])
	r.cwd = ""
	r.at = d.wall(le.Uint64(b[0:]))
	r.rt = event.Runtime{Process: event.Process{
		CgroupID: le.Uint64(b[8:]),
		PID:      le.Uint32(b[24:]),
		TID:      le.Uint32(b[28:]),
		PPID:     le.Uint32(b[32:]),
		UID:      le.Uint32(b[36:]),
		GID:      le.Uint32(b[40:]),
		Comm:     d.comm(b[48:64]),
	}}
	if op < opMax {
		r.rt.Syscall = opNames[op]
	}
	p := &r.rt.Process
	switch kind {
	case kExec:
		if len(b) < execSize {
			return errShort
		}
		r.kind = event.KindProcessExec
		p.StartTime = d.wall(le.Uint64(b[64:]))
		p.Exe = cstring(b[80 : 80+pathLen])
		n := min(int(le.Uint32(b[72:])), argvLen)
		p.Argv = splitArgv(b[336 : 336+n])
		p.Truncated = r.flags&fArgvTrunc != 0
		if ns := le.Uint64(b[848:]); ns != 0 && ns <= math.MaxInt64 {
			p.ExeChanged = time.Unix(0, int64(ns)).UTC()
		}
		r.decodeCwd(le.Uint32(b[76:]), b[856:856+pathLen])
		p.Cwd = r.cwd
	case kExit:
		if len(b) < exitSize {
			return errShort
		}
		r.kind = event.KindProcessExit
		x := le.Uint32(b[64:])
		r.rt.Exit = &event.Exit{Code: int(x>>8) & 0xff, Signal: int(x & 0x7f)}
	case kFork:
		if len(b) < forkSize {
			return errShort
		}
		r.kind = event.KindProcessFork
		r.rt.Child = &event.Process{
			PID: le.Uint32(b[64:]), PPID: p.PID, UID: p.UID, GID: p.GID,
			Comm: p.Comm, CgroupID: p.CgroupID, StartTime: d.wall(le.Uint64(b[72:])),
		}
	case kFile:
		full := r.flags&fPathOnly == 0
		if len(b) <= filePath || full && len(b) < fileSize {
			return errShort
		}
		r.dfd = int32(le.Uint32(b[64:]))  //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		r.dfd2 = int32(le.Uint32(b[68:])) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		if r.flags&fCwd != 0 {
			if len(b) < fileCwdSize {
				return errShort
			}
			r.decodeCwd(le.Uint32(b[600:]), b[604:604+pathLen])
		}
		flags, mode := le.Uint32(b[72:]), le.Uint32(b[76:])
		r.file = event.File{Path: cstring(b[filePath:min(len(b), filePath+pathLen)])}
		if full {
			r.file.NewPath = cstring(b[344 : 344+pathLen])
		}
		switch op {
		case opOpenat, opOpenat2, opOpen:
			if r.flags&fRead != 0 {
				r.kind = event.KindFileRead
				r.file.Flags = flags
				break
			}
			r.kind = event.KindFileWrite
			r.file.Flags = flags
			if flags&oCreat != 0 {
				r.kind = event.KindFileCreate
				r.file.Mode = mode
			}
		case opCreat:
			r.kind = event.KindFileWrite
			r.file.Flags = flags
			if flags&oCreat != 0 {
				r.kind = event.KindFileCreate
				r.file.Mode = mode
			}
		case opUnlinkat, opUnlink:
			r.kind = event.KindFileUnlink
			r.file.Flags = flags
		case opRenameat2, opRenameat, opRename:
			r.kind = event.KindFileRename
			r.file.Flags = flags
		case opFchmodat, opFchmodat2, opChmod, opFchmod:
			r.kind = event.KindFileChmod
			r.file.Mode = mode
			r.file.Flags = flags
		default:
			return fmt.Errorf("file record with op %d", op)
		}
	case kConnect, kAccept, kListen:
		if len(b) < netSize {
			return errShort
		}
		r.kind = event.KindNetListen
		switch kind {
		case kConnect:
			r.kind = event.KindNetConnect
		case kAccept:
			r.kind = event.KindNetAccept
		}
		fam := le.Uint16(b[64:])
		n := event.Net{Protocol: protoName(le.Uint16(b[66:]))}
		local, lport := addr(fam, b[72:88]), le.Uint16(b[68:])
		remote, rport := addr(fam, b[88:104]), le.Uint16(b[70:])
		switch fam {
		case afInet:
			n.Family = "inet"
		case afInet6:
			n.Family = "inet6"
		}
		switch kind {
		case kConnect:
			n.SrcAddr, n.SrcPort, n.DstAddr, n.DstPort = local, lport, remote, rport
		case kAccept:
			// The flow's direction: the peer connected to us.
			n.SrcAddr, n.SrcPort, n.DstAddr, n.DstPort = remote, rport, local, lport
		case kListen:
			n.SrcAddr, n.SrcPort = local, lport
		}
		r.net = n
		r.rt.Result = int64(le.Uint64(b[104:])) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
	case kSetuid, kCapset, kSetns, kUnshare, kPtrace, kModule:
		if len(b) < genSize {
			return errShort
		}
		a0, a1, a2 := int64(le.Uint64(b[64:])), int64(le.Uint64(b[72:])), int64(le.Uint64(b[80:])) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		switch kind {
		case kSetuid:
			r.kind = event.KindSetuid
			s := &event.Setuid{Call: r.rt.Syscall}
			// The id that takes effect: effective first, then real, then saved.
			id := int64(int32(a0)) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
			switch op {
			case opSetreuid, opSetregid:
				id = firstSet(a1, a0)
			case opSetresuid, opSetresgid:
				id = firstSet(a1, a0, a2)
			}
			switch op {
			case opSetgid, opSetregid, opSetresgid, opSetfsgid:
				s.GID = id
			default:
				s.UID = id
			}
			r.rt.Setuid = s
		case kCapset:
			r.kind = event.KindCapset
			// Target pid (0: itself) and the new effective set's low word
			// have no field in the schema; the call itself is the signal.
		case kSetns:
			r.kind = event.KindSetns
			r.rt.Ns = &event.Ns{Flags: uint64(a1), FD: int32(a0)} //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		case kUnshare:
			r.kind = event.KindUnshare
			r.rt.Ns = &event.Ns{Flags: uint64(a0)} //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		case kPtrace:
			r.kind = event.KindPtrace
			r.rt.Ptrace = &event.Ptrace{Request: a0, TargetPID: uint32(a1)} //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		case kModule:
			r.kind = event.KindModuleLoad
			r.rt.Module = &event.Module{Name: moduleName(cstring(b[96 : 96+nameLen]))}
		}
	default:
		return fmt.Errorf("unknown record kind %d", kind)
	}
	return nil
}

// decodeCwd reads the cwd the kernel wrote backwards into buf, from off,
// when the record says it did. A value that is not an absolute path is
// dropped (and the flag with it), so that user space reads /proc instead.
func (r *record) decodeCwd(off uint32, buf []byte) {
	if r.flags&fCwd == 0 {
		return
	}
	if uint64(off) >= uint64(len(buf)) || buf[off] != '/' {
		r.flags &^= fCwd
		return
	}
	r.cwd = cstring(buf[off:])
}

// firstSet returns the first id that is not -1 (unchanged), or -1.
func firstSet(ids ...int64) int64 {
	for _, id := range ids {
		if int32(id) != -1 { //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
			return int64(int32(id)) //nolint:gosec // G115: a bit-for-bit reinterpretation of a kernel or netlink field
		}
	}
	return -1
}

func moduleName(file string) string {
	name, _, _ := strings.Cut(filepath.Base(file), ".ko")
	if name == "." {
		return ""
	}
	return name
}

// splitArgv splits NUL-separated arguments with one string allocation.
func splitArgv(b []byte) []string {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return nil
	}
	n := 1
	for _, c := range b {
		if c == 0 {
			n++
		}
	}
	all := string(b)
	out := make([]string, 0, n)
	for {
		i := strings.IndexByte(all, 0)
		if i < 0 {
			return append(out, all)
		}
		out = append(out, all[:i])
		all = all[i+1:]
	}
}

func addr(family uint16, b []byte) string {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4])).String()
	case afInet6:
		a := netip.AddrFrom16([16]byte(b[:16]))
		if a.Is4In6() {
			return a.Unmap().String()
		}
		return a.String()
	}
	return ""
}

func protoName(p uint16) string {
	switch p {
	case ipprotoTCP, ipprotoMPTCP:
		// MPTCP is TCP on the wire (and Go listens with it by default).
		return "tcp"
	case ipprotoUDP:
		return "udp"
	case ipprotoICMP:
		return "icmp"
	case ipprotoIPv6ICMP:
		return "icmpv6"
	case 0:
		return ""
	}
	return fmt.Sprintf("proto-%d", p)
}
