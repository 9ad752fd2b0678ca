package digestauth

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAuth(t *testing.T, c *clock, algs ...string) *Authenticator {
	t.Helper()
	a, err := New(Config{Realm: "nkbridge", Key: []byte("k"), NonceTTL: time.Minute, Algorithms: algs, Now: c.now, MaxNonces: 4})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sign builds credentials the way a real client (icholy/digest) does.
func sign(t *testing.T, chal string, user, pw, method, uri string, nc int) *Credentials {
	t.Helper()
	ch, err := digest.ParseChallenge(chal)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := digest.Digest(ch, digest.Options{Method: method, URI: uri, Username: user, Password: pw, Count: nc})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCredentials(cr.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func users(u string) (string, bool) {
	if u == "alice" {
		return "secret", true
	}
	return "", false
}

func TestVerify(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	for _, alg := range []string{MD5, SHA256} {
		a := newAuth(t, c, alg)
		ch := a.Challenges(false)
		if len(ch) != 1 || !strings.Contains(ch[0], "algorithm="+alg) || !strings.Contains(ch[0], `qop="auth"`) {
			t.Fatalf("challenge %q", ch)
		}
		req := Request{Method: "REGISTER", URIMatches: func(u string) bool { return u == "sip:127.0.0.1" }}
		cr := sign(t, ch[0], "alice", "secret", "REGISTER", "sip:127.0.0.1", 1)
		if err := a.Verify(cr, req, users); err != nil {
			t.Fatalf("%s: valid credentials rejected: %v", alg, err)
		}
		if err := a.Verify(cr, req, users); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay not detected: %v", err)
		}
		cr2 := sign(t, ch[0], "alice", "secret", "REGISTER", "sip:127.0.0.1", 2)
		if err := a.Verify(cr2, req, users); err != nil {
			t.Fatalf("nc=2 rejected: %v", err)
		}
		bad := sign(t, ch[0], "alice", "wrong", "REGISTER", "sip:127.0.0.1", 3)
		if err := a.Verify(bad, req, users); !errors.Is(err, ErrBadResponse) {
			t.Fatalf("wrong password: %v", err)
		}
		unk := sign(t, ch[0], "mallory", "x", "REGISTER", "sip:127.0.0.1", 1)
		if err := a.Verify(unk, req, users); !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("unknown user: %v", err)
		}
		other := sign(t, ch[0], "alice", "secret", "REGISTER", "sip:10.0.0.1", 4)
		if err := a.Verify(other, req, users); !errors.Is(err, ErrURI) {
			t.Fatalf("uri mismatch: %v", err)
		}
		// Forged nonce.
		forged := sign(t, strings.Replace(ch[0], "nonce=\"", "nonce=\"A", 1), "alice", "secret", "REGISTER", "sip:127.0.0.1", 1)
		if err := a.Verify(forged, req, users); !errors.Is(err, ErrBadNonce) {
			t.Fatalf("forged nonce: %v", err)
		}
		// Expiry: correct response on an old nonce is stale.
		old := sign(t, ch[0], "alice", "secret", "REGISTER", "sip:127.0.0.1", 9)
		c.t = c.t.Add(2 * time.Minute)
		if err := a.Verify(old, req, users); !errors.Is(err, ErrStale) {
			t.Fatalf("expired nonce: %v", err)
		}
		if ch := a.Challenges(true); !strings.Contains(ch[0], "stale=true") {
			t.Fatalf("stale challenge %q", ch)
		}
	}
}

func TestVerifyRejectsNoQOPAndWrongRealm(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	a := newAuth(t, c)
	ch := a.Challenges(false)[0]
	noqop := strings.Replace(ch, `, qop="auth"`, "", 1)
	cr := sign(t, noqop, "alice", "secret", "INVITE", "sip:x@127.0.0.1", 1)
	if err := a.Verify(cr, Request{Method: "INVITE"}, users); !errors.Is(err, ErrQOP) {
		t.Fatalf("no qop: %v", err)
	}
	cr = sign(t, strings.Replace(ch, `realm="nkbridge"`, `realm="other"`, 1), "alice", "secret", "INVITE", "sip:x@127.0.0.1", 1)
	if err := a.Verify(cr, Request{Method: "INVITE"}, users); !errors.Is(err, ErrRealm) {
		t.Fatalf("realm: %v", err)
	}
}

func TestNonceTableBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	a := newAuth(t, c) // MaxNonces 4
	req := Request{Method: "REGISTER"}
	for i := 0; i < 4; i++ {
		cr := sign(t, a.Challenges(false)[0], "alice", "secret", "REGISTER", "sip:h", 1)
		if err := a.Verify(cr, req, users); err != nil {
			t.Fatal(err)
		}
	}
	cr := sign(t, a.Challenges(false)[0], "alice", "secret", "REGISTER", "sip:h", 1)
	if err := a.Verify(cr, req, users); !errors.Is(err, ErrStale) {
		t.Fatalf("full table must answer stale, got %v", err)
	}
	c.t = c.t.Add(3 * time.Minute)
	a.Sweep()
	cr = sign(t, a.Challenges(false)[0], "alice", "secret", "REGISTER", "sip:h", 1)
	if err := a.Verify(cr, req, users); err != nil {
		t.Fatalf("after sweep: %v", err)
	}
}

func TestParseCredentialsErrors(t *testing.T) {
	for _, s := range []string{"", "Basic abc", `Digest username="a"`, "Digest " + strings.Repeat("a", 5000),
		`Digest username="a", nonce="n", uri="sip:x", response="r", nc=zz`} {
		if _, err := ParseCredentials(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestFailureLimiter(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := NewFailureLimiter(LimiterConfig{MaxFailures: 3, Window: time.Minute, Block: time.Minute, MaxEntries: 2, Now: c.now})
	ip := netip.MustParseAddr("127.0.0.1")
	if first, second := l.Fail(ip), l.Fail(ip); first || second {
		t.Fatal("blocked too early")
	}
	if !l.Fail(ip) || !l.Blocked(ip) {
		t.Fatal("not blocked after 3 failures")
	}
	l.Succeed(ip)
	if !l.Blocked(ip) {
		t.Fatal("success must not unblock")
	}
	c.t = c.t.Add(2 * time.Minute)
	if l.Blocked(ip) {
		t.Fatal("block did not expire")
	}
	for i := 0; i < 10; i++ {
		l.Fail(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	if l.Len() > 2 {
		t.Fatalf("table not bounded: %d", l.Len())
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add(`Digest username="alice", realm="nkbridge", nonce="abc", uri="sip:127.0.0.1", response="0123", algorithm=MD5, qop=auth, nc=00000001, cnonce="x"`)
	f.Add(`Digest username="a\"b", nonce=, uri="sip:x"`)
	f.Add("Digest ,,,,")
	a, _ := New(Config{Realm: "nkbridge", Key: []byte("k")})
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCredentials(s)
		if err != nil {
			return
		}
		if c.Username == "" || c.Nonce == "" {
			t.Fatal("accepted credentials without username/nonce")
		}
		if err := a.Verify(c, Request{Method: "REGISTER"}, users); err == nil {
			t.Fatal("fuzzed credentials verified")
		}
	})
}
