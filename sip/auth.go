package sip

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/nkbridge/nkbridge/sip/digestauth"
)

// authenticate checks digest credentials on req (Authorization for REGISTER, Proxy-Authorization
// for other requests). It answers the request itself (401/407 challenge, 403 when the source is
// blocked) and returns ok=false whenever it did.
func (s *Server) authenticate(req *sip.Request, tx sip.ServerTransaction) (user string, ok bool) {
	src := sourceAddr(req)
	if s.failures.Blocked(src) {
		s.respond(req, tx, 403, "Forbidden")
		return "", false
	}
	proxy := req.Method != sip.REGISTER
	hname := "Authorization"
	if proxy {
		hname = "Proxy-Authorization"
	}
	h := req.GetHeader(hname)
	if h == nil {
		s.challenge(req, tx, proxy, false)
		return "", false
	}
	cred, err := digestauth.ParseCredentials(h.Value())
	if err == nil {
		err = s.auth.Verify(cred, digestauth.Request{
			Method:     string(req.Method),
			URIMatches: func(u string) bool { return digestURIMatches(u, &req.Recipient) },
		}, s.users.Password)
	}
	switch {
	case err == nil:
		s.failures.Succeed(src)
		return cred.Username, true
	case errors.Is(err, digestauth.ErrStale), errors.Is(err, digestauth.ErrReplay):
		// A replayed nonce count carries the right password: a retransmission, a client that
		// reuses its nc, or a replay by someone who captured it. None is a guess, so none
		// counts as a failure (else a replay could lock the phone's own address out); the
		// client gets a fresh nonce.
		s.challenge(req, tx, proxy, true)
		return "", false
	}
	blocked := s.failures.Fail(src)
	s.log.Info("sip auth failed", "src", src.String(), "method", req.Method, "err", err, "blocked", blocked)
	if blocked {
		s.respond(req, tx, 403, "Forbidden")
		return "", false
	}
	s.challenge(req, tx, proxy, false)
	return "", false
}

func (s *Server) challenge(req *sip.Request, tx sip.ServerTransaction, proxy, stale bool) {
	code, reason, hname := 401, "Unauthorized", "WWW-Authenticate"
	if proxy {
		code, reason, hname = 407, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	var hs []sip.Header
	for _, c := range s.auth.Challenges(stale) {
		hs = append(hs, sip.NewHeader(hname, c))
	}
	s.respond(req, tx, code, reason, hs...)
}

// digestURIMatches reports whether the digest uri names the same host and port as the
// Request-URI. The user part and parameters are not compared: clients differ in what they put
// there, and replay is already prevented by the nonce count.
func digestURIMatches(u string, ruri *sip.Uri) bool {
	var d sip.Uri
	if err := sip.ParseUri(u, &d); err != nil {
		return false
	}
	port := func(p int) int {
		if p == 0 {
			return 5060
		}
		return p
	}
	return strings.EqualFold(d.Host, ruri.Host) && port(d.Port) == port(ruri.Port)
}
