package enforcer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// record is a decoded struct prevented (bpf/enforcer.h).
type record struct {
	ktime    uint64
	kind     Kind
	mech     Mechanism
	rule     uint32
	pid, tid uint32
	uid      uint32
	comm     string
	addr     netip.AddrPort
	cgroup   uint64
	path     string
}

// Offsets in struct prevented; TestLayout checks them against the
// generated Go type.
const (
	offKtime  = 0
	offKind   = 8
	offMech   = 12
	offRule   = 16
	offPid    = 20
	offTid    = 24
	offUID    = 28
	offComm   = 32
	offFamily = 48
	offPort   = 50
	offAddr   = 52
	offCgLo   = 72
	offCgHi   = 76
	offPath   = 80
	recLen    = 336
	commLen   = 16
	pathLen   = 256
)

var (
	kindOf = map[uint32]Kind{kExec: KindExec, kWrite: KindFileWrite, kConnect: KindConnect, kBind: KindBind}
	mechOf = map[uint32]Mechanism{1: MechanismBPFLSM, 2: MechanismCgroupBPF}
)

// decodePrevented decodes a ring buffer record. It trusts nothing: a short
// record or an unknown kind or mechanism is an error.
func decodePrevented(b []byte) (record, error) {
	var r record
	if len(b) < recLen {
		return r, fmt.Errorf("record of %d bytes, want %d", len(b), recLen)
	}
	le := binary.LittleEndian
	var ok bool
	if r.kind, ok = kindOf[le.Uint32(b[offKind:])]; !ok {
		return r, fmt.Errorf("unknown kind %d", le.Uint32(b[offKind:]))
	}
	if r.mech, ok = mechOf[le.Uint32(b[offMech:])]; !ok {
		return r, fmt.Errorf("unknown mechanism %d", le.Uint32(b[offMech:]))
	}
	r.ktime = le.Uint64(b[offKtime:])
	r.rule = le.Uint32(b[offRule:])
	r.pid = le.Uint32(b[offPid:])
	r.tid = le.Uint32(b[offTid:])
	r.uid = le.Uint32(b[offUID:])
	r.comm = cString(b[offComm : offComm+commLen])
	r.cgroup = uint64(le.Uint32(b[offCgLo:])) | uint64(le.Uint32(b[offCgHi:]))<<32
	switch r.kind {
	case KindExec, KindFileWrite:
		r.path = cString(b[offPath : offPath+pathLen])
	case KindConnect, KindBind:
		port := le.Uint16(b[offPort:])
		var a16 [16]byte
		copy(a16[:], b[offAddr:offAddr+16])
		addr := netip.AddrFrom16(a16)
		switch le.Uint16(b[offFamily:]) {
		case unix.AF_INET:
			addr = addr.Unmap()
		case unix.AF_INET6:
		default:
			return r, fmt.Errorf("%s record with address family %d", r.kind, le.Uint16(b[offFamily:]))
		}
		r.addr = netip.AddrPortFrom(addr, port)
	}
	return r, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// bootNs is the wall clock at CLOCK_MONOTONIC zero, which bpf_ktime_get_ns
// counts from.
func bootNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}
