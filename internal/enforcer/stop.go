package enforcer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// Runtimes StopContainer knows.
const (
	RuntimeRunc       = "runc"
	RuntimeContainerd = "containerd"
	RuntimeDocker     = "docker" // through containerd, namespace "moby"
)

// ContainerRef names a container and the runtime that runs it.
type ContainerRef struct {
	ID      string
	Runtime string // RuntimeRunc (the default), RuntimeContainerd or RuntimeDocker
	// Root is runc's --root, its state directory; "" means runc's default
	// (/run/runc). Runtime runc only.
	Root string
	// Address is containerd's socket; "" means
	// /run/containerd/containerd.sock. Runtimes containerd and docker.
	Address string
	// Namespace is the containerd namespace; "" means "k8s.io" for
	// containerd and "moby" for docker.
	Namespace string
}

// containerID is what runc accepts as an id; it also keeps an id from being
// read as a command-line option.
var containerID = regexp.MustCompile(`^[A-Za-z0-9_+.][A-Za-z0-9_+.-]{0,254}$`)

// StopContainer stops a container for a "block" effect: every process in it
// is killed (SIGKILL) and, once stopped, the container is deleted (runc) or
// its task is (containerd, docker), so that nothing restarts it in place.
// It returns when the container is stopped, or the error and what the
// runtime printed.
func StopContainer(ctx context.Context, ref ContainerRef) error {
	if !containerID.MatchString(ref.ID) {
		return fmt.Errorf("stop container: invalid id %q", ref.ID)
	}
	switch ref.Runtime {
	case "", RuntimeRunc:
		return stopRunc(ctx, ref)
	case RuntimeContainerd:
		if ref.Namespace == "" {
			ref.Namespace = "k8s.io"
		}
		return stopContainerd(ctx, ref)
	case RuntimeDocker:
		if ref.Namespace == "" {
			ref.Namespace = "moby"
		}
		return stopContainerd(ctx, ref)
	}
	return fmt.Errorf("stop container %s: unknown runtime %q", ref.ID, ref.Runtime)
}

func stopRunc(ctx context.Context, ref ContainerRef) error {
	bin, err := findBinary("runc", "/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc")
	if err != nil {
		return fmt.Errorf("stop container %s: %w", ref.ID, err)
	}
	var global []string
	if ref.Root != "" {
		global = []string{"--root", ref.Root}
	}
	runc := func(args ...string) ([]byte, error) {
		return run(ctx, bin, append(global, args...)...)
	}
	state := func() (string, error) {
		out, err := runc("state", ref.ID)
		if err != nil {
			return "", fmt.Errorf("runc state %s: %w: %s", ref.ID, err, bytes.TrimSpace(out))
		}
		// "status": "running"
		_, rest, _ := strings.Cut(string(out), `"status": "`)
		st, _, _ := strings.Cut(rest, `"`)
		return st, nil
	}
	if _, err := state(); err != nil {
		return fmt.Errorf("stop container: %w", err)
	}
	if out, err := runc("kill", "--all", ref.ID, "KILL"); err != nil {
		// It may have stopped meanwhile; the state below decides.
		if st, serr := state(); serr != nil || st == "running" || st == "paused" {
			return fmt.Errorf("stop container: runc kill %s: %w: %s", ref.ID, err, bytes.TrimSpace(out))
		}
	}
	if err := waitFor(ctx, func() (bool, error) {
		st, err := state()
		return st == "stopped", err
	}); err != nil {
		return fmt.Errorf("stop container %s: %w", ref.ID, err)
	}
	if out, err := runc("delete", ref.ID); err != nil {
		return fmt.Errorf("stop container: runc delete %s: %w: %s", ref.ID, err, bytes.TrimSpace(out))
	}
	return nil
}

func stopContainerd(ctx context.Context, ref ContainerRef) error {
	bin, err := findBinary("ctr", "/usr/bin/ctr", "/usr/local/bin/ctr")
	if err != nil {
		return fmt.Errorf("stop container %s: %w", ref.ID, err)
	}
	global := []string{"--namespace", ref.Namespace}
	if ref.Address != "" {
		global = append(global, "--address", ref.Address)
	}
	ctr := func(args ...string) ([]byte, error) {
		return run(ctx, bin, append(global, args...)...)
	}
	if out, err := ctr("task", "kill", "--all", "--signal", "SIGKILL", ref.ID); err != nil {
		if !bytes.Contains(out, []byte("not found")) && !bytes.Contains(out, []byte("already finished")) {
			return fmt.Errorf("stop container: ctr task kill %s: %w: %s", ref.ID, err, bytes.TrimSpace(out))
		}
	}
	// The task is deleted once it has stopped; until then ctr refuses.
	var last []byte
	if err := waitFor(ctx, func() (bool, error) {
		out, err := ctr("task", "delete", ref.ID)
		last = out
		return err == nil || bytes.Contains(out, []byte("not found")), nil
	}); err != nil {
		return fmt.Errorf("stop container: ctr task delete %s: %w: %s", ref.ID, err, bytes.TrimSpace(last))
	}
	return nil
}

// waitFor polls done until it says so, fails, or ctx (at most 10 s) ends.
func waitFor(ctx context.Context, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not stopped: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, bin, args...).CombinedOutput() //nolint:gosec // G204: runc or ctr, found by findBinary; the id is validated
}

func findBinary(name string, paths ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range paths {
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + " not found in PATH or " + strings.Join(paths, ", "))
}
