package httpapi

import (
	"crypto/sha256"
	"sync"
	"time"
)

// credCache remembers recently verified password/secret checks so that HTTP
// Basic auth on every request does not pay bcrypt each time. Its key binds the
// presented secret to the stored hash, so a changed password or a deleted key
// misses the cache at once.
type credCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	now     func() time.Time
	entries map[[32]byte]time.Time // key → expiry
}

const credCacheMax = 10_000

func newCredCache(ttl time.Duration, now func() time.Time) *credCache {
	return &credCache{ttl: ttl, now: now, entries: make(map[[32]byte]time.Time)}
}

func credKey(principal, secret, storedHash string) [32]byte {
	h := sha256.New()
	for _, s := range []string{principal, secret, storedHash} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *credCache) ok(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, found := c.entries[k]
	if !found {
		return false
	}
	if !c.now().Before(exp) {
		delete(c.entries, k)
		return false
	}
	return true
}

func (c *credCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= credCacheMax {
		clear(c.entries)
	}
	c.entries[k] = c.now().Add(c.ttl)
}
