//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"bulwark/internal/event"
	"bulwark/internal/sqlite"
)

// checkEvents opens the (stopped) Console's store and checks that exactly
// seqs 1..n of defender id are there, in order, each carrying its own number.
func checkEvents(t testing.TB, dataDir, id string, n uint64) { checkStored(t, dataDir, id, n, true) }

// checkStored checks that seqs 1..n are stored, in order and each carrying
// its own number; with exact, that nothing else is.
func checkStored(t testing.TB, dataDir, id string, n uint64, exact bool) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dataDir, "bulwark.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count, err := db.CountEvents(ctx, event.Filter{DefenderID: id})
	if err != nil {
		t.Fatal(err)
	}
	if exact && uint64(count) != n || uint64(count) < n {
		t.Errorf("stored events of %s = %d, want %s %d", id, count, map[bool]string{true: "exactly", false: "at least"}[exact], n)
	}
	var next uint64 = 1
	for next <= n {
		evs, err := db.Events(ctx, event.Filter{DefenderID: id, AfterSeq: next - 1, Limit: 50000})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			t.Fatalf("events of %s end at seq %d, want %d", id, next-1, n)
		}
		for _, e := range evs {
			if e.Seq != next {
				t.Fatalf("event seq %d follows %d: order broken or an event lost", e.Seq, next-1)
			}
			if want := fmt.Sprintf(`{"n":%d}`, e.Seq); string(e.Data) != want {
				t.Fatalf("event seq %d carries %s, want %s", e.Seq, e.Data, want)
			}
			next++
		}
	}
}

// TestOfflineHundredThousand: the Console is down while the Defender makes
// 100,000 events; after the Console comes back exactly those are stored.
func TestOfflineHundredThousand(t *testing.T) {
	const n = 100_000
	dataDir := t.TempDir()
	api, ch := freePort(t), freePort(t)
	c := startConsole(t, dataDir, api, ch)
	b := c.bundle(t, "offline")
	c.kill(syscall.SIGTERM)

	state := t.TempDir()
	startDefender(t, b, state, "--test-synthetic-events", strconv.Itoa(n))
	waitFor(t, "100,000 events in the spool", 60*time.Second, func() bool { return status(t, state).Spool.NextSeq == n+1 })
	if st := status(t, state); st.Connected || st.Spool.Depth != n || st.Spool.Dropped != 0 {
		t.Fatalf("offline defender status %+v, want disconnected with %d spooled and none dropped", st, n)
	}

	c = startConsole(t, dataDir, api, ch)
	waitFor(t, "every event to be stored", 90*time.Second, func() bool { return c.defender(t, "offline").StoredSeq == n })
	waitFor(t, "the spool to drain", 10*time.Second, func() bool { return status(t, state).Spool.Depth == 0 })
	c.kill(syscall.SIGTERM)
	checkEvents(t, dataDir, "offline", n)
}

// TestDefenderKilledMidStream: kill -9 of the Defender while it sends, then a
// restart: no event lost, none twice.
func TestDefenderKilledMidStream(t *testing.T) {
	const n = 60_000
	dataDir := t.TempDir()
	c := startConsole(t, dataDir, freePort(t), freePort(t))
	b := c.bundle(t, "crashy")
	state := t.TempDir()
	args := []string{"--test-synthetic-events", strconv.Itoa(n), "--test-synthetic-rate", "30000"}
	d := startDefender(t, b, state, args...)
	waitFor(t, "events to flow", 20*time.Second, func() bool { return c.defender(t, "crashy").StoredSeq > 5000 })
	d.kill(syscall.SIGKILL)
	stored := c.defender(t, "crashy").StoredSeq
	if stored >= n {
		t.Fatalf("all %d events were stored before the kill; the test did not kill mid-stream", n)
	}
	startDefender(t, b, state, args...)
	waitFor(t, "every event to be stored", 60*time.Second, func() bool { return c.defender(t, "crashy").StoredSeq == n })
	c.kill(syscall.SIGTERM)
	checkEvents(t, dataDir, "crashy", n)
}

// TestConsoleKilledMidStream: kill -9 of the Console while events arrive
// loses no event it acknowledged; after a restart all of them are stored once.
func TestConsoleKilledMidStream(t *testing.T) {
	const n = 60_000
	dataDir := t.TempDir()
	api, ch := freePort(t), freePort(t)
	c := startConsole(t, dataDir, api, ch)
	b := c.bundle(t, "steady")
	state := t.TempDir()
	startDefender(t, b, state, "--test-synthetic-events", strconv.Itoa(n), "--test-synthetic-rate", "30000")
	waitFor(t, "events to flow", 20*time.Second, func() bool { return c.defender(t, "steady").StoredSeq > 5000 })
	c.kill(syscall.SIGKILL)
	// The Defender's status, refreshed every 2 s, names what was acknowledged.
	time.Sleep(2500 * time.Millisecond)
	st := status(t, state)
	acked := st.Spool.NextSeq - 1 - st.Spool.Depth
	if acked == 0 || acked >= n {
		t.Fatalf("acknowledged %d of %d at the kill; want a kill mid-stream", acked, n)
	}
	// Nothing acknowledged is missing. The store may hold more: batches
	// committed whose acks died with the Console; they are resent and skipped.
	checkStored(t, dataDir, "steady", acked, false)

	c = startConsole(t, dataDir, api, ch)
	waitFor(t, "every event to be stored", 60*time.Second, func() bool { return c.defender(t, "steady").StoredSeq == n })
	c.kill(syscall.SIGTERM)
	checkEvents(t, dataDir, "steady", n)
}

// TestPolicyEnforcedFromDiskWhileConsoleDown: a Defender started while the
// Console is down enforces (and reports) the revision it had.
func TestPolicyEnforcedFromDiskWhileConsoleDown(t *testing.T) {
	dataDir := t.TempDir()
	api, ch := freePort(t), freePort(t)
	c := startConsole(t, dataDir, api, ch)
	b := c.bundle(t, "keeper")
	state := t.TempDir()
	d := startDefender(t, b, state)
	waitFor(t, "the defender to connect", 20*time.Second, func() bool { return c.defender(t, "keeper").Connected })
	c.api(t, "PUT", "/api/v1/policies/runtime/container", `{"rules":[{"name":"first"}]}`, nil)
	c.api(t, "PUT", "/api/v1/policies/compliance/container", `{"rules":[{"name":"second"}]}`, nil)
	waitFor(t, "revision 2 on the defender", 10*time.Second, func() bool { return status(t, state).PolicyRevision == 2 })
	d.kill(syscall.SIGTERM)
	c.kill(syscall.SIGTERM)

	startDefender(t, b, state)
	waitFor(t, "the restarted defender's status", 10*time.Second, func() bool {
		st := status(t, state)
		return st.PolicySource == "disk" && time.Since(st.UpdatedAt) < 5*time.Second
	})
	if st := status(t, state); st.PolicyRevision != 2 || st.Connected {
		t.Fatalf("defender started offline: %+v, want revision 2 from disk, disconnected", st)
	}
	c = startConsole(t, dataDir, api, ch)
	waitFor(t, "the defender to report revision 2", 30*time.Second, func() bool {
		v := c.defender(t, "keeper")
		return v.Connected && v.PolicyRevision == 2
	})
}

// TestIdentityHostAndPodNetwork: a Defender in the host's network namespace
// reports the host name; one in its own network namespace reports its pod
// name and that it is not on the host network.
func TestIdentityHostAndPodNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	ns := fmt.Sprintf("bwtest%d", os.Getpid())
	hostIf, nsIf := "bwh"+strconv.Itoa(os.Getpid()%100000), "bwn"+strconv.Itoa(os.Getpid()%100000)
	const hostIP, nsIP = "169.254.77.1", "169.254.77.2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	run("-n", ns, "link", "set", nsIf, "up")
	run("-n", ns, "link", "set", "lo", "up")

	// The channel listens on the host end of the veth pair, which both
	// Defenders reach: one from the host's namespace, one from the test's.
	ch := freePort(t)
	c := startConsole(t, t.TempDir(), freePort(t), ch, "--hosts", hostIP, "--channel-addr", fmt.Sprintf("%s:%d", hostIP, ch))
	url := fmt.Sprintf("wss://%s:%d/v1/channel", hostIP, ch)

	hostB := c.bundle(t, "on-host")
	podB := c.bundle(t, "in-pod")
	startDefender(t, hostB, t.TempDir(), "--console-url", url)
	cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(bin, "bulwark-defender"), "--bundle", podB, "--state-dir", t.TempDir(), "--console-url", url, "--sensor=false")
	startCmd(t, cmd, []string{"POD_NAME=web-7d4b9c-x2x"})

	waitFor(t, "both defenders to connect", 20*time.Second, func() bool {
		return c.defender(t, "on-host").Connected && c.defender(t, "in-pod").Connected
	})
	host, _ := os.Hostname()
	if v := c.defender(t, "on-host"); v.Hostname != host || !v.HostNetwork {
		t.Errorf("host-network defender: hostname %q hostNetwork %v, want %q true", v.Hostname, v.HostNetwork, host)
	}
	if v := c.defender(t, "in-pod"); v.Hostname != "web-7d4b9c-x2x" || v.HostNetwork {
		t.Errorf("namespaced defender: hostname %q hostNetwork %v, want the pod name and false", v.Hostname, v.HostNetwork)
	}
}
