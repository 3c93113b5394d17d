package porttest

import (
	"net"
	"strconv"
	"testing"
)

func TestGet(t *testing.T) {
	lo, hi := ephemeralRange()
	seen := map[int]bool{}
	for range 50 {
		port, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if port >= lo && port <= hi {
			t.Fatalf("port %d is in the ephemeral range %d-%d", port, lo, hi)
		}
		if port < lowest || port > 65535 {
			t.Fatalf("port %d out of [%d, 65535]", port, lowest)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		_ = ln.Close()
	}
}

func TestGetSkipsTakenPorts(t *testing.T) {
	// Hold every port of a narrow window taken, then check Get never returns
	// one of them: free must be consulted, not just the random pick.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	taken := map[int]bool{}
	for p := lowest; p < lowest+200; p++ {
		l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		held = append(held, l)
		taken[p] = true
	}
	for range 200 {
		port, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if taken[port] {
			t.Fatalf("Get returned port %d, which this test holds", port)
		}
	}
}
