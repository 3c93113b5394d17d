package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/credential"
	"bulwark/internal/store"
)

type accessKeyJSON struct {
	ID         string    `json:"id"`
	Username   string    `json:"username"`
	Name       string    `json:"name,omitempty"`
	Role       string    `json:"role,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	ExpiresAt  time.Time `json:"expiresAt,omitzero"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
	// Secret is set only in the answer to the creating request.
	Secret string `json:"secret,omitempty"`
}

func toKeyJSON(k auth.AccessKey) accessKeyJSON {
	return accessKeyJSON{ID: k.ID, Username: k.Username, Name: k.Name, Role: string(k.Role), CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt}
}

type createKeyRequest struct {
	Name string `json:"name"`
	// Role narrows the key below its owner's role; empty means the owner's.
	Role string `json:"role,omitempty"`
	// ExpiresInDays is the key's lifetime; 0 means it never expires.
	ExpiresInDays int `json:"expiresInDays,omitempty"`
}

// listAccessKeys lists the caller's keys, or with ?username= another user's
// (manage-users), or with ?username=* everybody's.
func (s *Server) listAccessKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	who := r.URL.Query().Get("username")
	switch {
	case who == "" || who == p.username:
		who = p.username
	case !p.role.Allows(auth.PermManageUsers):
		return fmt.Errorf("%w: listing other users' keys needs permission %s", errForbidden, auth.PermManageUsers)
	case who == "*":
		who = ""
	}
	keys, err := s.store.AccessKeys(r.Context(), who)
	if err != nil {
		return fmt.Errorf("list access keys: %w", err)
	}
	out := make([]accessKeyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

const maxKeysPerUser = 20

func (s *Server) createAccessKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if p.keyID != "" {
		return fmt.Errorf("%w: an access key cannot create access keys; sign in with a password", errForbidden)
	}
	var req createKeyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.Name) > 100 {
		return badRequest("name is longer than 100 characters")
	}
	var role auth.Role
	if req.Role != "" {
		var err error
		if role, err = auth.ParseRole(req.Role); err != nil {
			return err
		}
		for _, perm := range role.Permissions() {
			if !p.role.Allows(perm) {
				return fmt.Errorf("%w: a key cannot have role %s, which grants %s beyond your role %s", errForbidden, role, perm, p.role)
			}
		}
	}
	if req.ExpiresInDays < 0 || req.ExpiresInDays > 3650 {
		return badRequest("expiresInDays must be between 0 and 3650, not %d", req.ExpiresInDays)
	}
	id, secret, err := credential.NewAccessKey()
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	k := auth.AccessKey{ID: id, Username: p.username, Role: role, Name: req.Name, SecretHash: credential.HashSecret(secret), CreatedAt: now}
	if req.ExpiresInDays > 0 {
		k.ExpiresAt = now.AddDate(0, 0, req.ExpiresInDays)
	}
	err = s.change(r, p, audit.TypeKeys, func(ctx context.Context, tx store.Writer) (string, error) {
		have, err := tx.AccessKeys(ctx, p.username)
		if err != nil {
			return "", fmt.Errorf("list access keys: %w", err)
		}
		if len(have) >= maxKeysPerUser {
			return "", badRequest("user %s already has %d access keys, the most allowed; delete one first", p.username, len(have))
		}
		return "created access key " + id + " " + strconv.Quote(req.Name), tx.CreateAccessKey(ctx, k)
	})
	if err != nil {
		return err
	}
	out := toKeyJSON(k)
	out.Secret = secret
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteAccessKey deletes one of the caller's keys, or anybody's with manage-users.
func (s *Server) deleteAccessKey(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	err := s.change(r, p, audit.TypeKeys, func(ctx context.Context, tx store.Writer) (string, error) {
		k, err := tx.AccessKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("access key %s: %w", id, err)
		}
		if err != nil {
			return "", err
		}
		if k.Username != p.username && !p.role.Allows(auth.PermManageUsers) {
			// Do not tell whether another user's key exists.
			return "", fmt.Errorf("access key %s: %w", id, store.ErrNotFound)
		}
		return "deleted access key " + id + " of " + k.Username, tx.DeleteAccessKey(ctx, id)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// listAudits answers GET /api/v1/audits/mgmt with Prisma's query parameters:
// user, type, from, to (RFC 3339), limit, offset.
func (s *Server) listAudits(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	f := audit.Filter{Username: q.Get("user"), Type: q.Get("type")}
	if f.Username == "" {
		f.Username = q.Get("username")
	}
	var err error
	if f.Since, err = parseTimeParam(q.Get("from"), "from"); err != nil {
		return err
	}
	if f.Until, err = parseTimeParam(q.Get("to"), "to"); err != nil {
		return err
	}
	if f.Limit, err = parseIntParam(q.Get("limit"), "limit", 0, 1000); err != nil {
		return err
	}
	if f.Offset, err = parseIntParam(q.Get("offset"), "offset", 0, 1<<31-1); err != nil {
		return err
	}
	recs, err := s.store.Audits(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list audits: %w", err)
	}
	if recs == nil {
		recs = []audit.Mgmt{}
	}
	writeJSON(w, http.StatusOK, recs)
	return nil
}

func parseTimeParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest("query parameter %s=%q is not an RFC 3339 time", name, v)
	}
	return t, nil
}

func parseIntParam(v, name string, lo, hi int) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("query parameter %s=%q must be an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}
