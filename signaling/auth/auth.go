// Package auth checks API logins against configured users whose passwords are
// stored as salted PBKDF2-SHA256 hashes.
package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// DefaultIterations is the PBKDF2 iteration count used by HashPassword.
const DefaultIterations = 600000

const prefix = "pbkdf2-sha256"

// HashPassword returns "pbkdf2-sha256$<iterations>$<salt>$<key>" (base64,
// no padding) for password with a random 16-byte salt.
func HashPassword(password string, iterations int) (string, error) {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", prefix, iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

type parsed struct {
	iter      int
	salt, key []byte
}

func parse(hash string) (parsed, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != prefix {
		return parsed{}, fmt.Errorf("password hash must look like %s$<iterations>$<salt>$<key>", prefix)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10000000 {
		return parsed{}, fmt.Errorf("bad iteration count %q", parts[1])
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[2])
	if err != nil || len(salt) < 8 {
		return parsed{}, fmt.Errorf("bad salt")
	}
	key, err := enc.DecodeString(parts[3])
	if err != nil || len(key) < 16 {
		return parsed{}, fmt.Errorf("bad key")
	}
	return parsed{iter: iter, salt: salt, key: key}, nil
}

func (p parsed) verify(password string) bool {
	key, err := pbkdf2.Key(sha256.New, password, p.salt, p.iter, len(p.key))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(key, p.key) == 1
}

// Users is an immutable set of users, password hashes and admin roles.
type Users struct {
	users  map[string]parsed
	admins map[string]bool
	dummy  parsed
}

// NewUsers validates the hashes of users (name -> hash); the users named in
// admins have the admin role (they see and act on every user's objects).
func NewUsers(users map[string]string, admins ...string) (*Users, error) {
	u := &Users{users: make(map[string]parsed, len(users)), admins: make(map[string]bool, len(admins))}
	for _, a := range admins {
		if _, ok := users[a]; !ok {
			return nil, fmt.Errorf("admin %q is not a user", a)
		}
		u.admins[a] = true
	}
	iter := 1
	for name, h := range users {
		if name == "" {
			return nil, fmt.Errorf("user with an empty name")
		}
		p, err := parse(h)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", name, err)
		}
		u.users[name] = p
		iter = max(iter, p.iter)
	}
	u.dummy = parsed{iter: iter, salt: make([]byte, 16), key: make([]byte, 32)}
	return u, nil
}

// Empty reports whether no user is configured.
func (u *Users) Empty() bool { return u == nil || len(u.users) == 0 }

// Admin reports whether user has the admin role.
func (u *Users) Admin(user string) bool { return u != nil && u.admins[user] }

// Len returns the number of users.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.users)
}

// Check verifies a user's password. An unknown user costs the same work as
// a known one.
func (u *Users) Check(user, password string) bool {
	if u == nil {
		return false
	}
	p, ok := u.users[user]
	if !ok {
		u.dummy.verify(password)
		return false
	}
	return p.verify(password)
}
