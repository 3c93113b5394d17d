// Command shim measures what bulwark-shim adds to runc. It needs root, runc
// and a static busybox (scripts/setup.sh installs them).
//
// It builds the binaries (bulwark-shim statically, as the Makefile does),
// starts a Console on 127.0.0.1 with a temporary data dir and a Defender
// without its sensor, copies the system's runc into a temporary directory
// and lets the Defender put the shim in place of that copy by setting a
// compliance policy with a blocking rule (host PID). Then, alternating the
// two in every round so that both see the same machine load, it times:
//
//   - create+start+delete of a busybox container (a clean one: the Defender
//     evaluates it and allows it) with -runs rounds, through the shim and
//     with the original runc moved aside by the install;
//   - pass-through commands (`runc state <id>` of a running container and
//     `runc --version`), -passes rounds each.
//
// Every decision is real: the shim asks the Defender over its socket, the
// Defender evaluates the bundle's config.json against the policy and
// spools a shim.decision event before it answers.
//
//	sudo go run ./bench/shim
//	sudo go run ./bench/shim -runs 100 -passes 500
//	sudo go run ./bench/shim -keep-console   # the Console on the same machine
//
// By default the Console is stopped once the Defender has installed the
// shim: on a real host it runs elsewhere, and here it would take the CPU
// from runc to store each decision.
//
// The Markdown table goes to stdout, progress to stderr. It kills only the
// processes it started, by PID, and removes its containers and temporary
// directories.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"bulwark/internal/defender"
	"bulwark/internal/shim"
)

const adminPassword = "bench-shim-admin-password"

func main() {
	runs := flag.Int("runs", 50, "create+start+delete rounds (each runs both)")
	keepConsole := flag.Bool("keep-console", false, "keep the Console running on this machine while measuring (it ingests every decision)")
	passes := flag.Int("passes", 300, "rounds of each pass-through command")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *runs, *passes, *keepConsole); err != nil {
		fmt.Fprintln(os.Stderr, "bench/shim:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func run(ctx context.Context, runs, passes int, keepConsole bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (runc containers)")
	}
	sysRunc, err := exec.LookPath("runc")
	if err != nil {
		return errors.New("needs runc (scripts/setup.sh installs it)")
	}
	tmp, err := os.MkdirTemp("", "bench-shim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait()
		}
	}()

	logf("building binaries")
	bin := filepath.Join(tmp, "bin")
	for _, b := range []string{"bulwark-console", "bulwark-defender", "bulwarkctl", "bulwark-shim"} {
		args := []string{"build", "-trimpath", "-o", filepath.Join(bin, b)}
		if b == "bulwark-shim" {
			args = append(args, "-ldflags", "-s -w -linkmode external -extldflags -static")
		}
		if out, err := exec.CommandContext(ctx, "go", append(args, "./cmd/"+b)...).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", b, err, out)
		}
	}

	logf("starting a Console and a Defender")
	dataDir := filepath.Join(tmp, "console")
	apiAddr, chAddr := freeAddr(ctx), freeAddr(ctx)
	console := exec.CommandContext(ctx, filepath.Join(bin, "bulwark-console"), "--data-dir", dataDir, "--api-addr", apiAddr, "--channel-addr", chAddr)
	console.Env = append(os.Environ(), "BULWARK_ADMIN_PASSWORD="+adminPassword)
	if err := startProc(console, filepath.Join(tmp, "console.log")); err != nil {
		return err
	}
	procs = append(procs, console)
	api, err := waitConsole(ctx, "https://"+apiAddr, dataDir)
	if err != nil {
		return err
	}
	bundleDir := filepath.Join(tmp, "bundle")
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "bulwarkctl"), "--console", "https://"+apiAddr, "--ca-cert", filepath.Join(dataDir, "pki", "ca.pem"),
		"--username", "admin", "--password", adminPassword, "defender", "bundle", "--id", "bench-shim", "--out", bundleDir).CombinedOutput(); err != nil {
		return fmt.Errorf("bulwarkctl defender bundle: %w\n%s", err, out)
	}
	runc := filepath.Join(tmp, "runc-bin", "runc")
	if err := copyFile(sysRunc, runc); err != nil {
		return err
	}
	state := filepath.Join(tmp, "defender")
	def := exec.CommandContext(ctx, filepath.Join(bin, "bulwark-defender"), "--bundle", bundleDir, "--state-dir", state, "--sensor=false",
		"--shim-runc", runc, "--shim-binary", filepath.Join(bin, "bulwark-shim"))
	if err := startProc(def, filepath.Join(tmp, "defender.log")); err != nil {
		return err
	}
	procs = append(procs, def)
	policy := `{"rules":[{"name":"prod-strict","condition":{"vulnerabilities":[{"id":5515,"block":true}]}}]}`
	if err := api.put(ctx, "/api/v1/policies/compliance/container", policy); err != nil {
		return err
	}
	if err := waitInstalled(ctx, state); err != nil {
		return err
	}
	if !keepConsole {
		// On a real host the Console runs elsewhere; here it would take
		// the CPU from runc to store each decision. The Defender spools
		// them meanwhile, as it does whenever the Console is away.
		_ = console.Process.Signal(syscall.SIGTERM)
		_ = console.Wait()
		procs = procs[1:]
	}
	orig := runc + ".bulwark-orig"

	bundle := filepath.Join(tmp, "busybox")
	if err := makeBundle(ctx, sysRunc, bundle); err != nil {
		return err
	}
	root := filepath.Join(tmp, "runc-root")
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	runcCmd := func(bin string, args ...string) error {
		cmd := exec.CommandContext(ctx, bin, append([]string{"--root", root}, args...)...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
		return cmd.Run()
	}
	// lifecycle returns the times of create, start, delete and the sum.
	lifecycle := func(bin, id string) ([4]time.Duration, error) {
		var ds [4]time.Duration
		for i, args := range [][]string{{"create", "--bundle", bundle, id}, {"start", id}, {"delete", "--force", id}} {
			start := time.Now()
			if err := runcCmd(bin, args...); err != nil {
				return ds, fmt.Errorf("%s %s: %w", bin, args[0], err)
			}
			ds[i] = time.Since(start)
			ds[3] += ds[i]
		}
		return ds, nil
	}

	logf("create+start+delete: %d rounds", runs)
	var plain, shimmed [4][]time.Duration // create, start, delete, all three
	for i := range runs + 2 {             // two warm-up rounds, not counted
		order := []string{orig, runc}
		if i%2 == 1 {
			order = []string{runc, orig}
		}
		for j, b := range order {
			ds, err := lifecycle(b, fmt.Sprintf("bench-%d-%d", i, j))
			if err != nil {
				return err
			}
			if i < 2 {
				continue
			}
			for k, d := range ds {
				if b == orig {
					plain[k] = append(plain[k], d)
				} else {
					shimmed[k] = append(shimmed[k], d)
				}
			}
		}
	}

	logf("pass-through: %d rounds", passes)
	const id = "bench-running"
	if err := runcCmd(orig, "run", "--detach", "--bundle", bundle, id); err != nil {
		return fmt.Errorf("run the container for runc state: %w", err)
	}
	defer func() { _ = runcCmd(orig, "delete", "--force", id) }()
	type pass struct {
		name  string
		args  []string
		plain []time.Duration
		shim  []time.Duration
	}
	pts := []*pass{{name: "runc state <id>", args: []string{"state", id}}, {name: "runc --version", args: []string{"--version"}}}
	for i := range passes + 10 {
		for _, p := range pts {
			order := []string{orig, runc}
			if i%2 == 1 {
				order = []string{runc, orig}
			}
			for _, b := range order {
				start := time.Now()
				if err := runcCmd(b, p.args...); err != nil {
					return fmt.Errorf("%s %v: %w", b, p.args, err)
				}
				d := time.Since(start)
				if i < 10 {
					continue
				}
				if b == orig {
					p.plain = append(p.plain, d)
				} else {
					p.shim = append(p.shim, d)
				}
			}
		}
	}
	st, err := defender.ReadStatus(state)
	if err != nil {
		return err
	}
	if st.Shim == nil || st.Shim.Decisions < uint64(runs) || st.Shim.Blocked != 0 {
		return fmt.Errorf("the Defender answered %+v; want at least %d allowed decisions", st.Shim, runs)
	}

	where := "stopped after the policy push (the Defender spools the decisions)"
	if keepConsole {
		where = "running on this machine, storing each decision"
	}
	fmt.Printf("Machine: %d CPUs, %s, %s/%s; runc %s; %d create+start+delete rounds and %d rounds of each pass-through command, shim and plain runc alternating; the Defender decided %d creates (and spooled each decision); Console %s.\n\n",
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, runcVersion(ctx, orig), runs, passes, st.Shim.Decisions, where)
	fmt.Println("| operation | plain runc p50 | through the shim p50 | ratio of p50s | paired ratio p50 | paired added p50 | plain p90 | shim p90 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	// Paired figures compare the shim and plain runc of the same round,
	// which ran back to back: load that comes and goes between rounds
	// (other jobs on a shared machine) cancels out.
	row := func(name string, p, s []time.Duration) {
		mp, ms := pct(p, 50), pct(s, 50)
		ratios := make([]float64, len(p))
		added := make([]time.Duration, len(p))
		for i := range p {
			ratios[i] = float64(s[i]) / float64(p[i])
			added[i] = s[i] - p[i]
		}
		slices.Sort(ratios)
		fmt.Printf("| %s | %s | %s | %.3f | %.3f | %+.2f ms | %s | %s |\n", name, ms2(mp), ms2(ms), float64(ms)/float64(mp),
			ratios[(len(ratios)-1)/2], float64(pct(added, 50))/1e6, ms2(pct(p, 90)), ms2(pct(s, 90)))
	}
	row("create+start+delete (busybox)", plain[3], shimmed[3])
	row("of which create (the shim asks)", plain[0], shimmed[0])
	row("of which start (pass-through)", plain[1], shimmed[1])
	row("of which delete (pass-through)", plain[2], shimmed[2])
	for _, p := range pts {
		row(p.name+" (pass-through)", p.plain, p.shim)
	}
	return nil
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms2(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func runcVersion(ctx context.Context, runc string) string {
	out, _ := exec.CommandContext(ctx, runc, "--version").Output()
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(first, "runc version ")
}

func freeAddr(ctx context.Context) string {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startProc(cmd *exec.Cmd, logPath string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
}

type apiClient struct {
	url    string
	client *http.Client
}

func waitConsole(ctx context.Context, url, dataDir string) (*apiClient, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ca, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.pem")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca)
			c := &apiClient{url: url, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/_ping", nil)
			if resp, err := c.client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return c, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, errors.New("the console did not answer within 30 s")
}

func (c *apiClient) put(ctx context.Context, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, "PUT", c.url+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT %s = %d %s", path, resp.StatusCode, b)
	}
	return nil
}

func waitInstalled(ctx context.Context, state string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, err := defender.ReadStatus(state); err == nil && st.Shim != nil && len(st.Shim.Runc) == 1 && st.Shim.Runc[0].State == shim.StateInstalled {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the Defender did not install the shim within 30 s")
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// makeBundle writes a busybox bundle that sleeps, with a pid namespace.
func makeBundle(ctx context.Context, runc, bundle string) error {
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile("/bin/busybox", filepath.Join(rootfs, "bin", "busybox")); err != nil {
		return fmt.Errorf("needs a static /bin/busybox (scripts/setup.sh installs it): %w", err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "sleep")); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w\n%s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	proc, _ := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "60"}
	spec["annotations"] = map[string]string{"io.bulwark.image": "registry.local/bench:1"}
	raw, err = json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, bytes.TrimSpace(raw), 0o644)
}
