// Command sensor measures what the Defender's eBPF runtime sensor costs the
// workloads it watches and whether it sees everything they do. It needs root.
//
// It builds bulwark-console, bulwark-defender and bulwarkctl (or takes them
// from -bin), starts a Console on 127.0.0.1 with a temporary data dir, and
// runs two storms, each in a process of its own (this program again, told by
// the environment):
//
//   - exec: -execs sequential fork+exec+wait of /bin/busybox true (or
//     /bin/true) with syscall.ForkExec and Wait4, each with a distinct argv
//     marker "bwbench-<run>-<rep>-<i>", split over -parallel workers;
//   - write: -writes open(O_CREAT|O_WRONLY|O_TRUNC)+write(64 B)+close of
//     absolute paths in a temporary directory, cycling over -files names.
//
// For every storm and each of -repeat repetitions it alternates a baseline
// (no Defender) with a run under a fresh Defender (its own install bundle and
// state dir, --watch-paths the storm's directory): start it, wait until it is
// connected and its spool is empty, measure its idle CPU (utime+stime from
// /proc/<pid>/stat), wakeups (context switches of all its threads, from
// /proc/<pid>/task/*/status) and RSS over -idle, run the storm while sampling its RSS
// every 100 ms, wait until its spool has drained (status.json: depth 0 and
// nextSeq stable), and stop it with SIGTERM. At the end the Console is
// stopped and its SQLite store is read: process.exec events whose argv holds
// the run's marker, file.create/file.write events under the storm's
// directory, and the sensor.loss deltas, per Defender.
//
// "Workload CPU" is user+sys of the storm's process and its children over
// the storm (getrusage): it includes the sensor's in-kernel work in the
// workload's syscalls and, unlike wall time, not the wait for a core another
// job took.
//
// Loss in the summary is the Defender's own counters (status.json, read
// after the storm has drained), for everything it watched during its life,
// not only the storm; the per-run table also shows the sum of the
// sensor.loss events stored by the Console.
//
// Wall-time ratios are medians with the Defender over medians without, in
// the same run. The Console runs on the same machine and ingests the events
// while the storm runs, so its CPU is shown too: on a 2-core VM both
// processes take from the workload. With -reserve-cpu N the Console, the
// Defender and this program run on CPU N only and the storms' processes, with
// and without the Defender, on the other CPUs, every thread of them: a node
// that reserves CPUs for its system agents (kubelet's reservedSystemCPUs,
// systemd's CPUAffinity), and a measure of the Defender's cost to the
// workload that the Console's ingest does not blur.
//
//	sudo go run ./bench/sensor
//	sudo go run ./bench/sensor -parallel 2
//	sudo go run ./bench/sensor -reserve-cpu 1
//
// The Markdown tables go to stdout, progress to stderr. It kills only the
// processes it started, by PID, removes its temporary directories and
// compares `bpftool prog show` before and after.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"bulwark/bench/internal/benchkit"
	"bulwark/internal/defender"
	"bulwark/internal/event"
	"bulwark/internal/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if js := os.Getenv(stormEnv); js != "" {
		if err := runStorm(ctx, js); err != nil {
			fmt.Fprintln(os.Stderr, "bench/sensor storm:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/sensor:", err)
		os.Exit(1)
	}
}

const (
	adminPassword = "bench-admin-password"
	clkTck        = 100 // USER_HZ on Linux
)

type options struct {
	bin      string
	execs    int
	writes   int
	files    int
	repeat   int
	parallel int
	idle     time.Duration
	storms   []string
	reserve  int // CPU for the Console and the Defender; -1: none
	// consoleDir holds the Console's data dir; "": the bench's temp dir.
	consoleDir string
}

func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.bin, "bin", "", "directory with bulwark-console, bulwark-defender and bulwarkctl (default: go build them into a temp dir)")
	flag.IntVar(&o.execs, "execs", 20000, "fork+exec+wait operations in the exec storm")
	flag.IntVar(&o.writes, "writes", 200000, "open+write+close operations in the write storm")
	flag.IntVar(&o.files, "files", 1000, "distinct file names the write storm cycles over")
	flag.IntVar(&o.repeat, "repeat", 3, "baseline/Defender pairs per storm")
	flag.IntVar(&o.parallel, "parallel", 1, "workers sharing each storm")
	flag.DurationVar(&o.idle, "idle", 5*time.Second, "how long the idle Defender's CPU is measured")
	flag.StringVar(&o.consoleDir, "console-dir", "", "parent directory of the Console's data dir (default: the bench's temp dir, on the storms' file system); another file system, e.g. /dev/shm, keeps the Console's disk writes out of the storms' journal, as a Console on its own machine would")
	storms := flag.String("storms", "exec,write", "storms to run: exec, write")
	flag.IntVar(&o.reserve, "reserve-cpu", -1, "run the Console and the Defender on this CPU only and the storms (with and without the Defender) on the others, as system-reserved CPUs are for a node's agents (-1: all share every CPU)")
	flag.Parse()
	for _, s := range strings.Split(*storms, ",") {
		switch s = strings.TrimSpace(s); s {
		case "exec", "write":
			o.storms = append(o.storms, s)
		case "":
		default:
			return o, fmt.Errorf("unknown storm %q", s)
		}
	}
	if o.execs < 1 || o.writes < 1 || o.files < 1 || o.repeat < 1 || o.parallel < 1 {
		return o, errors.New("-execs, -writes, -files, -repeat and -parallel must be positive")
	}
	return o, nil
}

func run(ctx context.Context) error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: the Defender loads eBPF programs")
	}
	for _, m := range [][2]string{{"tracefs", "/sys/kernel/tracing"}, {"bpf", "/sys/fs/bpf"}} {
		if exec.CommandContext(ctx, "mountpoint", "-q", m[1]).Run() != nil {
			if out, err := exec.CommandContext(ctx, "mount", "-t", m[0], "none", m[1]).CombinedOutput(); err != nil {
				return fmt.Errorf("mount %s: %w: %s", m[1], err, out)
			}
		}
	}
	progsBefore, bpfErr := bpfPrograms()

	tmp, err := os.MkdirTemp("", "bwbench-sensor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	consoleParent := tmp
	if o.consoleDir != "" {
		if consoleParent, err = os.MkdirTemp(o.consoleDir, "bwbench-console-"); err != nil {
			return fmt.Errorf("-console-dir: %w", err)
		}
		defer os.RemoveAll(consoleParent)
	}
	procs := &procSet{}
	defer procs.killAll()

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(tmp, "bin")
		for _, b := range []string{"bulwark-console", "bulwark-defender", "bulwarkctl"} {
			logf("building %s", b)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, b), "./cmd/"+b)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build %s: %w", b, err)
			}
		}
	}
	b := &bench{o: o, bin: bin, tmp: tmp, consoleParent: consoleParent, procs: procs, runID: strconv.FormatInt(time.Now().Unix()%1_000_000, 36)}
	if b.bulwarkCPUs, b.stormCPUs, err = benchkit.CPUs(o.reserve); err != nil {
		return err
	}
	if b.bulwarkCPUs != nil {
		// This program's threads (the RSS sampler, the waits) stay off the
		// storms' CPUs too; what it starts from a pinned thread goes where
		// that thread is pinned.
		if err := benchkit.PinProcess(b.bulwarkCPUs); err != nil {
			return err
		}
	}
	if err := b.startConsole(ctx); err != nil {
		return err
	}
	b.stormDir = filepath.Join(tmp, "storm")
	if err := os.MkdirAll(b.stormDir, 0o755); err != nil {
		return err
	}
	b.prog, b.argv0 = "/bin/busybox", "true"
	if _, err := os.Stat(b.prog); err != nil {
		b.prog, b.argv0 = "/bin/true", "/bin/true"
	}
	loadStart := benchkit.LoadAvg()

	var results []*result
	for _, storm := range o.storms {
		for rep := 1; rep <= o.repeat; rep++ {
			r := &result{storm: storm, rep: rep}
			results = append(results, r)
			if err := b.baseline(ctx, r); err != nil {
				return err
			}
			if err := b.withDefender(ctx, r); err != nil {
				return err
			}
			logf("%s #%d: without %s, with %s (%.3f)", storm, rep, r.base.Round(time.Millisecond), r.with.Round(time.Millisecond), r.with.Seconds()/r.base.Seconds())
		}
	}
	loadEnd := benchkit.LoadAvg()

	b.console.Stop(15 * time.Second)
	if err := b.count(ctx, results); err != nil {
		return err
	}
	progsAfter, bpfErr2 := bpfPrograms()

	printReport(os.Stdout, o, b, results, loadStart, loadEnd)
	var held []string
	var left []int
	for _, r := range results {
		if r.defID != "" {
			held = append(held, strconv.Itoa(r.progs))
			left = append(left, r.leftProgs...)
		}
	}
	fmt.Printf("\nBPF programs held by each Defender run: %s; ", strings.Join(held, ", "))
	if len(left) == 0 {
		fmt.Printf("none of them was still loaded after its SIGTERM.\n")
	} else {
		fmt.Printf("WARNING: still loaded after SIGTERM: %v.\n", left)
	}
	if bpfErr != nil || bpfErr2 != nil {
		fmt.Printf("WARNING: could not list BPF programs before and after: %v\n", errors.Join(bpfErr, bpfErr2))
	} else {
		fmt.Printf("BPF programs loaded on the machine before and after the run: %d and %d", len(progsBefore), len(progsAfter))
		if len(progsBefore) != len(progsAfter) {
			fmt.Printf(" (WARNING: they differ; other jobs load and unload programs too, and none of the Defenders' is left)")
		}
		fmt.Println(".")
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// bench holds what one run shares.
type bench struct {
	o        options
	bin, tmp string
	// consoleParent holds the Console's data dir (-console-dir).
	consoleParent string
	procs         *procSet
	runID         string
	console       *proc
	dataDir       string
	apiURL        string
	client        *http.Client
	stormDir      string
	prog          string
	argv0         string
	defs          int
	// bulwarkCPUs run the Console and the Defender, stormCPUs the storms;
	// both nil: no pinning.
	bulwarkCPUs, stormCPUs []int
}

// result is one baseline/Defender pair.
type result struct {
	storm      string
	rep        int
	ops        int
	base, with time.Duration
	// workload CPU (user+sys) without and with
	baseCPU, withCPU time.Duration
	marker           string // exec: argv prefix of the Defender run
	defID            string

	idleCPU    float64 // fraction of a core
	idleWakes  float64 // context switches a second, all threads
	idleRSS    int64   // kB
	stormCPU   float64 // fraction of a core, during the storm
	consoleCPU float64 // fraction of a core, during the storm
	peakRSS    int64   // kB, sampled every 100 ms during the storm and the drain
	drain      time.Duration
	drainCPU   float64 // Defender CPU seconds from storm start to drained
	spooled    uint64  // events the Defender spooled from storm start to drained
	stLostK    uint64  // status.json at the end
	stLostU    uint64
	stop       time.Duration // SIGTERM to exit
	progs      int           // BPF programs the Defender held
	leftProgs  []int         // of those, still loaded after it stopped

	captured     int
	unique       int // exec: distinct markers among captured
	lostK, lostU uint64
	lostProbes   map[string]uint64 // kernel loss stored by the Console, by probe kind
}

// proc is a process this program started; it is only ever signalled by its
// PID.
type proc = benchkit.Proc

type procSet struct {
	mu    sync.Mutex
	procs []*proc
}

func (s *procSet) start(cmd *exec.Cmd) (*proc, error) {
	p, err := benchkit.Start(cmd, logf)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

func (s *procSet) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		p.Stop(10 * time.Second)
	}
}

func (b *bench) startConsole(ctx context.Context) error {
	apiPort, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	chPort, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	b.dataDir = filepath.Join(b.consoleParent, "console")
	cmd := exec.Command(filepath.Join(b.bin, "bulwark-console"), "--data-dir", b.dataDir, //nolint:noctx // stopped by signal, not by ctx, so that it can be stopped gracefully
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort), "--channel-addr", fmt.Sprintf("127.0.0.1:%d", chPort))
	cmd.Env = append(os.Environ(), "BULWARK_ADMIN_PASSWORD="+adminPassword)
	var p *proc
	err = benchkit.Pinned(b.bulwarkCPUs, func() (err error) { p, err = b.procs.start(cmd); return err })
	if err != nil {
		return fmt.Errorf("start console: %w", err)
	}
	b.console = p
	b.apiURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ca, err := os.ReadFile(filepath.Join(b.dataDir, "pki", "ca.pem")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca)
			b.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.apiURL+"/api/v1/_ping", nil)
			if resp, err := b.client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		if p.Exited() {
			return fmt.Errorf("console exited:\n%s", p.Out)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("console did not answer within 30s:\n%s", p.Out)
		}
		if err := benchkit.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// bundle writes an install bundle for id with bulwarkctl, as a user would.
func (b *bench) bundle(ctx context.Context, id string) (string, error) {
	dir := filepath.Join(b.tmp, "bundle-"+id)
	cfgDir := filepath.Join(b.tmp, "ctl-config")
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "bulwarkctl"), "--console", b.apiURL,
		"--ca-cert", filepath.Join(b.dataDir, "pki", "ca.pem"), "--username", "admin", "--password", adminPassword,
		"defender", "bundle", "--id", id, "--out", dir)
	cmd.Env = append(os.Environ(), "BULWARK_CONFIG_DIR="+cfgDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bulwarkctl defender bundle: %w\n%s", err, out)
	}
	return dir, nil
}

// storm runs one storm and returns its wall time; marker prefixes exec argv.
func (b *bench) baseline(ctx context.Context, r *result) error {
	logf("%s #%d: baseline (no Defender)", r.storm, r.rep)
	d, cpu, n, err := b.storm(ctx, r.storm, fmt.Sprintf("bwbench-%s-base%d-", b.runID, r.rep))
	if err != nil {
		return fmt.Errorf("%s storm without the Defender: %w", r.storm, err)
	}
	r.base, r.baseCPU, r.ops = d, cpu, n
	return nil
}

func (b *bench) withDefender(ctx context.Context, r *result) error {
	b.defs++
	r.defID = fmt.Sprintf("bench-%s-%d", r.storm, r.rep)
	r.marker = fmt.Sprintf("bwbench-%s-%d-", b.runID, b.defs)
	bundle, err := b.bundle(ctx, r.defID)
	if err != nil {
		return err
	}
	state := filepath.Join(b.tmp, "state-"+r.defID)
	cmd := exec.Command(filepath.Join(b.bin, "bulwark-defender"), //nolint:noctx // stopped by SIGTERM to measure a graceful detach
		"--bundle", bundle, "--state-dir", state, "--watch-paths", b.stormDir)
	var p *proc
	err = benchkit.Pinned(b.bulwarkCPUs, func() (err error) { p, err = b.procs.start(cmd); return err })
	if err != nil {
		return fmt.Errorf("start defender: %w", err)
	}
	defer p.Stop(30 * time.Second)
	fail := func(err error) error {
		return fmt.Errorf("%s #%d with the Defender: %w\ndefender output:\n%s", r.storm, r.rep, err, benchkit.Tail(p.Out.String(), 4000))
	}

	logf("%s #%d: Defender pid %d started; waiting until it is connected and idle", r.storm, r.rep, p.PID())
	st, err := waitSettled(ctx, p, state, time.Time{}, 60*time.Second)
	if err != nil {
		return fail(err)
	}
	if st.Sensor == nil {
		return fail(fmt.Errorf("no sensor in the Defender's status (sensor error %q)", st.SensorError))
	}

	t0, err := benchkit.CPUTicks(p.PID())
	if err != nil {
		return fail(err)
	}
	w0, err := benchkit.ContextSwitches(p.PID())
	if err != nil {
		return fail(err)
	}
	if err := benchkit.Sleep(ctx, b.o.idle); err != nil {
		return err
	}
	t1, err := benchkit.CPUTicks(p.PID())
	if err != nil {
		return fail(err)
	}
	w1, err := benchkit.ContextSwitches(p.PID())
	if err != nil {
		return fail(err)
	}
	r.idleCPU = float64(t1-t0) / clkTck / b.o.idle.Seconds()
	r.idleWakes = float64(w1-w0) / b.o.idle.Seconds()
	r.idleRSS, _ = memKB(p.PID(), "VmRSS")
	st, err = defender.ReadStatus(state)
	if err != nil {
		return fail(err)
	}
	seq0 := st.Spool.NextSeq

	// Sample the Defender's RSS until it has drained.
	sctx, stopSampling := context.WithCancel(ctx)
	var peak int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if kb, err := memKB(p.PID(), "VmRSS"); err == nil {
				peak = max(peak, kb)
			}
			select {
			case <-sctx.Done():
				return
			case <-tk.C:
			}
		}
	})
	defer func() { stopSampling(); wg.Wait() }()

	logf("%s #%d: storm with the Defender (idle %.2f%% of a core, %.0f context switches/s, %d kB)", r.storm, r.rep, 100*r.idleCPU, r.idleWakes, r.idleRSS)
	c0, _ := benchkit.CPUTicks(b.console.PID())
	s0, _ := benchkit.CPUTicks(p.PID())
	stormStart := time.Now()
	d, cpu, _, err := b.storm(ctx, r.storm, r.marker)
	if err != nil {
		return fail(err)
	}
	r.with, r.withCPU = d, cpu
	s1, _ := benchkit.CPUTicks(p.PID())
	c1, _ := benchkit.CPUTicks(b.console.PID())
	r.stormCPU = float64(s1-s0) / clkTck / d.Seconds()
	r.consoleCPU = float64(c1-c0) / clkTck / d.Seconds()
	stormEnd := time.Now()

	// A last exec goes through the same ring buffer, queue and spool after
	// every storm event: once the Console has it, it has the storm's.
	if err := b.sentinel(ctx, p, r.marker+"end", stormEnd, 10*time.Minute); err != nil {
		return fail(err)
	}
	r.drain = time.Since(stormEnd)
	s2, _ := benchkit.CPUTicks(p.PID())
	// Loss counters from a status written after that.
	st, err = waitSettled(ctx, p, state, time.Now(), time.Minute)
	if err != nil {
		return fail(err)
	}
	r.drainCPU = float64(s2-s0) / clkTck
	stopSampling()
	wg.Wait()
	r.peakRSS = peak
	r.spooled = st.Spool.NextSeq - seq0
	r.stLostK, r.stLostU = st.Sensor.LostKernel, st.Sensor.LostUser
	logf("%s #%d: drained %s after the storm (storm took %s)", r.storm, r.rep, r.drain.Round(time.Millisecond), stormEnd.Sub(stormStart).Round(time.Millisecond))
	held, err := benchkit.HeldPrograms(p.PID())
	if err != nil {
		return fail(err)
	}
	stopStart := time.Now()
	p.Stop(30 * time.Second)
	r.stop = time.Since(stopStart)
	r.progs = len(held)
	if loaded, err := bpfPrograms(); err == nil {
		for _, id := range held {
			if slices.ContainsFunc(loaded, func(s string) bool { return strings.HasPrefix(s, strconv.Itoa(id)+":") }) {
				r.leftProgs = append(r.leftProgs, id)
			}
		}
	}
	if r.stop > 5*time.Second {
		logf("%s #%d: the Defender took %s to stop on SIGTERM; its last output:\n%s", r.storm, r.rep, r.stop.Round(time.Millisecond), benchkit.Tail(p.Out.String(), 2000))
	}
	return nil
}

// sentinel execs the workload program with argument mark and waits until
// the Console lists that process.exec.
func (b *bench) sentinel(ctx context.Context, p *proc, mark string, since time.Time, timeout time.Duration) error {
	pid, err := syscall.ForkExec(b.prog, []string{b.argv0, mark}, &syscall.ProcAttr{})
	if err != nil {
		return fmt.Errorf("sentinel: %w", err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return fmt.Errorf("sentinel: %w", err)
	}
	deadline := time.Now().Add(timeout)
	after := ""
	for {
		q := url.Values{"type": {event.KindProcessExec}, "from": {since.Add(-2 * time.Second).UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.apiURL+"/api/v1/audits/runtime/host?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		req.SetBasicAuth("admin", adminPassword)
		resp, err := b.client.Do(req)
		if err != nil {
			return fmt.Errorf("sentinel: %w", err)
		}
		var page []struct {
			Event event.Runtime `json:"event"`
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
		if next := resp.Header.Get("X-Bulwark-Next"); next != "" {
			after = next
		}
		if len(page) == 1000 {
			continue
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

// waitSettled waits until the Defender is connected and its spool is empty
// in two consecutive status writes (2 s apart) made after since. nextSeq
// need not be stable: other jobs on the machine exec too.
func waitSettled(ctx context.Context, p *proc, state string, since time.Time, timeout time.Duration) (defender.Status, error) {
	deadline := time.Now().Add(timeout)
	var last defender.Status
	for {
		st, err := defender.ReadStatus(state)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return st, err
		}
		if err == nil && st.UpdatedAt.After(since) && !st.UpdatedAt.Equal(last.UpdatedAt) {
			if st.Connected && st.Spool.Depth == 0 && last.Connected && last.Spool.Depth == 0 {
				return st, nil
			}
			last = st
		}
		if p.Exited() {
			return st, errors.New("the Defender exited")
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("not settled within %s: status %+v", timeout, st.Spool)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return st, err
		}
	}
}

// count reads the stopped Console's store.
func (b *bench) count(ctx context.Context, results []*result) error {
	db, err := sqlite.Open(ctx, filepath.Join(b.dataDir, "bulwark.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("open the console's store: %w", err)
	}
	defer db.Close()
	prefix := b.stormDir + "/"
	for _, r := range results {
		if r.defID == "" {
			continue
		}
		kinds := []string{event.KindProcessExec}
		if r.storm == "write" {
			kinds = []string{event.KindFileCreate, event.KindFileWrite}
		}
		seen := map[string]bool{}
		err := eachEvent(ctx, db, event.Filter{DefenderID: r.defID, Kinds: kinds}, func(e event.Event) error {
			var rt event.Runtime
			if err := json.Unmarshal(e.Data, &rt); err != nil {
				return fmt.Errorf("event %s/%d: %w", e.Kind, e.Seq, err)
			}
			if r.storm == "exec" {
				for _, a := range rt.Process.Argv {
					if i, err := strconv.Atoi(strings.TrimPrefix(a, r.marker)); err == nil && strings.HasPrefix(a, r.marker) && i < r.ops {
						r.captured++
						seen[a] = true
						break
					}
				}
				return nil
			}
			if rt.File != nil && strings.HasPrefix(rt.File.Path, prefix) {
				r.captured++
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.unique = len(seen)
		err = eachEvent(ctx, db, event.Filter{DefenderID: r.defID, Kind: event.KindSensorLoss}, func(e event.Event) error {
			var l event.Loss
			if err := json.Unmarshal(e.Data, &l); err != nil {
				return fmt.Errorf("event %s/%d: %w", e.Kind, e.Seq, err)
			}
			r.lostK += l.Kernel
			r.lostU += l.User
			if l.Kernel > 0 {
				if r.lostProbes == nil {
					r.lostProbes = map[string]uint64{}
				}
				r.lostProbes[l.Probe] += l.Kernel
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func eachEvent(ctx context.Context, db *sqlite.DB, f event.Filter, fn func(event.Event) error) error {
	f.Limit = 100000
	for {
		evs, err := db.Events(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(evs) < f.Limit {
			return nil
		}
		f.AfterSeq = evs[len(evs)-1].Seq
	}
}

// memKB reads a kB line (VmRSS, VmHWM) of /proc/<pid>/status.
func memKB(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, key)
}

// bpfPrograms lists the loaded BPF programs as "id:name".
func bpfPrograms() ([]string, error) {
	out, err := exec.CommandContext(context.Background(), "bpftool", "-j", "prog", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var progs []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var ids []string
	for _, p := range progs {
		ids = append(ids, fmt.Sprintf("%d:%s", p.ID, p.Name))
	}
	return ids, nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func pct(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) }

func printReport(w io.Writer, o options, b *bench, results []*result, loadStart, loadEnd string) {
	osrel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(w, "Machine: %d CPUs (%s), Linux %s, %s; load average (1/5/15 min) %s at the start, %s at the end.\n",
		runtime.NumCPU(), benchkit.CPUModel(), strings.TrimSpace(string(osrel)), runtime.Version(), loadStart, loadEnd)
	fmt.Fprintf(w, "Workload: %d worker(s) per storm; exec storm runs `%s %s <marker>`; write storm cycles over %d files; %d baseline/Defender pairs per storm; Defender idle measured over %s.\n",
		o.parallel, b.prog, b.argv0, o.files, o.repeat, o.idle)
	if b.bulwarkCPUs != nil {
		fmt.Fprintf(w, "CPUs: the Console, the Defender and the bench on CPU %v; the storms' processes (with and without the Defender), every thread of them, on CPUs %v.\n", b.bulwarkCPUs, b.stormCPUs)
	} else {
		fmt.Fprintln(w, "CPUs: the Console, the Defender and the storms share every CPU.")
	}
	fmt.Fprintf(w, "The Console's data dir: %s; the storms' directory: %s.\n", b.dataDir, b.stormDir)
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| storm | operations | wall without (median) | wall with (median) | ratio | workload CPU ratio | events produced | captured | lost kernel / user | capture | Defender CPU idle | Defender wakeups idle | Defender CPU under storm | RSS idle | RSS peak |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, storm := range o.storms {
		var base, with, baseCPU, withCPU []time.Duration
		var idle, busy, wakes []float64
		var idleRSS []int64
		var produced, captured int
		var lk, lu, peak int64
		for _, r := range results {
			if r.storm != storm {
				continue
			}
			base, with = append(base, r.base), append(with, r.with)
			baseCPU, withCPU = append(baseCPU, r.baseCPU), append(withCPU, r.withCPU)
			idle, busy = append(idle, r.idleCPU), append(busy, r.stormCPU)
			wakes = append(wakes, r.idleWakes)
			idleRSS = append(idleRSS, r.idleRSS)
			produced += r.ops
			captured += r.captured
			lk += int64(r.stLostK)
			lu += int64(r.stLostU)
			peak = max(peak, r.peakRSS)
		}
		if len(base) == 0 {
			continue
		}
		name := "exec (fork+exec+wait)"
		if storm == "write" {
			name = "open/write/close"
		}
		fmt.Fprintf(w, "| %s | %d per run, %d runs | %s | %s | %.3f | %.3f | %d | %d | %d / %d | %.2f %% | %s | %.0f/s | %s | %s | %s |\n",
			name, opsOf(results, storm), len(base), secs(benchkit.Median(base)), secs(benchkit.Median(with)),
			benchkit.Median(with).Seconds()/benchkit.Median(base).Seconds(), benchkit.Median(withCPU).Seconds()/benchkit.Median(baseCPU).Seconds(), produced, captured, lk, lu,
			100*float64(captured)/float64(produced), pct(benchkit.Median(idle)), benchkit.Median(wakes), pct(benchkit.Median(busy)), mib(benchkit.Median(idleRSS)), mib(peak))
	}

	fmt.Fprintln(w, "\nEvery run:")
	fmt.Fprintln(w, "\n| storm | # | without | with | ratio | workload CPU without / with | captured / produced | distinct markers | lost kernel / user (store; status.json) | Defender CPU idle / storm | Console CPU in storm | events spooled (storm+drain) | drain after storm | Defender CPU s (storm+drain) | µs CPU per spooled event | RSS idle / peak |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		uniq := "–"
		if r.storm == "exec" {
			uniq = strconv.Itoa(r.unique)
		}
		per := 0.0
		if r.spooled > 0 {
			per = r.drainCPU / float64(r.spooled) * 1e6
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %.3f | %s / %s | %d / %d | %s | %d / %d; %d / %d | %s / %s | %s | %d | %s | %.2f | %.1f | %s / %s |\n",
			r.storm, r.rep, secs(r.base), secs(r.with), r.with.Seconds()/r.base.Seconds(), secs(r.baseCPU), secs(r.withCPU), r.captured, r.ops, uniq,
			r.lostK, r.lostU, r.stLostK, r.stLostU, pct(r.idleCPU), pct(r.stormCPU), pct(r.consoleCPU),
			r.spooled, secs(r.drain), r.drainCPU, per, mib(r.idleRSS), mib(r.peakRSS))
	}
	for _, r := range results {
		var by []string
		for _, probe := range slices.Sorted(maps.Keys(r.lostProbes)) {
			by = append(by, fmt.Sprintf("%s %d", probe, r.lostProbes[probe]))
		}
		if len(by) > 0 {
			fmt.Fprintf(w, "\nKernel loss by probe kind (stored), %s #%d: %s.\n", r.storm, r.rep, strings.Join(by, ", "))
		}
	}
}

func opsOf(results []*result, storm string) int {
	for _, r := range results {
		if r.storm == storm {
			return r.ops
		}
	}
	return 0
}
