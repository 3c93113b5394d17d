package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/credential"
	"bulwark/internal/store"
)

// principal is the authenticated caller of a request.
type principal struct {
	username string
	role     auth.Role
	keyID    string // set when the caller used an access key (directly or via a token)
	via      string // "basic", "token"
	// passwordChanged is the user's PasswordChangedAt in unix ns, carried into tokens.
	passwordChanged int64
}

// claims are the contents of a Console token.
type claims struct {
	jwt.RegisteredClaims
	AccessKeyID string `json:"akid,omitempty"`
	// PasswordChanged binds the token to the password it was issued under
	// (unix ns of the last change): changing the password revokes it.
	PasswordChanged int64 `json:"pwc"`
}

const tokenIssuer = "bulwark-console" //nolint:gosec // an issuer name, not a credential

// authenticateRequest resolves the credentials of r: a Bearer token, or HTTP
// Basic with a username and password or an access key ID and secret.
func (s *Server) authenticateRequest(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return s.verifyToken(r.Context(), strings.TrimSpace(tok))
	}
	if user, pass, ok := r.BasicAuth(); ok {
		return s.checkPassword(r.Context(), user, pass, clientIP(r))
	}
	return principal{}, errUnauthorized
}

// checkPassword verifies a username/password or key-ID/secret pair, applying
// the failed-login back-off to both the name and the client address.
func (s *Server) checkPassword(ctx context.Context, name, secret, ip string) (principal, error) {
	if wait := max(s.users.check(name), s.addrs.check(ip)); wait > 0 {
		return principal{}, &tooManyError{retryAfter: wait}
	}
	p, err := s.verifySecret(ctx, name, secret)
	if errors.Is(err, errUnauthorized) {
		s.users.fail(name)
		s.addrs.fail(ip)
		return principal{}, err
	}
	if err != nil {
		return principal{}, err
	}
	s.users.succeed(name)
	return p, nil
}

func (s *Server) verifySecret(ctx context.Context, name, secret string) (principal, error) {
	now := s.cfg.Now()
	if credential.IsAccessKeyID(name) {
		k, err := s.store.AccessKey(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return principal{}, errUnauthorized
		}
		if err != nil {
			return principal{}, fmt.Errorf("load access key: %w", err)
		}
		ck := credKey(name, secret, k.SecretHash)
		if !s.creds.ok(ck) {
			if !credential.CheckSecret(k.SecretHash, secret) {
				return principal{}, errUnauthorized
			}
			s.creds.add(ck)
		}
		if k.Expired(now) {
			return principal{}, fmt.Errorf("%w: access key expired", errUnauthorized)
		}
		owner, err := s.store.User(ctx, k.Username)
		if err != nil {
			return principal{}, errUnauthorized
		}
		if now.Sub(k.LastUsedAt) > time.Minute {
			if err := s.store.TouchAccessKey(ctx, k.ID, now.UnixNano()); err != nil {
				s.logger.WarnContext(ctx, "record access key use", "key", k.ID, "err", err)
			}
		}
		return principal{username: owner.Username, role: k.EffectiveRole(owner.Role), keyID: k.ID, via: "basic", passwordChanged: unixNano(owner.PasswordChangedAt)}, nil
	}
	u, err := s.store.User(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		credential.BurnPasswordCheck(secret)
		return principal{}, errUnauthorized
	}
	if err != nil {
		return principal{}, fmt.Errorf("load user: %w", err)
	}
	ck := credKey(name, secret, u.PasswordHash)
	if !s.creds.ok(ck) {
		if !credential.CheckPassword(u.PasswordHash, secret) {
			return principal{}, errUnauthorized
		}
		s.creds.add(ck)
	}
	return principal{username: u.Username, role: u.Role, via: "basic", passwordChanged: unixNano(u.PasswordChangedAt)}, nil
}

// unixNano is t in unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// issueToken signs a token for p valid for the configured TTL.
func (s *Server) issueToken(p principal) (string, time.Time, error) {
	now := s.cfg.Now()
	exp := now.Add(s.cfg.TokenTTL)
	id, err := credential.RandomKey(12)
	if err != nil {
		return "", time.Time{}, err
	}
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   p.username,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), // tolerate replica clock skew
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        fmt.Sprintf("%x", id),
		},
		AccessKeyID:     p.keyID,
		PasswordChanged: p.passwordChanged,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.cfg.SigningKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return tok, exp, nil
}

// verifyToken checks signature, expiry and that the user (and key) still
// exist, and that the password was not changed after the token was issued.
func (s *Server) verifyToken(ctx context.Context, tok string) (principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return s.cfg.SigningKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.cfg.Now),
	)
	if err != nil {
		return principal{}, fmt.Errorf("%w: %v", errUnauthorized, err) //nolint:errorlint // the jwt error is context, not API
	}
	u, err := s.store.User(ctx, c.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return principal{}, errUnauthorized
	}
	if err != nil {
		return principal{}, fmt.Errorf("load user: %w", err)
	}
	if c.PasswordChanged != unixNano(u.PasswordChangedAt) {
		return principal{}, fmt.Errorf("%w: token issued before the last password change", errUnauthorized)
	}
	p := principal{username: u.Username, role: u.Role, via: "token", passwordChanged: c.PasswordChanged}
	if c.AccessKeyID != "" {
		k, err := s.store.AccessKey(ctx, c.AccessKeyID)
		if err != nil || k.Username != u.Username || k.Expired(s.cfg.Now()) {
			return principal{}, errUnauthorized
		}
		p.keyID, p.role = k.ID, k.EffectiveRole(u.Role)
	}
	return p, nil
}

type authRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type tokenResponse struct {
	Token string `json:"token"`
}

// authenticate exchanges a username and password (or access key ID and
// secret) for a token, and audits the attempt.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req authRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Username == "" {
		return fieldMissing("username")
	}
	p, err := s.checkPassword(r.Context(), req.Username, req.Password, clientIP(r))
	status := "succeeded"
	if err != nil {
		status = "failed"
	}
	var tm *tooManyError
	if !errors.As(err, &tm) { // do not let a locked-out attacker fill the audit log
		a := audit.Mgmt{Time: s.cfg.Now(), Username: req.Username, Type: audit.TypeLogin, Method: r.Method, API: r.URL.Path, Status: status, SourceIP: clientIP(r)}
		if aerr := s.store.Update(r.Context(), func(w store.Writer) error { _, e := w.AppendAudit(r.Context(), a); return e }); aerr != nil {
			return fmt.Errorf("audit login: %w", aerr)
		}
	}
	if err != nil {
		return err
	}
	tok, _, err := s.issueToken(p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenResponse{Token: tok})
	return nil
}

// renew returns a fresh token for the caller.
func (s *Server) renew(w http.ResponseWriter, _ *http.Request, p principal) error {
	tok, _, err := s.issueToken(p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenResponse{Token: tok})
	return nil
}
