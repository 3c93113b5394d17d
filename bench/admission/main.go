// Command admission measures the latency of the Console's Kubernetes
// admission controller at a constant request rate over loopback HTTPS.
//
// It starts, in this process, a Console with the admission listener on
// 127.0.0.1 (a real SQLite store, the policy below stored before the start,
// every decision recorded as an audit) and a baseline: a bare Go TLS server
// with a certificate from the same CA, on the same TLS and HTTP/2 settings,
// answering every request with the same fixed AdmissionReview response.
// The client runs in a child process (this program again, with -client), as
// the API server is a process of its own: its allocations and goroutines do
// not count as the server's.
//
// The client is open-loop, as the API server's calls are: request i leaves
// at start + i/rate whether or not the earlier ones were answered (a
// goroutine each), over one HTTP/2 connection (as the API server's webhook
// client keeps one), so a slow answer never delays the next request (no
// coordinated omission). A request's latency runs from sending it to the end
// of its answer; how late the client sent it after its due time, which only
// the client's own scheduling causes, is reported on its own. After -warmup
// at the rate, -duration is measured. The requests are reviews (CREATE) of
// admissiontest.ProductionDeployment (an application and a log-shipping
// sidecar that runs as root), each with its own UID, under an enforce-mode
// policy with the PSS baseline profile: each is allowed with warnings.
//
// It prints a Markdown table per row: achieved rate, p50, p90, p99, p99.9,
// max, errors, the client's lateness and the server process's CPU time per
// request; then the server process's Go runtime figures per row (garbage
// collections, their stop-the-world pauses, how long runnable goroutines
// waited for a CPU), which tell a tail caused by the collector from one
// caused by a busy CPU; then the controller's counters.
//
// The server process runs with the Console's garbage collector settings for
// admission (GOGC and GOMEMLIMIT in the environment win, as they do for
// bulwark-console); the header says which were in force.
//
//	go run ./bench/admission
//	go run ./bench/admission -rate 1000 -warmup 5s -duration 30s -rounds 2
//	go run ./bench/admission -cpuprofile srv.prof   # the Console's rows only
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
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
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

type options struct {
	rate             int
	warmup, duration time.Duration
	timeout          time.Duration
}

func run(ctx context.Context) error {
	var o options
	flag.IntVar(&o.rate, "rate", 1000, "requests per second")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time at the rate before measuring")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured time per target and round")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "a request not answered in this time is an error (the API server's default webhook timeout)")
	rounds := flag.Int("rounds", 1, "rounds of baseline then admission")
	cpuProfile := flag.String("cpuprofile", "", "write the server process's CPU profile of the admission controller's rows to this file")
	clientURL := flag.String("client", "", "internal: run as the client process against this URL")
	caFile := flag.String("ca", "", "internal: the client's CA file")
	flag.Parse()
	if o.rate <= 0 || o.duration <= 0 || *rounds <= 0 {
		return errors.New("-rate, -duration and -rounds must be positive")
	}
	if *clientURL != "" {
		return runClient(ctx, o, *clientURL, *caFile)
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
	// As bulwark-console: GOGC or GOMEMLIMIT set for the run win over the
	// Console's garbage collector settings for admission.
	if os.Getenv("GOGC") != "" {
		cfg.AdmissionGCPercent = 0
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		cfg.AdmissionMemoryLimit = 0
	}
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
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, c.CACertPEM(), 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	targets := []struct{ name, url string }{
		{"baseline: bare Go TLS handler, fixed AdmissionReview", "https://" + baseline.addr + "/v1/admission"},
		{"Console admission controller", "https://" + c.AdmissionAddr().String() + "/v1/admission"},
	}
	var results []result
	for round := range *rounds {
		for _, tg := range targets {
			fmt.Fprintf(os.Stderr, "round %d: %s: %s warm-up, %s measured at %d/s …\n", round+1, tg.name, o.warmup, o.duration, o.rate)
			cmd := exec.CommandContext(ctx, self, "-client", tg.url, "-ca", ca, "-rate", strconv.Itoa(o.rate), //nolint:gosec // this program, with its own flags
				"-warmup", o.warmup.String(), "-duration", o.duration.String(), "-timeout", o.timeout.String())
			cmd.Stderr = os.Stderr
			t0, m0 := cpuTime(), readMetrics()
			stopProfile := func() error { return nil }
			if *cpuProfile != "" && tg.url != targets[0].url {
				if stopProfile, err = startProfile(*cpuProfile, round); err != nil {
					return err
				}
			}
			out, err := cmd.Output()
			if err := stopProfile(); err != nil {
				return err
			}
			if err != nil {
				return fmt.Errorf("client against %s: %w", tg.name, err)
			}
			var r result
			if err := json.Unmarshal(out, &r); err != nil {
				return fmt.Errorf("client against %s: %w", tg.name, err)
			}
			r.ServerCPU, r.rt = cpuTime()-t0, readMetrics().since(m0)
			r.Name = tg.name
			if *rounds > 1 {
				r.Name = fmt.Sprintf("%s (round %d)", tg.name, round+1)
			}
			results = append(results, r)
		}
	}

	gogc, memLimit := gcSettings()
	fmt.Printf("Machine: %d CPUs (GOMAXPROCS %d), %s, %s/%s; server (Console, baseline) and client in two processes over loopback TLS 1.3 and HTTP/2; "+
		"open loop at %d requests/s, %s warm-up then %s measured per row; latency from sending a request to the end of its answer; "+
		"\"sent late\" is how long after its due time the client sent it; CPU is the server process's, warm-up included; "+
		"the server process collected garbage at GOGC=%s with a memory limit of %s.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, o.rate, o.warmup, o.duration, gogc, memLimit)
	fmt.Println("| target | requests/s | p50 | p90 | p99 | p99.9 | max | errors | sent late p99 | server CPU/request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	requests := time.Duration(o.rate) * (o.warmup + o.duration) / time.Second
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s | %s | %d | %s | %.0f µs |\n", r.Name, r.Rate, ms(pct(r.Lat, 50)), ms(pct(r.Lat, 90)),
			ms(pct(r.Lat, 99)), ms(pct(r.Lat, 99.9)), ms(pct(r.Lat, 100)), r.Errs, ms(pct(r.Lag, 99)),
			float64(r.ServerCPU/requests)/float64(time.Microsecond))
	}
	fmt.Println()
	fmt.Println("| target (server process) | GC cycles | GC pauses p99 | GC pauses max | run-queue wait p99 | run-queue wait max |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", r.Name, r.rt.gcCycles, ms(r.rt.gcPauses.quantile(0.99)), ms(r.rt.gcPauses.quantile(1)),
			ms(r.rt.sched.quantile(0.99)), ms(r.rt.sched.quantile(1)))
	}
	st := c.AdmissionStats()
	fmt.Printf("\nAdmission controller: %d reviews (%d allowed, %d with warnings, %d denied, %d malformed); audits %d written, %d dropped.\n",
		st.Reviews, st.Allowed, st.Warned, st.Denied, st.Malformed, st.AuditsWritten, st.AuditsDropped)
	return nil
}

// result is one row; the client process fills the exported fields.
type result struct {
	Name      string
	Lat, Lag  []time.Duration // sorted
	Errs      int
	Rate      float64 // requests sent per second in the measured part
	ServerCPU time.Duration
	rt        runtimeStats
}

// runClient is the client process: it loads url and writes its result as
// JSON on standard output.
func runClient(ctx context.Context, o options, url, caFile string) error {
	caPEM, err := os.ReadFile(caFile) //nolint:gosec // given by the parent
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: o.timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
	}}
	bodies := reviews(o.rate)
	if _, err := send(ctx, client, url, bodies[0]); err != nil {
		return err
	}
	r := load(ctx, client, url, bodies, o.rate, o.warmup, o.duration)
	return json.NewEncoder(os.Stdout).Encode(r)
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

// send posts one review and wants a 200 AdmissionReview over HTTP/2.
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
	if _, err := admissiontest.DecodeResponse(out); err != nil {
		return nil, err
	}
	return out, nil
}

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
	r := result{Rate: float64(total-first) / measure.Seconds()}
	for i := first; i < total; i++ {
		r.Lag = append(r.Lag, lag[i])
		if failed[i] {
			r.Errs++
			continue
		}
		r.Lat = append(r.Lat, lat[i])
	}
	slices.Sort(r.Lat)
	slices.Sort(r.Lag)
	return r
}

// pct is the p-th percentile of sorted ds (nearest rank; 100 is the max).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(ds))*p/100)) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

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
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	return &baselineServer{addr: ln.Addr().String(), srv: srv}, nil
}

// startProfile starts the CPU profile of a round, written to file (or
// file.<round> after the first) when stop is called.
func startProfile(file string, round int) (stop func() error, err error) {
	if round > 0 {
		file += "." + strconv.Itoa(round+1)
	}
	f, err := os.Create(file) //nolint:gosec // given by the user
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() error { pprof.StopCPUProfile(); return f.Close() }, nil
}

// gcSettings are the garbage collector's GOGC and memory limit in force.
func gcSettings() (gogc, limit string) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	gogc, limit = "?", "?"
	if s[0].Value.Kind() == metrics.KindUint64 {
		gogc = strconv.FormatUint(s[0].Value.Uint64(), 10)
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		if l := s[1].Value.Uint64(); l == math.MaxInt64 {
			limit = "none"
		} else {
			limit = fmt.Sprintf("%d MiB", l>>20)
		}
	}
	return gogc, limit
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runtimeStats are the Go runtime's view of a row: how many collections,
// how long the world stopped for them, and how long runnable goroutines
// waited for a CPU.
type runtimeStats struct {
	gcCycles        uint64
	gcPauses, sched histogram
}

func readMetrics() runtimeStats {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/sched/pauses/total/gc:seconds"}, {Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	var st runtimeStats
	if s[0].Value.Kind() == metrics.KindUint64 {
		st.gcCycles = s[0].Value.Uint64()
	}
	st.gcPauses, st.sched = histogramOf(s[1].Value), histogramOf(s[2].Value)
	return st
}

func (st runtimeStats) since(old runtimeStats) runtimeStats {
	return runtimeStats{gcCycles: st.gcCycles - old.gcCycles, gcPauses: st.gcPauses.since(old.gcPauses), sched: st.sched.since(old.sched)}
}

// histogram is a runtime/metrics histogram: counts[i] fall in
// [buckets[i], buckets[i+1]).
type histogram struct {
	counts  []uint64
	buckets []float64
}

func histogramOf(v metrics.Value) histogram {
	if v.Kind() != metrics.KindFloat64Histogram {
		return histogram{}
	}
	h := v.Float64Histogram()
	return histogram{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

func (h histogram) since(old histogram) histogram {
	d := histogram{counts: slices.Clone(h.counts), buckets: h.buckets}
	for i := range min(len(d.counts), len(old.counts)) {
		d.counts[i] -= old.counts[i]
	}
	return d
}

// quantile is the upper bound of the bucket holding quantile q (1: the
// largest sample's).
func (h histogram) quantile(q float64) time.Duration {
	var total uint64
	for _, c := range h.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(total))), 1)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			upper := h.buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = h.buckets[i]
			}
			return time.Duration(upper * float64(time.Second))
		}
	}
	return 0
}
