package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"bulwark/api"
	"bulwark/api/bulwarkv1"
	"bulwark/internal/admission"
	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/channel"
	"bulwark/internal/credential"
	"bulwark/internal/httpapi"
	"bulwark/internal/pki"
	"bulwark/internal/sqlite"
	"bulwark/internal/store"
)

// Console is a running Console: call Run, then Close.
type Console struct {
	cfg         Config
	logger      *slog.Logger
	db          *sqlite.DB
	ca          *pki.CA
	api         *http.Server
	apiLn       net.Listener
	channel     *channel.Server
	channelLn   net.Listener
	fleet       *fleet
	genPassword string

	admission   *admission.Webhook // nil when the admission controller is off
	admissionHS *http.Server
	admissionLn net.Listener
}

const signingKeySetting = "auth.signing-key"

// New opens the store, creates the CA, certificates and first admin on first
// start, and listens on the API address. Version is reported by the API.
func New(ctx context.Context, cfg Config, version string, logger *slog.Logger) (_ *Console, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	c := &Console{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if c.db, err = sqlite.Open(ctx, filepath.Join(cfg.DataDir, "bulwark.db"), logger); err != nil {
		return nil, err
	}
	now := time.Now()
	ca, created, err := pki.LoadOrCreateCA(filepath.Join(cfg.DataDir, "pki"), now)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if created {
		logger.Info("created Console CA", slog.String("dir", filepath.Join(cfg.DataDir, "pki")))
	}
	c.ca = ca
	cert, err := c.apiCertificate(now)
	if err != nil {
		return nil, err
	}
	if err := c.bootstrapAdmin(ctx); err != nil {
		return nil, err
	}
	key, err := c.signingKey(ctx)
	if err != nil {
		return nil, err
	}
	chCert, err := pki.LoadOrCreateServerCert(filepath.Join(cfg.DataDir, "pki"), "channel", ca, append(pki.DefaultHosts(), cfg.Hosts...), now)
	if err != nil {
		return nil, fmt.Errorf("channel certificate: %w", err)
	}
	if c.channelLn, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.ChannelAddr); err != nil {
		return nil, fmt.Errorf("listen channel: %w", err)
	}
	channelURL := cfg.ChannelURL
	if channelURL == "" {
		channelURL = defaultChannelURL(cfg.ChannelAddr, c.channelLn.Addr())
	}
	if c.fleet, err = newFleet(ctx, c.db, ca, channelURL, cfg.DefenderCertTTL, cfg.IncidentWindow, logger); err != nil {
		return nil, err
	}
	c.channel = channel.NewServer(channel.ServerConfig{
		Certificate:       chCert,
		ClientCAs:         ca.Pool(),
		Authorize:         c.fleet.authorize,
		HeartbeatInterval: cfg.HeartbeatInterval,
		ConsoleVersion:    version,
	}, c.fleet, logger)
	c.fleet.server = c.channel
	if cfg.AdmissionAddr != "" {
		if err := c.startAdmission(ctx, now); err != nil {
			return nil, err
		}
		c.fleet.onPolicy = c.admission.PolicyChanged
	}

	handler, err := httpapi.New(httpapi.Config{
		Version:          version,
		TokenTTL:         cfg.TokenTTL,
		SigningKey:       key,
		BcryptCost:       cfg.BcryptCost,
		OpenAPI:          api.OpenAPI(),
		AdmissionEnabled: c.admission != nil,
	}, c.db, c.fleet, logger)
	if err != nil {
		return nil, err
	}
	tlsCfg := pki.ServerTLSConfig(cert)
	c.api = &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug), // TLS handshake noise from scanners
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("listen api: %w", err)
	}
	c.apiLn = tls.NewListener(ln, tlsCfg)
	return c, nil
}

// startAdmission creates the admission controller with the store's policy
// and listens on its address with a certificate from the Console CA for the
// configured hosts and admission hosts. HTTP/2 is offered, as the API server
// uses it for webhooks when it can.
func (c *Console) startAdmission(ctx context.Context, now time.Time) error {
	hosts := append(append(pki.DefaultHosts(), c.cfg.Hosts...), c.cfg.AdmissionHosts...)
	cert, err := pki.LoadOrCreateServerCert(filepath.Join(c.cfg.DataDir, "pki"), "admission", c.ca, hosts, now)
	if err != nil {
		return fmt.Errorf("admission certificate: %w", err)
	}
	retention := c.cfg.AdmissionAuditRetention
	if retention == 0 {
		retention = -1 // keep all
	}
	if c.admission, err = admission.New(ctx, admission.Config{AuditRetention: retention}, c.db, c.logger); err != nil {
		return fmt.Errorf("admission controller: %w", err)
	}
	tlsCfg := pki.ServerTLSConfig(cert)
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	if f := c.cfg.AdmissionClientCAFile; f != "" {
		pool, err := loadCAPool(f, c.ca.Certificate())
		if err != nil {
			return fmt.Errorf("admission client CA: %w", err)
		}
		tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	c.admissionHS = &http.Server{
		Handler:           c.admission,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // an 8 MiB review from a slow API server
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(c.logger.Handler(), slog.LevelDebug),
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.cfg.AdmissionAddr)
	if err != nil {
		return fmt.Errorf("listen admission: %w", err)
	}
	c.admissionLn = tls.NewListener(ln, tlsCfg)
	return nil
}

// loadCAPool reads a PEM file of CA certificates; it must hold at least one,
// and not the Console CA, whose client certificates are Defenders'.
func loadCAPool(file string, consoleCA *x509.Certificate) (*x509.CertPool, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, n := x509.NewCertPool(), 0
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if cert.Equal(consoleCA) {
			return nil, fmt.Errorf("%s holds the Console CA, which signs every Defender's client certificate: give the admission listener a CA of its own", file)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// apiCertificate is the administrator's certificate when configured, else one
// issued by the Console CA for the configured hosts.
func (c *Console) apiCertificate(now time.Time) (tls.Certificate, error) {
	if c.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.cfg.TLSCertFile, c.cfg.TLSKeyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("tls cert %s: %w", c.cfg.TLSCertFile, err)
		}
		return cert, nil
	}
	hosts := append(pki.DefaultHosts(), c.cfg.Hosts...)
	cert, err := pki.LoadOrCreateServerCert(filepath.Join(c.cfg.DataDir, "pki"), "api", c.ca, hosts, now)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api certificate: %w", err)
	}
	return cert, nil
}

// bootstrapAdmin creates the first admin when the store has no user.
func (c *Console) bootstrapAdmin(ctx context.Context) error {
	users, err := c.db.Users(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	if len(users) > 0 {
		return nil
	}
	pw := c.cfg.AdminPassword
	generated := pw == ""
	if generated {
		if pw, err = credential.RandomPassword(); err != nil {
			return err
		}
	}
	hash, err := credential.HashPassword(pw, c.cfg.BcryptCost)
	if err != nil {
		return err
	}
	now := time.Now()
	u := auth.User{Username: c.cfg.AdminUsername, Role: auth.RoleAdmin, AuthType: auth.AuthBasic, PasswordHash: hash, CreatedAt: now, LastModified: now, PasswordChangedAt: now}
	err = c.db.Update(ctx, func(tx store.Writer) error {
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, audit.Mgmt{Time: now, Username: "system", Type: audit.TypeUsers, API: "bootstrap", Status: "succeeded", Diff: "created first admin " + u.Username})
		return err
	})
	if errors.Is(err, store.ErrConflict) {
		return nil // another replica won the race
	}
	if err != nil {
		return fmt.Errorf("create first admin: %w", err)
	}
	if generated {
		c.genPassword = pw
	}
	c.logger.Info("created first admin", slog.String("username", u.Username), slog.Bool("generated_password", generated))
	return nil
}

// signingKey returns the token signing key shared by all replicas, creating it once.
func (c *Console) signingKey(ctx context.Context) ([]byte, error) {
	fresh, err := credential.RandomKey(32)
	if err != nil {
		return nil, err
	}
	err = c.db.Update(ctx, func(tx store.Writer) error {
		_, err := tx.PutSettingIfAbsent(ctx, signingKeySetting, fresh)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store signing key: %w", err)
	}
	key, err := c.db.Setting(ctx, signingKeySetting)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	return key, nil
}

// GeneratedAdminPassword returns the first admin's password when this start
// generated it, else "". It is never stored in clear; show it once.
func (c *Console) GeneratedAdminPassword() string { return c.genPassword }

// APIAddr is the address the API listens on (useful with ":0").
func (c *Console) APIAddr() net.Addr { return c.apiLn.Addr() }

// CACertPEM is the Console CA certificate, for clients to trust.
func (c *Console) CACertPEM() []byte { return c.ca.CertPEM() }

// ChannelAddr is the address Defenders connect to.
func (c *Console) ChannelAddr() net.Addr { return c.channelLn.Addr() }

// ChannelURL is the address written into install bundles.
func (c *Console) ChannelURL() string { return c.fleet.channelURL }

// AdmissionAddr is the address the admission controller listens on, nil
// when it is off.
func (c *Console) AdmissionAddr() net.Addr {
	if c.admissionLn == nil {
		return nil
	}
	return c.admissionLn.Addr()
}

// AdmissionStats returns the admission controller's counters (zero when it
// is off).
func (c *Console) AdmissionStats() admission.Stats {
	if c.admission == nil {
		return admission.Stats{}
	}
	return c.admission.Stats()
}

// ChannelStats returns the channel's counters.
func (c *Console) ChannelStats() channel.Stats { return c.channel.Stats() }

// Run serves the API and the channel until ctx is done, then shuts down
// gracefully. While the admission controller serves, the garbage collector
// runs with AdmissionGCPercent and AdmissionMemoryLimit.
func (c *Console) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(ctx, gctx, c.api, c.apiLn, "api") })
	g.Go(func() error { return c.channel.Serve(gctx, c.channelLn) })
	attrs := []any{slog.String("api", c.apiLn.Addr().String()), slog.String("channel", c.channelLn.Addr().String()), slog.String("channel_url", c.fleet.channelURL)}
	if c.admission != nil {
		g.Go(func() error { return serveHTTP(ctx, gctx, c.admissionHS, c.admissionLn, "admission") })
		g.Go(func() error { return c.admission.Run(gctx) })
		attrs = append(attrs, slog.String("admission", c.admissionLn.Addr().String()))
		if gc := admissionGC(c.cfg, cgroupMemoryLimit()); gc != (gcSettings{}) {
			defer gc.apply()()
			if gc.percent > 0 {
				attrs = append(attrs, slog.Int("gogc", gc.percent))
			}
			if gc.limit > 0 {
				attrs = append(attrs, slog.Int64("gomemlimit", gc.limit))
			}
		}
	}
	c.logger.Info("console listening", attrs...)
	return g.Wait()
}

// serveHTTP serves srv on ln until gctx is done, then shuts it down
// gracefully within 10 s.
func serveHTTP(ctx, gctx context.Context, srv *http.Server, ln net.Listener, name string) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", name, err)
	case <-gctx.Done():
	}
	shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		return fmt.Errorf("shutdown %s: %w", name, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	return nil
}

// defaultChannelURL names this host and the channel's port: the configured
// host when one was given, else the machine's hostname.
func defaultChannelURL(configured string, actual net.Addr) string {
	host, _, _ := net.SplitHostPort(configured)
	_, port, _ := net.SplitHostPort(actual.String())
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "localhost"
		}
	}
	return "wss://" + net.JoinHostPort(host, port) + bulwarkv1.Path
}

// Close releases the listener and the store.
func (c *Console) Close() error {
	var errs []error
	for _, ln := range []net.Listener{c.apiLn, c.channelLn, c.admissionLn} {
		if ln != nil {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	if c.db != nil {
		errs = append(errs, c.db.Close())
	}
	return errors.Join(errs...)
}
