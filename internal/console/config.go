// Package console assembles the Bulwark Console: store, PKI, REST API on
// :8083, the Defender channel on :8084 and, when configured, the Kubernetes
// admission controller on its own HTTPS listener. Tests start it on :0 with
// New and Run.
package console

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"bulwark/internal/auth"
	"bulwark/internal/credential"
	"bulwark/internal/runtimepolicy"
)

// Config is everything the Console can be told. Defaults come from Default;
// cmd/bulwark-console layers the environment and flags on top.
type Config struct {
	// DataDir holds the store, the CA and the certificates.
	DataDir string
	// APIAddr is where the HTTPS REST API and UI listen.
	APIAddr string
	// ChannelAddr is where Defenders connect over mutual TLS.
	ChannelAddr string
	// ChannelURL is the wss:// address written into install bundles; empty:
	// this host's name and the channel port.
	ChannelURL string
	// DefenderCertTTL is the validity of Defender client certificates.
	DefenderCertTTL time.Duration
	// HeartbeatInterval is how often channel peers prove they are alive; a
	// Defender is marked disconnected after three missed.
	HeartbeatInterval time.Duration
	// TLSCertFile and TLSKeyFile replace the Console-issued certificate for
	// APIAddr with the administrator's own. Both or neither.
	TLSCertFile string
	TLSKeyFile  string
	// Hosts are extra DNS names or IPs for the Console-issued certificates.
	Hosts []string
	// AdminUsername and AdminPassword create the first admin on first start.
	// An empty password means: generate one and hand it out once.
	AdminUsername string
	AdminPassword string
	// TokenTTL is the lifetime of tokens from /api/v1/authenticate.
	TokenTTL time.Duration
	// BcryptCost is the cost of stored password hashes.
	BcryptCost int
	// IncidentWindow groups the runtime audits of one container (or host)
	// into one incident while each follows the last within it.
	IncidentWindow time.Duration

	// AdmissionAddr is where the Kubernetes admission controller takes
	// AdmissionReviews over HTTPS; empty turns it off. It is off by default
	// because it answers without credentials, as the API server calls
	// webhooks, and so should be opened only where a cluster needs it.
	AdmissionAddr string
	// AdmissionHosts are extra DNS names or IPs of the admission listener's
	// certificate, such as the Service's bulwark-admission.bulwark.svc.
	AdmissionHosts []string
	// AdmissionClientCAFile, when set, is a PEM file of the CA certificates
	// whose client certificates the admission listener requires (the API
	// server presents one from its webhook kubeconfig); empty: any TLS
	// client may send reviews.
	AdmissionClientCAFile string
	// AdmissionAuditRetention is how many admission decisions are kept;
	// 0 keeps all of them.
	AdmissionAuditRetention int
	// AdmissionGCPercent is the garbage collector's GOGC while the
	// admission controller serves (see DefaultAdmissionGCPercent); 0 leaves
	// Go's own, as cmd/bulwark-console does when GOGC is set.
	AdmissionGCPercent int
	// AdmissionMemoryLimit is the soft memory limit (GOMEMLIMIT, bytes) set
	// with it, lowered to three quarters of the container's memory limit
	// when that is lower; 0 leaves Go's own, as cmd/bulwark-console does
	// when GOMEMLIMIT is set.
	AdmissionMemoryLimit int64
}

// Default returns the configuration of a Console started without options.
func Default() Config {
	return Config{
		DataDir:       "/var/lib/bulwark",
		APIAddr:       ":8083",
		ChannelAddr:   ":8084",
		AdminUsername: "admin",
		TokenTTL:      time.Hour,
		BcryptCost:    credential.DefaultCost,

		DefenderCertTTL:   365 * 24 * time.Hour,
		HeartbeatInterval: 10 * time.Second,
		IncidentWindow:    runtimepolicy.DefaultIncidentWindow,

		AdmissionAuditRetention: 100_000,
		AdmissionGCPercent:      DefaultAdmissionGCPercent,
		AdmissionMemoryLimit:    DefaultAdmissionMemoryLimit,
	}
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, errors.New("data dir: empty"))
	}
	for name, addr := range map[string]string{"api addr": c.APIAddr, "channel addr": c.ChannelAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port or :port", name, addr))
		}
	}
	if c.IncidentWindow <= 0 {
		errs = append(errs, fmt.Errorf("incident window %s: want a positive duration", c.IncidentWindow))
	}
	if c.AdmissionAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdmissionAddr); err != nil {
			errs = append(errs, fmt.Errorf("admission addr %q: want host:port, :port or empty (off)", c.AdmissionAddr))
		}
	} else {
		if len(c.AdmissionHosts) > 0 {
			errs = append(errs, errors.New("admission hosts: given, but the admission controller is off (set the admission addr)"))
		}
		if c.AdmissionClientCAFile != "" {
			errs = append(errs, errors.New("admission client CA: given, but the admission controller is off (set the admission addr)"))
		}
	}
	if c.AdmissionAuditRetention < 0 {
		errs = append(errs, fmt.Errorf("admission audit retention %d: want 0 (keep all) or more", c.AdmissionAuditRetention))
	}
	if p := c.AdmissionGCPercent; p != 0 && (p < 100 || p > 2000) {
		errs = append(errs, fmt.Errorf("admission gc percent %d: want 0 (Go's own) or 100..2000", p))
	}
	if l := c.AdmissionMemoryLimit; l != 0 && l < 64<<20 {
		errs = append(errs, fmt.Errorf("admission memory limit %d: want 0 (Go's own) or at least 64 MiB", l))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls cert and tls key: give both or neither"))
	}
	if err := auth.ValidateUsername(c.AdminUsername); err != nil {
		errs = append(errs, fmt.Errorf("admin username: %w", err))
	}
	if c.AdminPassword != "" {
		if err := auth.ValidatePassword(c.AdminPassword); err != nil {
			errs = append(errs, fmt.Errorf("admin password: %w", err))
		}
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("token ttl %s: want between 1m and 168h", c.TokenTTL))
	}
	if c.ChannelURL != "" && !strings.HasPrefix(c.ChannelURL, "wss://") {
		errs = append(errs, fmt.Errorf("channel url %q: want wss://host:port", c.ChannelURL))
	}
	if c.DefenderCertTTL < time.Hour {
		errs = append(errs, fmt.Errorf("defender cert ttl %s: want at least 1h", c.DefenderCertTTL))
	}
	if c.HeartbeatInterval < 100*time.Millisecond || c.HeartbeatInterval > 5*time.Minute {
		errs = append(errs, fmt.Errorf("heartbeat interval %s: want 100ms..5m", c.HeartbeatInterval))
	}
	if c.BcryptCost < 4 || c.BcryptCost > 16 {
		errs = append(errs, fmt.Errorf("bcrypt cost %d: want 4..16", c.BcryptCost))
	}
	return errors.Join(errs...)
}
