package console

import (
	"bytes"
	"math"
	"os"
	"runtime/debug"
	"strconv"
)

// The garbage collector's settings while the admission controller serves.
//
// At Go's default (GOGC=100) a Console with its few megabytes of live heap
// collects several times a second under a busy cluster's admission load,
// and each collection takes a quarter of the CPUs for a few milliseconds:
// the slowest reviews are those that waited for it. Collecting at GOGC=400
// lets the heap grow to five times the live heap between collections; the
// soft memory limit keeps that growth from taking more than the host or the
// container gives.
const (
	DefaultAdmissionGCPercent   = 400
	DefaultAdmissionMemoryLimit = 1 << 30
	// cgroupShare is the part of a container's memory limit the Go heap
	// may take: the rest is for goroutine stacks, SQLite's pages and the
	// kernel's buffers.
	cgroupShare = 0.75
)

// gcSettings are what Run puts in force; zero fields leave Go's own.
type gcSettings struct {
	percent int
	limit   int64 // bytes
}

// admissionGC returns the settings for cfg in a container whose memory is
// limited to cgroupLimit bytes (0: no limit): none when the admission
// controller is off, and a memory limit no higher than cgroupShare of the
// container's.
func admissionGC(cfg Config, cgroupLimit int64) gcSettings {
	if cfg.AdmissionAddr == "" {
		return gcSettings{}
	}
	s := gcSettings{percent: cfg.AdmissionGCPercent, limit: cfg.AdmissionMemoryLimit}
	if share := int64(float64(cgroupLimit) * cgroupShare); s.limit > 0 && cgroupLimit > 0 && share < s.limit {
		s.limit = share
	}
	return s
}

// apply puts s in force and returns what restores the settings it
// replaced.
func (s gcSettings) apply() (restore func()) {
	prevPercent, prevLimit := -2, int64(-1) // -2: not changed
	if s.percent > 0 {
		prevPercent = debug.SetGCPercent(s.percent)
	}
	if s.limit > 0 {
		prevLimit = debug.SetMemoryLimit(s.limit)
	}
	return func() {
		if prevPercent != -2 {
			debug.SetGCPercent(prevPercent)
		}
		if prevLimit >= 0 {
			debug.SetMemoryLimit(prevLimit)
		}
	}
}

// cgroupMemoryLimit returns the memory limit of this process's cgroup (v2,
// then v1), 0 when there is none or it cannot be read.
func cgroupMemoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if data, err := os.ReadFile(f); err == nil {
			return parseCgroupLimit(data)
		}
	}
	return 0
}

// parseCgroupLimit reads memory.max ("max" or bytes) or v1's
// memory.limit_in_bytes (bytes, a page-rounded huge number for none).
func parseCgroupLimit(data []byte) int64 {
	n, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	if err != nil || n <= 0 || n >= math.MaxInt64/2 {
		return 0
	}
	return n
}
