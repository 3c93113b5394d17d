// Package event defines what Defenders report: one Event per thing seen,
// numbered per Defender so that delivery can be exactly once.
package event

import "time"

// Event is one stored event.
type Event struct {
	DefenderID string
	Seq        uint64 // per Defender, from 1, strictly increasing
	Time       time.Time
	Kind       string // "process.exec", "file.write", "synthetic", …
	Data       []byte // JSON object with the kind's fields
}

// Batch is a run of one Defender's events with consecutive seqs.
type Batch struct {
	DefenderID string
	Events     []Event
}

// Filter selects events. Zero fields match everything.
type Filter struct {
	DefenderID string
	Kind       string
	// Kinds matches any of its entries: an entry ending in "." is a prefix
	// ("process." matches "process.exec"), any other a kind.
	Kinds    []string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	AfterSeq uint64    // with DefenderID: only seqs above it
	Limit    int       // 0: the store's default

	// Where a runtime event ran, from its Runtime. ContainerID matches IDs
	// that start with it (a full ID or a prefix), Image and Host exactly.
	ContainerID string
	Image       string
	Host        string
	// HostOnly selects only events without a container, and InContainer
	// only events with one; both set matches nothing.
	HostOnly    bool
	InContainer bool

	// OrderByTime orders events by (Time, DefenderID, Seq), the order of the
	// whole fleet, instead of by (DefenderID, Seq).
	OrderByTime bool
	// After, with OrderByTime, selects only events after it in that order:
	// pass the last event of a page to get the next one. Unlike a time,
	// it neither skips nor repeats events that share a timestamp.
	After *Cursor
}

// Cursor is a position in the (Time, DefenderID, Seq) order of events.
type Cursor struct {
	Time       time.Time
	DefenderID string
	Seq        uint64
}
