package credential

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pw   string
		want bool
	}{
		{"same", "correct horse battery", true},
		{"other", "correct horse battery!", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckPassword(h, tc.pw); got != tc.want {
				t.Errorf("CheckPassword(%q) = %v, want %v", tc.pw, got, tc.want)
			}
		})
	}
	if CheckPassword("not-a-hash", "x") {
		t.Error("CheckPassword with malformed hash matched")
	}
}

func TestDummyHashIsValidBcrypt(t *testing.T) {
	if _, err := bcrypt.Cost(dummyHash); err != nil {
		t.Fatalf("dummy hash is not a bcrypt hash: %v", err)
	}
}

func TestAccessKey(t *testing.T) {
	id, secret, err := NewAccessKey()
	if err != nil {
		t.Fatal(err)
	}
	if !IsAccessKeyID(id) {
		t.Errorf("IsAccessKeyID(%q) = false", id)
	}
	if IsAccessKeyID("admin") {
		t.Error(`IsAccessKeyID("admin") = true`)
	}
	id2, secret2, _ := NewAccessKey()
	if id == id2 || secret == secret2 {
		t.Error("two keys are equal")
	}
	h := HashSecret(secret)
	if strings.Contains(h, secret) {
		t.Error("hash contains the secret")
	}
	if !CheckSecret(h, secret) || CheckSecret(h, secret2) {
		t.Error("CheckSecret does not tell secrets apart")
	}
}

func TestRandomPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := RandomPassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 24 || seen[p] {
			t.Fatalf("RandomPassword() = %q: wrong length or repeated", p)
		}
		seen[p] = true
	}
}
