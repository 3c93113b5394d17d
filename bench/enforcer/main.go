// Command enforcer measures what the enforcer (internal/enforcer) costs the
// workloads it guards. It needs root and runc and runs from the repository
// root.
//
// It builds bench/enforcer/storm as a static binary, starts a busybox runc
// container holding it, and for each storm and each of -repeat repetitions
// alternates a baseline (no enforcer anywhere) with a run under a fresh
// enforcer in this process that enforces -rules runtime rules on the
// container (half denied exec paths, three tenths denied write prefixes, a
// fifth denied connect ports; none of them hit by the storm, which is what a
// workload that follows its rules pays):
//
//   - exec: -execs fork+exec+wait of /bin/true (busybox) in the container,
//     over -parallel workers;
//   - open (files reused): -opens open(O_CREAT|O_WRONLY|O_TRUNC)+write(64 B)
//     +close in the container's /tmp, cycling over -files names;
//   - open (new file each time): the same with -opens distinct files, so
//     that every open is a decision (the worst case for fanotify, whose
//     cache of allowed files does not help);
//   - host exec: the exec storm on the host, outside the container: what the
//     enforcer's syscall tracepoints cost every other process.
//
// With -with defender (or enforcer,defender) each repetition also runs the
// storm under the real bulwark-defender: it builds bulwark-console,
// bulwark-defender and bulwarkctl, starts a Console on 127.0.0.1 with a
// temporary data dir, PUTs a container runtime policy of -rules rules (the
// last one scoped to the container's io.bulwark.image, holding the same
// deny entries as above; the first rule that matches a container decides
// for it), and for each run starts a fresh Defender (sensor on,
// --enforce=auto, compliance on, --shim=off so that this machine's runc is
// never replaced) from its own install bundle, waits until it is connected
// and enforces exec, file-write and connect in the container with an empty
// spool, waits -settle, runs the storm while measuring the Defender's and
// the Console's CPU (/proc/<pid>/stat), waits until a sentinel exec after
// the storm is stored at the Console, and stops the Defender with SIGTERM.
// At the end the Console is stopped and its store read: the storm's
// process.exec events of each run (capture). Baseline, enforcer and
// Defender runs rotate which goes first.
//
// A Defender loads the enforcer once; here each enforced run makes a fresh
// one, so the storm starts -settle after New and Apply (and the next run
// -settle after Close), when the kernel's work of attaching and detaching
// (text patching, RCU callbacks freeing programs) is done: the figures are
// the steady state. The storm times itself inside the container, so runc
// exec's start-up is not in the figures. Ratios are the median with the enforcer over the median
// without, in the same run, of wall time and of the storm's own CPU time
// (user+system of it and its children, getrusage): on a shared machine the
// CPU time is much less disturbed by other jobs than the wall time. With
// -reserve-cpu N, Bulwark (this process, so the in-process enforcer; the
// Console and the Defenders it starts) runs on CPU N only and the container
// and every storm, baseline included, on the other CPUs: a node with CPUs
// reserved for its system agents. The Markdown table goes to stdout,
// progress to stderr. It removes its container and temporary directories,
// kills only the processes it started, and closes every enforcer it made
// (which removes all their kernel state).
//
//	sudo go run ./bench/enforcer
//	sudo go run ./bench/enforcer -rules 1000 -execs 5000 -repeat 7
//	sudo go run ./bench/enforcer -with defender -repeat 7
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"bulwark/bench/internal/benchkit"
	"bulwark/internal/enforcer"
)

type options struct {
	rules, execs, opens, files, parallel, repeat int
	disableLSM                                   bool
	settle                                       time.Duration
	enforcer, defender                           bool // the arms measured against the baseline
	reserve                                      int  // CPU for Bulwark (this process's enforcer, the Defender, the Console); -1: none
}

func main() {
	var o options
	flag.IntVar(&o.rules, "rules", 1000, "runtime rules enforced on the container")
	flag.IntVar(&o.execs, "execs", 3000, "execs per exec storm")
	flag.IntVar(&o.opens, "opens", 20000, "opens per open storm")
	flag.IntVar(&o.files, "files", 100, "file names the reused-files open storm cycles over")
	flag.IntVar(&o.parallel, "parallel", 1, "exec storm workers")
	flag.IntVar(&o.repeat, "repeat", 5, "repetitions of each baseline/enforced pair")
	flag.BoolVar(&o.disableLSM, "no-bpf-lsm", false, "use the fallback mechanisms even where BPF LSM works")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "pause after starting and after closing an enforcer or a Defender, before the next storm")
	flag.IntVar(&o.reserve, "reserve-cpu", -1, "run Bulwark (the in-process enforcer, the Defender and the Console) on this CPU only and the container and the storms on the others, as system-reserved CPUs are for a node's agents (-1: all share every CPU)")
	with := flag.String("with", "enforcer", "what runs against the baseline, comma-separated: enforcer (in this process), defender (the real bulwark-defender and a Console)")
	flag.Parse()
	for w := range strings.SplitSeq(*with, ",") {
		switch strings.TrimSpace(w) {
		case "enforcer":
			o.enforcer = true
		case "defender":
			o.defender = true
		default:
			fmt.Fprintf(os.Stderr, "bench/enforcer: -with %q: want enforcer, defender or both\n", w)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/enforcer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: it loads eBPF programs and runs a runc container")
	}
	if o.rules < 0 || o.execs <= 0 || o.opens <= 0 || o.files <= 0 || o.parallel <= 0 || o.repeat <= 0 {
		return errors.New("-rules must be ≥ 0 and the other counts > 0")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fmt.Errorf("runc: %w", err)
	}
	bulwarkCPUs, stormCPUs, err := benchkit.CPUs(o.reserve)
	if err != nil {
		return err
	}
	if bulwarkCPUs != nil {
		// The enforcer runs in this process; what it starts (the Console,
		// the Defenders) inherits the affinity; the container and the
		// storms are started from threads pinned to stormCPUs.
		if err := benchkit.PinProcess(bulwarkCPUs); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "bwbench-enforcer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	load0 := benchkit.LoadAvg()
	progress("building the storm")
	stormBin := filepath.Join(tmp, "storm")
	build := exec.CommandContext(ctx, "go", "build", "-o", stormBin, "./bench/enforcer/storm")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the storm (run from the repository root): %w\n%s", err, out)
	}

	var c *container
	err = benchkit.Pinned(stormCPUs, func() (err error) {
		c, err = startContainer(ctx, runc, filepath.Join(tmp, "bundle"), stormBin)
		return err
	})
	if err != nil {
		return err
	}
	defer c.remove()
	target := rulesFor(c, o.rules)

	type storm struct {
		name, desc string
		ops        int
		args       []string
		host       bool
	}
	storms := []storm{
		{"exec", fmt.Sprintf("exec storm in the container (%d workers)", o.parallel), o.execs,
			[]string{"exec", strconv.Itoa(o.execs), strconv.Itoa(o.parallel), "/bin/true"}, false},
		{"open-reused", fmt.Sprintf("open+write+close in the container, %d files reused", o.files), o.opens,
			[]string{"open", strconv.Itoa(o.opens), strconv.Itoa(o.files), "/tmp"}, false},
		{"open-new", "open+write+close in the container, a new file each time", o.opens,
			[]string{"open", strconv.Itoa(o.opens), "0", "/tmp"}, false},
		{"host-exec", fmt.Sprintf("exec storm on the host (%d workers)", o.parallel), o.execs,
			[]string{"exec", strconv.Itoa(o.execs), strconv.Itoa(o.parallel), "/bin/true"}, true},
	}
	type result struct {
		base, enf, def          []time.Duration
		baseCPU, enfCPU, defCPU []time.Duration
		stats                   []enforcer.Stats
		runs                    []*defenderRun
	}
	results := make([]result, len(storms))
	var db *defenderBench
	if o.defender {
		if db, err = newDefenderBench(ctx, tmp); err != nil {
			return err
		}
		defer db.close()
		progress(fmt.Sprintf("putting %d runtime rules at the Console", o.rules))
		if err := db.putPolicy(ctx, o.rules); err != nil {
			return fmt.Errorf("put the runtime policy: %w", err)
		}
	}
	progsBefore, bpfErr := bpfPrograms(ctx)
	arms := []string{"baseline"}
	if o.enforcer {
		arms = append(arms, "enforcer")
	}
	if o.defender {
		arms = append(arms, "defender")
	}
	var mech enforcer.Mechanisms
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for rep := range o.repeat {
		for i, s := range storms {
			if err := ctx.Err(); err != nil {
				return err
			}
			stormRun := func() (d sample, err error) {
				err = benchkit.Pinned(stormCPUs, func() (err error) {
					if s.host {
						d, err = runStorm(ctx, stormBin, s.args...)
					} else {
						d, err = runStorm(ctx, runc, append([]string{"exec", c.id, "/storm"}, s.args...)...)
					}
					return err
				})
				return d, err
			}
			r := &results[i]
			// Rotate which goes first, so that drift in the machine's
			// load does not favour any.
			k := rep % len(arms)
			for _, arm := range append(slices.Clone(arms[k:]), arms[:k]...) {
				switch arm {
				case "baseline":
					d, err := stormRun()
					if err != nil {
						return fmt.Errorf("%s baseline: %w", s.name, err)
					}
					r.base = append(r.base, d.wall)
					r.baseCPU = append(r.baseCPU, d.cpu)
				case "enforcer":
					e, err := enforcer.New(enforcer.Config{DisableBPFLSM: o.disableLSM}, logger)
					if err != nil {
						return err
					}
					go func() {
						for range e.Events() {
						}
					}()
					mech = e.Mechanisms()
					if err := e.Apply(ctx, []enforcer.Target{target}); err != nil {
						_ = e.Close()
						return fmt.Errorf("apply %d rules: %w", o.rules, err)
					}
					time.Sleep(o.settle)
					d, err := stormRun()
					st := e.Stats()
					if cerr := e.Close(); cerr != nil && err == nil {
						err = cerr
					}
					time.Sleep(o.settle)
					if err != nil {
						return fmt.Errorf("%s with the enforcer: %w", s.name, err)
					}
					r.enf = append(r.enf, d.wall)
					r.enfCPU = append(r.enfCPU, d.cpu)
					r.stats = append(r.stats, st)
				case "defender":
					d, dr, err := db.withDefender(ctx, c, s.name, o.settle, stormRun)
					if err != nil {
						return err
					}
					r.def = append(r.def, d.wall)
					r.defCPU = append(r.defCPU, d.cpu)
					r.runs = append(r.runs, &dr)
				}
			}
			msg := fmt.Sprintf("rep %d/%d %s: baseline %v (cpu %v)", rep+1, o.repeat, s.name, r.base[rep].Round(time.Millisecond), r.baseCPU[rep].Round(time.Millisecond))
			if o.enforcer {
				msg += fmt.Sprintf(", enforcer %v (cpu %v)", r.enf[rep].Round(time.Millisecond), r.enfCPU[rep].Round(time.Millisecond))
			}
			if o.defender {
				msg += fmt.Sprintf(", Defender %v (cpu %v, Defender %.0f %% of a core)", r.def[rep].Round(time.Millisecond), r.defCPU[rep].Round(time.Millisecond), 100*r.runs[rep].defCPU)
			}
			progress(msg)
		}
	}
	load1 := benchkit.LoadAvg()
	if o.defender {
		var runs []*defenderRun
		var host []bool
		for i, s := range storms {
			runs = append(runs, results[i].runs...)
			for range results[i].runs {
				host = append(host, s.host)
			}
		}
		if err := db.count(ctx, c.id, runs, host); err != nil {
			return err
		}
	}
	progsAfter, bpfErr2 := bpfPrograms(ctx)

	fmt.Printf("Machine: %d CPUs (%s), %s, kernel %s; load average %s at the start, %s at the end. %d runtime rules on the container (%d exec paths, %d write prefixes, %d connect ports); %d pairs per storm (%s), medians.\n\n",
		runtime.NumCPU(), benchkit.CPUModel(), runtime.Version(), kernelRelease(), load0, load1, o.rules, len(target.DenyExec), len(target.DenyWrite), len(target.DenyConnect), o.repeat, strings.Join(arms, ", "))
	if bulwarkCPUs != nil {
		fmt.Printf("CPUs: Bulwark (this process's enforcer, the Defenders, the Console) on CPU %v; the container and the storms, baseline included, on CPUs %v.\n\n", bulwarkCPUs, stormCPUs)
	}
	if o.enforcer {
		fmt.Printf("The enforcer alone, in this process. Mechanisms: exec %s, file-write %s, connect %s, bind %s.\n\n", mech.Exec.Mechanism, mech.FileWrite.Mechanism, mech.Connect.Mechanism, mech.Bind.Mechanism)
		fmt.Println("| workload | ops | wall, baseline | wall, with enforcer | wall ratio | storm CPU, baseline / with | CPU ratio | wall per op, baseline / with | fanotify decisions / ignore marks (median run) | mean decision time |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for i, s := range storms {
			r := results[i]
			b, e := benchkit.Median(r.base), benchkit.Median(r.enf)
			bc, ec := benchkit.Median(r.baseCPU), benchkit.Median(r.enfCPU)
			st := r.stats[len(r.stats)/2]
			mean := "–"
			if st.Decisions > 0 {
				mean = fmt.Sprintf("%.1f µs", float64(st.DecisionTime.Nanoseconds())/float64(st.Decisions)/1e3)
			}
			fmt.Printf("| %s | %d | %v | %v | %.3f | %v / %v | %.3f | %.1f µs / %.1f µs | %d / %d | %s |\n", s.desc, s.ops,
				b.Round(time.Millisecond), e.Round(time.Millisecond), float64(e)/float64(b),
				bc.Round(time.Millisecond), ec.Round(time.Millisecond), float64(ec)/float64(bc),
				us(b, s.ops), us(e, s.ops), st.Decisions, st.IgnoreMarks, mean)
		}
		fmt.Println()
	}
	if o.defender {
		fmt.Println("The real bulwark-defender (sensor on, --enforce=auto, --shim=off, compliance on), connected to a Console on 127.0.0.1 that holds the policy; a fresh Defender for each run. Captured: the storm's process.exec events of /bin/true stored at the Console, over all runs (the open storms' files are not under a watched path).")
		fmt.Println()
		fmt.Println("| workload | ops | wall, baseline | wall, with Defender | wall ratio | storm CPU, baseline / with | CPU ratio | wall per op, baseline / with | Defender CPU in the storm (median) | Console CPU in the storm (median) | exec events captured / produced |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for i, s := range storms {
			r := results[i]
			b, d := benchkit.Median(r.base), benchkit.Median(r.def)
			bc, dc := benchkit.Median(r.baseCPU), benchkit.Median(r.defCPU)
			var defCPU, conCPU []float64
			captured := 0
			for _, dr := range r.runs {
				defCPU, conCPU = append(defCPU, dr.defCPU), append(conCPU, dr.consoleCPU)
				captured += dr.captured
			}
			capture := "–"
			if strings.Contains(s.name, "exec") {
				capture = fmt.Sprintf("%d / %d (%.2f %%)", captured, s.ops*len(r.runs), 100*float64(captured)/float64(s.ops*len(r.runs)))
			}
			fmt.Printf("| %s | %d | %v | %v | %.3f | %v / %v | %.3f | %.1f µs / %.1f µs | %.1f %% | %.1f %% | %s |\n", s.desc, s.ops,
				b.Round(time.Millisecond), d.Round(time.Millisecond), float64(d)/float64(b),
				bc.Round(time.Millisecond), dc.Round(time.Millisecond), float64(dc)/float64(bc),
				us(b, s.ops), us(d, s.ops), 100*medianF(defCPU), 100*medianF(conCPU), capture)
		}
		fmt.Println()
		var held []string
		var left []int
		for i := range storms {
			for _, dr := range results[i].runs {
				held = append(held, strconv.Itoa(dr.progs))
				left = append(left, dr.left...)
			}
		}
		fmt.Printf("BPF programs held by each Defender: %s; ", strings.Join(held, ", "))
		if len(left) == 0 {
			fmt.Println("none still loaded after its SIGTERM.")
		} else {
			fmt.Printf("WARNING: still loaded after SIGTERM: %v.\n", left)
		}
	}
	if bpfErr != nil || bpfErr2 != nil {
		fmt.Printf("WARNING: could not list BPF programs before and after: %v\n", errors.Join(bpfErr, bpfErr2))
	} else {
		fmt.Printf("BPF programs loaded on the machine before and after the storms: %d and %d.\n", len(progsBefore), len(progsAfter))
	}
	fmt.Println()
	fmt.Println("Every pair (wall baseline → with):")
	fmt.Println()
	for i, s := range storms {
		r := results[i]
		for _, arm := range arms[1:] {
			with := r.enf
			if arm == "defender" {
				with = r.def
			}
			var pairs []string
			for k := range r.base {
				p := fmt.Sprintf("%v → %v", r.base[k].Round(time.Millisecond), with[k].Round(time.Millisecond))
				if arm == "defender" {
					p += fmt.Sprintf(" (Defender %.0f %%, drained %v)", 100*r.runs[k].defCPU, r.runs[k].drain.Round(10*time.Millisecond))
				}
				pairs = append(pairs, p)
			}
			fmt.Printf("- %s, %s: %s\n", s.name, arm, strings.Join(pairs, ", "))
		}
	}
	return nil
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration, ops int) float64 { return float64(d.Microseconds()) / float64(ops) }

func progress(msg string) { fmt.Fprintln(os.Stderr, "bench/enforcer:", msg) }

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c)) //nolint:gosec // G115: a C char
	}
	return string(b)
}

// sample is what one storm measured of itself.
type sample struct {
	wall, cpu time.Duration
	pid       int // of the process run: the storm itself on the host
}

// runStorm runs the storm and returns what it measured itself.
func runStorm(ctx context.Context, name string, args ...string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // G204: runc or the storm this program built
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errb.String())
	}
	var ns, cpuNs, ops int64
	if _, err := fmt.Sscanf(out.String(), "elapsed_ns %d cpu_ns %d ops %d", &ns, &cpuNs, &ops); err != nil {
		return sample{}, fmt.Errorf("storm output %q: %w", out.String(), err)
	}
	return sample{time.Duration(ns), time.Duration(cpuNs), cmd.Process.Pid}, nil
}

// rulesFor compiles n rules for the container, none of which the storms
// hit.
func rulesFor(c *container, n int) enforcer.Target {
	t := enforcer.Target{ContainerID: c.id, CgroupPath: c.cgroupPath, PID: c.pid}
	nExec, nWrite := n/2, n*3/10
	for i := range nExec {
		t.DenyExec = append(t.DenyExec, enforcer.ExecRule{Rule: fmt.Sprintf("exec-%04d", i), Path: fmt.Sprintf("/usr/bin/denied-%04d", i)})
	}
	for i := range nWrite {
		t.DenyWrite = append(t.DenyWrite, enforcer.WriteRule{Rule: fmt.Sprintf("write-%04d", i), Prefix: fmt.Sprintf("/etc/denied-%04d", i)})
	}
	for i := range n - nExec - nWrite {
		t.DenyConnect = append(t.DenyConnect, enforcer.ConnectRule{Rule: fmt.Sprintf("connect-%04d", i), Port: uint16(20000 + i)}) //nolint:gosec // G115: n ≤ 45,535 in practice
	}
	return t
}

// container is the benchmark's runc container.
type container struct {
	runc, id, bundle, cgroupPath string
	pid                          int
}

func startContainer(ctx context.Context, runc, bundle, storm string) (*container, error) {
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "tmp", "etc", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyFile("/bin/busybox", filepath.Join(rootfs, "bin/busybox")); err != nil {
		return nil, fmt.Errorf("needs a static /bin/busybox (busybox-static): %w", err)
	}
	for _, a := range []string{"sh", "true", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			return nil, err
		}
	}
	if err := copyFile(storm, filepath.Join(rootfs, "storm")); err != nil {
		return nil, err
	}
	c := &container{runc: runc, id: fmt.Sprintf("bwbench-enf-%d", os.Getpid()), bundle: bundle}
	if out, err := c.cmd(ctx, "spec"); err != nil {
		return nil, fmt.Errorf("runc spec: %w: %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	proc, ok := spec["process"].(map[string]any)
	if !ok {
		return nil, errors.New("runc spec without a process")
	}
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "3600"}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
	spec["annotations"] = map[string]string{"io.bulwark.image": benchImage} // what the Defender's rules are scoped to
	if b, err = json.Marshal(spec); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil { //nolint:gosec // G306: runc reads it
		return nil, err
	}
	pidFile := filepath.Join(bundle, "init.pid")
	if out, err := c.cmd(ctx, "run", "-d", "--pid-file", pidFile, c.id); err != nil {
		return nil, fmt.Errorf("runc run: %w: %s", err, out)
	}
	if b, err = os.ReadFile(pidFile); err != nil {
		c.remove()
		return nil, err
	}
	if c.pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		c.remove()
		return nil, err
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.pid))
	if err != nil {
		c.remove()
		return nil, err
	}
	for line := range strings.Lines(string(cg)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			c.cgroupPath = p
		}
	}
	if c.cgroupPath == "" {
		c.remove()
		return nil, errors.New("the container's init has no cgroup2 path")
	}
	return c, nil
}

// cmd runs runc with the container's output in a file: a pipe would be kept
// open by the detached container.
func (c *container) cmd(ctx context.Context, args ...string) ([]byte, error) {
	log, err := os.CreateTemp(c.bundle, "runc-*.log")
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, c.runc, args...) //nolint:gosec // G204: runc
	cmd.Dir = c.bundle
	cmd.Stdout, cmd.Stderr = log, log
	err = cmd.Run()
	out, _ := os.ReadFile(log.Name())
	return out, err
}

func (c *container) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, c.runc, "kill", "--all", c.id, "KILL").Run() //nolint:gosec // G204: runc
	_ = exec.CommandContext(ctx, c.runc, "delete", "-f", c.id).Run()          //nolint:gosec // G204: runc
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from) //nolint:gosec // G304: our own paths
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755) //nolint:gosec // G306: an executable
}
