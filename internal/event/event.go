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
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	AfterSeq   uint64    // with DefenderID: only seqs above it
	Limit      int       // 0: the store's default
}
