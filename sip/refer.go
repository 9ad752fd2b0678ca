package sip

// REFER (RFC 3515) inside a call's dialog: the peer (the transferor) asks that the other party
// of its call be connected to the Refer-To target. We answer 202 and report the outcome with
// NOTIFY (Event: refer, message/sipfrag: "SIP/2.0 100 Trying", then the final status), unless
// the REFER says Refer-Sub: false (RFC 4488). Refer-To is parsed here, strictly: sip:/sips:
// URIs only, no URI headers but Replaces (RFC 3891, an attended transfer), bounded lengths, no
// control characters even escaped; everything else gets a 4xx naming what is wrong.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ReferTarget is a parsed Refer-To.
type ReferTarget struct {
	// URI is the target without URI headers: "sip:user@host:port;params".
	URI string
	// User is the URI's user part, unescaped (may be empty); Host its host[:port].
	User, Host string
	// Replaces, when not nil, names the dialog the target's call replaces (attended transfer).
	Replaces *Replaces
}

// Replaces names a dialog (RFC 3891): its Call-ID and tags.
type Replaces struct {
	CallID, ToTag, FromTag string
	EarlyOnly              bool
}

// ReferError is why a Refer-To (or Replaces) is refused, with the SIP status to answer.
type ReferError struct {
	Code   int
	Reason string
}

func (e *ReferError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

func referErr(code int, format string, args ...any) error {
	return &ReferError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Limits of what a Refer-To may hold.
const (
	maxReferTo     = 1024
	maxReferUser   = 128
	maxReplacesLen = 512
	maxTokenLen    = 256
)

// ParseReferTo parses a Refer-To header value: name-addr ("Name" <sip:u@h?Replaces=...>;p=v) or
// addr-spec. Errors are *ReferError: 416 for a scheme other than sip/sips, 400 for the rest.
func ParseReferTo(v string) (ReferTarget, error) {
	if len(v) > maxReferTo {
		return ReferTarget{}, referErr(400, "Refer-To longer than %d bytes", maxReferTo)
	}
	if hasCtl(v) {
		return ReferTarget{}, referErr(400, "Refer-To has control characters")
	}
	v = strings.TrimSpace(v)
	uri := v
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return ReferTarget{}, referErr(400, "Refer-To has an unclosed <")
		}
		uri = v[i+1 : i+j]
		if rest := v[i+j+1:]; strings.ContainsAny(rest, "<>,") || strings.ContainsAny(v[:i], "<>,") {
			return ReferTarget{}, referErr(400, "Refer-To has more than one URI")
		}
	} else if strings.Contains(v, "?") {
		return ReferTarget{}, referErr(400, "Refer-To with URI headers must be in <>")
	}
	if strings.ContainsAny(uri, " \t\"<>,") {
		return ReferTarget{}, referErr(400, "Refer-To URI has blanks, quotes or commas")
	}
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || scheme == "" {
		return ReferTarget{}, referErr(400, "Refer-To has no URI scheme")
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips":
	default:
		if len(scheme) > 16 {
			scheme = scheme[:16]
		}
		return ReferTarget{}, referErr(416, "Unsupported URI Scheme in Refer-To: %q", scheme)
	}
	var t ReferTarget
	if base, hdrs, has := strings.Cut(rest, "?"); has {
		rest = base
		for _, h := range strings.Split(hdrs, "&") {
			name, val, _ := strings.Cut(h, "=")
			if !strings.EqualFold(name, "Replaces") {
				return ReferTarget{}, referErr(400, "Refer-To URI header %q refused (only Replaces is taken)", clip(name, 32))
			}
			if t.Replaces != nil {
				return ReferTarget{}, referErr(400, "Refer-To has two Replaces")
			}
			uv, err := url.QueryUnescape(val)
			if err != nil {
				return ReferTarget{}, referErr(400, "Refer-To Replaces is badly escaped")
			}
			r, err := ParseReplaces(uv)
			if err != nil {
				return ReferTarget{}, err
			}
			t.Replaces = &r
		}
	}
	hostPart := rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		u, err := url.PathUnescape(rest[:i])
		if err != nil || u == "" || len(u) > maxReferUser || hasCtl(u) || strings.ContainsAny(u, " \t<>\"") {
			return ReferTarget{}, referErr(400, "Refer-To user part is empty, too long, badly escaped or has control characters")
		}
		if k := strings.IndexByte(u, ';'); k == 0 {
			return ReferTarget{}, referErr(400, "Refer-To user part is empty")
		}
		t.User = u
		hostPart = rest[i+1:]
	}
	host := hostPart
	if i := strings.IndexByte(host, ';'); i >= 0 {
		host = host[:i]
	}
	if !validHostPort(host) {
		return ReferTarget{}, referErr(400, "Refer-To host %q is not a host[:port]", clip(host, 64))
	}
	t.Host = host
	t.URI = scheme + ":" + rest
	return t, nil
}

// ParseReplaces parses a Replaces value (RFC 3891): call-id;to-tag=x;from-tag=y[;early-only].
func ParseReplaces(v string) (Replaces, error) {
	if len(v) > maxReplacesLen || hasCtl(v) {
		return Replaces{}, referErr(400, "Replaces too long or with control characters")
	}
	parts := strings.Split(v, ";")
	r := Replaces{CallID: strings.TrimSpace(parts[0])}
	if !token(r.CallID, true) {
		return Replaces{}, referErr(400, "Replaces has a bad Call-ID")
	}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "to-tag":
			r.ToTag = val
		case "from-tag":
			r.FromTag = val
		case "early-only":
			r.EarlyOnly = true
		}
	}
	if !token(r.ToTag, false) || !token(r.FromTag, false) {
		return Replaces{}, referErr(400, "Replaces needs a to-tag and a from-tag")
	}
	return r, nil
}

// token: 1 to maxTokenLen characters without blanks, controls, quotes, brackets, ';', ','
// (with at, '@' allowed: Call-IDs carry it).
func token(s string, at bool) bool {
	if s == "" || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>;,?&=\\", c) >= 0 || (c == '@' && !at) {
			return false
		}
	}
	return true
}

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// validHostPort: a DNS name, IPv4 or [IPv6], with an optional port.
func validHostPort(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return false
		}
		if _, err := netip.ParseAddr(h[1:i]); err != nil {
			return false
		}
		host, port = "", h[i+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
	}
	if h != "" && port == "" && strings.HasSuffix(h, ":") {
		return false
	}
	if port != "" {
		if len(port) > 5 {
			return false
		}
		n := 0
		for _, c := range port {
			if c < '0' || c > '9' {
				return false
			}
			n = n*10 + int(c-'0')
		}
		if n == 0 || n > 65535 {
			return false
		}
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// headerParsers are sipgo's header parsers without Refer-To and Referred-By: sipgo would
// drop a whole request whose Refer-To it cannot parse, where we answer it with a 4xx
// (ParseReferTo), and we do not use its parse of Referred-By.
func headerParsers() sip.HeadersParser {
	m := sip.HeadersParser{}
	for k, v := range sip.DefaultHeadersParser() {
		if k != "refer-to" && k != "referred-by" {
			m[k] = v
		}
	}
	return m
}

// Refer is a REFER received in a call's dialog.
type Refer struct {
	Target ReferTarget
	// ReferredBy is the Referred-By header (informational, at most 256 bytes).
	ReferredBy string
	// Notify reports the transfer's progress to the transferor: a NOTIFY with the sipfrag
	// "SIP/2.0 code reason". It blocks until the NOTIFY is answered (at most 4 s); a final
	// status (>= 200) ends the subscription and later calls do nothing. Without a subscription
	// (Refer-Sub: false) it does nothing.
	Notify func(code int, reason string)
}

// ReferHandler is implemented by CallEvents that take REFERs. Refer decides at once: nil
// accepts (202; the handler then works in its own goroutine and reports through r.Notify,
// ending with a final status), an error refuses the REFER with its status when it is a
// *ReferError or *StatusError (else 403). Calls without such events answer REFER 501.
type ReferHandler interface {
	Refer(c *Call, r Refer) error
}

// sameHost reports whether two ip:port strings have the same IP.
func sameHost(a, b string) bool {
	pa, err1 := netip.ParseAddrPort(a)
	pb, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && pa.Addr().Unmap() == pb.Addr().Unmap()
}

func (s *Server) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	c := s.checkInDialog(req, tx)
	if c == nil {
		return
	}
	c.mu.Lock()
	peer, answered := c.info.Source, c.state == stateConfirmed || c.state == stateAnswered
	authUser := c.info.AuthUser // inbound: the caller's digest user
	if c.dir == Outbound {
		authUser = c.peerUser // the registered device's user ("" for a SIP URL we called)
	}
	c.mu.Unlock()
	// Only the dialog's peer may REFER: from its address, and with its digest credentials when
	// it has a user (a digest-authenticated caller, a registered device we called).
	if !sameHost(req.Source(), peer) {
		s.log.Warn("sip REFER refused: not from the dialog's peer", "call", c.id, "src", req.Source(), "peer", peer)
		s.respond(req, tx, 403, "Forbidden (REFER from another address than the call's)")
		return
	}
	if authUser != "" {
		u, ok := s.authenticate(req, tx)
		if !ok {
			return
		}
		if !strings.EqualFold(u, authUser) {
			s.respond(req, tx, 403, "Forbidden (REFER by another user than the call's)")
			return
		}
	}
	if !answered {
		s.respond(req, tx, 403, "Forbidden (the call is not answered)")
		return
	}
	hs := append(req.GetHeaders("Refer-To"), req.GetHeaders("r")...)
	if len(hs) != 1 {
		s.respond(req, tx, 400, "Bad Request (exactly one Refer-To)")
		return
	}
	target, err := ParseReferTo(hs[0].Value())
	if err != nil {
		var re *ReferError
		errors.As(err, &re)
		s.log.Info("sip REFER refused", "call", c.id, "err", err)
		s.respond(req, tx, re.Code, badReason(re))
		return
	}
	h, ok := c.events0().(ReferHandler)
	if !ok {
		s.respond(req, tx, 501, "Not Implemented (no transfer for this call)")
		return
	}
	sub := true
	if v := req.GetHeader("Refer-Sub"); v != nil && strings.EqualFold(strings.TrimSpace(v.Value()), "false") {
		sub = false
	}
	by := ""
	if v := req.GetHeader("Referred-By"); v != nil {
		by = clip(v.Value(), 256)
	}
	n := &referNotifier{c: c, id: req.CSeq().SeqNo, sub: sub}
	n.mu.Lock() // the 202 and the 100 Trying go first
	defer n.mu.Unlock()
	if err := h.Refer(c, Refer{Target: target, ReferredBy: by, Notify: n.notify}); err != nil {
		n.done = true
		code, reason := 403, "Forbidden"
		var re *ReferError
		var se *StatusError
		switch {
		case errors.As(err, &re):
			code, reason = re.Code, badReason(re)
		case errors.As(err, &se):
			code, reason = se.Code, se.Reason
		}
		s.log.Info("sip REFER refused", "call", c.id, "target", target.URI, "code", code, "reason", reason)
		s.respond(req, tx, code, reason)
		return
	}
	s.log.Info("sip REFER accepted", "call", c.id, "target", target.URI, "replaces", target.Replaces != nil, "subscription", sub)
	res := sip.NewResponseFromRequest(req, 202, "Accepted", nil)
	res.AppendHeader(s.contactHeader(c.transport))
	if !sub {
		res.AppendHeader(sip.NewHeader("Refer-Sub", "false"))
	}
	if err := tx.Respond(res); err != nil {
		return
	}
	n.sendLocked(100, "Trying")
}

// badReason is a refusal's reason phrase: the status's name with the detail.
func badReason(e *ReferError) string {
	name := reasonFor(e.Code)
	if e.Code == 416 {
		name = "Unsupported URI Scheme"
	}
	if name == "" {
		name = "Bad Request"
	}
	return name + " (" + oneLineReason(e.Reason) + ")"
}

func oneLineReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return clip(s, 120)
}

// referNotifier sends a REFER's NOTIFYs in order.
type referNotifier struct {
	c    *Call
	id   uint32
	sub  bool
	mu   sync.Mutex
	done bool
}

func (n *referNotifier) notify(code int, reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sendLocked(code, reason)
}

func (n *referNotifier) sendLocked(code int, reason string) {
	if n.done || !n.sub {
		return
	}
	c := n.c
	select {
	case <-c.done:
		n.done = true
		return
	default:
	}
	state := "active;expires=60"
	if code >= 200 {
		n.done = true
		state = "terminated;reason=noresource"
	}
	if reason == "" {
		reason = reasonFor(code)
	}
	req := c.newRequest(sip.NOTIFY)
	req.AppendHeader(sip.NewHeader("Event", fmt.Sprintf("refer;id=%d", n.id)))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.AppendHeader(c.s.contactHeader(c.transport))
	req.SetBody([]byte(fmt.Sprintf("SIP/2.0 %d %s\r\n", code, oneLineReason(reason))))
	ctx, cancel := context.WithTimeout(c.s.ctx, 4*time.Second)
	defer cancel()
	res, err := c.do(ctx, req)
	switch {
	case err != nil:
		c.s.log.Info("sip REFER NOTIFY failed", "call", c.id, "code", code, "err", err)
	case !res.IsSuccess():
		c.s.log.Info("sip REFER NOTIFY refused", "call", c.id, "code", code, "status", res.StatusCode)
		n.done = true // 481: the subscription is gone
	}
}
