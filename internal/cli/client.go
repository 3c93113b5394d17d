package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"bulwark/internal/audit"
)

const (
	requestTimeout = 30 * time.Second
	maxResponse    = 32 << 20 // bytes of a response body we are willing to read
)

// client is a typed client of the Console REST API. Exactly one of token or
// username/password is used to authenticate; neither is used for /authenticate.
type client struct {
	base      string // https://host:port[/prefix], no trailing slash
	http      *http.Client
	userAgent string
	token     string
	username  string
	password  string
}

// apiError is an error answer of the Console: {"err": "..."} with a status.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	text := http.StatusText(e.Status)
	if text == "" {
		text = "HTTP"
	}
	if e.Message == "" {
		return fmt.Sprintf("%d %s", e.Status, text)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, text, e.Message)
}

// tlsError says the Console's certificate could not be verified, and how to fix it.
type tlsError struct {
	console string
	err     error
}

func (e *tlsError) Error() string {
	return fmt.Sprintf("connect to %s: cannot verify the Console's TLS certificate: %v\n"+
		"The Console is usually signed by its own CA: pass --ca-cert with that CA's PEM file\n"+
		"(on the Console host: <data-dir>/pki/ca.pem), or set BULWARK_CA_CERT.\n"+
		"--insecure skips verification, for tests only", e.console, e.err)
}

func (e *tlsError) Unwrap() error { return e.err }

// newHTTPClient returns an HTTP client that trusts caFile (PEM) instead of
// the system roots when caFile is set, and verifies nothing when insecure.
func newHTTPClient(caFile string, insecure bool) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA certificate %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if insecure {
		tc.InsecureSkipVerify = true //nolint:gosec // the user asked for it with --insecure; a warning is printed
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Timeout: requestTimeout, Transport: tr}, nil
}

// do sends a request with a JSON body in (if not nil) and decodes a JSON
// answer into out (if not nil).
func (c *client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.username != "" || c.password != "":
		req.SetBasicAuth(c.username, c.password)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// decodeAPIError reads {"err": "..."}; another body (a proxy's HTML page) is
// shown shortened.
func decodeAPIError(status int, data []byte) error {
	var e struct {
		Err string `json:"err"`
	}
	if json.Unmarshal(data, &e) == nil && e.Err != "" {
		return &apiError{Status: status, Message: e.Err}
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return &apiError{Status: status, Message: msg}
}

// transportError turns a failed round trip into an error that says what to do.
func (c *client) transportError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return &tlsError{console: c.base, err: innermost(err)}
	case errors.Is(err, context.Canceled):
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("connect to %s: no answer within %s: %w", c.base, requestTimeout, err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("connect to %s: %w (is the Console running? set --console or BULWARK_CONSOLE)", c.base, opErr)
	}
	return fmt.Errorf("connect to %s: %w", c.base, err)
}

// innermost drops url.Error's "Get "https://…":" prefix, which the message repeats.
func innermost(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Wire types of the endpoints bulwarkctl calls.

type user struct {
	Username     string    `json:"username"`
	Role         string    `json:"role"`
	AuthType     string    `json:"authType,omitempty"`
	LastModified time.Time `json:"lastModified,omitzero"`
}

type accessKey struct {
	ID         string    `json:"id"`
	Username   string    `json:"username"`
	Name       string    `json:"name,omitempty"`
	Role       string    `json:"role,omitempty"`
	CreatedAt  time.Time `json:"createdAt,omitzero"`
	ExpiresAt  time.Time `json:"expiresAt,omitzero"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
	Secret     string    `json:"secret,omitempty"`
}

type newAccessKey struct {
	Name          string `json:"name,omitempty"`
	Role          string `json:"role,omitempty"`
	ExpiresInDays int    `json:"expiresInDays,omitempty"`
}

type auditFilter struct {
	User  string
	Type  string
	Limit int
}

// getList GETs a JSON array; a null answer is an empty list, so that -o json
// prints [] and not null.
func getList[T any](ctx context.Context, c *client, path string, q url.Values) ([]T, error) {
	var out []T
	if err := c.do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []T{}
	}
	return out, nil
}

func (c *client) authenticate(ctx context.Context, username, password string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	in := map[string]string{"username": username, "password": password}
	if err := c.do(ctx, http.MethodPost, "/api/v1/authenticate", nil, in, &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", errors.New("authenticate: the Console answered without a token")
	}
	return out.Token, nil
}

func (c *client) version(ctx context.Context) (string, error) {
	var v string
	err := c.do(ctx, http.MethodGet, "/api/v1/version", nil, nil, &v)
	return v, err
}

func (c *client) users(ctx context.Context) ([]user, error) {
	return getList[user](ctx, c, "/api/v1/users", nil)
}

func (c *client) createUser(ctx context.Context, username, password, role string) (user, error) {
	in := map[string]string{"username": username, "password": password, "role": role}
	var out user
	err := c.do(ctx, http.MethodPost, "/api/v1/users", nil, in, &out)
	return out, err
}

func (c *client) setRole(ctx context.Context, username, role string) (user, error) {
	in := map[string]string{"username": username, "role": role}
	var out user
	err := c.do(ctx, http.MethodPut, "/api/v1/users", nil, in, &out)
	return out, err
}

func (c *client) deleteUser(ctx context.Context, username string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(username), nil, nil, nil)
}

func (c *client) changePassword(ctx context.Context, oldPassword, newPassword string) error {
	in := map[string]string{"oldPassword": oldPassword, "newPassword": newPassword}
	return c.do(ctx, http.MethodPut, "/api/v1/users/password", nil, in, nil)
}

func (c *client) accessKeys(ctx context.Context, username string) ([]accessKey, error) {
	var q url.Values
	if username != "" {
		q = url.Values{"username": {username}}
	}
	return getList[accessKey](ctx, c, "/api/v1/access-keys", q)
}

func (c *client) createAccessKey(ctx context.Context, in newAccessKey) (accessKey, error) {
	var out accessKey
	err := c.do(ctx, http.MethodPost, "/api/v1/access-keys", nil, in, &out)
	return out, err
}

func (c *client) deleteAccessKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/access-keys/"+url.PathEscape(id), nil, nil, nil)
}

func (c *client) audits(ctx context.Context, f auditFilter) ([]audit.Mgmt, error) {
	q := url.Values{}
	if f.User != "" {
		q.Set("user", f.User)
	}
	if f.Type != "" {
		q.Set("type", f.Type)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return getList[audit.Mgmt](ctx, c, "/api/v1/audits/mgmt", q)
}
