// Package porttest hands tests and benchmarks loopback TCP ports to give to a
// process they start.
//
// A port found by listening on port 0 comes from the kernel's ephemeral range,
// which the kernel goes on using for outgoing connections and for the next
// listen on port 0: the same port can come back for the next call, or be taken
// by a connection before the process binds it. Ports from here are below (or
// above) the ephemeral range, free on 127.0.0.1 when returned, and never
// returned twice by one process.
package porttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the first port handed out: below it are well-known and
// registered ports other software on the machine may be configured to use.
const lowest = 20000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a TCP port free on 127.0.0.1 outside the kernel's ephemeral
// range.
func Free() (int, error) {
	lo, hi := ephemeralRange()
	var candidates [][2]int // [first, last]
	if lo-1 >= lowest {
		candidates = append(candidates, [2]int{lowest, lo - 1})
	}
	if hi+1 <= 65535 {
		candidates = append(candidates, [2]int{hi + 1, 65535})
	}
	if len(candidates) == 0 {
		return 0, fmt.Errorf("no ports outside the ephemeral range %d-%d", lo, hi)
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		r := candidates[rand.IntN(len(candidates))] //nolint:gosec // a port to try, not a secret
		port := r[0] + rand.IntN(r[1]-r[0]+1)       //nolint:gosec // a port to try, not a secret
		if given[port] || !free(port) {
			continue
		}
		given[port] = true
		return port, nil
	}
	return 0, errors.New("no free port found outside the ephemeral range after 200 tries")
}

// free reports whether port can be listened on at 127.0.0.1 right now.
func free(port int) bool {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// ephemeralRange is net.ipv4.ip_local_port_range, or Linux's default when it
// cannot be read.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}
