package httpapi

import (
	"sync"
	"time"
)

// loginLimiter slows down password guessing. After free failed logins for
// one key inside failureWindow, every further attempt waits an exponentially
// growing back-off, capped at maxBackoff. A success clears the key's record.
// The API keeps one limiter per username and a more tolerant one per client
// address, so that users behind one NAT do not lock each other out.
type loginLimiter struct {
	mu       sync.Mutex
	now      func() time.Time
	free     int
	failures map[string]*failureRecord
}

type failureRecord struct {
	count       int
	last        time.Time
	lockedUntil time.Time
}

const (
	// freeUserFailures and freeAddrFailures are the failures allowed before back-off.
	freeUserFailures = 5
	freeAddrFailures = 50
	baseBackoff      = time.Second
	maxBackoff       = 15 * time.Minute
	// failureWindow forgets failures older than this.
	failureWindow = 15 * time.Minute
	// maxTracked bounds memory under a spray of distinct usernames.
	maxTracked = 100_000
)

func newLoginLimiter(now func() time.Time, free int) *loginLimiter {
	return &loginLimiter{now: now, free: free, failures: make(map[string]*failureRecord)}
}

// check returns how long the caller must still wait, zero when it may try.
func (l *loginLimiter) check(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range keys {
		if f, ok := l.failures[k]; ok && now.Before(f.lockedUntil) {
			wait = max(wait, f.lockedUntil.Sub(now))
		}
	}
	return wait
}

// fail records a failed attempt for every key.
func (l *loginLimiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.failures) >= maxTracked {
		l.evictLocked(now)
	}
	for _, k := range keys {
		f, ok := l.failures[k]
		if !ok || now.Sub(f.last) > failureWindow {
			f = &failureRecord{}
			l.failures[k] = f
		}
		f.count++
		f.last = now
		if f.count >= l.free {
			d := baseBackoff << min(f.count-l.free, 20)
			f.lockedUntil = now.Add(min(d, maxBackoff))
		}
	}
}

// succeed forgets the failures of key.
func (l *loginLimiter) succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

func (l *loginLimiter) evictLocked(now time.Time) {
	for k, f := range l.failures {
		if now.Sub(f.last) > failureWindow && !now.Before(f.lockedUntil) {
			delete(l.failures, k)
		}
	}
	if len(l.failures) >= maxTracked {
		clear(l.failures) // a flood of fresh keys: start over rather than grow without bound
	}
}
