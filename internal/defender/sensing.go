package defender

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	"bulwark/internal/runtime"
	"bulwark/internal/runtimepolicy"
	"bulwark/internal/sensor"
)

// sensing joins the eBPF sensor and container correlation, and writes what
// they see to the spool in batches.
type sensing struct {
	d        *Defender
	sensor   *sensor.Sensor
	resolver *runtime.Resolver
	logger   *slog.Logger

	queue     chan []byte   // spool records
	full      chan struct{} // appendBatch records are queued: append them now
	dropped   atomic.Uint64 // events lost because the queue was full
	lifecycle bool          // send process.fork and process.exit to the Console as well

	mu       sync.Mutex
	reported map[string]uint64 // loss already sent as sensor.loss, by probe kind ("" = user space)
}

// Events reach the spool in batches of up to appendBatch, or appendLinger
// after the first of a batch: each append is an fsync, and each fsync, a
// system call that blocks, makes Go's runtime hand the thread's P over and
// poll every 20 µs for a while after. At 50 ms an exec storm cost the
// Defender twice the context switches and half again the CPU of 200 ms.
const (
	queueLen      = 64 << 10
	appendBatch   = 2048
	appendLinger  = 200 * time.Millisecond
	lossReportGap = 5 * time.Second
)

func newSensing(d *Defender, cfg Config, logger *slog.Logger) (*sensing, error) {
	rcfg := runtime.DefaultConfig()
	rcfg.ProcRoot = cfg.ProcRoot
	if cfg.RuncRoots != nil {
		rcfg.RuncRoots = cfg.RuncRoots
	}
	res, err := runtime.New(rcfg, logger)
	if err != nil {
		return nil, fmt.Errorf("container correlation: %w", err)
	}
	// Runtime defense needs writes to every binary directory.
	watch := append(slices.Clone(cfg.WatchPaths), runtimepolicy.WatchedWritePaths()...)
	sn, err := sensor.New(sensor.Config{RingBufferBytes: cfg.RingBufferBytes, WatchPaths: watch, ProcRoot: cfg.ProcRoot,
		ReadPaths: runtimepolicy.SensitiveReadPaths()}, logger)
	if err != nil {
		return nil, fmt.Errorf("sensor: %w", err)
	}
	return &sensing{d: d, sensor: sn, resolver: res, logger: logger, queue: make(chan []byte, queueLen),
		full: make(chan struct{}, 1), lifecycle: cfg.LifecycleEvents, reported: map[string]uint64{}}, nil
}

// info is the sensor part of the Defender's hello and heartbeats.
func (s *sensing) info() *bulwarkv1.SensorInfo {
	kernel, user := s.sensor.Loss()
	si := &bulwarkv1.SensorInfo{LostKernel: kernel, LostUser: user + s.dropped.Load()}
	for _, p := range s.sensor.Probes() {
		si.Probes = append(si.Probes, bulwarkv1.Probe{Name: p.Name, Kind: p.Kind, Active: p.Active, Error: p.Error, Degraded: p.Degraded})
	}
	return si
}

// capabilities names what works, for the hello.
func (s *sensing) capabilities() []string {
	var caps []string
	for _, p := range s.sensor.Probes() {
		if p.Active {
			caps = append(caps, p.Kind+":"+p.Name)
		}
	}
	return caps
}

// run senses until ctx ends; the Defender scans the running processes
// (scanExisting) before.
func (s *sensing) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.appendLoop(ctx) })
	wg.Go(func() { _ = s.resolver.Run(ctx) })
	wg.Go(func() { s.lossLoop(ctx) })
	err := s.sensor.Run(ctx, s.observe)
	wg.Wait()
	return err
}

func (s *sensing) close() error { return s.sensor.Close() }

// observe runs on the sensor's reader goroutine: add the container and host,
// encode, queue. It must not block.
func (s *sensing) observe(kind string, at time.Time, rt event.Runtime) {
	rt.Host = s.d.ident.Hostname
	if rt.Container == nil && rt.Process.CgroupID != 0 {
		if c, ok := s.resolver.Container(rt.Process.CgroupID); ok {
			rt.Container = &c
		}
	}
	if rt.Container != nil && s.d.assessor != nil {
		s.d.assessor.sawContainer(rt.Container.ID)
	}
	if !s.lifecycle && (kind == event.KindProcessFork || kind == event.KindProcessExit) {
		s.d.defense.observe(kind, at, &rt)
		return
	}
	// The spool record, written once: {"t":…,"k":…,"d":<rt>}.
	rec, err := rt.AppendJSON(appendSpooledHead(make([]byte, 0, 640), at, kind))
	if err != nil {
		s.dropped.Add(1)
		return
	}
	s.queueRecord(append(rec, '}'))
	s.d.defense.observe(kind, at, &rt)
}

// enqueue queues one encoded event for the spool without blocking.
func (s *sensing) enqueue(kind string, at time.Time, data []byte) {
	s.queueRecord(appendSpooled(nil, at, kind, data))
}

func (s *sensing) queueRecord(rec []byte) {
	select {
	case s.queue <- rec:
		if len(s.queue) >= appendBatch {
			select {
			case s.full <- struct{}{}:
			default:
			}
		}
	default:
		s.dropped.Add(1) // counted and reported, never hidden
	}
}

// scanExisting reports the processes that were running before the Defender.
func (s *sensing) scanExisting() {
	procs, err := s.resolver.ScanProcs()
	if err != nil {
		s.logger.Warn("scan /proc", slog.Any("err", err))
		return
	}
	now := time.Now()
	for _, p := range procs {
		rt := event.Runtime{Process: p.Process, Container: p.Container, Existing: true}
		s.observe(event.KindProcessExec, now, rt)
	}
	s.logger.Info("found running processes", slog.Int("processes", len(procs)))
}

// appendLoop writes queued events to the spool in batches: one append (and
// one fsync) per batch instead of per event. The first record of a batch
// wakes it; the rest wait in the queue until appendLinger has passed or
// appendBatch are queued, so that a busy sensor's reader does not wake this
// goroutine (a futex and a thread switch) for every record.
func (s *sensing) appendLoop(ctx context.Context) {
	batch := make([][]byte, 0, appendBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, _, err := s.d.spool.Append(batch...); err != nil {
			s.dropped.Add(uint64(len(batch)))
			s.logger.Error("spool events", slog.Int("events", len(batch)), slog.Any("err", err))
		}
		clear(batch) // let the records go
		batch = batch[:0]
	}
	// take moves what is queued into batches, appending each full one.
	take := func() {
		for {
			select {
			case q := <-s.queue:
				batch = append(batch, q)
				if len(batch) == appendBatch {
					flush()
				}
			default:
				return
			}
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			take() // keep what is already queued
			flush()
			return
		case q := <-s.queue:
			batch = append(batch, q)
			timer.Reset(appendLinger)
			select {
			case <-ctx.Done():
			case <-timer.C:
			case <-s.full:
			}
			take()
			flush()
			// A full signal sent while take was emptying the queue is
			// stale: left, it would end the next batch at its first record.
			select {
			case <-s.full:
			default:
			}
		}
	}
}

// appendSpooled writes the spool record of an event, as json.Marshal of a
// spooled would, around data that is already compact JSON: marshalling it
// again would scan it again, and this runs once per event.
func appendSpooled(b []byte, at time.Time, kind string, data []byte) []byte {
	b = appendSpooledHead(b, at, kind)
	b = append(b, data...)
	return append(b, '}')
}

// appendSpooledHead writes a spool record up to its data.
func appendSpooledHead(b []byte, at time.Time, kind string) []byte {
	b = append(b, `{"t":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","k":`...)
	b = strconv.AppendQuote(b, kind) // kinds are ASCII identifiers: Go and JSON quoting agree
	return append(b, `,"d":`...)
}

// lossLoop sends a sensor.loss event whenever loss grew.
func (s *sensing) lossLoop(ctx context.Context) {
	t := time.NewTicker(lossReportGap)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.reportLoss()
			return
		case <-t.C:
			s.reportLoss()
		}
	}
}

// reportLoss sends one sensor.loss event per record kind whose kernel loss
// grew, and one for loss in user space, so that the Console can tell what
// is missing from what.
func (s *sensing) reportLoss() {
	now := s.sensor.KernelLossByKind()
	_, user := s.sensor.Loss()
	now[""] = user + s.dropped.Load()
	s.mu.Lock()
	var data []json.RawMessage
	var total event.Loss
	for kind, n := range now {
		d := n - s.reported[kind]
		if d == 0 {
			continue
		}
		s.reported[kind] = n
		l := event.Loss{Probe: kind}
		if kind == "" {
			l.User, total.User = d, total.User+d
		} else {
			l.Kernel, total.Kernel = d, total.Kernel+d
		}
		b, _ := json.Marshal(l)
		data = append(data, b)
	}
	s.mu.Unlock()
	if len(data) == 0 {
		return
	}
	s.logger.Warn("sensor lost events", slog.Uint64("kernel", total.Kernel), slog.Uint64("user", total.User))
	if err := s.d.Emit(event.KindSensorLoss, time.Now(), data...); err != nil {
		s.logger.Error("report sensor loss", slog.Any("err", err))
	}
}
