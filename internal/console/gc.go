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
// At Go's default (GOGC=100) a Console, whose live heap is a few megabytes,
// collects several times a second under a busy cluster's admission load:
// each collection stops the world twice, takes a quarter of the CPUs for a
// few milliseconds and makes the reviews that allocate meanwhile help it,
// and the slowest reviews are those that met one. At GOGC=800 the heap may
// grow to nine times the live heap between collections (tens of megabytes
// for a fresh Console): at 1,000 reviews/s bench/admission counted 1.5
// collections a second instead of 9, and the p99 and the run-queue waits
// fell with them (docs/benchmarks.md). The soft memory
// limit is what bounds the heap of a Console with a large live heap: near
// it the collector runs as often as it must, whatever GOGC says.
const (
	DefaultAdmissionGCPercent   = 800
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
