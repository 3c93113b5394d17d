// Package credential hashes and checks the secrets users present: passwords
// with bcrypt, access-key secrets (random, 256-bit) with SHA-256, and makes new
// random passwords and keys.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// DefaultCost is the bcrypt cost for stored passwords.
const DefaultCost = 11

// HashPassword returns a bcrypt hash of pw at cost (bcrypt.MinCost..31).
func HashPassword(pw string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches hash. A malformed hash never matches.
func CheckPassword(hash, pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// dummyHash is compared against when a user does not exist, so that the time
// a failed login takes does not tell whether the username is real.
var dummyHash = []byte("$2a$11$C6UzMDM.H6dfI/f/IKcEeO5D9QzPb2/lb3YbEf4RPm3ZjMFSX.6hO")

// BurnPasswordCheck spends as long as CheckPassword on an unknown user.
func BurnPasswordCheck(pw string) {
	_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pw))
}

// AccessKeyPrefix starts every access key ID, so that a key is recognisable in
// logs and secret scanners.
const AccessKeyPrefix = "bwk_"

// NewAccessKey returns a fresh key ID and secret. The secret is shown to the
// user once; only HashSecret(secret) is stored.
func NewAccessKey() (id, secret string, err error) {
	idb := make([]byte, 10)
	sb := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", "", fmt.Errorf("access key id: %w", err)
	}
	if _, err := rand.Read(sb); err != nil {
		return "", "", fmt.Errorf("access key secret: %w", err)
	}
	id = AccessKeyPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(idb))
	return id, base64.RawURLEncoding.EncodeToString(sb), nil
}

// IsAccessKeyID reports whether s has the shape of an access key ID.
func IsAccessKeyID(s string) bool {
	return strings.HasPrefix(s, AccessKeyPrefix) && len(s) == len(AccessKeyPrefix)+16
}

// HashSecret hashes a random access-key secret. Such secrets carry 256 bits of
// entropy, so a fast hash is enough and keeps Basic auth with keys cheap.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CheckSecret reports whether secret matches hash, in constant time.
func CheckSecret(hash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hash), []byte(HashSecret(secret))) == 1
}

// RandomPassword returns a 24-character password from a 62-letter alphabet
// (about 143 bits).
func RandomPassword() (string, error) {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	b := make([]byte, 24)
	for i := range b {
		var one [1]byte
		for {
			if _, err := rand.Read(one[:]); err != nil {
				return "", fmt.Errorf("random password: %w", err)
			}
			if int(one[0]) < 256-256%len(alphabet) { // no modulo bias
				b[i] = alphabet[int(one[0])%len(alphabet)]
				break
			}
		}
	}
	return string(b), nil
}

// RandomKey returns n random bytes, for signing keys.
func RandomKey(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random key: %w", err)
	}
	return b, nil
}
