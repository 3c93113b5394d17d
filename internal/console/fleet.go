package console

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/channel"
	"bulwark/internal/event"
	"bulwark/internal/httpapi"
	"bulwark/internal/inventory"
	"bulwark/internal/pki"
	"bulwark/internal/policy"
	"bulwark/internal/store"
)

// fleet joins the store, the CA and the channel server: it is the channel's
// Backend and the API's Fleet.
type fleet struct {
	db         store.Store
	ca         *pki.CA
	channelURL string
	certTTL    time.Duration
	logger     *slog.Logger
	server     *channel.Server // set after construction
	runtime    runtimeIngest
	// onPolicy, when set, learns of every committed policy change too (the
	// admission controller).
	onPolicy func(context.Context, policy.Snapshot)

	mu      sync.RWMutex
	revoked map[string]bool // certificate serials
}

var (
	_ channel.Backend = (*fleet)(nil)
	_ httpapi.Fleet   = (*fleet)(nil)
)

func newFleet(ctx context.Context, db store.Store, ca *pki.CA, channelURL string, certTTL, incidentWindow time.Duration, logger *slog.Logger) (*fleet, error) {
	serials, err := db.RevokedSerials(ctx)
	if err != nil {
		return nil, fmt.Errorf("load revoked certificates: %w", err)
	}
	f := &fleet{db: db, ca: ca, channelURL: channelURL, certTTL: certTTL, logger: logger, revoked: make(map[string]bool, len(serials)),
		runtime: runtimeIngest{db: db, window: incidentWindow, logger: logger}}
	for _, s := range serials {
		f.revoked[s] = true
	}
	return f, nil
}

// authorize runs in the TLS handshake of :8084 after the chain was verified:
// the certificate must not be revoked and must name a Defender.
func (f *fleet) authorize(leaf *x509.Certificate) error {
	serial := pki.SerialString(leaf)
	f.mu.RLock()
	bad := f.revoked[serial]
	f.mu.RUnlock()
	if bad {
		return fmt.Errorf("certificate %s of %q is revoked", serial, leaf.Subject.CommonName)
	}
	if _, _, err := f.ca.VerifyClient([]*x509.Certificate{leaf}, time.Now()); err != nil {
		return err
	}
	return nil
}

// IssueClientCert implements httpapi.Fleet.
func (f *fleet) IssueClientCert(id string) (httpapi.IssuedCert, error) {
	certPEM, keyPEM, serial, notAfter, err := f.ca.IssueClient(id, f.certTTL, time.Now())
	if err != nil {
		return httpapi.IssuedCert{}, fmt.Errorf("issue certificate for %s: %w", id, err)
	}
	return httpapi.IssuedCert{CertPEM: certPEM, KeyPEM: keyPEM, Serial: serial, NotAfter: notAfter}, nil
}

func (f *fleet) CACertPEM() []byte  { return f.ca.CertPEM() }
func (f *fleet) ChannelURL() string { return f.channelURL }

// Revoked implements httpapi.Fleet: refuse from now on, and cut the live connection.
func (f *fleet) Revoked(id string, serials []string) {
	f.mu.Lock()
	for _, s := range serials {
		f.revoked[s] = true
	}
	f.mu.Unlock()
	if f.server != nil && f.server.Disconnect(id, "certificate revoked") {
		f.logger.Info("closed the connection of a revoked defender", slog.String("defender", id))
	}
}

// PolicyChanged implements httpapi.Fleet.
func (f *fleet) PolicyChanged(snap policy.Snapshot) {
	if f.onPolicy != nil {
		f.onPolicy(context.Background(), snap)
	}
	if f.server == nil {
		return
	}
	n := f.server.Push(snap)
	f.logger.Info("pushed policy", slog.Int64("revision", snap.Revision), slog.Int("defenders", n))
}

// Connected implements channel.Backend.
func (f *fleet) Connected(ctx context.Context, id string, h bulwarkv1.Hello, at time.Time) (uint64, error) {
	d, err := f.db.Defender(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("defender %s is not registered", id)
	}
	if err != nil {
		return 0, err
	}
	st := inventory.State{
		Connected: true, LastSeen: at, SpoolDepth: h.Spool.Depth, EventsDropped: h.Spool.Dropped, PolicyRevision: h.PolicyRevision,
		Sensor: toSensor(h.Sensor),
		Host:   &inventory.HostInfo{Hostname: h.Hostname, HostNetwork: h.HostNetwork, Version: h.Version, OS: h.OS, Kernel: h.Kernel, Runtimes: h.Runtimes, Capabilities: h.Capabilities},
	}
	if err := f.db.UpdateDefenderState(ctx, id, st); err != nil {
		return 0, err
	}
	f.logger.Info("defender connected", slog.String("defender", id), slog.String("hostname", h.Hostname), slog.Bool("host_network", h.HostNetwork),
		slog.Int64("policy_revision", h.PolicyRevision), slog.Uint64("spool_depth", h.Spool.Depth), slog.Uint64("dropped", h.Spool.Dropped))
	return d.StoredSeq, nil
}

// Heartbeat implements channel.Backend.
func (f *fleet) Heartbeat(ctx context.Context, id string, hb bulwarkv1.Heartbeat, at time.Time) error {
	st := inventory.State{Connected: true, LastSeen: at, PolicyRevision: hb.PolicyRevision, Sensor: toSensor(hb.Sensor)}
	if hb.Spool != nil {
		st.SpoolDepth, st.EventsDropped = hb.Spool.Depth, hb.Spool.Dropped
	}
	return f.db.UpdateDefenderState(ctx, id, st)
}

func toSensor(si *bulwarkv1.SensorInfo) *inventory.Sensor {
	if si == nil {
		return nil
	}
	s := &inventory.Sensor{LostKernel: si.LostKernel, LostUser: si.LostUser, Probes: make([]inventory.Probe, len(si.Probes))}
	for i, p := range si.Probes {
		s.Probes[i] = inventory.Probe{Name: p.Name, Kind: p.Kind, Active: p.Active, Error: p.Error, Degraded: p.Degraded}
	}
	for _, m := range si.Enforcement {
		s.Enforcement = append(s.Enforcement, inventory.Mechanism{Kind: m.Kind, Mechanism: m.Mechanism, Reason: m.Reason})
	}
	return s
}

// Disconnected implements channel.Backend.
func (f *fleet) Disconnected(ctx context.Context, id string, at time.Time) error {
	d, err := f.db.Defender(ctx, id)
	if err != nil {
		return err
	}
	f.logger.Info("defender disconnected", slog.String("defender", id))
	return f.db.UpdateDefenderState(ctx, id, inventory.State{Connected: false, LastSeen: at, SpoolDepth: d.SpoolDepth, EventsDropped: d.EventsDropped, PolicyRevision: d.PolicyRevision})
}

// Policy implements channel.Backend.
func (f *fleet) Policy(ctx context.Context) (policy.Snapshot, error) { return f.db.PolicySnapshot(ctx) }

// AppendEvents implements channel.Backend. Models and incidents are
// brought up to date from the batches first (see runtimeIngest).
func (f *fleet) AppendEvents(ctx context.Context, batches []event.Batch) ([]uint64, error) {
	f.runtime.ingest(ctx, batches)
	return f.db.AppendEvents(ctx, batches)
}
