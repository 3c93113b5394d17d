package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/api/shimv1"
)

// The test binary doubles as the "original runc": run with fakeRuncEnv set
// to a file name, it records what it was started with there and exits.
const fakeRuncEnv = "BULWARK_TEST_FAKE_RUNC_RECORD"

func TestMain(m *testing.M) {
	if out := os.Getenv(fakeRuncEnv); out != "" {
		os.Exit(fakeRunc(out))
	}
	code := m.Run()
	if shimBuild.dir != "" {
		os.RemoveAll(shimBuild.dir)
	}
	os.Exit(code)
}

// record is what the fake runc saw.
type record struct {
	Args []string       `json:"args"`
	Env  []string       `json:"env"`
	PID  int            `json:"pid"`
	FDs  map[int]string `json:"fds"` // fd → readlink of /proc/self/fd/<fd>
}

// fakeRunc lists its open file descriptors with raw system calls, before
// anything in Go opens one of its own.
func fakeRunc(out string) int {
	fds := map[int]string{}
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 99
	}
	buf := make([]byte, 8192)
	var names []string
	for {
		n, err := syscall.ReadDirent(dir, buf)
		if err != nil || n <= 0 {
			break
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
	for _, name := range names {
		fd, _ := strconv.Atoi(name)
		if fd == dir {
			continue
		}
		link, _ := os.Readlink("/proc/self/fd/" + name)
		fds[fd] = link
	}
	_ = syscall.Close(dir)
	b, _ := json.Marshal(record{Args: os.Args, Env: os.Environ(), PID: os.Getpid(), FDs: fds})
	if err := os.WriteFile(out, b, 0o600); err != nil {
		return 98
	}
	return 0
}

var shimBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// builtShim builds this program once per test run.
func builtShim(t testing.TB) string {
	t.Helper()
	shimBuild.once.Do(func() {
		shimBuild.dir, shimBuild.err = os.MkdirTemp("", "bulwark-shim-test-")
		if shimBuild.err != nil {
			return
		}
		shimBuild.path = filepath.Join(shimBuild.dir, "bulwark-shim")
		out, err := exec.Command("go", "build", "-o", shimBuild.path, ".").CombinedOutput()
		if err != nil {
			shimBuild.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if shimBuild.err != nil {
		t.Fatal(shimBuild.err)
	}
	return shimBuild.path
}

// env is a shim installed in place of a fake runc in a temporary directory.
type env struct {
	dir, runc, sock, settings, audit, record string
	extra                                    *os.File // passed to runc as fd 3
	environ                                  []string
	base                                     map[int]string // runc's descriptors without the shim
}

func install(t *testing.T) *env {
	t.Helper()
	shim := builtShim(t)
	dir := t.TempDir()
	e := &env{
		dir: dir, runc: filepath.Join(dir, "bin", "runc"), sock: filepath.Join(dir, "shim.sock"),
		settings: filepath.Join(dir, "settings.json"), audit: filepath.Join(dir, "audit"), record: filepath.Join(dir, "record.json"),
	}
	if err := os.MkdirAll(filepath.Dir(e.runc), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(shim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.runc, b, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, e.runc+shimv1.OriginalSuffix); err != nil {
		t.Fatal(err)
	}
	m := shimv1.Manifest{
		V: 1, Path: e.runc, Original: e.runc + shimv1.OriginalSuffix, SHA256: strings.Repeat("0", 64),
		Socket: e.sock, Settings: e.settings, AuditDir: e.audit,
	}
	writeJSON(t, e.runc+shimv1.ManifestSuffix, m)
	if e.extra, err = os.Create(filepath.Join(dir, "extra-fd")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.extra.Close() })
	e.environ = []string{fakeRuncEnv + "=" + e.record, "PATH=/usr/bin:/bin", "WITH_SPACES=a b  c", "EMPTY=", "BULWARK_TEST=1"}
	return e
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// bundle writes a bundle whose config.json carries annotations.
func (e *env) bundle(t *testing.T, annotations map[string]string) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "process": map[string]any{"args": []string{"sleep", "1"}}, "annotations": annotations})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

type result struct {
	code    int
	stderr  string
	pid     int
	elapsed time.Duration
	rec     *record // nil: runc did not run
}

// run starts the shim as runc with args, from dir when given.
func (e *env) run(t *testing.T, dir string, args ...string) result {
	t.Helper()
	_ = os.Remove(e.record)
	cmd := exec.Command(e.runc)
	cmd.Args = append([]string{"runc-argv0"}, args...)
	cmd.Env = e.environ
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{e.extra}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	r := result{stderr: stderr.String(), pid: cmd.Process.Pid, elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if b, err := os.ReadFile(e.record); err == nil {
		r.rec = new(record)
		if err := json.Unmarshal(b, r.rec); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// checkExeced: runc ran in the shim's own process with exactly its argv,
// environment and file descriptors.
func (e *env) checkExeced(t *testing.T, r result, args []string) {
	t.Helper()
	if r.rec == nil {
		t.Fatalf("runc did not run (exit %d, stderr %q)", r.code, r.stderr)
	}
	if diff := cmp.Diff(append([]string{"runc-argv0"}, args...), r.rec.Args); diff != "" {
		t.Errorf("runc's argv differs from the shim's (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(e.environ, r.rec.Env); diff != "" {
		t.Errorf("runc's environment differs from the shim's (-want +got):\n%s", diff)
	}
	if r.rec.PID != r.pid {
		t.Errorf("runc ran as PID %d, the shim was %d: want an exec, no extra process", r.rec.PID, r.pid)
	}
	// The baseline: the same runc started directly, as the engine would
	// without the shim (it inherits what this test process does not close
	// on exec, and the Go runtime opens a few of its own).
	want := e.baseline(t)
	if r.rec.FDs[3] != e.extra.Name() || !sameFiles(want, r.rec.FDs) {
		t.Errorf("runc's file descriptors = %v, want those of runc started directly: %v (3 → %s)", r.rec.FDs, want, e.extra.Name())
	}
	if r.code != 0 {
		t.Errorf("exit code %d, want runc's 0", r.code)
	}
}

// baseline records the fake runc started directly.
func (e *env) baseline(t *testing.T) map[int]string {
	t.Helper()
	if e.base != nil {
		return e.base
	}
	_ = os.Remove(e.record)
	cmd := exec.Command(e.runc + shimv1.OriginalSuffix)
	cmd.Args = []string{"runc-argv0", "state", "x"}
	cmd.Env = e.environ
	cmd.ExtraFiles = []*os.File{e.extra}
	cmd.Stderr = io.Discard
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(e.record)
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	e.base = rec.FDs
	return e.base
}

// sameFiles compares descriptor tables: the same numbers open on the same
// files (pipes and sockets by kind: each run has its own).
func sameFiles(a, b map[int]string) bool {
	kind := func(s string) string {
		if k, _, ok := strings.Cut(s, ":["); ok {
			return k
		}
		return s
	}
	if len(a) != len(b) {
		return false
	}
	for fd, x := range a {
		y, ok := b[fd]
		if !ok || kind(x) != kind(y) {
			return false
		}
	}
	return true
}

// fakeDefender serves the decision socket the way the test says.
type fakeDefender struct {
	ln   net.Listener
	mode string // allow, block, hang, close, garbage
	reqs chan shimv1.Request
	done chan struct{}
}

func (e *env) defender(t *testing.T, mode string) *fakeDefender {
	t.Helper()
	ln, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDefender{ln: ln, mode: mode, reqs: make(chan shimv1.Request, 16), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { d.serve(conn) })
		}
	})
	t.Cleanup(func() { close(d.done); ln.Close(); wg.Wait() })
	return d
}

func (d *fakeDefender) serve(conn net.Conn) {
	defer conn.Close()
	b, err := io.ReadAll(conn)
	if err != nil {
		return
	}
	req, err := shimv1.DecodeRequest(b)
	if err != nil {
		return
	}
	d.reqs <- req
	switch d.mode {
	case "allow":
		_, _ = conn.Write([]byte(`{"v":1,"verdict":"allowed","rule":"r"}`))
	case "block":
		_, _ = conn.Write([]byte(`{"v":1,"verdict":"blocked","rule":"prod-strict","message":"bulwark: blocked by rule \"prod-strict\": 5515 - Do not share the host's process namespace"}`))
	case "hang":
		<-d.done
	case "garbage":
		_, _ = conn.Write([]byte(`{"v":1,"verdict":"perhaps"}`))
	}
}

func (d *fakeDefender) requests() []shimv1.Request {
	var out []shimv1.Request
	for {
		select {
		case r := <-d.reqs:
			out = append(out, r)
		default:
			return out
		}
	}
}

func (e *env) audits(t *testing.T) []shimv1.Audit {
	t.Helper()
	entries, err := os.ReadDir(e.audit)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []shimv1.Audit
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") {
			t.Errorf("audit dir holds a temporary file %s", en.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(e.audit, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		a, err := shimv1.DecodeAudit(b)
		if err != nil {
			t.Fatalf("audit record %s: %v", en.Name(), err)
		}
		out = append(out, a)
	}
	return out
}

func TestPassThroughExecsRuncUnasked(t *testing.T) {
	e := install(t)
	d := e.defender(t, "allow")
	for _, args := range [][]string{
		{"--root", "/run/x", "state", "c1"},
		{"--version"},
		{},
		{"exec", "c1", "run"}, // "run" as a process argument: Go decides, and passes it through
		{"delete", "--force", "create"},
		{"create", "--bundle", "/nonexistent"}, // no container ID: runc's to refuse
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := e.run(t, "", args...)
			e.checkExeced(t, r, args)
		})
	}
	if reqs := d.requests(); len(reqs) != 0 {
		t.Errorf("pass-through commands asked the Defender %d times", len(reqs))
	}
}

func TestCreateAllowed(t *testing.T) {
	e := install(t)
	d := e.defender(t, "allow")
	bundle, cfg := e.bundle(t, map[string]string{
		"io.kubernetes.cri.container-name": "web", "io.kubernetes.cri.image-name": "nginx:1.27",
		"io.kubernetes.cri.sandbox-name": "web-0", "io.kubernetes.cri.sandbox-namespace": "prod",
	})
	args := []string{"--root", "/run/containerd/runc/k8s.io", "--log", filepath.Join(e.dir, "log.json"), "--log-format", "json", "create", "--bundle", bundle, "--pid-file", "/x/init.pid", "ctr-1"}
	r := e.run(t, "", args...)
	e.checkExeced(t, r, args)
	reqs := d.requests()
	if len(reqs) != 1 {
		t.Fatalf("the Defender was asked %d times, want once", len(reqs))
	}
	got := reqs[0]
	want := shimv1.Request{
		V: 1, Command: "create", ID: "ctr-1", Bundle: bundle, Root: "/run/containerd/runc/k8s.io",
		Container: shimv1.Container{ID: "ctr-1", Name: "web", Image: "nginx:1.27", Pod: "web-0", Namespace: "prod"},
		Config:    cfg, PID: r.pid,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request mismatch (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "log.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an allowed create wrote to runc's log (%v); want nothing", err)
	}
	if a := e.audits(t); len(a) != 0 {
		t.Errorf("an allowed create left audit records %+v; the Defender audits its own decisions", a)
	}
}

func TestRunInWorkingDirectory(t *testing.T) {
	e := install(t)
	d := e.defender(t, "allow")
	bundle, _ := e.bundle(t, nil)
	args := []string{"run", "--detach", "c2"}
	e.checkExeced(t, e.run(t, bundle, args...), args)
	if reqs := d.requests(); len(reqs) != 1 || reqs[0].Bundle != bundle || reqs[0].Command != "run" {
		t.Errorf("requests = %+v, want one run of bundle %s (the working directory)", reqs, bundle)
	}
}

func TestCreateBlocked(t *testing.T) {
	const msg = `bulwark: blocked by rule "prod-strict": 5515 - Do not share the host's process namespace`
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			e := install(t)
			e.defender(t, "block")
			bundle, _ := e.bundle(t, nil)
			logPath := filepath.Join(e.dir, "log")
			r := e.run(t, "", "--log", logPath, "--log-format", format, "create", "-b", bundle, "c3")
			if r.rec != nil {
				t.Fatalf("runc ran with %v; want the container refused", r.rec.Args)
			}
			if r.code != 1 || r.stderr != msg+"\n" {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, msg+"\n")
			}
			b, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			line := strings.TrimSpace(string(b))
			if format == "json" {
				var l struct{ Level, Msg, Time string }
				if err := json.Unmarshal([]byte(line), &l); err != nil || l.Level != "error" || l.Msg != msg || l.Time == "" {
					t.Errorf("runc log line %q (%v); want level error and the message", line, err)
				}
			} else if !strings.Contains(line, "level=error msg="+strconv.Quote(msg)) {
				t.Errorf("runc log line %q; want level=error msg=%q", line, msg)
			}
		})
	}
}

func TestFailOpen(t *testing.T) {
	for _, tc := range []struct {
		mode    string // "" = no Defender listening
		timeout time.Duration
		verdict string
		min     time.Duration
		max     time.Duration
	}{
		{"", time.Minute, shimv1.VerdictFailOpenUnreachable, 0, time.Second},
		{"hang", 400 * time.Millisecond, shimv1.VerdictFailOpenTimeout, 400 * time.Millisecond, 700 * time.Millisecond},
		{"close", time.Minute, shimv1.VerdictFailOpenError, 0, time.Second},
		{"garbage", time.Minute, shimv1.VerdictFailOpenError, 0, time.Second},
	} {
		t.Run(tc.verdict+"/"+tc.mode, func(t *testing.T) {
			e := install(t)
			if tc.mode != "" {
				e.defender(t, tc.mode)
			}
			writeJSON(t, e.settings, shimv1.Settings{V: 1, TimeoutMS: tc.timeout.Milliseconds()})
			bundle, _ := e.bundle(t, map[string]string{"io.bulwark.image": "registry.local/web:1"})
			logPath := filepath.Join(e.dir, "log")
			args := []string{"--log", logPath, "create", "--bundle", bundle, "c4"}
			r := e.run(t, "", args...)
			e.checkExeced(t, r, args)
			if r.elapsed < tc.min {
				t.Errorf("created after %v, want at least %v", r.elapsed, tc.min)
			}
			audits := e.audits(t)
			if len(audits) != 1 {
				t.Fatalf("audit records = %+v, want one", audits)
			}
			a := audits[0]
			// The shim's own measure: process start-up on a busy machine
			// is not the shim's waiting.
			if waited := time.Duration(a.ElapsedMS) * time.Millisecond; waited < tc.min || waited > tc.max {
				t.Errorf("the shim decided after %v, want %v..%v", waited, tc.min, tc.max)
			}
			if a.Verdict != tc.verdict || a.Command != "create" || a.Bundle != bundle || a.Error == "" || a.PID != r.pid ||
				a.Container != (shimv1.Container{ID: "c4", Image: "registry.local/web:1"}) {
				t.Errorf("audit record = %+v, want %s for c4 with the error and the shim's PID", a, tc.verdict)
			}
			if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "level=warning") || !strings.Contains(string(b), "fail open") {
				t.Errorf("runc log = %q, want a warning that the container was allowed by failing open", b)
			}
		})
	}
}

func TestFailClosedRule(t *testing.T) {
	e := install(t)
	writeJSON(t, e.settings, shimv1.Settings{V: 1, Rules: []shimv1.Rule{
		{Name: "prod fail-closed", FailClosed: true, Collections: []shimv1.Collection{{Namespaces: []string{"prod"}}}},
		{Name: "the rest"},
	}})
	prod, _ := e.bundle(t, map[string]string{"io.kubernetes.pod.namespace": "prod"})
	r := e.run(t, "", "create", "--bundle", prod, "c5")
	if r.rec != nil || r.code != 1 {
		t.Fatalf("exit %d, runc ran: %v; want a refusal without the Defender", r.code, r.rec != nil)
	}
	if !strings.HasPrefix(r.stderr, `bulwark: refused: the Defender could not decide`) || !strings.Contains(r.stderr, `rule "prod fail-closed" is fail-closed`) ||
		strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr = %q, want one line naming the fail-closed rule", r.stderr)
	}
	dev, _ := e.bundle(t, map[string]string{"io.kubernetes.pod.namespace": "dev"})
	args := []string{"create", "--bundle", dev, "c6"}
	e.checkExeced(t, e.run(t, "", args...), args)

	var verdicts []string
	for _, a := range e.audits(t) {
		verdicts = append(verdicts, a.Container.ID+" "+a.Verdict+" "+a.Rule)
	}
	slices.Sort(verdicts)
	want := []string{"c5 fail-closed-unreachable prod fail-closed", "c6 fail-open-unreachable the rest"}
	if !slices.Equal(verdicts, want) {
		t.Errorf("audit records = %q, want %q", verdicts, want)
	}
}

func TestUnusableConfigIsRuncsToReport(t *testing.T) {
	e := install(t)
	d := e.defender(t, "block")
	empty := t.TempDir()
	args := []string{"create", "--bundle", empty, "c7"}
	e.checkExeced(t, e.run(t, "", args...), args)
	if len(d.requests()) != 0 {
		t.Error("asked the Defender about a bundle without config.json")
	}
}

func TestMissingOriginal(t *testing.T) {
	e := install(t)
	if err := os.Remove(e.runc + shimv1.OriginalSuffix); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, "", "state", "c8")
	if r.code != 1 || !strings.Contains(r.stderr, e.runc+shimv1.OriginalSuffix) {
		t.Errorf("exit %d, stderr %q; want 1 and a message naming the missing original", r.code, r.stderr)
	}
}

// TestDependencies keeps the shim small: the standard library and the wire
// types, nothing else (no eBPF, Kubernetes or SQL code on runc's path).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := []string{"bulwark/cmd/bulwark-shim", "bulwark/api/shimv1"}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		path, std, _ := strings.Cut(sc.Text(), " ")
		for _, bad := range []string{"github.com/cilium/ebpf", "k8s.io/", "database/sql", "modernc.org/", "github.com/jackc/pgx", "net/http"} {
			if strings.HasPrefix(path, bad) {
				t.Errorf("bulwark-shim depends on %s", path)
			}
		}
		if std != "true" && !slices.Contains(allowed, path) {
			t.Errorf("bulwark-shim depends on %s: only the standard library and %v are allowed", path, allowed[1:])
		}
	}
}

func TestVersionOnlyWhenNotInPlace(t *testing.T) {
	shim := builtShim(t)
	out, err := exec.Command(shim, versionFlag).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "bulwark-shim ") {
		t.Errorf("%s %s = %q, %v; want bulwark-shim and its version", shim, versionFlag, out, err)
	}
	e := install(t)
	args := []string{versionFlag}
	e.checkExeced(t, e.run(t, "", args...), args) // in place: runc's to answer
}
