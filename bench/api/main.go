// Command api measures the Console REST API over loopback TLS: requests per
// second and latency percentiles of /_ping and of an authenticated list
// endpoint, next to a bare Go TLS server answering the same client in the same
// run (the baseline the ratios are taken against). It prints a Markdown table.
//
//	go run ./bench/api -duration 10s -concurrency 32
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"bulwark/internal/console"
	"bulwark/internal/pki"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/api:", err)
		os.Exit(1)
	}
}

type result struct {
	name          string
	n             int
	errs          int
	elapsed       time.Duration
	p50, p99, max time.Duration
}

func (r result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func run(ctx context.Context) error {
	duration := flag.Duration("duration", 5*time.Second, "how long each scenario runs")
	conc := flag.Int("concurrency", 32, "concurrent clients")
	users := flag.Int("users", 100, "users in the store for the list endpoint")
	flag.Parse()

	dir, err := os.MkdirTemp("", "bulwark-bench-api-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cfg := console.Default()
	cfg.DataDir, cfg.APIAddr, cfg.ChannelAddr = dir, "127.0.0.1:0", "127.0.0.1:0"
	cfg.AdminPassword = "bench-admin-password"
	logger := slog.New(slog.DiscardHandler)
	c, err := console.New(ctx, cfg, "bench", logger)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = c.Run(cctx) }()
	base := "https://" + c.APIAddr().String()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: *conc, ForceAttemptHTTP2: true,
	}}

	// Baseline: a bare net/http server with a certificate from the same CA.
	baseline, err := startBaseline(dir)
	if err != nil {
		return err
	}
	defer baseline.Close()

	for i := range *users - 1 {
		body := fmt.Sprintf(`{"username":"user%03d","role":"auditor","password":"bench-user-password"}`, i)
		if err := send(ctx, client, "POST", base+"/api/v1/users", body, "admin", cfg.AdminPassword, ""); err != nil {
			return fmt.Errorf("seed users: %w", err)
		}
	}
	tok, err := token(ctx, client, base, "admin", cfg.AdminPassword)
	if err != nil {
		return err
	}

	scenarios := []struct {
		name, url, user, pass, token string
	}{
		{"baseline: bare Go TLS server, static 200", "https://" + baseline.Addr + "/", "", "", ""},
		{"GET /api/v1/_ping", base + "/api/v1/_ping", "", "", ""},
		{fmt.Sprintf("GET /api/v1/users (%d users), Bearer token", *users), base + "/api/v1/users", "", "", tok},
		{fmt.Sprintf("GET /api/v1/users (%d users), HTTP Basic", *users), base + "/api/v1/users", "admin", cfg.AdminPassword, ""},
	}
	var results []result
	for _, s := range scenarios {
		fmt.Fprintf(os.Stderr, "running %s for %s …\n", s.name, *duration)
		r := load(ctx, client, s.name, s.url, s.user, s.pass, s.token, *conc, *duration)
		results = append(results, r)
	}

	proto, err := protocol(ctx, client, base+"/api/v1/_ping")
	if err != nil {
		return err
	}
	fmt.Printf("Machine: %d CPUs (GOMAXPROCS %d), %s; %d concurrent clients over %s + TLS on loopback, %s per row.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), *conc, proto, *duration)
	fmt.Println("| scenario | requests/s | vs baseline | p50 | p99 | max | errors |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %.2f | %s | %s | %s | %d |\n", r.name, r.rps(), r.rps()/results[0].rps(),
			fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max), r.errs)
	}
	return nil
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

type baselineServer struct {
	Addr string
	srv  *http.Server
}

func (b *baselineServer) Close() { _ = b.srv.Close() }

func startBaseline(dir string) (*baselineServer, error) {
	ca, _, err := pki.LoadOrCreateCA(dir+"/pki", time.Now())
	if err != nil {
		return nil, err
	}
	cert, err := pki.LoadOrCreateServerCert(dir+"/pki", "baseline", ca, pki.DefaultHosts(), time.Now())
	if err != nil {
		return nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("OK\n"))
		}),
		TLSConfig:         pki.ServerTLSConfig(cert),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	return &baselineServer{Addr: ln.Addr().String(), srv: srv}, nil
}

func send(ctx context.Context, client *http.Client, method, url, body, user, pass, tok string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}

// protocol is the HTTP version the server negotiates with the client.
func protocol(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Proto, nil
}

func token(ctx context.Context, client *http.Client, base, user, pass string) (string, error) {
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/authenticate", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var t struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.Token == "" {
		return "", fmt.Errorf("authenticate: %s: %w", resp.Status, err)
	}
	return t.Token, nil
}

// load runs conc clients against url until d has passed and returns
// throughput and latency percentiles.
func load(ctx context.Context, client *http.Client, name, url, user, pass, tok string, conc int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			e := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := send(ctx, client, "GET", url, "", user, pass, tok); err != nil {
					if ctx.Err() == nil {
						e++
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	r := result{name: name, n: len(all), errs: errs, elapsed: elapsed, p50: pct(0.50), p99: pct(0.99)}
	if len(all) > 0 {
		r.max = all[len(all)-1]
	}
	return r
}
