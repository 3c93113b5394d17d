// Package runctest runs real runc containers for tests: a root file system
// of Debian's static busybox, an OCI bundle made from `runc spec`, and
// containers that the test's cleanup kills and deletes by their ID.
//
// Tests that use it are privileged. Require skips a test that is not root
// or finds no runc; it fails one that has both but no static busybox, a
// machine half set up (scripts/setup.sh installs runc and busybox-static
// together). CI has all three and runs as root: there these tests run.
package runctest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BusyboxPath is the static busybox (Debian's busybox-static) that every
// root file system is made of.
const BusyboxPath = "/bin/busybox"

// commandTimeout bounds every runc command, so that a hang fails the test
// instead of stalling it until the go test timeout.
const commandTimeout = 30 * time.Second

// Require skips the test unless it can run runc containers, and returns
// runc's path.
func Require(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("runctest: privileged: needs root to run runc containers (CI runs these tests as root)")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		tb.Skipf("runctest: needs runc (scripts/setup.sh installs it): %v", err)
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		tb.Fatalf("runctest: runc is installed but not a static %s (busybox-static; scripts/setup.sh installs both): %v", BusyboxPath, err)
	}
	return runc
}

// RuncCopy returns a copy of the system's runc, bin/runc in a directory of
// the test, for a test that puts the shim in its place: never in place of
// the system's runc. It skips the test where runc is not installed, but
// needs no root.
func RuncCopy(tb testing.TB) string {
	tb.Helper()
	sys, err := exec.LookPath("runc")
	if err != nil {
		tb.Skipf("runctest: needs runc (scripts/setup.sh installs it): %v", err)
	}
	b, err := os.ReadFile(sys)
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(tb.TempDir(), "bin", "runc")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o755); err != nil { //nolint:gosec // G306: an executable
		tb.Fatal(err)
	}
	return p
}

// NewID returns prefix followed by 12 random hex digits: a container ID,
// or any name, of the test's own.
func NewID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}

// Options shape a container; the zero value is a busybox container whose
// init sleeps for 600 s, in runc's default root.
type Options struct {
	// Prefix starts the container's ID, which ends in random hex; "bwtest-"
	// when empty. (Run only.)
	Prefix string
	// Root is runc's state directory (runc --root); empty is runc's own
	// default, /run/runc, where the runtime resolver, the Defender and the
	// enforcer's StopContainer look unless told otherwise. A test that must
	// see only its own containers gives a t.TempDir(). (Run only.)
	Root string
	// Args is the init's command: sleep 600 when nil.
	Args []string
	// Annotations replace the spec's annotations when not nil.
	Annotations map[string]string
	// Applets are more busybox applet links in /bin, besides the usual sh,
	// sleep, true, echo, cat, ls, ln, nc, timeout, mkdir, cp and kill.
	Applets []string
	// Files are copies of busybox at these absolute paths: files of their
	// own, unlike the applet links.
	Files []string
	// ReadonlyRoot mounts the root file system read-only, as `runc spec`
	// does; by default it is writable.
	ReadonlyRoot bool
	// HostPID and HostNetwork leave out the pid and the network namespace.
	HostPID, HostNetwork bool
}

// Busybox returns a new root file system in a directory of the test:
// /bin/busybox with its applet links, /etc/passwd with root, the
// directories a container mounts on, and copies of busybox at files.
func Busybox(tb testing.TB, files ...string) string {
	tb.Helper()
	rootfs := tb.TempDir()
	fillRootfs(tb, rootfs, nil, files)
	return rootfs
}

func fillRootfs(tb testing.TB, rootfs string, applets, files []string) {
	tb.Helper()
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		tb.Fatalf("runctest: needs a static %s (busybox-static; scripts/setup.sh installs it): %v", BusyboxPath, err)
	}
	for _, d := range []string{"bin", "etc", "tmp", "root", "usr/local/bin", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil { //nolint:gosec // G301: a container's root file system
			tb.Fatal(err)
		}
	}
	write := func(path string, b []byte, mode os.FileMode) {
		tb.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // G301: a container's root file system
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, b, mode); err != nil {
			tb.Fatal(err)
		}
	}
	write(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755)
	usual := []string{"sh", "sleep", "true", "echo", "cat", "ls", "ln", "nc", "timeout", "mkdir", "cp", "kill"}
	for _, a := range slices.Concat(usual, applets) {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil && !errors.Is(err, os.ErrExist) {
			tb.Fatal(err)
		}
	}
	for _, f := range files {
		write(filepath.Join(rootfs, f), bb, 0o755)
	}
	write(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
}

// Bundle returns a new OCI bundle in a directory of the test: a busybox
// root file system in rootfs/ and the config.json of `runc spec` as opts
// change it.
func Bundle(tb testing.TB, opts Options) string {
	tb.Helper()
	runc := Require(tb)
	bundle := tb.TempDir()
	fillRootfs(tb, filepath.Join(bundle, "rootfs"), opts.Applets, opts.Files)
	runcCmd(tb, runc, "spec", "--bundle", bundle)
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		tb.Fatalf("runctest: parse runc spec: %v", err)
	}
	if spec.Process == nil || spec.Linux == nil {
		tb.Fatalf("runctest: runc spec lacks process or linux: %s", b)
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"sleep", "600"}
	if opts.Args != nil {
		spec.Process.Args = opts.Args
	}
	spec.Root = &specs.Root{Path: "rootfs", Readonly: opts.ReadonlyRoot}
	if opts.Annotations != nil {
		spec.Annotations = opts.Annotations
	}
	spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return opts.HostPID && ns.Type == specs.PIDNamespace || opts.HostNetwork && ns.Type == specs.NetworkNamespace
	})
	if b, err = json.MarshalIndent(spec, "", "\t"); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil { //nolint:gosec // G306: as runc spec writes it
		tb.Fatal(err)
	}
	return bundle
}

// Container is a runc container the test started.
type Container struct {
	ID string
	// Root is runc's --root for it; empty is runc's default.
	Root   string
	Bundle string // the OCI bundle: config.json and rootfs/
	Rootfs string // Bundle/rootfs, the container's / seen from the host
	// InitPID is the container's init, in the host's pid namespace.
	InitPID int
	// CgroupPath is the init's cgroup2 path, from /proc/<pid>/cgroup
	// ("/<id>" for runc's default cgroupfs layout).
	CgroupPath string
	runc       string
}

// Run starts a container with `runc run --detach` and returns it once its
// init runs the command. The test's cleanup kills and deletes it (Delete).
func Run(tb testing.TB, opts Options) *Container {
	tb.Helper()
	bundle := Bundle(tb, opts)
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "bwtest-"
	}
	c := &Container{ID: NewID(prefix), Root: opts.Root, Bundle: bundle, Rootfs: filepath.Join(bundle, "rootfs"), runc: Require(tb)}
	// The container's stdio is a file: with a pipe, the detached container
	// would hold it open and waiting for runc would wait for the container.
	// Its directory is made before the cleanup is registered, so that it is
	// removed after the container.
	stdio := filepath.Join(tb.TempDir(), "container.log")
	tb.Cleanup(func() { c.Delete(tb) }) // before run: a half-made container is deleted too
	pidFile := filepath.Join(bundle, "init.pid")
	runcLogged(tb, c.runc, stdio, c.args("run", "--detach", "--bundle", bundle, "--pid-file", pidFile, c.ID)...)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		tb.Fatal(err)
	}
	if c.InitPID, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		tb.Fatalf("runctest: pid file %q: %v", b, err)
	}
	waitExec(tb, c.InitPID)
	cg, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.InitPID), "cgroup"))
	if err != nil {
		tb.Fatalf("runctest: cgroup of the container's init: %v", err)
	}
	for line := range strings.Lines(string(cg)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			c.CgroupPath = p
		}
	}
	if c.CgroupPath == "" {
		tb.Fatalf("runctest: /proc/%d/cgroup has no cgroup2 line:\n%s", c.InitPID, cg)
	}
	return c
}

// waitExec waits until the init runs the container's command: runc start
// returns once it has let runc's init go on, which may not have exec'd yet.
func waitExec(tb testing.TB, pid int) {
	tb.Helper()
	path := filepath.Join("/proc", strconv.Itoa(pid), "cmdline")
	deadline := time.Now().Add(commandTimeout)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatalf("runctest: the container's init %d: %v", pid, err)
		}
		// Empty in the middle of the exec.
		if len(b) > 0 && !bytes.HasPrefix(b, []byte("runc\x00init")) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("runctest: the container's init %d is still %q after %v", pid, b, commandTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// args prefixes a runc command with the container's --root.
func (c *Container) args(args ...string) []string { return rootArgs(c.Root, args...) }

func rootArgs(root string, args ...string) []string {
	if root == "" {
		return args
	}
	return append([]string{"--root", root}, args...)
}

// Command is `runc exec` of args in the container, for a test that runs
// it its own way (in the background, with its own streams).
func (c *Container) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, c.runc, c.args(append([]string{"exec", c.ID}, args...)...)...) //nolint:gosec // G204: runc, by the test
}

// Exec runs args in the container and returns what they wrote (stdout and
// stderr); their failure fails the test.
func (c *Container) Exec(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := c.TryExec(tb, args...)
	if err != nil {
		tb.Fatalf("runc exec %s %q: %v\n%s", c.ID, args, err, out)
	}
	return out
}

// TryExec runs args in the container and returns what they wrote (stdout
// and stderr) and how they ended; it fails the test only when they run for
// more than 30 s.
func (c *Container) TryExec(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := c.Command(ctx, args...).CombinedOutput()
	if ctx.Err() != nil {
		tb.Fatalf("runc exec %s %q: still running after %v\n%s", c.ID, args, commandTimeout, out)
	}
	return string(out), err
}

// Sh runs a shell script in the container and returns its stdout and
// stderr. A non-zero exit is not an error: scripts print what the test
// checks. A script still running after 30 s fails the test.
func (c *Container) Sh(tb testing.TB, script string) (stdout, stderr string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := c.Command(ctx, "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("runc exec %s sh -c %q: still running after %v\nstdout: %s\nstderr: %s", c.ID, script, commandTimeout, out.String(), errb.String())
	}
	if _, ok := errors.AsType[*exec.ExitError](err); err != nil && !ok {
		tb.Fatalf("runc exec %s: %v", c.ID, err)
	}
	return out.String(), errb.String()
}

// State is runc's status of the container (running, stopped…), or "" when
// runc does not know it: never created, or deleted.
func (c *Container) State(tb testing.TB) string {
	tb.Helper()
	return state(tb, c.runc, c.Root, c.ID)
}

// State is runc's status of the container id in runc root root ("" for
// runc's default), or "" when runc does not know it: for a container the
// test started another way (through another runc binary).
func State(tb testing.TB, root, id string) string {
	tb.Helper()
	return state(tb, Require(tb), root, id)
}

func state(tb testing.TB, runc, root, id string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, runc, rootArgs(root, "state", id)...).Output() //nolint:gosec // G204: runc, by the test
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		tb.Fatalf("runc state %s: %v in %s", id, err, out)
	}
	return st.Status
}

// Delete kills every process of the container and deletes it; it may be
// called more than once, and the test's cleanup calls it again.
func (c *Container) Delete(tb testing.TB) {
	tb.Helper()
	remove(tb, c.runc, c.Root, c.ID)
}

// Delete kills and deletes the container id in runc root root ("" for
// runc's default) if it is there: for a container the test started
// another way (through another runc binary). It fails the test when the
// container is still there after runc delete --force.
func Delete(tb testing.TB, root, id string) {
	tb.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		tb.Errorf("runctest: delete %s: %v", id, err)
		return
	}
	remove(tb, runc, root, id)
}

func remove(tb testing.TB, runc, root, id string) {
	tb.Helper()
	// Not the test's context: cleanups run after it is canceled.
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	run := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, runc, rootArgs(root, args...)...).CombinedOutput() //nolint:gosec // G204: runc, by the test
	}
	if _, err := run("state", id); err != nil {
		return // not there (any more)
	}
	_, _ = run("kill", "--all", id, "KILL") // it may have exited already
	out, err := run("delete", "--force", id)
	// Something else (the Defender's stopper) may delete it meanwhile.
	if _, serr := run("state", id); err != nil && serr == nil {
		tb.Errorf("runc delete --force %s: %v\n%s", id, err, out)
	}
}

// runcCmd runs runc and fails the test on an error, with runc's output.
func runcCmd(tb testing.TB, runc string, args ...string) {
	tb.Helper()
	runcLogged(tb, runc, filepath.Join(tb.TempDir(), "runc.log"), args...)
}

// runcLogged runs runc with its stdout and stderr in the file log.
func runcLogged(tb testing.TB, runc, log string, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	f, err := os.Create(log)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, runc, args...) //nolint:gosec // G204: runc, by the test
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log)
		tb.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
