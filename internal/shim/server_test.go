package shim_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"bulwark/api/shimv1"
	"bulwark/internal/shim"
)

// peerHelperEnv makes the test binary a client that asks the socket named
// in the variable and prints what it got (for the non-root peer test).
const peerHelperEnv = "BULWARK_TEST_SHIM_PEER"

func peerHelper() int {
	b, err := ask(os.Getenv(peerHelperEnv), request("c1"))
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error())
		return 0
	}
	os.Stdout.Write(b)
	return 0
}

func request(id string) []byte {
	b, _ := json.Marshal(shimv1.Request{V: 1, Command: "create", ID: id, Bundle: "/b", Config: json.RawMessage(`{}`)})
	return b
}

// ask does what the shim does: send, half-close, read the answer.
func ask(sock string, req []byte) ([]byte, error) {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	_ = conn.(*net.UnixConn).CloseWrite()
	return io.ReadAll(conn)
}

func serve(t *testing.T, sock string, d shim.Decider) *shim.Server {
	t.Helper()
	srv, err := shim.Listen(shim.ServerConfig{Socket: sock, ReadTimeout: time.Second}, d, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return srv
}

func TestServerAnswers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "shim", "shim.sock")
	got := make(chan shimv1.Request, 1)
	serve(t, sock, shim.DeciderFunc(func(_ context.Context, r shimv1.Request) shimv1.Decision {
		got <- r
		if r.ID == "bad" {
			return shimv1.Decision{Verdict: shimv1.VerdictBlocked, Rule: "r", Message: strings.Repeat("x", 5000)}
		}
		return shimv1.Decision{Verdict: shimv1.VerdictAllowed}
	}))
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode = %v (%v), want 0700", di.Mode().Perm(), err)
	}

	b, err := ask(sock, request("good"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := shimv1.DecodeDecision(b)
	if err != nil || !d.Allowed() {
		t.Errorf("decision for good = %s (%v), want allowed", b, err)
	}
	if r := <-got; r.ID != "good" || r.Command != "create" {
		t.Errorf("the Decider got %+v", r)
	}
	b, _ = ask(sock, request("bad"))
	d, err = shimv1.DecodeDecision(b)
	if err != nil || d.Allowed() || len(d.Message) > 2048 || !strings.HasSuffix(d.Message, "…") {
		t.Errorf("decision for bad = %.100s… (%v), want blocked with the message cut to 2 KiB", b, err)
	}
	<-got

	// A request that breaks the contract gets no answer.
	for _, bad := range []string{`{`, `{"v":1,"command":"start","id":"x","bundle":"/b","config":{}}`, ``} {
		if b, err := ask(sock, []byte(bad)); err != nil || len(b) != 0 {
			t.Errorf("answer to %q = %q, %v; want the connection closed without one", bad, b, err)
		}
	}
}

func TestServerReplacesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	allow := shim.DeciderFunc(func(context.Context, shimv1.Request) shimv1.Decision {
		return shimv1.Decision{Verdict: shimv1.VerdictAllowed}
	})
	// A stale socket: bound, then abandoned without unlinking.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	serve(t, stale, allow)
	if b, err := ask(stale, request("x")); err != nil || !strings.Contains(string(b), "allowed") {
		t.Errorf("after replacing a stale socket: %q, %v", b, err)
	}
	// A live one is not taken over.
	if _, err := shim.Listen(shim.ServerConfig{Socket: stale}, allow, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("Listen on a live socket = %v, want refused", err)
	}
	// Nor is a file that is not a socket.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := shim.Listen(shim.ServerConfig{Socket: file}, allow, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file = %v, want refused", err)
	}
}

// TestServerServesOnlyRoot: even when the socket's permissions are opened
// up, a process that is not root gets no decision.
func TestServerServesOnlyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a client as another user")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // the test's own temporary directories
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "shim.sock")
	serve(t, sock, shim.DeciderFunc(func(context.Context, shimv1.Request) shimv1.Decision {
		return shimv1.Decision{Verdict: shimv1.VerdictAllowed}
	}))
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary may sit in a directory only root can enter: copy it.
	bin := filepath.Join(dir, "peer")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid  uint32
		want string
	}{{65534, ""}, {0, `"verdict":"allowed"`}} {
		cmd := exec.Command(bin)
		cmd.Env = []string{peerHelperEnv + "=" + sock}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.uid, Gid: tc.uid}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("peer as uid %d: %v", tc.uid, err)
		}
		if (tc.want == "" && strings.Contains(string(out), "verdict")) || !strings.Contains(string(out), tc.want) {
			t.Errorf("peer as uid %d got %q, want %q", tc.uid, out, tc.want)
		}
	}
}

func TestServerBoundsConcurrency(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "shim.sock")
	release := make(chan struct{})
	var deciding atomic.Int32
	srv, err := shim.Listen(shim.ServerConfig{Socket: sock, MaxConcurrent: 2}, shim.DeciderFunc(func(context.Context, shimv1.Request) shimv1.Decision {
		deciding.Add(1)
		<-release
		return shimv1.Decision{Verdict: shimv1.VerdictAllowed}
	}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	answers := make(chan string, 3)
	for i := range 3 {
		go func() {
			b, err := ask(sock, request("c"+strconv.Itoa(i)))
			if err != nil {
				answers <- err.Error()
				return
			}
			answers <- string(b)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if n := deciding.Load(); n != 2 {
		t.Errorf("%d decisions in progress, want MaxConcurrent = 2", n)
	}
	close(release)
	for range 3 {
		if a := <-answers; !strings.Contains(a, "allowed") {
			t.Errorf("answer %q, want allowed", a)
		}
	}
}
