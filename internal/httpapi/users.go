package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/credential"
	"bulwark/internal/store"
)

// userJSON is the Prisma shape of a user. Password is accepted on input and
// never written out.
type userJSON struct {
	Username     string       `json:"username"`
	Role         string       `json:"role"`
	AuthType     string       `json:"authType,omitempty"`
	Password     string       `json:"password,omitempty"`
	LastModified time.Time    `json:"lastModified,omitzero"`
	Permissions  []permission `json:"permissions,omitempty"`
}

// permission is Prisma's per-project collection scoping. Bulwark has one
// project and no collection scoping yet; the field is accepted for
// compatibility and must be empty or name the default project.
type permission struct {
	Project     string   `json:"project,omitempty"`
	Collections []string `json:"collections,omitempty"`
}

func toUserJSON(u auth.User) userJSON {
	return userJSON{Username: u.Username, Role: string(u.Role), AuthType: string(u.AuthType), LastModified: u.LastModified}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ principal) error {
	users, err := s.store.Users(r.Context())
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		out = append(out, toUserJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) currentUser(w http.ResponseWriter, r *http.Request, p principal) error {
	perms := p.role.Permissions()
	ps := make([]string, len(perms))
	for i, x := range perms {
		ps[i] = string(x)
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": p.username, "role": p.role, "permissions": ps, "accessKeyID": p.keyID})
	return nil
}

func (s *Server) listRoles(w http.ResponseWriter, _ *http.Request, _ principal) error {
	type roleJSON struct {
		Name        string   `json:"name"`
		Permissions []string `json:"permissions"`
	}
	var out []roleJSON
	for _, r := range auth.Roles() {
		rj := roleJSON{Name: string(r)}
		for _, p := range r.Permissions() {
			rj.Permissions = append(rj.Permissions, string(p))
		}
		out = append(out, rj)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func checkPermissions(ps []permission) error {
	for _, p := range ps {
		if (p.Project != "" && p.Project != "Central Console") || len(p.Collections) > 0 && !slices.Equal(p.Collections, []string{"All"}) {
			return badRequest("permissions: projects and collection scoping are not supported yet; omit the field")
		}
	}
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var req userJSON
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := auth.ValidateUsername(req.Username); err != nil {
		return err
	}
	if credential.IsAccessKeyID(req.Username) {
		return badRequest("username %q has the shape of an access key ID", req.Username)
	}
	if req.Role == "" {
		return fieldMissing("role")
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return err
	}
	if req.AuthType != "" && req.AuthType != string(auth.AuthBasic) {
		return badRequest("authType %q is not supported (only %q)", req.AuthType, auth.AuthBasic)
	}
	if err := checkPermissions(req.Permissions); err != nil {
		return err
	}
	if err := auth.ValidatePassword(req.Password); err != nil {
		return err
	}
	hash, err := credential.HashPassword(req.Password, s.cfg.BcryptCost)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	u := auth.User{Username: req.Username, Role: role, AuthType: auth.AuthBasic, PasswordHash: hash, CreatedAt: now, LastModified: now, PasswordChangedAt: now}
	err = s.change(r, p, audit.TypeUsers, func(ctx context.Context, tx store.Writer) (string, error) {
		return fmt.Sprintf("created user %s with role %s", u.Username, u.Role), tx.CreateUser(ctx, u)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUserJSON(u))
	return nil
}

// updateUser changes a user's role and, when given, password (Prisma's PUT /users).
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var req userJSON
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Username == "" {
		return fieldMissing("username")
	}
	if err := checkPermissions(req.Permissions); err != nil {
		return err
	}
	var role auth.Role
	if req.Role != "" {
		var err error
		if role, err = auth.ParseRole(req.Role); err != nil {
			return err
		}
	}
	var hash string
	if req.Password != "" {
		if err := auth.ValidatePassword(req.Password); err != nil {
			return err
		}
		var err error
		if hash, err = credential.HashPassword(req.Password, s.cfg.BcryptCost); err != nil {
			return err
		}
	}
	var updated auth.User
	err := s.change(r, p, audit.TypeUsers, func(ctx context.Context, tx store.Writer) (string, error) {
		u, err := tx.User(ctx, req.Username)
		if err != nil {
			return "", fmt.Errorf("user %s: %w", req.Username, err)
		}
		var what []string
		now := s.cfg.Now()
		if role != "" && role != u.Role {
			if u.Role == auth.RoleAdmin {
				if err := ensureAnotherAdmin(ctx, tx, u.Username); err != nil {
					return "", err
				}
			}
			what = append(what, fmt.Sprintf("role %s → %s", u.Role, role))
			u.Role = role
		}
		if hash != "" {
			u.PasswordHash, u.PasswordChangedAt = hash, now
			what = append(what, "password")
		}
		updated = u
		if len(what) == 0 {
			return "", errNoChange
		}
		u.LastModified = now
		updated = u
		return fmt.Sprintf("updated user %s: %s", u.Username, strings.Join(what, ", ")), tx.UpdateUser(ctx, u)
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return err
	}
	writeJSON(w, http.StatusOK, toUserJSON(updated))
	return nil
}

// errNoChange ends an Update without writing when a request changes nothing.
var errNoChange = errors.New("no change")

func ensureAnotherAdmin(ctx context.Context, tx store.Reader, except string) error {
	users, err := tx.Users(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	for _, u := range users {
		if u.Role == auth.RoleAdmin && u.Username != except {
			return nil
		}
	}
	return badRequest("user %s is the last admin; make another admin first", except)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p principal) error {
	name := r.PathValue("id")
	if name == p.username {
		return badRequest("you cannot delete your own user")
	}
	err := s.change(r, p, audit.TypeUsers, func(ctx context.Context, tx store.Writer) (string, error) {
		u, err := tx.User(ctx, name)
		if err != nil {
			return "", fmt.Errorf("user %s: %w", name, err)
		}
		if u.Role == auth.RoleAdmin {
			if err := ensureAnotherAdmin(ctx, tx, name); err != nil {
				return "", err
			}
		}
		return "deleted user " + name, tx.DeleteUser(ctx, name)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

type passwordRequest struct {
	OldPassword string `json:"oldPassword"`
	NewPassword string `json:"newPassword"`
}

// changePassword lets a caller change their own password, proving the old one.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, p principal) error {
	if p.keyID != "" {
		return fmt.Errorf("%w: an access key cannot change its owner's password", errForbidden)
	}
	var req passwordRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := auth.ValidatePassword(req.NewPassword); err != nil {
		return err
	}
	if _, err := s.checkPassword(r.Context(), p.username, req.OldPassword, clientIP(r)); err != nil {
		if errors.Is(err, errUnauthorized) {
			return badRequest("oldPassword is wrong")
		}
		return err
	}
	hash, err := credential.HashPassword(req.NewPassword, s.cfg.BcryptCost)
	if err != nil {
		return err
	}
	err = s.change(r, p, audit.TypeUsers, func(ctx context.Context, tx store.Writer) (string, error) {
		u, err := tx.User(ctx, p.username)
		if err != nil {
			return "", fmt.Errorf("user %s: %w", p.username, err)
		}
		now := s.cfg.Now()
		u.PasswordHash, u.PasswordChangedAt, u.LastModified = hash, now, now
		return "changed own password", tx.UpdateUser(ctx, u)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
