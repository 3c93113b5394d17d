// Package consoletest starts a real Console on loopback for tests: real
// store, real TLS, real API.
package consoletest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"bulwark/internal/console"
)

// AdminPassword is the password of the admin user of every test Console.
const AdminPassword = "test-admin-password"

// Console is a started Console and what a test needs to call it.
type Console struct {
	*console.Console
	URL string // https://127.0.0.1:PORT
	// AdmissionURL is https://127.0.0.1:PORT/v1/admission when the
	// admission controller is on (WithAdmission).
	AdmissionURL string
	DataDir      string
	Client       *http.Client // trusts the Console CA
	stop         func()
}

// Stop shuts the Console down and waits for it; the test's end does the same.
// It may be called more than once.
func (c *Console) Stop() { c.stop() }

// Option changes the configuration before start.
type Option func(*console.Config)

// WithDataDir starts on an existing data dir (to test restarts).
func WithDataDir(dir string) Option { return func(c *console.Config) { c.DataDir = dir } }

// WithAdmission turns the admission controller on, on 127.0.0.1:0, with
// extra names for its certificate.
func WithAdmission(hosts ...string) Option {
	return func(c *console.Config) { c.AdmissionAddr, c.AdmissionHosts = "127.0.0.1:0", hosts }
}

// WithConfig lets a test change anything else.
func WithConfig(f func(*console.Config)) Option { return Option(f) }

// Start runs a Console on 127.0.0.1:0 until the test ends.
func Start(t testing.TB, opts ...Option) *Console {
	t.Helper()
	cfg := console.Default()
	cfg.DataDir = t.TempDir()
	cfg.APIAddr = "127.0.0.1:0"
	cfg.ChannelAddr = "127.0.0.1:0"
	cfg.AdminPassword = AdminPassword
	cfg.BcryptCost = 4 // fast tests; production uses credential.DefaultCost
	cfg.HeartbeatInterval = time.Second
	for _, o := range opts {
		o(&cfg)
	}
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := console.New(ctx, cfg, "test", logger)
	if err != nil {
		cancel()
		t.Fatalf("start console: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("console run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("console did not stop within 15s")
		}
		if err := c.Close(); err != nil {
			t.Errorf("close console: %v", err)
		}
	})
	t.Cleanup(stop)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM())
	admissionURL := ""
	if a := c.AdmissionAddr(); a != nil {
		admissionURL = "https://" + a.String() + "/v1/admission"
	}
	return &Console{
		Console:      c,
		AdmissionURL: admissionURL,
		URL:          "https://" + c.APIAddr().String(),
		DataDir:      cfg.DataDir,
		Client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		},
		stop: stop,
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
