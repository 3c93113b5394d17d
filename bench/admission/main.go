// Command admission measures the latency of the Console's Kubernetes
// admission controller at a constant request rate over loopback HTTPS.
//
// It starts a Console with the admission listener on 127.0.0.1 (a real
// SQLite store, the policy stored through the API's store, every decision
// recorded) and a baseline: a bare Go TLS server with a certificate from the
// same CA, on the same TLS and HTTP/2 settings, answering every request with
// the same fixed AdmissionReview response. The client is open-loop, as the
// API server's calls are: request i leaves at start + i/rate whether or not
// the earlier ones were answered (a goroutine each), over one HTTP/2
// connection (as the API server's webhook client keeps one), so a slow
// answer never delays the next request (no coordinated omission). A
// request's latency runs from sending it to the end of its answer; how late
// the client sent it after its due time, which only the client's own
// scheduling causes, is reported on its own. After -warmup at the rate,
// -duration is measured. The requests are reviews (CREATE) of
// admissiontest.ProductionDeployment (an application and a log-shipping
// sidecar that runs as root), each with its own UID, evaluated under an
// enforce-mode policy with the PSS baseline profile: it is allowed with
// warnings.
//
// It prints a Markdown table: achieved rate, p50, p90, p99, p99.9, max,
// errors and the process's CPU time per request (client, server and
// everything else in the process, warm-up included) per target, then the
// controller's counters.
//
//	go run ./bench/admission
//	go run ./bench/admission -rate 1000 -warmup 5s -duration 30s -rounds 2
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"bulwark/internal/admission/admissiontest"
	"bulwark/internal/console"
	"bulwark/internal/pki"
	"bulwark/internal/sqlite"
	"bulwark/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/admission:", err)
		os.Exit(1)
	}
}

// policy is what a cautious production cluster would run: enforce, the PSS
// baseline profile, the critical checks blocked, high ones alerting.
const policy = `{"mode":"enforce","pssLevel":"baseline","pssVersion":"latest","exemptNamespaces":["kube-system"],
	"rules":[{"name":"block the critical","checks":{"privileged":"block","caps-added":"block","runtime-socket":"block","sensitive-mount":"block"}},
	{"name":"alert","collections":[{"name":"all","namespaces":["*"]}]}]}`

func run(ctx context.Context) error {
	rate := flag.Int("rate", 1000, "requests per second")
	warmup := flag.Duration("warmup", 3*time.Second, "time at the rate before measuring")
	duration := flag.Duration("duration", 20*time.Second, "measured time per target and round")
	rounds := flag.Int("rounds", 1, "rounds of baseline then admission")
	timeout := flag.Duration("timeout", 10*time.Second, "a request not answered in this time is an error (the API server's default webhook timeout)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the admission rows to this file")
	flag.Parse()
	if *rate <= 0 || *duration <= 0 || *rounds <= 0 {
		return errors.New("-rate, -duration and -rounds must be positive")
	}

	dir, err := os.MkdirTemp("", "bulwark-bench-admission-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := storePolicy(ctx, dir); err != nil {
		return err
	}
	cfg := console.Default()
	cfg.DataDir, cfg.APIAddr, cfg.ChannelAddr, cfg.AdmissionAddr = dir, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.AdminPassword = "bench-admin-password"
	c, err := console.New(ctx, cfg, "bench", slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "bench/admission: console:", err)
		}
	}()

	baseline, err := startBaseline(dir)
	if err != nil {
		return err
	}
	defer baseline.Close()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	bodies := reviews(*rate)
	targets := []struct {
		name, url string
	}{
		{"baseline: bare Go TLS handler, fixed AdmissionReview", "https://" + baseline.addr + "/v1/admission"},
		{"Console admission controller", "https://" + c.AdmissionAddr().String() + "/v1/admission"},
	}
	var results []result
	cpu0 := cpuTime()
	for round := range *rounds {
		for _, tg := range targets {
			// A client per target: its own HTTP/2 connection.
			client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
				MaxIdleConnsPerHost: 4,
			}}
			if err := check(ctx, client, tg.url, bodies[0]); err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d: %s: %s warm-up, %s measured at %d/s …\n", round+1, tg.name, *warmup, *duration, *rate)
			profiling := *cpuProfile != "" && tg.url != targets[0].url && round == 0
			if profiling {
				f, err := os.Create(*cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			t0 := cpuTime()
			r := load(ctx, client, tg.url, bodies, *rate, *warmup, *duration)
			r.cpu = cpuTime() - t0
			if profiling {
				pprof.StopCPUProfile()
			}
			r.name = tg.name
			if *rounds > 1 {
				r.name = fmt.Sprintf("%s (round %d)", tg.name, round+1)
			}
			results = append(results, r)
			client.CloseIdleConnections()
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	cpu := cpuTime() - cpu0

	fmt.Printf("Machine: %d CPUs (GOMAXPROCS %d), %s, %s/%s; client and servers in one process over loopback TLS 1.3 and HTTP/2; "+
		"open loop at %d requests/s, %s warm-up then %s measured per row; latency from sending a request to the end of its answer; "+
		"\"sent late\" is how long after its due time the client sent it.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, *rate, *warmup, *duration)
	fmt.Println("| target | requests/s | p50 | p90 | p99 | p99.9 | max | errors | sent late p99 | CPU/request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		perReq := r.cpu / time.Duration(*rate*int((*warmup+*duration)/time.Second))
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s | %s | %d | %s | %.0f µs |\n", r.name, r.rate(), ms(r.pct(50)), ms(r.pct(90)), ms(r.pct(99)), ms(r.pct(99.9)), ms(r.max()), r.errs,
			ms(pct(r.lag, 99)), float64(perReq)/float64(time.Microsecond))
	}
	st := c.AdmissionStats()
	fmt.Printf("\nAdmission controller: %d reviews (%d allowed, %d with warnings, %d denied, %d malformed); audits %d written, %d dropped; process CPU %.1f s over the run.\n",
		st.Reviews, st.Allowed, st.Warned, st.Denied, st.Malformed, st.AuditsWritten, st.AuditsDropped, cpu.Seconds())
	return nil
}

// storePolicy writes the admission policy into the Console's store before
// the Console opens it, as a PUT through the API would.
func storePolicy(ctx context.Context, dir string) error {
	db, err := sqlite.Open(ctx, filepath.Join(dir, "bulwark.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(ctx, func(w store.Writer) error {
		_, err := w.PutPolicy(ctx, "admission", []byte(policy))
		return err
	})
}

// reviews are n AdmissionReviews of the Deployment, each with its own UID.
func reviews(n int) [][]byte {
	dep := admissiontest.ProductionDeployment()
	out := make([][]byte, n)
	for i := range out {
		out[i] = admissiontest.Review(admissiontest.Request(fmt.Sprintf("bench-%08d-0000-4000-8000-000000000000", i), admissionv1.Create, dep, nil))
	}
	return out
}

// check sends one review and wants a 200.
func check(ctx context.Context, client *http.Client, url string, body []byte) error {
	d, err := send(ctx, client, url, body)
	if err != nil {
		return err
	}
	if _, err := admissiontest.DecodeResponse(d); err != nil {
		return err
	}
	return nil
}

func send(ctx context.Context, client *http.Client, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return nil, fmt.Errorf("%s over %s: %.200s", resp.Status, resp.Proto, out)
	}
	return out, nil
}

type result struct {
	name    string
	cpu     time.Duration   // of the whole process, warm-up included
	lat     []time.Duration // sorted
	lag     []time.Duration // how late the requests left, sorted
	errs    int
	elapsed time.Duration
}

func (r result) rate() float64 { return float64(len(r.lat)+r.errs) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration { return pct(r.lat, p) }

// pct is the p-th percentile of sorted ds (nearest rank).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func (r result) max() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[len(r.lat)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// load sends requests at rate for warmup+measure, open loop, and returns
// the latencies of those due in the measured part, from the moment each was
// sent, and how late after its due time each was sent.
func load(ctx context.Context, client *http.Client, url string, bodies [][]byte, rate int, warmup, measure time.Duration) result {
	interval := time.Second / time.Duration(rate)
	total := int((warmup + measure) / interval)
	first := int(warmup / interval)
	lat := make([]time.Duration, total)
	lag := make([]time.Duration, total)
	failed := make([]bool, total)
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			sent := time.Now()
			_, err := send(ctx, client, url, bodies[i%len(bodies)])
			lat[i], lag[i] = time.Since(sent), sent.Sub(due)
			failed[i] = err != nil
		})
	}
	wg.Wait()
	r := result{elapsed: measure}
	for i := first; i < total; i++ {
		r.lag = append(r.lag, lag[i])
		if failed[i] {
			r.errs++
			continue
		}
		r.lat = append(r.lat, lat[i])
	}
	slices.Sort(r.lat)
	slices.Sort(r.lag)
	return r
}

type baselineServer struct {
	addr string
	srv  *http.Server
}

func (b *baselineServer) Close() { _ = b.srv.Close() }

// startBaseline serves a fixed AdmissionReview response over TLS with a
// certificate of the same CA, on the admission listener's TLS settings.
func startBaseline(dir string) (*baselineServer, error) {
	ca, _, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), time.Now())
	if err != nil {
		return nil, err
	}
	cert, err := pki.LoadOrCreateServerCert(filepath.Join(dir, "pki"), "baseline", ca, pki.DefaultHosts(), time.Now())
	if err != nil {
		return nil, err
	}
	answer := []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"bench-00000000-0000-4000-8000-000000000000","allowed":true}}` + "\n")
	tlsCfg := pki.ServerTLSConfig(cert)
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(answer)
		}),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	return &baselineServer{addr: ln.Addr().String(), srv: srv}, nil
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
