// Package inventory describes what Bulwark protects and runs on: Defenders
// and the hosts they sit on.
package inventory

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defender is one installed Defender as the Console knows it.
type Defender struct {
	ID string // also the CN of its client certificate
	// Hostname is the host's name, or the pod name when the Defender is not
	// in the host's network namespace (HostNetwork false).
	Hostname     string
	HostNetwork  bool
	Version      string
	OS           string
	Kernel       string
	Runtimes     []string
	Capabilities []string

	Connected bool
	LastSeen  time.Time

	CertSerial   string
	CertNotAfter time.Time
	Revoked      bool
	RevokedAt    time.Time

	SpoolDepth     uint64
	EventsDropped  uint64
	StoredSeq      uint64 // highest event seq stored for this Defender
	PolicyRevision int64  // revision the Defender reports it enforces
	CreatedAt      time.Time
	// Sensor is the runtime sensor as last reported; nil: never.
	Sensor *Sensor
}

// Sensor is a Defender's runtime sensor: which probes run, and how many
// events it lost since it started.
type Sensor struct {
	Probes     []Probe `json:"probes"`
	LostKernel uint64  `json:"lostKernel"`
	LostUser   uint64  `json:"lostUser"`
	// Enforcement is how the Defender prevents each kind of action.
	Enforcement []Mechanism `json:"enforcement,omitempty"`
}

// Mechanism is how a Defender prevents one kind of action (exec,
// file-write, connect, listen): bpf-lsm, fanotify, cgroup-bpf or none, with
// the reason for none.
type Mechanism struct {
	Kind      string `json:"kind"`
	Mechanism string `json:"mechanism"`
	Reason    string `json:"reason,omitempty"`
}

// Probe is one kernel hook of the sensor; Error says why an inactive one is.
type Probe struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Active   bool   `json:"active"`
	Error    string `json:"error,omitempty"`
	Degraded string `json:"degraded,omitempty"` // what an active probe does without, and why
}

// HostInfo is what a Defender says about itself and its host in its hello.
type HostInfo struct {
	Hostname     string
	HostNetwork  bool
	Version      string
	OS           string
	Kernel       string
	Runtimes     []string
	Capabilities []string
}

// State is a Defender's live state, recorded at hello, heartbeat and
// disconnect. Host is set only at hello.
type State struct {
	Connected      bool
	LastSeen       time.Time
	SpoolDepth     uint64
	EventsDropped  uint64
	PolicyRevision int64
	Host           *HostInfo
	Sensor         *Sensor // nil: unchanged
}

// Cert is a client certificate issued to a Defender.
type Cert struct {
	Serial     string
	DefenderID string
	IssuedAt   time.Time
	NotAfter   time.Time
	RevokedAt  time.Time // zero: valid
}

// Revoked reports whether the certificate was revoked.
func (c Cert) Revoked() bool { return !c.RevokedAt.IsZero() }

// Summary counts Defenders by state, as GET /api/v1/defenders/summary shows.
type Summary struct {
	Total        int `json:"total"`
	Connected    int `json:"connected"`
	Disconnected int `json:"disconnected"`
	Revoked      int `json:"revoked"`
	// ExpiringSoon counts unrevoked Defenders whose certificate expires within the window.
	ExpiringSoon  int    `json:"expiringSoon"`
	EventsDropped uint64 `json:"eventsDropped"`
	SpoolDepth    uint64 `json:"spoolDepth"`
}

// Summarize counts ds at now; certificates expiring before now+window count as soon.
func Summarize(ds []Defender, now time.Time, window time.Duration) Summary {
	var s Summary
	for _, d := range ds {
		s.Total++
		switch {
		case d.Revoked:
			s.Revoked++
		case d.Connected:
			s.Connected++
		default:
			s.Disconnected++
		}
		if !d.Revoked && !d.CertNotAfter.IsZero() && d.CertNotAfter.Before(now.Add(window)) {
			s.ExpiringSoon++
		}
		s.EventsDropped += d.EventsDropped
		s.SpoolDepth += d.SpoolDepth
	}
	return s
}

// ErrInvalid marks a bad Defender ID or name.
var ErrInvalid = errors.New("invalid")

// ValidateID checks a Defender ID: 1–64 characters of letters, digits, '.', '_' and '-'.
func ValidateID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: defender id must be 1-64 characters", ErrInvalid)
	}
	if strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return fmt.Errorf("%w: defender id %q may contain only letters, digits, '.', '_' and '-'", ErrInvalid, id)
	}
	return nil
}
