package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"bulwark/api/shimv1"
)

// run is the shim. It returns only when it does not exec runc: the exit
// code of a refusal or of a failure to exec.
func run(exe string, args, env []string, stderr io.Writer) int {
	orig := exe + shimv1.OriginalSuffix
	if len(args) == 2 && args[1] == versionFlag && !exists(orig) {
		// Not in place of runc (install runs a staged copy this way to
		// prove it runs on this host); in place, runc answers instead.
		fmt.Fprintln(stderr, "bulwark-shim", version)
		return 0
	}
	var inv invocation
	if len(args) > 1 {
		inv = parseArgs(args[1:])
	}
	if !shimv1.Decides(inv.sub) || inv.id == "" {
		// Without an ID runc creates nothing; it says so itself.
		return execRunc(orig, args, env, stderr)
	}
	s := load(exe, inv)
	d := s.decide()
	if d.allowed {
		if d.warning != "" {
			s.logLine("warning", d.warning)
		}
		return execRunc(orig, args, env, stderr)
	}
	fmt.Fprintln(stderr, oneLine(d.message))
	s.logLine("error", d.message)
	return 1
}

// versionFlag makes a shim that is not in place of runc print its version.
const versionFlag = "--bulwark-shim-version"

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// execRunc replaces this process with the original runc: same PID, argv,
// environment and file descriptors (everything the shim opened is
// close-on-exec).
func execRunc(orig string, args, env []string, stderr io.Writer) int {
	err := syscall.Exec(orig, args, env) //nolint:gosec // the point of the shim: run runc with the engine's own argv
	fmt.Fprintf(stderr, "bulwark-shim: cannot run the original runc %s: %v (is the shim installed? bulwark-defender shim status)\n", orig, err)
	return 1
}

// shim is one create, run or restore being decided.
type shim struct {
	inv      invocation
	manifest shimv1.Manifest
	settings shimv1.Settings
	start    time.Time
}

// load reads the manifest next to the shim and the Defender's settings.
// Missing or unreadable files mean the defaults: the Defender's default
// paths and a 60 s timeout without fail-closed rules.
func load(exe string, inv invocation) *shim {
	s := &shim{inv: inv, start: time.Now()}
	if b, err := readSmall(exe + shimv1.ManifestSuffix); err == nil {
		s.manifest, _ = shimv1.DecodeManifest(b)
	}
	m := &s.manifest
	if m.Socket == "" {
		m.Socket = filepath.Join(shimv1.DefaultDir, shimv1.SocketName)
	}
	if m.Settings == "" {
		m.Settings = filepath.Join(shimv1.DefaultDir, shimv1.SettingsName)
	}
	if m.AuditDir == "" {
		m.AuditDir = filepath.Join(shimv1.DefaultDir, shimv1.AuditDirName)
	}
	if b, err := readSmall(m.Settings); err == nil {
		s.settings, _ = shimv1.DecodeSettings(b)
	}
	return s
}

// outcome is what the shim does.
type outcome struct {
	allowed bool
	message string // why it refuses
	warning string // what runc's log should say about an allowed container
}

func (s *shim) decide() outcome {
	bundle := s.inv.bundle
	if bundle == "" {
		bundle = "."
	}
	if abs, err := filepath.Abs(bundle); err == nil {
		bundle = abs
	}
	config, err := readConfig(filepath.Join(bundle, "config.json"))
	if errors.Is(err, errUnusable) {
		// runc cannot create a container from it either: let runc say why.
		return outcome{allowed: true}
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err == nil && json.Unmarshal(config, &spec) != nil {
		return outcome{allowed: true} // not JSON: runc refuses it itself
	}
	c := shimv1.ContainerFrom(s.inv.id, spec.Annotations)
	req := shimv1.Request{
		V: shimv1.Version, Command: s.inv.sub, ID: s.inv.id, Bundle: bundle, Root: s.inv.root,
		Container: c, Config: config, PID: os.Getpid(),
	}
	if err == nil {
		d, askErr := s.ask(req)
		if askErr == nil {
			if d.Allowed() {
				return outcome{allowed: true}
			}
			msg := d.Message
			if msg == "" {
				msg = fmt.Sprintf("bulwark: blocked by rule %q", d.Rule)
			}
			return outcome{message: msg}
		}
		err = askErr
	}
	return s.failed(req, err)
}

// failed decides without the Defender: open, unless the rule that decides
// for the container is fail-closed; either way it leaves an audit record.
func (s *shim) failed(req shimv1.Request, err error) outcome {
	rule, closed := s.settings.FailClosed(req.Container)
	verdict := failVerdict(err, closed)
	a := shimv1.Audit{
		V: shimv1.Version, Time: time.Now().UTC(), Verdict: verdict, Command: req.Command, Bundle: req.Bundle, Root: req.Root,
		Container: req.Container, Rule: rule, Error: err.Error(), ElapsedMS: time.Since(s.start).Milliseconds(), PID: req.PID,
	}
	auditErr := s.audit(a)
	if closed {
		msg := fmt.Sprintf("bulwark: refused: the Defender could not decide (%v) and rule %q is fail-closed", err, rule)
		return outcome{message: msg}
	}
	warn := fmt.Sprintf("bulwark: the Defender could not decide (%v); container allowed (fail open)", err)
	if auditErr != nil {
		warn += "; audit record lost: " + auditErr.Error()
	}
	return outcome{allowed: true, warning: warn}
}

func failVerdict(err error, closed bool) string {
	switch {
	case errors.Is(err, errTimeout) && closed:
		return shimv1.VerdictFailClosedTimeout
	case errors.Is(err, errTimeout):
		return shimv1.VerdictFailOpenTimeout
	case errors.Is(err, errUnreachable) && closed:
		return shimv1.VerdictFailClosedUnreachable
	case errors.Is(err, errUnreachable):
		return shimv1.VerdictFailOpenUnreachable
	case closed:
		return shimv1.VerdictFailClosedError
	}
	return shimv1.VerdictFailOpenError
}

var (
	errTimeout     = errors.New("no decision in time")
	errUnreachable = errors.New("defender unreachable")
	errUnusable    = errors.New("config.json unusable")
)

// ask sends the request and waits for the decision until the timeout.
func (s *shim) ask(req shimv1.Request) (shimv1.Decision, error) {
	timeout := s.settings.Timeout()
	deadline := s.start.Add(timeout)
	body, err := json.Marshal(req)
	if err != nil {
		return shimv1.Decision{}, fmt.Errorf("encode request: %w", err)
	}
	if len(body) > shimv1.MaxRequestBytes {
		return shimv1.Decision{}, fmt.Errorf("request of %d bytes is over the %d-byte limit", len(body), shimv1.MaxRequestBytes)
	}
	conn, err := dialUnix(s.manifest.Socket, deadline)
	if err != nil {
		return shimv1.Decision{}, classify(err, timeout)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return shimv1.Decision{}, err
	}
	if _, err := conn.Write(body); err != nil {
		return shimv1.Decision{}, classify(err, timeout)
	}
	if err := shutdownWrite(conn); err != nil {
		return shimv1.Decision{}, err
	}
	b, err := io.ReadAll(io.LimitReader(conn, shimv1.MaxDecisionBytes+1))
	if err != nil {
		return shimv1.Decision{}, classify(err, timeout)
	}
	if len(b) == 0 {
		return shimv1.Decision{}, errors.New("the Defender closed the connection without a decision")
	}
	dec, err := shimv1.DecodeDecision(b)
	if err != nil {
		return shimv1.Decision{}, err
	}
	return dec, nil
}

// dialUnix connects to a unix socket without the net package (which, with
// cgo and static linking, drags in the C resolver). The socket is
// non-blocking and close-on-exec, so os.File gives it deadlines and runc
// never inherits it. A full listen backlog (EAGAIN) is retried until the
// deadline.
func dialUnix(path string, deadline time.Time) (*os.File, error) {
	for {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
		if err != nil {
			return nil, os.NewSyscallError("socket", err)
		}
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err == nil {
			return os.NewFile(uintptr(fd), "unix:"+path), nil
		}
		_ = syscall.Close(fd)
		if !errors.Is(err, syscall.EAGAIN) {
			return nil, os.NewSyscallError("connect "+path, err)
		}
		if time.Now().After(deadline) {
			return nil, os.ErrDeadlineExceeded
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shutdownWrite tells the Defender the request is complete.
func shutdownWrite(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); err != nil {
		return err
	}
	return os.NewSyscallError("shutdown", serr)
}

func classify(err error, timeout time.Duration) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w after %v", errTimeout, timeout)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EACCES),
		errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: %v", errUnreachable, err) //nolint:errorlint // one kind for callers, the cause as text
	}
	return err
}

// readConfig reads config.json; errUnusable when runc could not use it
// either (absent, unreadable), an error of its own when it is too large to
// send.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnusable, err) //nolint:errorlint // one kind for callers
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, shimv1.MaxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnusable, err) //nolint:errorlint // one kind for callers
	}
	if len(b) > shimv1.MaxRequestBytes {
		return nil, fmt.Errorf("%s is over %d bytes", path, shimv1.MaxRequestBytes)
	}
	return b, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, shimv1.MaxFileBytes+1))
}

// audit leaves a record for the Defender: written to a temporary file,
// synced and renamed, so the Defender never reads half a record.
func (s *shim) audit(a shimv1.Audit) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	dir := s.manifest.AuditDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		name := strconv.FormatInt(a.Time.UnixNano(), 10) + "-" + strconv.Itoa(a.PID) + ".json"
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// logLine appends a line to runc's --log file in its --log-format, as runc
// would: containerd reports the last error line of that file as the reason
// a create failed.
func (s *shim) logLine(level, msg string) {
	if s.inv.log == "" {
		return
	}
	f, err := os.OpenFile(s.inv.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) //nolint:gosec // the mode runc itself creates its log with
	if err != nil {
		return // nowhere to tell; stderr has the message
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	msg = oneLine(msg)
	var line []byte
	if s.inv.logFormat == "json" {
		line, _ = json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{level, msg, now})
	} else {
		line = []byte("time=" + strconv.Quote(now) + " level=" + level + " msg=" + strconv.Quote(msg))
	}
	_, _ = f.Write(append(line, '\n'))
}

// oneLine keeps messages to one line, as engines show them.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
