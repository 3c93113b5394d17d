package defender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector exports the Defender's state as Prometheus metrics, read at
// scrape time so that the event path pays nothing.
type collector struct {
	d *Defender

	connected, policyRevision, spoolDepth, spoolDropped, lost, probe *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(d *Defender) *collector {
	id := prometheus.Labels{"defender": d.bundle.Info.DefenderID}
	return &collector{
		d:              d,
		connected:      prometheus.NewDesc("bulwark_defender_connected", "1 when the Defender is connected to the Console.", nil, id),
		policyRevision: prometheus.NewDesc("bulwark_defender_policy_revision", "Policy revision the Defender enforces.", nil, id),
		spoolDepth:     prometheus.NewDesc("bulwark_defender_spool_depth_events", "Events in the spool not yet acknowledged by the Console.", nil, id),
		spoolDropped:   prometheus.NewDesc("bulwark_defender_spool_dropped_events_total", "Events dropped because the spool was full.", nil, id),
		lost:           prometheus.NewDesc("bulwark_defender_sensor_lost_events_total", "Events the sensor lost, by where: kernel (ring buffer full) or user (dropped in user space).", []string{"where"}, id),
		probe:          prometheus.NewDesc("bulwark_defender_sensor_probe_active", "1 when the sensor probe is attached.", []string{"probe", "kind"}, id),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.policyRevision, c.spoolDepth, c.spoolDropped, c.lost, c.probe} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.Status()
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, b2f(st.Connected))
	ch <- prometheus.MustNewConstMetric(c.policyRevision, prometheus.GaugeValue, float64(st.PolicyRevision))
	ch <- prometheus.MustNewConstMetric(c.spoolDepth, prometheus.GaugeValue, float64(st.Spool.Depth))
	ch <- prometheus.MustNewConstMetric(c.spoolDropped, prometheus.CounterValue, float64(st.Spool.Dropped))
	if st.Sensor != nil {
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.Sensor.LostKernel), "kernel")
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.Sensor.LostUser), "user")
		for _, p := range st.Sensor.Probes {
			ch <- prometheus.MustNewConstMetric(c.probe, prometheus.GaugeValue, b2f(p.Active), p.Name, p.Kind)
		}
	}
}

// serveMetrics serves /metrics on addr until ctx ends.
func (d *Defender) serveMetrics(ctx context.Context, addr string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(d), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	d.metricsAddr.Store(ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shctx)
	}()
	d.logger.Info("serving metrics", slog.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// MetricsAddr is where /metrics is served, once it is ("" before, or when off).
func (d *Defender) MetricsAddr() string {
	v, _ := d.metricsAddr.Load().(string)
	return v
}
