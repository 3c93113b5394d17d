package main

// The -with defender arm: the storms under the real bulwark-defender
// (sensor and enforcement on), connected to a real Console on 127.0.0.1
// that holds the runtime policy.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"bulwark/bench/internal/benchkit"
	"bulwark/internal/defender"
	"bulwark/internal/event"
	"bulwark/internal/sqlite"
)

const (
	adminPassword = "bench-admin-password"
	benchImage    = "registry.local/bwbench:1"
	clkTck        = 100 // USER_HZ on Linux
)

// proc is a process this program started; it is only ever signalled by its
// PID.
type proc = benchkit.Proc

// progressf is progress with a format, for benchkit.Start.
func progressf(format string, args ...any) { progress(fmt.Sprintf(format, args...)) }

// defenderRun is what one storm under the Defender measured beyond the
// storm's own times.
type defenderRun struct {
	id         string
	stormPID   int     // the host storm's PID (its execs' parent)
	defCPU     float64 // fraction of a core during the storm
	consoleCPU float64 // fraction of a core during the storm
	drain      time.Duration
	progs      int   // BPF programs the Defender held
	left       []int // of those, still loaded after it stopped
	captured   int   // the storm's process.exec events in the Console's store
}

// defenderBench is the Console and what the Defender runs share.
type defenderBench struct {
	bin, tmp string
	console  *proc
	dataDir  string
	apiURL   string
	client   *http.Client
	busybox  string
	n        int
}

func newDefenderBench(ctx context.Context, tmp string) (*defenderBench, error) {
	b := &defenderBench{bin: filepath.Join(tmp, "bin"), tmp: tmp, busybox: "/bin/busybox"}
	for _, name := range []string{"bulwark-console", "bulwark-defender", "bulwarkctl"} {
		progress("building " + name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(b.bin, name), "./cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", name, err, out)
		}
	}
	for _, m := range [][2]string{{"tracefs", "/sys/kernel/tracing"}, {"bpf", "/sys/fs/bpf"}} {
		if exec.CommandContext(ctx, "mountpoint", "-q", m[1]).Run() != nil {
			if out, err := exec.CommandContext(ctx, "mount", "-t", m[0], "none", m[1]).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("mount %s: %w: %s", m[1], err, out)
			}
		}
	}
	if err := b.startConsole(ctx); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *defenderBench) close() {
	if b.console != nil {
		b.console.Stop(15 * time.Second)
	}
}

func (b *defenderBench) startConsole(ctx context.Context) error {
	apiPort, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	chPort, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	b.dataDir = filepath.Join(b.tmp, "console")
	cmd := exec.Command(filepath.Join(b.bin, "bulwark-console"), "--data-dir", b.dataDir, //nolint:noctx // stopped by SIGTERM, so that its store is closed cleanly
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort), "--channel-addr", fmt.Sprintf("127.0.0.1:%d", chPort))
	cmd.Env = append(os.Environ(), "BULWARK_ADMIN_PASSWORD="+adminPassword)
	p, err := benchkit.Start(cmd, progressf)
	if err != nil {
		return fmt.Errorf("start the console: %w", err)
	}
	b.console = p
	b.apiURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ca, err := os.ReadFile(filepath.Join(b.dataDir, "pki", "ca.pem")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca)
			b.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			if err := b.api(ctx, http.MethodGet, "/api/v1/_ping", "", nil); err == nil {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("the console exited:\n%s", p.Out)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the console did not answer within 30s:\n%s", p.Out)
		}
		if err := benchkit.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// api calls the Console's REST API as admin; out, if not nil, receives the
// JSON answer.
func (b *defenderBench) api(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, b.apiURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth("admin", adminPassword)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// putPolicy sets the container runtime policy: n rules, of which the first
// n-1 are scoped to other images and the last to the bench container. The
// first rule whose collections match a container decides for it, so the
// container's rule holds the n deny entries the enforcer-only arm applies
// (rulesFor's split: exec paths, write prefixes, connect ports), none hit by
// the storms; the Defender still matches every container against the whole
// policy.
func (b *defenderBench) putPolicy(ctx context.Context, n int) error {
	nExec, nWrite := n/2, n*3/10
	rules := make([]string, 0, n)
	for i := range n - 1 {
		rules = append(rules, fmt.Sprintf(`{"name":"other-%04d","collections":[{"name":"other-%04d","images":["registry.local/other-%04d:*"]}],`+
			`"processes":{"deniedList":{"effect":"prevent","paths":["/usr/bin/denied-%04d"]}}}`, i, i, i, i))
	}
	q := func(f string, lo, hi int) string {
		var xs []string
		for i := lo; i < hi; i++ {
			xs = append(xs, fmt.Sprintf(f, i))
		}
		return strings.Join(xs, ",")
	}
	rules = append(rules, fmt.Sprintf(`{"name":"bwbench","collections":[{"name":"bwbench","images":["registry.local/bwbench:*"]}],`+
		`"processes":{"deniedList":{"effect":"prevent","paths":[%s]}},"filesystem":{"deniedList":{"effect":"prevent","paths":[%s]}},`+
		`"network":{"outboundPorts":{"effect":"prevent","denied":[%s]}}}`,
		q(`"/usr/bin/denied-%04d"`, 0, nExec), q(`"/etc/denied-%04d"`, 0, nWrite), q(`{"start":%d}`, 20000, 20000+n-nExec-nWrite)))
	return b.api(ctx, http.MethodPut, "/api/v1/policies/runtime/container", `{"rules":[`+strings.Join(rules, ",")+`]}`, nil)
}

// bundle writes an install bundle for id with bulwarkctl, as a user would.
func (b *defenderBench) bundle(ctx context.Context, id string) (string, error) {
	dir := filepath.Join(b.tmp, "bundle-"+id)
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "bulwarkctl"), "--console", b.apiURL,
		"--ca-cert", filepath.Join(b.dataDir, "pki", "ca.pem"), "--username", "admin", "--password", adminPassword,
		"defender", "bundle", "--id", id, "--out", dir)
	cmd.Env = append(os.Environ(), "BULWARK_CONFIG_DIR="+filepath.Join(b.tmp, "ctl-config"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bulwarkctl defender bundle: %w\n%s", err, out)
	}
	return dir, nil
}

// withDefender starts a fresh Defender (sensor on, --enforce=auto, the
// shim off so that this machine's runc is never replaced), waits until it
// is connected, holds the policy and enforces exec, file-write and connect
// in the container with an empty spool, lets it settle, runs the storm,
// waits until a sentinel exec after the storm is stored at the Console and
// stops the Defender with SIGTERM.
func (b *defenderBench) withDefender(ctx context.Context, c *container, storm string, settle time.Duration, run func() (sample, error)) (sample, defenderRun, error) {
	b.n++
	r := defenderRun{id: fmt.Sprintf("bench-%s-%d", storm, b.n)}
	bundle, err := b.bundle(ctx, r.id)
	if err != nil {
		return sample{}, r, err
	}
	state := filepath.Join(b.tmp, "state-"+r.id)
	started := time.Now()
	p, err := benchkit.Start(exec.Command(filepath.Join(b.bin, "bulwark-defender"), //nolint:noctx // stopped by SIGTERM, as a service manager would
		"--bundle", bundle, "--state-dir", state, "--shim=off"), progressf)
	if err != nil {
		return sample{}, r, fmt.Errorf("start the defender: %w", err)
	}
	defer p.Stop(30 * time.Second)
	fail := func(err error) (sample, defenderRun, error) {
		return sample{}, r, fmt.Errorf("%s with the Defender: %w\ndefender output:\n%s", storm, err, benchkit.Tail(p.Out.String(), 4000))
	}
	if err := waitReady(ctx, p, state, c.id, started); err != nil {
		return fail(err)
	}
	if err := benchkit.Sleep(ctx, settle); err != nil {
		return fail(err)
	}

	c0, _ := benchkit.CPUTicks(b.console.PID())
	d0, _ := benchkit.CPUTicks(p.PID())
	s, err := run()
	if err != nil {
		return fail(err)
	}
	d1, _ := benchkit.CPUTicks(p.PID())
	c1, _ := benchkit.CPUTicks(b.console.PID())
	r.stormPID = s.pid
	r.defCPU = float64(d1-d0) / clkTck / s.wall.Seconds()
	r.consoleCPU = float64(c1-c0) / clkTck / s.wall.Seconds()
	end := time.Now()
	if err := b.sentinel(ctx, p, fmt.Sprintf("bwbench-sentinel-%d-%d", os.Getpid(), b.n), end, 5*time.Minute); err != nil {
		return fail(err)
	}
	r.drain = time.Since(end)

	held, err := benchkit.HeldPrograms(p.PID())
	if err != nil {
		return fail(err)
	}
	r.progs = len(held)
	p.Stop(30 * time.Second)
	if loaded, err := bpfPrograms(ctx); err == nil {
		for _, id := range held {
			if slices.Contains(loaded, id) {
				r.left = append(r.left, id)
			}
		}
	}
	return s, r, benchkit.Sleep(ctx, settle)
}

// waitReady waits until the Defender, in a status written after since, is
// connected, enforces exec, file-write and connect in the container and has
// an empty spool in two consecutive status writes.
func waitReady(ctx context.Context, p *proc, state, containerID string, since time.Time) error {
	deadline := time.Now().Add(90 * time.Second)
	var last defender.Status
	ready := func(st defender.Status) bool {
		if !st.Connected || st.Spool.Depth != 0 || st.PolicyRevision == 0 || st.Runtime == nil || st.Sensor == nil {
			return false
		}
		for _, w := range st.Runtime.Enforced {
			if w.Container == containerID {
				return slices.Contains(w.Kinds, "exec") && slices.Contains(w.Kinds, "file-write") && slices.Contains(w.Kinds, "connect")
			}
		}
		return false
	}
	for {
		st, err := defender.ReadStatus(state)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err == nil && st.UpdatedAt.After(since) && !st.UpdatedAt.Equal(last.UpdatedAt) {
			if st.Runtime != nil {
				for _, m := range st.Runtime.Enforcement {
					if m.Mechanism == "none" {
						return fmt.Errorf("the Defender enforces nothing for %s here: %s", m.Kind, m.Reason)
					}
				}
			}
			if ready(st) && ready(last) {
				return nil
			}
			last = st
		}
		if p.Exited() {
			return errors.New("the Defender exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within 90s: connected %v, policy revision %d, spool %+v, runtime %+v, sensor error %q",
				st.Connected, st.PolicyRevision, st.Spool, st.Runtime, st.SensorError)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// sentinel execs busybox on the host with argument mark and waits until
// the Console lists that process.exec: it went through the same ring
// buffer, queue and spool after every event of the storm.
func (b *defenderBench) sentinel(ctx context.Context, p *proc, mark string, since time.Time, timeout time.Duration) error {
	pid, err := syscall.ForkExec(b.busybox, []string{"true", mark}, &syscall.ProcAttr{})
	if err != nil {
		return fmt.Errorf("sentinel: %w", err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return fmt.Errorf("sentinel: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		q := url.Values{"type": {event.KindProcessExec}, "from": {since.Add(-2 * time.Second).UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}}
		var page []struct {
			Event event.Runtime `json:"event"`
		}
		for after := ""; ; {
			if after != "" {
				q.Set("after", after)
			}
			page = page[:0]
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.apiURL+"/api/v1/audits/runtime/host?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			req.SetBasicAuth("admin", adminPassword)
			resp, err := b.client.Do(req)
			if err != nil {
				return fmt.Errorf("sentinel: %w", err)
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("sentinel: list host audits: status %d: %w", resp.StatusCode, err)
			}
			for _, a := range page {
				if slices.Contains(a.Event.Process.Argv, mark) {
					return nil
				}
			}
			after = resp.Header.Get("X-Bulwark-Next")
			if len(page) < 1000 || after == "" {
				break
			}
		}
		if p.Exited() {
			return errors.New("the Defender exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sentinel exec %s was not stored within %s", mark, timeout)
		}
		if err := benchkit.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// count stops the Console and counts, in its store, each run's storm
// execs: process.exec events of /bin/true (argv "true") in the container,
// or on the host with the storm as parent.
func (b *defenderBench) count(ctx context.Context, containerID string, runs []*defenderRun, host []bool) error {
	b.close()
	db, err := sqlite.Open(ctx, filepath.Join(b.dataDir, "bulwark.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("open the console's store: %w", err)
	}
	defer db.Close()
	for i, r := range runs {
		f := event.Filter{DefenderID: r.id, Kind: event.KindProcessExec, Limit: 100000}
		for {
			evs, err := db.Events(ctx, f)
			if err != nil {
				return err
			}
			for _, e := range evs {
				var rt event.Runtime
				if err := json.Unmarshal(e.Data, &rt); err != nil {
					return fmt.Errorf("event %s/%d: %w", e.Kind, e.Seq, err)
				}
				if !slices.Equal(rt.Process.Argv, []string{"true"}) {
					continue
				}
				switch {
				case host[i] && rt.Container == nil && int(rt.Process.PPID) == r.stormPID:
					r.captured++
				case !host[i] && rt.Container != nil && rt.Container.ID == containerID:
					r.captured++
				}
			}
			if len(evs) < f.Limit {
				break
			}
			f.AfterSeq = evs[len(evs)-1].Seq
		}
	}
	return nil
}

// bpfPrograms lists the ids of the loaded BPF programs.
func bpfPrograms(ctx context.Context) ([]int, error) {
	out, err := exec.CommandContext(ctx, "bpftool", "-j", "prog", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var progs []struct {
		ID int `json:"id"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	ids := make([]int, 0, len(progs))
	for _, p := range progs {
		ids = append(ids, p.ID)
	}
	return ids, nil
}
