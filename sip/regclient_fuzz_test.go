package sip

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// FuzzRegistrarAnswer feeds arbitrary registrar responses to the parts of the registration
// client that read them (granted lifetime, digest challenge): never a panic, and a lifetime
// is only ever within (0, asked].
func FuzzRegistrarAnswer(f *testing.F) {
	const head = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:pbxuser@127.0.0.1>;tag=1\r\n" +
		"To: <sip:pbxuser@127.0.0.1>;tag=2\r\nCall-ID: r1\r\nCSeq: 2 REGISTER\r\n"
	for _, seed := range []string{
		head + "Contact: <sip:pbxcontact@127.0.0.1:5060>;expires=120\r\nContent-Length: 0\r\n\r\n",
		head + "Expires: banana\r\nContent-Length: 0\r\n\r\n",
		head + "Expires: 4000000000\r\nContent-Length: 0\r\n\r\n",
		head + "Contact: <sip:pbxcontact@127.0.0.1:5060>;expires=99999999999999999999, <sip:x@10.0.0.1>;expires=5\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nCSeq: 1 REGISTER\r\n" +
			"WWW-Authenticate: Digest realm=\"p\", nonce=\"abc\", qop=\"auth,auth-int\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 407 Proxy Authentication Required\r\nCSeq: 1 REGISTER\r\nProxy-Authenticate: Digest realm=\"p\", algorithm=SHA-512\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 401 Unauthorized\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"p\", nonce=\"n\", qop=\"auth-int\"\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	s, err := New(testConfig(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	rc := newRegClient(s, pbxRegistration("127.0.0.1:5070"))
	rc.r.ContactUser = "pbxcontact"
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			return
		}
		if d, err := rc.granted(res, time.Minute); err == nil && (d <= 0 || d > time.Minute) {
			t.Fatalf("granted %v for asked 1m", d)
		}
		for _, h := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
			if cred, err := rc.answer(res, h); err == nil && cred == "" {
				t.Fatal("empty credentials without an error")
			}
		}
		_ = staleChallenge(res, "WWW-Authenticate")
	})
}
