package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"bulwark/api"
	"bulwark/internal/audit"
	"bulwark/internal/inventory"
	"bulwark/internal/policy"
	"bulwark/internal/store"
)

// Fleet is what the API needs from the Console about Defenders beyond the
// store: certificates, and effects on live connections.
type Fleet interface {
	// IssueClientCert signs a client certificate for Defender id.
	IssueClientCert(id string) (IssuedCert, error)
	// CACertPEM and ChannelURL go into install bundles.
	CACertPEM() []byte
	ChannelURL() string
	// Revoked is called after a revocation is committed: refuse the
	// Defender's certificates from now on and close its live connection.
	Revoked(id string, serials []string)
	// PolicyChanged is called after a policy change is committed.
	PolicyChanged(snap policy.Snapshot)
}

// IssuedCert is a freshly signed Defender certificate and its key.
type IssuedCert struct {
	CertPEM, KeyPEM []byte
	Serial          string
	NotAfter        time.Time
}

type bundleRequest struct {
	// ID names the Defender; empty: a random one.
	ID string `json:"id,omitempty"`
}

func newDefenderID() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("defender id: %w", err)
	}
	return "defender-" + hex.EncodeToString(b), nil
}

func (s *Server) makeBundle(id string, c IssuedCert) (api.Bundle, error) {
	info, err := json.MarshalIndent(map[string]any{
		"defenderID": id, "consoleURL": s.fleet.ChannelURL(), "issuedAt": s.cfg.Now().UTC(), "notAfter": c.NotAfter.UTC(),
	}, "", "  ")
	if err != nil {
		return api.Bundle{}, err
	}
	return api.Bundle{
		DefenderID: id, ConsoleURL: s.fleet.ChannelURL(), NotAfter: c.NotAfter,
		Files: map[string]string{
			"ca.pem":           string(s.fleet.CACertPEM()),
			"defender.pem":     string(c.CertPEM),
			"defender-key.pem": string(c.KeyPEM),
			"bundle.json":      string(info) + "\n",
		},
	}, nil
}

// createBundle registers a Defender and returns its install bundle.
func (s *Server) createBundle(w http.ResponseWriter, r *http.Request, p principal) error {
	var req bundleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		var err error
		if req.ID, err = newDefenderID(); err != nil {
			return err
		}
	}
	if err := inventory.ValidateID(req.ID); err != nil {
		return badRequest("%v", err)
	}
	cert, err := s.fleet.IssueClientCert(req.ID)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	err = s.change(r, p, audit.TypeDefender, func(ctx context.Context, tx store.Writer) (string, error) {
		if err := tx.CreateDefender(ctx, inventory.Defender{ID: req.ID, CreatedAt: now}); err != nil {
			return "", fmt.Errorf("defender %s: %w", req.ID, err)
		}
		return fmt.Sprintf("issued install bundle for defender %s (certificate %s, expires %s)", req.ID, cert.Serial, cert.NotAfter.UTC().Format(time.RFC3339)),
			tx.AddDefenderCert(ctx, inventory.Cert{Serial: cert.Serial, DefenderID: req.ID, IssuedAt: now, NotAfter: cert.NotAfter})
	})
	if err != nil {
		return err
	}
	b, err := s.makeBundle(req.ID, cert)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// renewBundle issues a new certificate for an existing, unrevoked Defender.
// The old certificate stays valid until it expires or is revoked.
func (s *Server) renewBundle(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	d, err := s.store.Defender(r.Context(), id)
	if err != nil {
		return fmt.Errorf("defender %s: %w", id, err)
	}
	if d.Revoked {
		return badRequest("defender %s is revoked; issue a new bundle instead", id)
	}
	cert, err := s.fleet.IssueClientCert(id)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	err = s.change(r, p, audit.TypeDefender, func(ctx context.Context, tx store.Writer) (string, error) {
		return fmt.Sprintf("renewed certificate of defender %s (certificate %s, expires %s)", id, cert.Serial, cert.NotAfter.UTC().Format(time.RFC3339)),
			tx.AddDefenderCert(ctx, inventory.Cert{Serial: cert.Serial, DefenderID: id, IssuedAt: now, NotAfter: cert.NotAfter})
	})
	if err != nil {
		return err
	}
	b, err := s.makeBundle(id, cert)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *Server) revokeDefender(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	var serials []string
	err := s.change(r, p, audit.TypeDefender, func(ctx context.Context, tx store.Writer) (string, error) {
		if _, err := tx.Defender(ctx, id); err != nil {
			return "", fmt.Errorf("defender %s: %w", id, err)
		}
		certs, err := tx.DefenderCerts(ctx, id)
		if err != nil {
			return "", err
		}
		for _, c := range certs {
			serials = append(serials, c.Serial)
		}
		return fmt.Sprintf("revoked defender %s (%d certificates)", id, len(certs)), tx.RevokeDefender(ctx, id, s.cfg.Now())
	})
	if err != nil {
		return err
	}
	s.fleet.Revoked(id, serials)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) listDefenders(w http.ResponseWriter, r *http.Request, _ principal) error {
	ds, err := s.store.Defenders(r.Context())
	if err != nil {
		return fmt.Errorf("list defenders: %w", err)
	}
	q := r.URL.Query()
	out := make([]api.Defender, 0, len(ds))
	for _, d := range ds {
		if c := q.Get("connected"); c != "" && (c == "true") != d.Connected {
			continue
		}
		if h := q.Get("hostname"); h != "" && h != d.Hostname {
			continue
		}
		out = append(out, api.Defender{
			ID: d.ID, Hostname: d.Hostname, HostNetwork: d.HostNetwork, Version: d.Version, OS: d.OS, Kernel: d.Kernel,
			Runtimes: nonNil(d.Runtimes), Capabilities: nonNil(d.Capabilities), Connected: d.Connected, LastSeen: d.LastSeen,
			CertExpiration: d.CertNotAfter, Revoked: d.Revoked, SpoolDepth: d.SpoolDepth, EventsDropped: d.EventsDropped,
			StoredSeq: d.StoredSeq, PolicyRevision: d.PolicyRevision, Sensor: d.Sensor,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) defendersSummary(w http.ResponseWriter, r *http.Request, _ principal) error {
	ds, err := s.store.Defenders(r.Context())
	if err != nil {
		return fmt.Errorf("list defenders: %w", err)
	}
	writeJSON(w, http.StatusOK, inventory.Summarize(ds, s.cfg.Now(), 30*24*time.Hour))
	return nil
}

// getPolicy answers GET /api/v1/policies/{type}: the stored document, or an
// empty rule list.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, _ principal) error {
	typ := r.PathValue("type")
	if err := policy.ValidType(typ); err != nil {
		return badRequest("%v", err)
	}
	snap, err := s.store.PolicySnapshot(r.Context())
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	doc, ok := snap.Policies[typ]
	if !ok {
		doc = json.RawMessage(`{"rules":[]}`)
	}
	w.Header().Set("X-Bulwark-Policy-Revision", fmt.Sprint(snap.Revision))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(doc, '\n'))
	return nil
}

// putPolicy replaces the policy of one type and pushes the new snapshot to
// every connected Defender.
func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	typ := r.PathValue("type")
	if err := policy.ValidType(typ); err != nil {
		return badRequest("%v", err)
	}
	if typ == policy.TypeCustomCompliance {
		return badRequest("custom compliance checks are written one at a time with PUT /api/v1/custom-compliance, which compiles them")
	}
	var doc json.RawMessage
	if err := decodeJSON(w, r, &doc); err != nil {
		return err
	}
	if err := policy.Validate(doc); err != nil {
		return badRequest("%v", err)
	}
	var rev int64
	err := s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		var err error
		rev, err = tx.PutPolicy(ctx, typ, doc)
		return fmt.Sprintf("replaced %s policy (revision %d)", typ, rev), err
	})
	if err != nil {
		return err
	}
	snap, err := s.store.PolicySnapshot(r.Context())
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	s.fleet.PolicyChanged(snap)
	writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
	return nil
}
