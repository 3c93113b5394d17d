// Command storm is the workload bench/enforcer runs inside a container (and
// on the host): a storm of execs or of opens for writing, timed from inside,
// so that runc's own start-up is not in the figures. It prints one line,
// "elapsed_ns <n> cpu_ns <n> ops <n>" (cpu: user+system of the storm and its
// children, from getrusage), and exits non-zero on the first error.
//
//	storm exec N PARALLEL PROGRAM   fork+exec+wait PROGRAM N times over PARALLEL workers
//	storm open N FILES DIR          open(O_CREAT|O_WRONLY|O_TRUNC)+write 64 B+close, cycling
//	                                over FILES names in DIR (0: a new file each time)
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"bulwark/bench/internal/benchkit"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: storm exec N PARALLEL PROGRAM | storm open N FILES DIR")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n <= 0 {
		return fmt.Errorf("count %q: want a positive number", args[1])
	}
	k, err := strconv.Atoi(args[2])
	if err != nil || k < 0 {
		return fmt.Errorf("%q: want a number", args[2])
	}
	var elapsed time.Duration
	cpu0 := benchkit.ProcessCPU()
	switch args[0] {
	case "exec":
		elapsed, err = execStorm(n, max(k, 1), args[3])
	case "open":
		elapsed, err = openStorm(n, k, args[3])
	default:
		return fmt.Errorf("unknown storm %q", args[0])
	}
	if err != nil {
		return err
	}
	fmt.Printf("elapsed_ns %d cpu_ns %d ops %d\n", elapsed.Nanoseconds(), (benchkit.ProcessCPU() - cpu0).Nanoseconds(), n)
	return nil
}

func execStorm(n, workers int, prog string) (time.Duration, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	fd := null.Fd()
	attr := &syscall.ProcAttr{Env: []string{"PATH=/bin"}, Files: []uintptr{fd, fd, fd}}
	argv := []string{filepath.Base(prog)}
	return benchkit.Workers(n, workers, func(int) error { return benchkit.ForkExecWait(prog, argv, attr) })
}

func openStorm(n, files int, dir string) (time.Duration, error) {
	names := n
	if files > 0 {
		names = files
	}
	paths := make([]string, names)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%06d", i))
	}
	payload := bytes.Repeat([]byte("bulwark!"), 8)
	elapsed, err := benchkit.Workers(n, 1, func(i int) error { return benchkit.OpenWriteClose(paths[i%names], payload) })
	if err != nil {
		return 0, err
	}
	for _, p := range paths {
		_ = os.Remove(p)
	}
	return elapsed, nil
}
