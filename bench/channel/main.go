// Command channel measures the Defender channel: N simulated Defenders, each
// with its own install bundle, client certificate and websocket, against one
// Console on loopback, all in this process. For every N it starts a fresh
// Console (temporary data dir, SQLite store) and reports
//
//   - connect time: from starting the N clients until the Console counts N
//     sessions;
//   - events/s stored: for -duration, every Defender sends synthetic events as
//     fast as its window of unacknowledged frames allows; the rate is the sum
//     of the acknowledged seqs (acks follow the store commit) over the
//     elapsed time, cross-checked against the Console's ingest counter;
//   - policy push latency: -pushes policy PUTs one after another, each timed
//     from just before the PUT until each Defender's OnPolicy saw that
//     revision; "all reached" is the slowest Defender of a push.
//
// The baseline, measured in the same run on its own fresh Console, is one
// Defender with the same batch size and window: the table shows each N's
// event rate as a ratio to it. CPU seconds are the whole process's (Console
// and simulated Defenders share it), so they over-state the Console's share.
//
// Each event carries a ~100-byte JSON payload; the payload is the same for
// every event, so websocket compression sees friendlier data than a real
// Defender's.
//
//	go run ./bench/channel -defenders 100,1000 -duration 10s
//
// -warmup sends for a while before the measured window starts, which gives
// the steady-state rate rather than the rate from a cold start:
//
//	go run ./bench/channel -defenders 1000 -warmup 25s -duration 10s
//
// The Markdown table goes to stdout, progress (a per-second trace of the
// events phase) to stderr. -cpuprofile records the largest N from the
// first event to the last push.
package main

import (
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
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/channel"
	"bulwark/internal/console"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/channel:", err)
		os.Exit(1)
	}
}

const adminPassword = "bench-admin-password"

// options are the flags.
type options struct {
	counts     []int
	duration   time.Duration
	warmup     time.Duration
	batch      int
	window     int
	pushes     int
	parallel   int
	cpuprofile string
}

func run(ctx context.Context) error {
	var o options
	defenders := flag.String("defenders", "100,1000", "comma-separated numbers of simulated Defenders; one run, on a fresh Console, per value")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the measured events phase")
	flag.DurationVar(&o.warmup, "warmup", 0, "unmeasured sending before the measured events phase (0: measure from the first event)")
	flag.IntVar(&o.batch, "batch", 1000, "events per frame")
	flag.IntVar(&o.window, "window", 4, "unacknowledged frames in flight per Defender")
	flag.IntVar(&o.pushes, "pushes", 20, "policy pushes timed per run")
	flag.IntVar(&o.parallel, "parallel", 8, "concurrent install-bundle requests")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the largest run, from the first event to the last push, to this file")
	flag.Parse()
	for f := range strings.SplitSeq(*defenders, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-defenders %q: want positive integers separated by commas", *defenders)
		}
		o.counts = append(o.counts, n)
	}
	if o.batch < 1 || o.batch > bulwarkv1.MaxBatchEvents {
		return fmt.Errorf("-batch %d: want 1..%d", o.batch, bulwarkv1.MaxBatchEvents)
	}
	if o.warmup < 0 {
		return errors.New("-warmup must not be negative")
	}
	if o.duration <= 0 || o.pushes < 1 || o.window < 1 || o.parallel < 1 {
		return errors.New("-duration, -pushes, -window and -parallel must be positive")
	}
	largest := slices.Max(o.counts)
	if err := raiseFileLimit(largest); err != nil {
		return err
	}

	// The baseline first: one Defender, same batch and window.
	runs := append([]int{1}, o.counts...)
	var results []result
	for i, n := range runs {
		label := strconv.Itoa(n)
		if i == 0 {
			label = "1 (baseline)"
		}
		profile := ""
		if i > 0 && n == largest && o.cpuprofile != "" {
			profile, o.cpuprofile = o.cpuprofile, "" // once, on the first run of the largest N
		}
		fmt.Fprintf(os.Stderr, "== %s Defender(s)\n", label)
		r, err := runOnce(ctx, o, n, profile)
		if err != nil {
			return fmt.Errorf("%d defenders: %w", n, err)
		}
		r.label = label
		results = append(results, r)
	}

	fmt.Printf("Machine: %d CPUs (GOMAXPROCS %d), %s, %s/%s; Console and simulated Defenders in one process over loopback TLS 1.3; "+
		"SQLite (WAL, synchronous=FULL); batch %d events, window %d frames, events measured for %s after %s of warm-up, %d pushes per row.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, o.batch, o.window, o.duration, o.warmup, o.pushes)
	fmt.Println("| defenders | connect | events/s stored | vs 1 Defender | Console ingest counter, events/s | push p50 / p99 / max, all reached | push p50 / p99, per Defender | CPU s (events phase) | goroutine run-queue wait p99 | RSS / Go heap | reconnects |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %.0f | %.2f | %.0f | %s / %s / %s | %s / %s | %.1f (%.2f cores) | %s | %d / %d MiB | %d |\n",
			r.label, fmtDur(r.connect), r.eventsPerSec(), r.eventsPerSec()/results[0].eventsPerSec(), r.ingestPerSec(),
			fmtDur(r.allP50), fmtDur(r.allP99), fmtDur(r.allMax), fmtDur(r.oneP50), fmtDur(r.oneP99),
			r.cpu.Seconds(), r.cpu.Seconds()/r.elapsed.Seconds(), fmtDur(r.schedP99), r.rss>>20, r.heap>>20, r.reconnects)
	}
	return nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// Defender costs two descriptors here (its end and the Console's end).
func raiseFileLimit(largest int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise open-file limit to %d: %w", lim.Max, err)
		}
	}
	need := uint64(2*largest + 256)
	if lim.Cur < need {
		return fmt.Errorf("open-file limit is %d (hard limit %d); %d Defenders need about %d: raise it (ulimit -n 4096 or more, or LimitNOFILE) and rerun",
			lim.Cur, lim.Max, largest, need)
	}
	if lim.Cur < 4096 {
		fmt.Fprintf(os.Stderr, "warning: open-file limit is %d, below 4096; enough for %d Defenders, not for 2,000\n", lim.Cur, largest)
	}
	return nil
}

// result is one row.
type result struct {
	label            string
	connect          time.Duration
	stored, ingested uint64 // events in the events phase: acknowledged, and counted by the Console
	elapsed          time.Duration
	cpu              time.Duration
	rss, heap        uint64
	reconnects       int64
	schedP99         time.Duration // goroutine run-queue wait in the events phase

	allP50, allP99, allMax time.Duration // per push, until every Defender had it
	oneP50, oneP99         time.Duration // per Defender and push
}

func (r result) eventsPerSec() float64 { return float64(r.stored) / r.elapsed.Seconds() }
func (r result) ingestPerSec() float64 { return float64(r.ingested) / r.elapsed.Seconds() }

// runOnce measures n Defenders against a fresh Console.
func runOnce(ctx context.Context, o options, n int, profile string) (_ result, err error) {
	var r result
	dir, err := os.MkdirTemp("", "bulwark-bench-channel-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	cfg := console.Default()
	cfg.DataDir, cfg.APIAddr, cfg.ChannelAddr = dir, "127.0.0.1:0", "127.0.0.1:0"
	cfg.AdminPassword = adminPassword
	cfg.BcryptCost = 4 // every API call here checks HTTP Basic
	logger := slog.New(slog.DiscardHandler)
	c, err := console.New(ctx, cfg, "bench", logger)
	if err != nil {
		return r, err
	}
	cctx, stopConsole := context.WithCancel(ctx)
	consoleDone := make(chan error, 1)
	go func() { consoleDone <- c.Run(cctx) }()
	defer func() {
		stopConsole()
		select {
		case e := <-consoleDone:
			if e != nil && !errors.Is(e, context.Canceled) && err == nil {
				err = fmt.Errorf("console run: %w", e)
			}
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "warning: the Console did not stop within 30s")
		}
		if e := c.Close(); e != nil && err == nil {
			err = fmt.Errorf("close console: %w", e)
		}
	}()
	if err := loopbackOnly(c.ChannelURL()); err != nil {
		return r, err
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	api := &apiClient{base: "https://" + c.APIAddr().String(), http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: o.parallel,
		},
	}}

	t0 := time.Now()
	sims, err := enroll(ctx, api, n, o.parallel)
	if err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "  %d bundles issued in %s\n", n, time.Since(t0).Round(time.Millisecond))

	// The simulated Defenders.
	var gen generator
	gen.batch = o.batch
	gen.data = json.RawMessage(`{"pid":4242,"ppid":1,"uid":1000,"comm":"bench","path":"/usr/local/bin/bench-synthetic","args":["--x"]}`)
	var reconnects atomic.Int64
	dctx, stopDefenders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopDefenders()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "warning: the simulated Defenders did not stop within 30s")
		}
	}()
	t0 = time.Now()
	for _, s := range sims {
		s.gen = &gen
		cl := channel.NewClient(channel.ClientConfig{
			URL:       c.ChannelURL(),
			TLS:       s.tls,
			Hello:     s.hello,
			OnPolicy:  s.onPolicy,
			Heartbeat: s.heartbeat,
			Outbox:    s,
			BatchSize: o.batch,
			Window:    o.window,
			OnState: func(connected bool, err error) {
				if !connected && err != nil && dctx.Err() == nil {
					reconnects.Add(1)
				}
			},
		}, logger)
		wg.Go(func() { _ = cl.Run(dctx) })
	}
	if err := waitUntil(ctx, 2*time.Minute, func() bool { return c.ChannelStats().Connected == n }); err != nil {
		return r, fmt.Errorf("%d of %d defenders connected: %w", c.ChannelStats().Connected, n, err)
	}
	r.connect = time.Since(t0)
	fmt.Fprintf(os.Stderr, "  %d connected in %s\n", n, r.connect.Round(time.Millisecond))

	stopProfile := func() {}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return r, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return r, err
		}
		stopProfile = sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() })
		defer stopProfile()
	}

	// Events phase: generation starts, the first -warmup is not measured.
	runtime.GC()
	gen.on.Store(true)
	for _, s := range sims {
		s.wakeUp()
	}
	if o.warmup > 0 {
		fmt.Fprintf(os.Stderr, "  warm-up %s\n", o.warmup)
		if err := timeline(ctx, o.warmup, c, sims); err != nil {
			return r, err
		}
	}
	acked0, ingested0, cpu0, sched0 := sumAcked(sims), c.ChannelStats().EventsIngested, cpuTime(), schedLatencies()
	start := time.Now()
	if err := timeline(ctx, o.duration, c, sims); err != nil {
		return r, err
	}
	acked1, ingested1, cpu1 := sumAcked(sims), c.ChannelStats().EventsIngested, cpuTime()
	r.elapsed = time.Since(start)
	gen.on.Store(false)
	r.schedP99 = schedLatencies().since(sched0).quantile(0.99)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.stored, r.ingested, r.cpu, r.heap, r.rss = acked1-acked0, ingested1-ingested0, cpu1-cpu0, ms.HeapInuse, rss()
	fmt.Fprintf(os.Stderr, "  events phase: %d stored in %s = %.0f/s (ingest counter %.0f/s), %.1f CPU s, run-queue wait p99 %s\n",
		r.stored, r.elapsed.Round(time.Millisecond), r.eventsPerSec(), r.ingestPerSec(), r.cpu.Seconds(), fmtDur(r.schedP99))

	// Let the frames in flight be stored and acknowledged; a Defender whose
	// session dropped may never get its last batch acked, so stop waiting
	// when the Console stops storing.
	t0 = time.Now()
	last, lastChange := c.ChannelStats().EventsIngested, time.Now()
	err = waitUntil(ctx, time.Minute, func() bool {
		if sumAcked(sims) >= sumGenerated(sims) {
			return true
		}
		if now := c.ChannelStats().EventsIngested; now != last {
			last, lastChange = now, time.Now()
		}
		return time.Since(lastChange) > 10*time.Second
	})
	if err != nil {
		return r, fmt.Errorf("drain: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  drained in %s (%d generated, %d acknowledged)\n", time.Since(t0).Round(time.Millisecond), sumGenerated(sims), sumAcked(sims))

	// Push phase.
	var all, one []time.Duration
	for i := range o.pushes {
		t0 := time.Now()
		rev, err := api.putPolicy(ctx, fmt.Sprintf("bench-rule-%d", i))
		if err != nil {
			return r, err
		}
		if err := waitUntil(ctx, 30*time.Second, func() bool {
			for _, s := range sims {
				if s.rev.Load() < rev {
					return false
				}
			}
			return true
		}); err != nil {
			return r, fmt.Errorf("push of revision %d: not every defender got it: %w", rev, err)
		}
		var slowest time.Duration
		for _, s := range sims {
			d := s.seenAt(rev).Sub(t0)
			one = append(one, d)
			slowest = max(slowest, d)
		}
		all = append(all, slowest)
	}
	stopProfile()
	r.allP50, r.allP99, r.allMax = pct(all, 0.50), pct(all, 0.99), pct(all, 1)
	r.oneP50, r.oneP99 = pct(one, 0.50), pct(one, 0.99)
	r.reconnects = reconnects.Load()
	fmt.Fprintf(os.Stderr, "  push: all reached p50 %s p99 %s max %s; per Defender p50 %s p99 %s; reconnects %d; bad frames %d\n",
		fmtDur(r.allP50), fmtDur(r.allP99), fmtDur(r.allMax), fmtDur(r.oneP50), fmtDur(r.oneP99), r.reconnects, c.ChannelStats().BadFrames)
	return r, nil
}

// timeline waits d and prints, every second, the events acknowledged and
// the Console's ingest counter over that second.
func timeline(ctx context.Context, d time.Duration, c *console.Console, sims []*sim) error {
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	acked, ingested, t := sumAcked(sims), c.ChannelStats().EventsIngested, time.Now()
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(left):
			return nil
		case now := <-tick.C:
			a, i := sumAcked(sims), c.ChannelStats().EventsIngested
			s := now.Sub(t).Seconds()
			fmt.Fprintf(os.Stderr, "    %6.0f acked/s %6.0f ingested/s (%d generated)\n", float64(a-acked)/s, float64(i-ingested)/s, sumGenerated(sims))
			acked, ingested, t = a, i, now
		}
	}
}

// loopbackOnly refuses a channel URL that would leave the machine.
func loopbackOnly(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("channel url %q: %w", u, err)
	}
	if ip := net.ParseIP(p.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("channel url %q is not on loopback", u)
	}
	return nil
}

// generator makes synthetic events while the events phase is on.
type generator struct {
	on    atomic.Bool
	batch int
	data  json.RawMessage
}

// sim is one simulated Defender: its credentials, an in-memory outbox and
// what it saw of policy pushes.
type sim struct {
	id   string
	tls  *tls.Config
	gen  *generator
	wake chan struct{}

	generated atomic.Uint64 // highest seq handed to the client
	acked     atomic.Uint64 // highest seq the Console acknowledged
	rev       atomic.Int64  // highest policy revision received

	mu   sync.Mutex
	seen map[int64]time.Time // revision → when OnPolicy got it
}

var _ channel.Outbox = (*sim)(nil)

// Pending implements channel.Outbox: a full batch from seq on, as long as
// the events phase lasts.
func (s *sim) Pending(from uint64, n int) ([]bulwarkv1.Event, error) {
	if !s.gen.on.Load() {
		return nil, nil
	}
	now := time.Now()
	evs := make([]bulwarkv1.Event, n)
	for i := range evs {
		evs[i] = bulwarkv1.Event{Seq: from + uint64(i), Time: now, Kind: "bench", Data: s.gen.data}
	}
	last := from + uint64(n) - 1
	for {
		g := s.generated.Load()
		if g >= last || s.generated.CompareAndSwap(g, last) {
			break
		}
	}
	return evs, nil
}

// Acked implements channel.Outbox.
func (s *sim) Acked(seq uint64) error {
	for {
		a := s.acked.Load()
		if a >= seq || s.acked.CompareAndSwap(a, seq) {
			return nil
		}
	}
}

// Wake implements channel.Outbox. It fires once when the events phase
// starts; during the phase Pending always has a batch, so the client waits
// only for acks.
func (s *sim) Wake() <-chan struct{} { return s.wake }

func (s *sim) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sim) hello() bulwarkv1.Hello {
	return bulwarkv1.Hello{
		ID: s.id, Version: "bench", Hostname: s.id, OS: "linux", Kernel: "bench",
		PolicyRevision: s.rev.Load(),
		Spool:          bulwarkv1.SpoolInfo{NextSeq: s.generated.Load() + 1},
	}
}

func (s *sim) heartbeat() bulwarkv1.Heartbeat {
	return bulwarkv1.Heartbeat{Time: time.Now(), PolicyRevision: s.rev.Load()}
}

func (s *sim) onPolicy(p bulwarkv1.Policy) error {
	now := time.Now()
	s.mu.Lock()
	if _, ok := s.seen[p.Revision]; !ok {
		s.seen[p.Revision] = now
	}
	s.mu.Unlock()
	for {
		r := s.rev.Load()
		if r >= p.Revision || s.rev.CompareAndSwap(r, p.Revision) {
			return nil
		}
	}
}

func (s *sim) seenAt(rev int64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[rev]
}

func sumAcked(sims []*sim) uint64 {
	var n uint64
	for _, s := range sims {
		n += s.acked.Load()
	}
	return n
}

func sumGenerated(sims []*sim) uint64 {
	var n uint64
	for _, s := range sims {
		n += s.generated.Load()
	}
	return n
}

// enroll asks the Console for n install bundles, parallel requests at a
// time, and turns each into a simulated Defender's TLS configuration.
func enroll(ctx context.Context, api *apiClient, n, parallel int) ([]*sim, error) {
	sims := make([]*sim, n)
	ids := make(chan int)
	errs := make(chan error, parallel)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range ids {
				s, err := api.bundle(ctx, fmt.Sprintf("bench-%05d", i))
				if err != nil {
					errs <- err
					cancel()
					return
				}
				sims[i] = s
			}
		})
	}
feed:
	for i := range n {
		select {
		case ids <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return sims, nil
}

// apiClient calls the Console REST API as the admin.
type apiClient struct {
	base string
	http *http.Client
}

func (a *apiClient) do(ctx context.Context, method, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("admin", adminPassword)
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// bundle registers Defender id and builds its client TLS configuration from
// the bundle's PEM files.
func (a *apiClient) bundle(ctx context.Context, id string) (*sim, error) {
	var b struct {
		DefenderID string            `json:"defenderID"`
		ConsoleURL string            `json:"consoleURL"`
		Files      map[string]string `json:"files"`
	}
	if err := a.do(ctx, "POST", "/api/v1/defenders/bundle", map[string]string{"id": id}, &b); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(b.Files["defender.pem"]), []byte(b.Files["defender-key.pem"]))
	if err != nil {
		return nil, fmt.Errorf("bundle of %s: %w", id, err)
	}
	if cert.Leaf == nil || cert.Leaf.Subject.CommonName != b.DefenderID || b.DefenderID != id {
		return nil, fmt.Errorf("bundle of %s: certificate or id names someone else", id)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b.Files["ca.pem"])) {
		return nil, fmt.Errorf("bundle of %s: no CA certificate in ca.pem", id)
	}
	return &sim{
		id:   cert.Leaf.Subject.CommonName,
		tls:  &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13},
		wake: make(chan struct{}, 1),
		seen: make(map[int64]time.Time),
	}, nil
}

// putPolicy replaces the runtime/container policy and returns the new revision.
func (a *apiClient) putPolicy(ctx context.Context, rule string) (int64, error) {
	var out struct {
		Revision int64 `json:"revision"`
	}
	body := map[string]any{"rules": []map[string]string{{"name": rule}}}
	if err := a.do(ctx, "PUT", "/api/v1/policies/runtime/container", body, &out); err != nil {
		return 0, err
	}
	if out.Revision < 1 {
		return 0, fmt.Errorf("put policy: revision %d", out.Revision)
	}
	return out.Revision, nil
}

// waitUntil polls ok until it holds, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// pct returns the p-quantile (nearest rank) of ds; 1 is the maximum.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// histogram is a snapshot of the runtime's scheduling-latency histogram:
// how long runnable goroutines waited for a CPU.
type histogram struct {
	counts  []uint64
	buckets []float64 // seconds; len(counts)+1 boundaries
}

func schedLatencies() histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return histogram{}
	}
	h := s[0].Value.Float64Histogram()
	return histogram{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

func (h histogram) since(old histogram) histogram {
	d := histogram{counts: slices.Clone(h.counts), buckets: h.buckets}
	for i := range min(len(d.counts), len(old.counts)) {
		d.counts[i] -= old.counts[i]
	}
	return d
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h histogram) quantile(q float64) time.Duration {
	var total uint64
	for _, c := range h.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q * float64(total))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			up := h.buckets[i+1]
			if math.IsInf(up, 1) {
				up = h.buckets[i]
			}
			return time.Duration(up * float64(time.Second))
		}
	}
	return 0
}

// cpuTime is the user and system CPU time of the whole process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set size from /proc/self/status (0 when unknown).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}
