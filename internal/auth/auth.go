// Package auth defines Console identities: users, access keys, roles and the
// permissions each role grants. It holds no I/O; hashing and token signing live
// with the adapters that need them.
package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Role is a named set of permissions. The names follow the vocabulary;
// Prisma Cloud Compute spellings are accepted as aliases by ParseRole so that
// existing scripts keep working.
type Role string

// The built-in roles.
const (
	RoleAdmin           Role = "admin"
	RoleOperator        Role = "operator"
	RoleAuditor         Role = "auditor"
	RoleCIUser          Role = "ci-user"
	RoleDefenderManager Role = "defender-manager"
)

// Roles lists every built-in role, most privileged first.
func Roles() []Role {
	return []Role{RoleAdmin, RoleOperator, RoleDefenderManager, RoleAuditor, RoleCIUser}
}

// ErrInvalid marks input that breaks a rule of this package.
var ErrInvalid = errors.New("invalid")

// ParseRole returns the role named s, accepting Prisma's camel-case names
// ("defenderManager", "ci") as aliases.
func ParseRole(s string) (Role, error) {
	switch strings.TrimSpace(s) {
	case "admin":
		return RoleAdmin, nil
	case "operator":
		return RoleOperator, nil
	case "auditor":
		return RoleAuditor, nil
	case "ci-user", "ci", "ciUser":
		return RoleCIUser, nil
	case "defender-manager", "defenderManager":
		return RoleDefenderManager, nil
	}
	return "", fmt.Errorf("%w: unknown role %q (want one of admin, operator, auditor, ci-user, defender-manager)", ErrInvalid, s)
}

// Permission names one thing a caller may do.
type Permission string

// Permissions checked by the API. Each endpoint requires exactly one.
const (
	// PermRead reads the security posture: policies, events, scan results, defenders.
	PermRead Permission = "read"
	// PermReadAudit reads the management audit log.
	PermReadAudit Permission = "read-audit"
	// PermWritePolicy changes policies, collections and alert settings.
	PermWritePolicy Permission = "write-policy"
	// PermManageUsers creates, changes and deletes users and other users' access keys.
	PermManageUsers Permission = "manage-users"
	// PermManageDefenders issues install bundles, revokes and renews Defender certificates.
	PermManageDefenders Permission = "manage-defenders"
	// PermScan submits scans from CI (bulwarkctl scan) and reads their results.
	PermScan Permission = "scan"
	// PermSelf reads and changes the caller's own account: password, own access keys.
	PermSelf Permission = "self"
)

var rolePerms = map[Role][]Permission{
	RoleAdmin:           {PermRead, PermReadAudit, PermWritePolicy, PermManageUsers, PermManageDefenders, PermScan, PermSelf},
	RoleOperator:        {PermRead, PermWritePolicy, PermManageDefenders, PermScan, PermSelf},
	RoleAuditor:         {PermRead, PermReadAudit, PermSelf},
	RoleDefenderManager: {PermRead, PermManageDefenders, PermSelf},
	RoleCIUser:          {PermScan, PermSelf},
}

// Allows reports whether r grants p.
func (r Role) Allows(p Permission) bool {
	for _, q := range rolePerms[r] {
		if q == p {
			return true
		}
	}
	return false
}

// Permissions returns the permissions r grants.
func (r Role) Permissions() []Permission {
	return append([]Permission(nil), rolePerms[r]...)
}

// AuthType says how a user proves who they are. Only "basic" (a password kept
// by the Console) exists today; LDAP, SAML and OIDC come later.
type AuthType string //nolint:revive // Prisma calls it authType

// AuthBasic is a Console-local password.
const AuthBasic AuthType = "basic"

// User is a person or service account that may call the API.
type User struct {
	Username     string
	Role         Role
	AuthType     AuthType
	PasswordHash string // opaque to this package; set by the adapter that hashes
	CreatedAt    time.Time
	LastModified time.Time
	// PasswordChangedAt invalidates every token issued before it.
	PasswordChangedAt time.Time
}

// AccessKey is a long-lived credential for automation: its ID is used as the
// username and its secret as the password. Only a hash of the secret is kept.
type AccessKey struct {
	ID         string
	Username   string // owner; the key acts with the owner's role unless Role is set
	Role       Role   // optional narrower role; empty means the owner's
	Name       string // what the owner called it
	SecretHash string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time
}

// Expired reports whether the key may no longer be used at now.
func (k AccessKey) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// EffectiveRole returns the role the key acts with when its owner has ownerRole:
// the key's own role when it is set and no stronger than the owner's.
func (k AccessKey) EffectiveRole(ownerRole Role) Role {
	if k.Role == "" {
		return ownerRole
	}
	for _, p := range rolePerms[k.Role] {
		if !ownerRole.Allows(p) {
			return ownerRole // a key never exceeds its owner; refused at creation, defended here
		}
	}
	return k.Role
}

// ValidateUsername checks that s can name a user: 1–64 characters, letters,
// digits and . _ @ - only.
func ValidateUsername(s string) error {
	if s == "" {
		return fmt.Errorf("%w: username is empty", ErrInvalid)
	}
	if utf8.RuneCountInString(s) > 64 {
		return fmt.Errorf("%w: username is longer than 64 characters", ErrInvalid)
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._@-", r) {
			return fmt.Errorf("%w: username %q contains %q (allowed: letters, digits, . _ @ -)", ErrInvalid, s, r)
		}
	}
	return nil
}

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 8

// ValidatePassword checks a new password: at least MinPasswordLen characters and
// at most 72 bytes (the most bcrypt reads).
func ValidatePassword(s string) error {
	if utf8.RuneCountInString(s) < MinPasswordLen {
		return fmt.Errorf("%w: password is shorter than %d characters", ErrInvalid, MinPasswordLen)
	}
	if len(s) > 72 {
		return fmt.Errorf("%w: password is longer than 72 bytes", ErrInvalid)
	}
	return nil
}
