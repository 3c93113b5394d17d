package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"bulwark/bench/internal/benchkit"
)

// stormEnv carries a storm's stormSpec to the child process that runs it.
const stormEnv = "BWBENCH_SENSOR_STORM"

// stormSpec is one storm, as its process gets it.
type stormSpec struct {
	Kind     string `json:"kind"` // exec or write
	Parallel int    `json:"parallel"`
	// exec
	Prog   string `json:"prog,omitempty"`
	Argv0  string `json:"argv0,omitempty"`
	Marker string `json:"marker,omitempty"`
	Execs  int    `json:"execs,omitempty"`
	// write
	Dir    string `json:"dir,omitempty"`
	Writes int    `json:"writes,omitempty"`
	Files  int    `json:"files,omitempty"`
}

// stormResult is what the storm's process prints.
type stormResult struct {
	Wall time.Duration `json:"wall"`
	CPU  time.Duration `json:"cpu"` // user+sys of the storm's process and its children
	Ops  int           `json:"ops"`
}

// storm runs one storm in a process of its own, started from a thread pinned
// to stormCPUs so that it, every thread of it (the Go runtime's included) and
// the processes it execs run there and nowhere else: a workload confined to
// the CPUs the node leaves it. A storm run from this process would borrow the
// reserved CPU for its runtime's threads while the Defender is not there to
// take it, and run slower beside it for that reason alone.
//
// The CPU time is the storm process's and its waited-for children's (user+sys)
// over the storm: it includes what the sensor's programs cost in the
// workload's own syscalls, and unlike wall time it does not count waiting for
// a core that another job took.
func (b *bench) storm(ctx context.Context, kind, marker string) (wall, cpu time.Duration, ops int, err error) {
	spec := stormSpec{Kind: kind, Parallel: b.o.parallel, Prog: b.prog, Argv0: b.argv0, Marker: marker,
		Execs: b.o.execs, Dir: b.stormDir, Writes: b.o.writes, Files: b.o.files}
	js, err := json.Marshal(spec)
	if err != nil {
		return 0, 0, 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, 0, 0, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), stormEnv+"="+string(js))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := benchkit.Pinned(b.stormCPUs, cmd.Start); err != nil {
		return 0, 0, 0, fmt.Errorf("start the %s storm: %w", kind, err)
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, 0, fmt.Errorf("%s storm: %w", kind, err)
	}
	var r stormResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return 0, 0, 0, fmt.Errorf("%s storm printed %q: %w", kind, out.Bytes(), err)
	}
	return r.Wall, r.CPU, r.Ops, nil
}

// runStorm is the storm's process: it runs the storm in the environment and
// prints its stormResult.
func runStorm(ctx context.Context, js string) error {
	var spec stormSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		return fmt.Errorf("%s: %w", stormEnv, err)
	}
	var fn func(context.Context, stormSpec) (time.Duration, int, error)
	switch spec.Kind {
	case "exec":
		fn = execStorm
	case "write":
		fn = writeStorm
	default:
		return fmt.Errorf("%s: unknown storm %q", stormEnv, spec.Kind)
	}
	before := benchkit.ProcessCPU()
	wall, ops, err := fn(ctx, spec)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(stormResult{Wall: wall, CPU: benchkit.ProcessCPU() - before, Ops: ops})
}

func execStorm(ctx context.Context, spec stormSpec) (time.Duration, int, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	fd := null.Fd()
	attr := &syscall.ProcAttr{Env: []string{"PATH=/usr/bin:/bin"}, Files: []uintptr{fd, fd, fd}}
	// Argument vectors are made before the clock starts.
	argvs := make([][]string, spec.Execs)
	for i := range argvs {
		argvs[i] = []string{spec.Argv0, spec.Marker + strconv.Itoa(i)}
	}
	wall, err := benchkit.Workers(spec.Execs, spec.Parallel, func(i int) error {
		if i%1000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		return benchkit.ForkExecWait(spec.Prog, argvs[i], attr)
	})
	return wall, spec.Execs, err
}

func writeStorm(ctx context.Context, spec stormSpec) (time.Duration, int, error) {
	paths := make([]string, spec.Files)
	for i := range paths {
		paths[i] = filepath.Join(spec.Dir, fmt.Sprintf("f%05d", i))
	}
	payload := bytes.Repeat([]byte("bulwark!"), 8)
	wall, err := benchkit.Workers(spec.Writes, spec.Parallel, func(i int) error {
		if i%10000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		return benchkit.OpenWriteClose(paths[i%len(paths)], payload)
	})
	return wall, spec.Writes, err
}
