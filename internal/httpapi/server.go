// Package httpapi serves the Console's REST API on :8083: authentication,
// users, access keys, roles and the management audit log, with the paths and
// JSON shapes of the Prisma Cloud Compute API where one exists.
package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"bulwark/internal/auth"
	"bulwark/internal/credential"
	"bulwark/internal/runtimepolicy"
	"bulwark/internal/store"
)

// Config is what the API needs from its assembly.
type Config struct {
	Version    string
	TokenTTL   time.Duration // lifetime of tokens from /authenticate
	SigningKey []byte        // HMAC key for tokens; shared by every Console replica
	BcryptCost int
	OpenAPI    []byte // the spec served at /api/v1/openapi.yaml
	Now        func() time.Time
	// AdmissionEnabled says that this Console serves the admission
	// controller, so that GET /api/v1/admission/webhook may point a
	// cluster at it.
	AdmissionEnabled bool
}

// Server is the REST API. It is an http.Handler.
type Server struct {
	cfg    Config
	store  store.Store
	fleet  Fleet
	logger *slog.Logger
	mux    *http.ServeMux
	users  *loginLimiter // failed logins per username
	addrs  *loginLimiter // failed logins per client address
	creds  *credCache
	routes []route
}

var _ http.Handler = (*Server)(nil)

// New returns the API over st; fleet carries out what the store cannot
// (certificates, live connections).
func New(cfg Config, st store.Store, fleet Fleet, logger *slog.Logger) (*Server, error) {
	if len(cfg.SigningKey) < 32 {
		return nil, errors.New("httpapi: signing key shorter than 32 bytes")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = credential.DefaultCost
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:    cfg,
		store:  st,
		fleet:  fleet,
		logger: logger,
		mux:    http.NewServeMux(),
		users:  newLoginLimiter(cfg.Now, freeUserFailures),
		addrs:  newLoginLimiter(cfg.Now, freeAddrFailures),
		creds:  newCredCache(5*time.Minute, cfg.Now),
	}
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"err": fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	return s, nil
}

// route is one endpoint and the permission it requires ("" = public).
type route struct {
	method  string
	path    string
	perm    auth.Permission
	handler func(w http.ResponseWriter, r *http.Request, p principal) error
}

func (s *Server) routeTable() []route {
	return []route{
		{"GET", "/api/v1/_ping", "", s.ping},
		{"GET", "/api/v1/openapi.yaml", "", s.openapi},
		{"POST", "/api/v1/authenticate", "", s.authenticate},
		{"GET", "/api/v1/authenticate/renew", auth.PermSelf, s.renew},
		{"GET", "/api/v1/version", auth.PermSelf, s.version},
		{"GET", "/api/v1/current/user", auth.PermSelf, s.currentUser},
		{"GET", "/api/v1/roles", auth.PermSelf, s.listRoles},
		{"GET", "/api/v1/users", auth.PermManageUsers, s.listUsers},
		{"POST", "/api/v1/users", auth.PermManageUsers, s.createUser},
		{"PUT", "/api/v1/users", auth.PermManageUsers, s.updateUser},
		{"DELETE", "/api/v1/users/{id}", auth.PermManageUsers, s.deleteUser},
		{"PUT", "/api/v1/users/password", auth.PermSelf, s.changePassword},
		{"GET", "/api/v1/access-keys", auth.PermSelf, s.listAccessKeys},
		{"POST", "/api/v1/access-keys", auth.PermSelf, s.createAccessKey},
		{"DELETE", "/api/v1/access-keys/{id}", auth.PermSelf, s.deleteAccessKey},
		{"GET", "/api/v1/audits/mgmt", auth.PermReadAudit, s.listAudits},
		{"GET", "/api/v1/audits/runtime/container", auth.PermRead, s.listContainerAudits},
		{"GET", "/api/v1/audits/runtime/host", auth.PermRead, s.listHostAudits},
		{"GET", "/api/v1/audits/admission", auth.PermRead, s.listAdmissionAudits},
		{"POST", "/api/v1/defenders/bundle", auth.PermManageDefenders, s.createBundle},
		{"GET", "/api/v1/defenders", auth.PermRead, s.listDefenders},
		{"GET", "/api/v1/defenders/summary", auth.PermRead, s.defendersSummary},
		{"POST", "/api/v1/defenders/{id}/revoke", auth.PermManageDefenders, s.revokeDefender},
		{"POST", "/api/v1/defenders/{id}/renew", auth.PermManageDefenders, s.renewBundle},
		{"GET", "/api/v1/policies/compliance/container", auth.PermRead, s.getCompliancePolicy(containerCompliancePolicy)},
		{"PUT", "/api/v1/policies/compliance/container", auth.PermWritePolicy, s.putCompliancePolicy(containerCompliancePolicy)},
		{"GET", "/api/v1/policies/compliance/host", auth.PermRead, s.getCompliancePolicy(hostCompliancePolicy)},
		{"PUT", "/api/v1/policies/compliance/host", auth.PermWritePolicy, s.putCompliancePolicy(hostCompliancePolicy)},
		{"GET", "/api/v1/stats/compliance", auth.PermRead, s.complianceStats},
		{"GET", "/api/v1/containers", auth.PermRead, s.listComplianceContainers},
		{"GET", "/api/v1/hosts", auth.PermRead, s.listComplianceHosts},
		{"GET", "/api/v1/audits/incidents", auth.PermRead, s.listIncidents},
		{"GET", "/api/v1/audits/incidents/{id}", auth.PermRead, s.getIncident},
		{"PATCH", "/api/v1/audits/incidents/acknowledge/{id}", auth.PermWritePolicy, s.ackIncident},
		{"GET", "/api/v1/profiles/container", auth.PermRead, s.listModels},
		{"POST", "/api/v1/profiles/container/learn", auth.PermWritePolicy, s.relearnAll},
		{"GET", "/api/v1/profiles/container/{id}", auth.PermRead, s.getModel},
		{"PUT", "/api/v1/profiles/container/{id}", auth.PermWritePolicy, s.putModel},
		{"POST", "/api/v1/profiles/container/{id}/learn", auth.PermWritePolicy, s.relearnModel},
		{"GET", "/api/v1/policies/runtime/container", auth.PermRead, s.getRuntimePolicy(runtimepolicy.Container)},
		{"PUT", "/api/v1/policies/runtime/container", auth.PermWritePolicy, s.putRuntimePolicy(runtimepolicy.Container)},
		{"GET", "/api/v1/policies/runtime/host", auth.PermRead, s.getRuntimePolicy(runtimepolicy.Host)},
		{"PUT", "/api/v1/policies/runtime/host", auth.PermWritePolicy, s.putRuntimePolicy(runtimepolicy.Host)},
		{"GET", "/api/v1/policies/admission", auth.PermRead, s.getAdmissionPolicy},
		{"PUT", "/api/v1/policies/admission", auth.PermWritePolicy, s.putAdmissionPolicy},
		{"GET", "/api/v1/admission/webhook", auth.PermRead, s.getAdmissionWebhook},
		{"GET", "/api/v1/policies/{type...}", auth.PermRead, s.getPolicy},
		{"PUT", "/api/v1/policies/{type...}", auth.PermWritePolicy, s.putPolicy},
		{"GET", "/api/v1/custom-compliance", auth.PermRead, s.listCustomCompliance},
		{"PUT", "/api/v1/custom-compliance", auth.PermWritePolicy, s.putCustomCompliance},
		{"DELETE", "/api/v1/custom-compliance/{id}", auth.PermWritePolicy, s.deleteCustomCompliance},
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	s.mux.ServeHTTP(w, r)
}

// wrap authenticates, authorises and turns a handler's error into a response.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					panic(v)
				}
				s.logger.ErrorContext(r.Context(), "handler panic", slog.Any("panic", v), slog.String("path", r.URL.Path), slog.String("stack", string(debug.Stack())))
				writeJSON(w, http.StatusInternalServerError, map[string]string{"err": "internal error"})
			}
		}()
		var p principal
		if rt.perm != "" {
			var err error
			p, err = s.authenticateRequest(r)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if !p.role.Allows(rt.perm) {
				s.writeError(w, r, fmt.Errorf("%w: role %s lacks permission %s", errForbidden, p.role, rt.perm))
				return
			}
		}
		if err := rt.handler(w, r, p); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// clientIP is the address the request came from (no proxy headers are trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) ping(w http.ResponseWriter, _ *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("OK\n"))
	return nil
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(s.cfg.OpenAPI)
	return nil
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, s.cfg.Version) // Prisma answers a bare JSON string
	return nil
}

// Handler returns s wrapped for serving; kept for symmetry with other adapters.
func (s *Server) Handler() http.Handler { return s }
