// Package digestauth is the server side of SIP digest authentication (RFC 3261 §22, RFC 8760):
// stateless HMAC-signed expiring nonces, qop=auth with nonce-count replay protection, MD5 and
// SHA-256, and a bounded per-source limiter for failed attempts.
package digestauth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"
)

// Algorithm names accepted in challenges and credentials.
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// Verification errors. A Result carries one of these (or nil on success).
var (
	ErrNoCredentials = errors.New("digestauth: no credentials")
	ErrMalformed     = errors.New("digestauth: malformed credentials")
	ErrRealm         = errors.New("digestauth: wrong realm")
	ErrBadNonce      = errors.New("digestauth: nonce not issued by us")
	ErrStale         = errors.New("digestauth: nonce expired")
	ErrUnknownUser   = errors.New("digestauth: unknown user")
	ErrBadResponse   = errors.New("digestauth: wrong response (password)")
	ErrReplay        = errors.New("digestauth: nonce count replayed")
	ErrQOP           = errors.New("digestauth: qop=auth required")
	ErrAlgorithm     = errors.New("digestauth: unsupported algorithm")
	ErrURI           = errors.New("digestauth: digest uri does not match request")
	ErrCapacity      = errors.New("digestauth: nonce table full")
)

// Credentials are the parsed fields of an Authorization / Proxy-Authorization header.
type Credentials struct {
	Username, Realm, Nonce, URI, Response, Algorithm, Cnonce, QOP, Opaque string
	NC                                                                    uint32
}

// maxHeaderLen bounds the header value we are willing to parse.
const maxHeaderLen = 4096

// ParseCredentials parses a Digest credentials header value. It rejects values that are too
// long, not Digest, or lack the fields needed for verification.
func ParseCredentials(v string) (*Credentials, error) {
	if len(v) > maxHeaderLen {
		return nil, fmt.Errorf("%w: header too long", ErrMalformed)
	}
	c, err := digest.ParseCredentials(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "" {
		return nil, fmt.Errorf("%w: missing username/nonce/uri/response", ErrMalformed)
	}
	if c.Nc < 0 {
		return nil, fmt.Errorf("%w: bad nc", ErrMalformed)
	}
	for _, s := range []string{c.Username, c.Realm, c.URI, c.Nonce, c.Cnonce} {
		if strings.ContainsAny(s, "\r\n\x00") {
			return nil, fmt.Errorf("%w: control characters", ErrMalformed)
		}
	}
	return &Credentials{
		Username: c.Username, Realm: c.Realm, Nonce: c.Nonce, URI: c.URI,
		Response: strings.ToLower(c.Response), Algorithm: c.Algorithm, Cnonce: c.Cnonce,
		QOP: c.QOP, Opaque: c.Opaque, NC: uint32(c.Nc),
	}, nil
}

// Config configures an Authenticator.
type Config struct {
	Realm string
	// Key signs nonces; 32 random bytes are generated when empty.
	Key []byte
	// NonceTTL is how long a nonce stays valid (default 5 minutes).
	NonceTTL time.Duration
	// Algorithms offered, strongest first (default MD5 only; add SHA-256 to offer both).
	Algorithms []string
	// MaxNonces bounds the nonce-count table (default 65536).
	MaxNonces int
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Authenticator issues challenges and verifies credentials. It is safe for concurrent use.
type Authenticator struct {
	cfg Config

	mu  sync.Mutex
	ncs map[string]ncEntry // nonce -> highest nonce-count seen
}

type ncEntry struct {
	nc      uint32
	expires time.Time
}

// New returns an Authenticator for cfg.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Realm == "" {
		return nil, errors.New("digestauth: realm required")
	}
	if len(cfg.Key) == 0 {
		cfg.Key = make([]byte, 32)
		if _, err := rand.Read(cfg.Key); err != nil {
			return nil, err
		}
	}
	if cfg.NonceTTL <= 0 {
		cfg.NonceTTL = 5 * time.Minute
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{MD5}
	}
	for i, a := range cfg.Algorithms {
		a = strings.ToUpper(a)
		if a != MD5 && a != SHA256 {
			return nil, fmt.Errorf("%w: %q", ErrAlgorithm, a)
		}
		cfg.Algorithms[i] = a
	}
	if cfg.MaxNonces <= 0 {
		cfg.MaxNonces = 65536
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Authenticator{cfg: cfg, ncs: make(map[string]ncEntry)}, nil
}

// Realm returns the configured realm.
func (a *Authenticator) Realm() string { return a.cfg.Realm }

// NewNonce returns a fresh signed nonce: base64url(issued-unix-seconds | 8 random bytes | mac).
func (a *Authenticator) NewNonce() string {
	var b [8 + 8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(a.cfg.Now().Unix()))
	_, _ = rand.Read(b[8:16])
	copy(b[16:], a.mac(b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (a *Authenticator) mac(data []byte) []byte {
	m := hmac.New(sha256.New, a.cfg.Key)
	m.Write(data)
	m.Write([]byte(a.cfg.Realm))
	return m.Sum(nil)[:16]
}

// checkNonce reports whether nonce was issued by us and whether it expired.
func (a *Authenticator) checkNonce(nonce string) (issued time.Time, err error) {
	if len(nonce) > 64 {
		return time.Time{}, ErrBadNonce
	}
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 32 {
		return time.Time{}, ErrBadNonce
	}
	if !hmac.Equal(b[16:], a.mac(b[:16])) {
		return time.Time{}, ErrBadNonce
	}
	issued = time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	now := a.cfg.Now()
	if now.Sub(issued) > a.cfg.NonceTTL || issued.Sub(now) > time.Minute {
		return issued, ErrStale
	}
	return issued, nil
}

// Challenges returns the WWW-Authenticate / Proxy-Authenticate header values to send, one per
// offered algorithm. stale marks them as a response to an expired nonce.
func (a *Authenticator) Challenges(stale bool) []string {
	nonce := a.NewNonce()
	out := make([]string, 0, len(a.cfg.Algorithms))
	for _, alg := range a.cfg.Algorithms {
		s := fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=%s, qop="auth"`, a.cfg.Realm, nonce, alg)
		if stale {
			s += ", stale=true"
		}
		out = append(out, s)
	}
	return out
}

// Request is what Verify needs to know about the request being authenticated.
type Request struct {
	Method string
	// URIMatches reports whether the digest uri names the request's Request-URI.
	// Nil accepts any uri.
	URIMatches func(digestURI string) bool
}

// PasswordLookup returns the password of a user, or false when the user is unknown.
type PasswordLookup func(username string) (string, bool)

// Verify checks credentials for req. On success it records the nonce count so the same
// (nonce, nc) cannot be used again. The error is one of the Err* values (wrapped).
func (a *Authenticator) Verify(c *Credentials, req Request, lookup PasswordLookup) error {
	if c == nil {
		return ErrNoCredentials
	}
	if !strings.EqualFold(c.Realm, a.cfg.Realm) {
		return ErrRealm
	}
	alg := strings.ToUpper(c.Algorithm)
	if alg == "" {
		alg = MD5
	}
	if !a.offers(alg) {
		return ErrAlgorithm
	}
	if !strings.EqualFold(c.QOP, "auth") {
		return ErrQOP
	}
	if c.NC == 0 || c.Cnonce == "" {
		return fmt.Errorf("%w: nc and cnonce required", ErrMalformed)
	}
	issued, nerr := a.checkNonce(c.Nonce)
	if nerr != nil && !errors.Is(nerr, ErrStale) {
		return nerr
	}
	if req.URIMatches != nil && !req.URIMatches(c.URI) {
		return ErrURI
	}
	pw, ok := lookup(c.Username)
	if !ok {
		// Spend comparable work so unknown users are not distinguishable by timing.
		_ = Response(alg, c.Username, a.cfg.Realm, "x", req.Method, c.URI, c.Nonce, c.NC, c.Cnonce)
		return ErrUnknownUser
	}
	want := Response(alg, c.Username, a.cfg.Realm, pw, req.Method, c.URI, c.Nonce, c.NC, c.Cnonce)
	if subtle.ConstantTimeCompare([]byte(want), []byte(c.Response)) != 1 {
		return ErrBadResponse
	}
	if nerr != nil {
		return ErrStale
	}
	return a.useNonce(c.Nonce, c.NC, issued.Add(a.cfg.NonceTTL+time.Minute))
}

func (a *Authenticator) offers(alg string) bool {
	for _, x := range a.cfg.Algorithms {
		if x == alg {
			return true
		}
	}
	return false
}

func (a *Authenticator) useNonce(nonce string, nc uint32, expires time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	e, ok := a.ncs[nonce]
	if ok {
		if nc <= e.nc {
			return ErrReplay
		}
		e.nc = nc
		a.ncs[nonce] = e
		return nil
	}
	if len(a.ncs) >= a.cfg.MaxNonces {
		for k, v := range a.ncs {
			if now.After(v.expires) {
				delete(a.ncs, k)
			}
		}
		if len(a.ncs) >= a.cfg.MaxNonces {
			// Refusing (as stale: the client gets a fresh nonce) is safer than evicting a live
			// entry, which would reopen that nonce to replay.
			return ErrStale
		}
	}
	a.ncs[nonce] = ncEntry{nc: nc, expires: expires}
	return nil
}

// Sweep drops expired nonce-count entries. Call it periodically.
func (a *Authenticator) Sweep() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	for k, v := range a.ncs {
		if now.After(v.expires) {
			delete(a.ncs, k)
		}
	}
}

// Response computes the qop=auth digest response (RFC 2617 / RFC 7616).
func Response(alg, user, realm, password, method, uri, nonce string, nc uint32, cnonce string) string {
	var h hash.Hash
	if strings.EqualFold(alg, SHA256) {
		h = sha256.New()
	} else {
		h = md5.New()
	}
	hj := func(parts ...string) string {
		h.Reset()
		h.Write([]byte(strings.Join(parts, ":")))
		return hex.EncodeToString(h.Sum(nil))
	}
	ha1 := hj(user, realm, password)
	ha2 := hj(method, uri)
	return hj(ha1, nonce, fmt.Sprintf("%08x", nc), cnonce, "auth", ha2)
}
