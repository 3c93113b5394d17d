//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"bulwark/internal/defender"
	"bulwark/internal/porttest"
)

const adminPassword = "e2e-admin-password"

// bin holds the binaries built once for the whole run.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bulwark-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	for _, b := range []string{"bulwark-console", "bulwark-defender", "bulwarkctl", "bulwark-shim"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "../cmd/"+b)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", b, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is a loopback port for a process this test starts; see package
// porttest for why not port 0's.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := porttest.Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// proc is a process this test started; it is killed (by its PID) at the end.
type proc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func start(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	return startCmd(t, cmd, env)
}

func startCmd(t testing.TB, cmd *exec.Cmd, env []string) *proc {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmd.Path, tail(out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// kill sends sig to the process and waits for it to end.
func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// consoleProc is a running bulwark-console.
type consoleProc struct {
	*proc
	url, dataDir string
	apiPort      int
	chPort       int
	client       *http.Client
}

func startConsole(t testing.TB, dataDir string, apiPort, chPort int, extra ...string) *consoleProc {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--channel-addr", fmt.Sprintf("127.0.0.1:%d", chPort)}, extra...)
	p := start(t, []string{"BULWARK_ADMIN_PASSWORD=" + adminPassword}, "bulwark-console", args...)
	c := &consoleProc{proc: p, url: fmt.Sprintf("https://127.0.0.1:%d", apiPort), dataDir: dataDir, apiPort: apiPort, chPort: chPort}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ca, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.pem")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca)
			c.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			if resp, err := c.client.Get(c.url + "/api/v1/_ping"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return c
				}
			}
		}
		select {
		case <-p.done:
			t.Fatalf("console exited:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("console did not answer within 20s:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *consoleProc) api(t testing.TB, method, path, body string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, c.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", adminPassword)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// bundle writes an install bundle for id with bulwarkctl, as a user would.
func (c *consoleProc) bundle(t testing.TB, id string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle-"+id)
	cmd := exec.Command(filepath.Join(bin, "bulwarkctl"), "--console", c.url, "--ca-cert", filepath.Join(c.dataDir, "pki", "ca.pem"),
		"--username", "admin", "--password", adminPassword, "defender", "bundle", "--id", id, "--out", dir)
	cmd.Env = append(os.Environ(), "BULWARK_CONFIG_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bulwarkctl defender bundle: %v\n%s", err, out)
	}
	return dir
}

type defenderView struct {
	ID             string `json:"_id"`
	Hostname       string `json:"hostname"`
	HostNetwork    bool   `json:"hostNetwork"`
	Connected      bool   `json:"connected"`
	StoredSeq      uint64 `json:"storedSeq"`
	PolicyRevision int64  `json:"policyRevision"`
	EventsDropped  uint64 `json:"eventsDropped"`
	Sensor         *struct {
		Probes []struct {
			Name   string `json:"name"`
			Active bool   `json:"active"`
		} `json:"probes"`
		LostKernel uint64 `json:"lostKernel"`
	} `json:"sensor"`
}

func (c *consoleProc) defender(t testing.TB, id string) defenderView {
	t.Helper()
	var ds []defenderView
	c.api(t, "GET", "/api/v1/defenders", "", &ds)
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("defender %s not listed", id)
	return defenderView{}
}

// startDefender runs a Defender without its sensor: the channel tests count
// events exactly, and host activity would add to them. sensor_test.go runs
// the sensor. The runc shim is off: a test's blocking policy must never put
// it in place of this machine's runc (shim_test.go turns it on, on a copy).
// Kernel enforcement is off too: defense_test.go runs it.
func startDefender(t testing.TB, bundleDir, stateDir string, args ...string) *proc {
	t.Helper()
	return start(t, nil, "bulwark-defender", append([]string{"--bundle", bundleDir, "--state-dir", stateDir, "--sensor=false", "--compliance=false", "--shim=off", "--enforce=off"}, args...)...)
}

// status reads the Defender's status.json; before the Defender has written
// one it returns the zero Status.
func status(t testing.TB, stateDir string) defender.Status {
	t.Helper()
	st, err := defender.ReadStatus(stateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return st
}

func waitFor(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
