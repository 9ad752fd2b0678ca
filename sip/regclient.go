package sip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/icholy/digest"
)

// Registration is nkbridge registering itself at a provider's registrar, so that the provider
// delivers calls to it (many ITSPs only call a registered PBX). Calls the registrar's address
// sends to ContactUser are treated as calls from Trunk.
type Registration struct {
	Name string
	// Registrar is the registrar's host[:port] (an IP literal or a name resolved with
	// Options.Resolver).
	Registrar string
	// Transport is udp (default), tcp or tls.
	Transport string
	// Domain is the AOR's domain (default: the registrar's host).
	Domain string
	// Username is the AOR user; AuthUsername the digest user (default Username).
	Username     string
	AuthUsername string
	Password     string
	// Expires is the registration lifetime asked for (default 3600s). The binding is refreshed
	// at 80–90 % of what the registrar grants.
	Expires time.Duration
	// ContactUser is the user part of our Contact (default Username): INVITEs from the
	// registrar's address to this Request-URI user come from Trunk.
	ContactUser string
	// Trunk names the trunk (Config.Trunks) such calls are treated as coming from.
	Trunk string
	// Timeout bounds each REGISTER transaction (default 10s).
	Timeout time.Duration
	// RetryMin and RetryMax bound the jittered exponential back-off after a failure, a
	// rejection (403, bad credentials) or no answer (defaults 5s and 5m).
	RetryMin, RetryMax time.Duration
}

// Registration states, as reported in RegistrationStatus, logs and metrics.
const (
	RegStateRegistering  = "registering"
	RegStateRegistered   = "registered"
	RegStateFailed       = "failed"   // no answer, transport error, 5xx, bad answer: retried
	RegStateRejected     = "rejected" // 403, 404 or bad credentials: retried with back-off
	RegStateUnregistered = "unregistered"
)

// RegistrationObserver, when implemented by Options.Observer, hears every state change of an
// outbound registration (Config.Registrations).
type RegistrationObserver interface {
	RegistrationState(name, state string)
}

// RegistrationStatus is the current state of an outbound registration.
type RegistrationStatus struct {
	Name  string
	State string
	// Expires is when the binding runs out (zero unless registered).
	Expires time.Time
	// Error is the last failure, if any.
	Error string
	// Failures counts consecutive failures (reset by a successful registration).
	Failures int
	// Registrations counts successful REGISTERs (initial and refreshes).
	Registrations int
}

const (
	regDefaultExpires    = time.Hour
	regDefaultTimeout    = 10 * time.Second
	regDefaultRetryMin   = 5 * time.Second
	regDefaultRetryMax   = 5 * time.Minute
	regUnregisterTimeout = 2 * time.Second
	regMaxExpires        = 24 * time.Hour
)

func (r *Registration) normalize(trunks []Trunk) error {
	if r.Name == "" {
		return errors.New("sip: registrations need a name")
	}
	if r.Registrar == "" || r.Username == "" {
		return fmt.Errorf("sip: registration %s needs registrar and username", r.Name)
	}
	host, port, err := splitHostPortDefault(r.Registrar)
	if err != nil || host == "" || port <= 0 || port > 65535 {
		return fmt.Errorf("sip: registration %s: registrar %q: want host[:port]", r.Name, r.Registrar)
	}
	r.Transport = strings.ToLower(r.Transport)
	switch r.Transport {
	case "":
		r.Transport = "udp"
	case "udp", "tcp", "tls":
	default:
		return fmt.Errorf("sip: registration %s: unknown transport %q", r.Name, r.Transport)
	}
	if r.Domain == "" {
		r.Domain = host
	}
	if r.AuthUsername == "" {
		r.AuthUsername = r.Username
	}
	if r.ContactUser == "" {
		r.ContactUser = r.Username
	}
	if r.Expires <= 0 {
		r.Expires = regDefaultExpires
	}
	if r.Expires > regMaxExpires {
		r.Expires = regMaxExpires
	}
	if r.Timeout <= 0 {
		r.Timeout = regDefaultTimeout
	}
	if r.RetryMin <= 0 {
		r.RetryMin = regDefaultRetryMin
	}
	if r.RetryMax <= 0 {
		r.RetryMax = regDefaultRetryMax
	}
	if r.RetryMax < r.RetryMin {
		r.RetryMax = r.RetryMin
	}
	if r.Trunk != "" {
		found := false
		for _, t := range trunks {
			found = found || t.Name == r.Trunk
		}
		if !found {
			return fmt.Errorf("sip: registration %s: unknown trunk %q", r.Name, r.Trunk)
		}
	}
	return nil
}

func splitHostPortDefault(hp string) (string, int, error) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		n, err := strconv.Atoi(p)
		return strings.Trim(h, "[]"), n, err
	}
	if strings.ContainsAny(hp, "/@;<> ") {
		return "", 0, errors.New("not host[:port]")
	}
	return strings.Trim(hp, "[]"), 5060, nil
}

// regClient runs one outbound registration.
type regClient struct {
	s        *Server
	r        Registration
	host     string
	port     int
	callID   string
	fromTag  string
	cseq     uint32
	observer RegistrationObserver

	mu     sync.Mutex
	status RegistrationStatus
	ip     netip.Addr // the registrar's address, once resolved
}

func newRegClient(s *Server, r Registration) *regClient {
	host, port, _ := splitHostPortDefault(r.Registrar)
	rc := &regClient{s: s, r: r, host: host, port: port, callID: uuid.NewString(), fromTag: sip.GenerateTagN(16),
		status: RegistrationStatus{Name: r.Name, State: RegStateUnregistered}}
	rc.observer, _ = s.obs.(RegistrationObserver)
	return rc
}

func (rc *regClient) setState(state, errText string, expires time.Time) {
	rc.mu.Lock()
	prev := rc.status.State
	rc.status.State = state
	rc.status.Expires = expires
	switch state {
	case RegStateRegistered:
		rc.status.Error = ""
		rc.status.Failures = 0
		rc.status.Registrations++
	case RegStateFailed, RegStateRejected:
		rc.status.Error = errText
		rc.status.Failures++
	}
	rc.mu.Unlock()
	if prev != state && rc.observer != nil {
		rc.observer.RegistrationState(rc.r.Name, state)
	}
}

func (rc *regClient) snapshot() RegistrationStatus {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.status
}

// trusts reports whether an INVITE from src to Request-URI user is a call this registration
// brought: sent by the registrar's address to our contact user.
func (rc *regClient) trusts(src netip.Addr, user string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.ip.IsValid() && rc.ip == src && user == rc.r.ContactUser
}

// regError is a failed REGISTER: rejected (403, bad credentials) or failed (anything else),
// with an optional Retry-After from the registrar.
type regError struct {
	rejected   bool
	retryAfter time.Duration
	msg        string
}

func (e *regError) Error() string { return e.msg }

// run registers, refreshes before expiry and retries with back-off until ctx ends, then
// unregisters (bounded by regUnregisterTimeout) if registered.
func (rc *regClient) run(ctx context.Context) {
	log := rc.s.log.With("registration", rc.r.Name, "registrar", rc.r.Registrar)
	expires := rc.r.Expires
	for ctx.Err() == nil {
		if rc.snapshot().State != RegStateRegistered {
			rc.setState(RegStateRegistering, "", time.Time{})
		}
		granted, err := rc.register(ctx, expires)
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		var ie *intervalError
		switch {
		case errors.As(err, &ie):
			log.Info("sip registration: registrar wants a longer expiry", "min_expires", ie.min)
			expires = ie.min
			continue
		case err == nil:
			exp := time.Now().Add(granted)
			rc.setState(RegStateRegistered, "", exp)
			// Refresh at 80–90 % of the granted time (jittered, so many registrations spread).
			wait = time.Duration(float64(granted) * (0.8 + 0.1*rand.Float64()))
			log.Info("sip registration registered", "expires", granted, "refresh_in", wait.Round(time.Millisecond))
		default:
			var re *regError
			state := RegStateFailed
			var retryAfter time.Duration
			if errors.As(err, &re) {
				retryAfter = re.retryAfter
				if re.rejected {
					state = RegStateRejected
				}
			}
			rc.setState(state, err.Error(), time.Time{})
			wait = rc.backoff(rc.snapshot().Failures, retryAfter)
			log.Warn("sip registration failed", "state", state, "err", err, "retry_in", wait.Round(time.Millisecond),
				"failures", rc.snapshot().Failures)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if st := rc.snapshot(); st.State == RegStateRegistered {
		uctx, cancel := context.WithTimeout(context.Background(), regUnregisterTimeout)
		_, err := rc.register(uctx, 0)
		cancel()
		if err != nil {
			log.Warn("sip un-registration failed", "err", err)
		} else {
			log.Info("sip registration removed")
		}
	}
	rc.setState(RegStateUnregistered, "", time.Time{})
}

// backoff is the wait after n consecutive failures: RetryMin doubling up to RetryMax, at
// least the registrar's Retry-After (bounded by RetryMax), jittered down by up to 25 %.
func (rc *regClient) backoff(n int, retryAfter time.Duration) time.Duration {
	d := rc.r.RetryMin
	for i := 1; i < n && d < rc.r.RetryMax; i++ {
		d *= 2
	}
	d = min(max(d, retryAfter), rc.r.RetryMax)
	return d - time.Duration(rand.Float64()*0.25*float64(d))
}

type intervalError struct{ min time.Duration }

func (e *intervalError) Error() string { return "423 Interval Too Brief" }

// register sends one REGISTER (answering one digest challenge) asking for expires (0 removes
// our binding) and returns the lifetime granted.
func (rc *regClient) register(ctx context.Context, expires time.Duration) (time.Duration, error) {
	req, err := rc.build(ctx, expires, "", "")
	if err != nil {
		return 0, err
	}
	res, err := rc.transact(ctx, req)
	if err != nil {
		return 0, err
	}
	for attempt := 0; attempt < 2 && (res.StatusCode == 401 || res.StatusCode == 407); attempt++ {
		hname, aname := "WWW-Authenticate", "Authorization"
		if res.StatusCode == 407 {
			hname, aname = "Proxy-Authenticate", "Proxy-Authorization"
		}
		if attempt > 0 && !staleChallenge(res, hname) {
			return 0, &regError{rejected: true, msg: fmt.Sprintf("registrar refused our credentials (%d %s) for auth user %s", res.StatusCode, res.Reason, rc.r.AuthUsername)}
		}
		cred, err := rc.answer(res, hname)
		if err != nil {
			return 0, &regError{msg: fmt.Sprintf("bad challenge in %d: %v", res.StatusCode, err)}
		}
		if req, err = rc.build(ctx, expires, aname, cred); err != nil {
			return 0, err
		}
		if res, err = rc.transact(ctx, req); err != nil {
			return 0, err
		}
	}
	switch {
	case res.IsSuccess():
		if expires == 0 {
			return 0, nil
		}
		return rc.granted(res, expires)
	case res.StatusCode == 423 && expires > 0:
		if h := res.GetHeader("Min-Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 && time.Duration(n)*time.Second <= regMaxExpires &&
				time.Duration(n)*time.Second > expires {
				return 0, &intervalError{min: time.Duration(n) * time.Second}
			}
		}
		return 0, &regError{msg: "423 Interval Too Brief without a usable Min-Expires"}
	}
	e := &regError{msg: fmt.Sprintf("registrar answered %d %s", res.StatusCode, res.Reason)}
	switch res.StatusCode {
	case 401, 407, 403, 404:
		e.rejected = true
	}
	if h := res.GetHeader("Retry-After"); h != nil {
		v, _, _ := strings.Cut(h.Value(), ";")
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			e.retryAfter = time.Duration(min(n, 86400)) * time.Second
		}
	}
	return 0, e
}

func staleChallenge(res *sip.Response, hname string) bool {
	h := res.GetHeader(hname)
	if h == nil {
		return false
	}
	c, err := digest.ParseChallenge(h.Value())
	return err == nil && c.Stale
}

// granted reads the lifetime the registrar granted our binding: our Contact's expires
// parameter, else the Expires header, else what we asked for. A lifetime above what we asked
// for is cut to it; a missing binding or a malformed or zero lifetime is an error.
func (rc *regClient) granted(res *sip.Response, asked time.Duration) (time.Duration, error) {
	var val string
	found := false
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		c := ch
		if c.Address.User != rc.r.ContactUser || !strings.EqualFold(c.Address.Host, rc.s.cfg.ExternalHost) {
			continue
		}
		if p := c.Address.Port; p != 0 && p != rc.s.port(rc.r.Transport) {
			continue
		}
		found = true
		if c.Params != nil {
			val, _ = c.Params.Get("expires")
		}
	}
	_ = found // a registrar that rewrote our Contact (NAT) is still believed: Expires header
	if val == "" {
		if h := res.GetHeader("Expires"); h != nil {
			val = h.Value()
		}
	}
	if val == "" {
		return asked, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 32)
	if err != nil {
		return 0, &regError{msg: fmt.Sprintf("registrar granted a malformed expiry %q", truncate(val, 40))}
	}
	if n == 0 {
		return 0, &regError{msg: "registrar granted expiry 0"}
	}
	d := time.Duration(n) * time.Second
	if d > asked {
		rc.s.log.Warn("sip registration: registrar granted more than asked; refreshing as asked",
			"registration", rc.r.Name, "granted", d, "asked", asked)
		d = asked
	}
	return d, nil
}

// answer computes the credentials for a 401/407 challenge.
func (rc *regClient) answer(res *sip.Response, hname string) (string, error) {
	h := res.GetHeader(hname)
	if h == nil {
		return "", fmt.Errorf("no %s header", hname)
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return "", err
	}
	if chal.Nonce == "" {
		return "", errors.New("challenge without a nonce")
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	if chal.Algorithm != "" && chal.Algorithm != "MD5" && chal.Algorithm != "SHA-256" {
		return "", fmt.Errorf("unsupported digest algorithm %q", truncate(chal.Algorithm, 20))
	}
	if len(chal.QOP) > 0 {
		auth := false
		for _, q := range chal.QOP {
			auth = auth || strings.TrimSpace(q) == "auth"
		}
		if !auth {
			return "", errors.New("challenge offers no qop=auth")
		}
		chal.QOP = []string{"auth"}
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: uriString(rc.requestURI()), Count: 1,
		Username: rc.r.AuthUsername, Password: rc.r.Password})
	if err != nil {
		return "", err
	}
	return cred.String(), nil
}

func (rc *regClient) requestURI() sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: rc.host}
	if rc.port != 5060 {
		u.Port = rc.port
	}
	if rc.r.Transport != "udp" {
		u.UriParams = sip.HeaderParams{{K: "transport", V: rc.r.Transport}}
	}
	return u
}

// build makes a REGISTER; authName/cred add credentials.
func (rc *regClient) build(ctx context.Context, expires time.Duration, authName, cred string) (*sip.Request, error) {
	s := rc.s
	tp := strings.ToUpper(rc.r.Transport)
	if s.port(rc.r.Transport) == 0 && tp != "UDP" {
		return nil, &regError{msg: fmt.Sprintf("no %s listener for registration %s", rc.r.Transport, rc.r.Name)}
	}
	req := sip.NewRequest(sip.REGISTER, rc.requestURI())
	req.AppendHeader(s.via(tp))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	aor := sip.Uri{Scheme: "sip", User: rc.r.Username, Host: rc.r.Domain}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", rc.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader(rc.callID)
	req.AppendHeader(&cid)
	rc.mu.Lock()
	rc.cseq++
	seq := rc.cseq
	rc.mu.Unlock()
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
	contact := s.contactHeader(tp)
	contact.Address.User = rc.r.ContactUser
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	if authName != "" {
		req.AppendHeader(sip.NewHeader(authName, cred))
	}
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	req.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	req.SetBody(nil)
	req.SetTransport(tp)
	s.bindLocal(req, tp)
	if err := s.route(ctx, req); err != nil {
		return nil, &regError{msg: err.Error()}
	}
	if ap, err := netip.ParseAddrPort(req.Destination()); err == nil {
		rc.mu.Lock()
		rc.ip = ap.Addr().Unmap()
		rc.mu.Unlock()
	}
	return req, nil
}

// transact sends req and waits (at most Timeout) for its final response.
func (rc *regClient) transact(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tctx, cancel := context.WithTimeout(ctx, rc.r.Timeout)
	defer cancel()
	tx, err := rc.s.sendTx(tctx, req)
	if err != nil {
		return nil, &regError{msg: "sending REGISTER: " + err.Error()}
	}
	defer tx.Terminate()
	res, err := rc.s.await(tctx, tx)
	switch {
	case err == nil:
		return res, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, errTxEnded) && tx.Err() != nil:
		return nil, &regError{msg: "no answer from registrar: " + tx.Err().Error()}
	case errors.Is(err, errTxEnded):
		return nil, &regError{msg: "no answer from registrar"}
	}
	return nil, &regError{msg: fmt.Sprintf("no answer from registrar within %s", rc.r.Timeout)}
}

// registrations runs the configured outbound registrations.
type registrations struct {
	clients []*regClient
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (s *Server) startRegistrations(ctx context.Context) {
	if len(s.cfg.Registrations) == 0 {
		return
	}
	rs := &registrations{}
	ctx, rs.cancel = context.WithCancel(ctx)
	for _, r := range s.cfg.Registrations {
		rc := newRegClient(s, r)
		rs.clients = append(rs.clients, rc)
		rs.wg.Add(1)
		go func() { defer rs.wg.Done(); rc.run(ctx) }()
	}
	s.mu.Lock()
	s.regs = rs
	s.mu.Unlock()
}

// stopRegistrations un-registers (bounded) and waits for the registration goroutines.
func (s *Server) stopRegistrations() {
	s.mu.Lock()
	rs := s.regs
	s.mu.Unlock()
	if rs == nil {
		return
	}
	rs.cancel()
	rs.wg.Wait()
}

// Registrations returns the state of every outbound registration (Config.Registrations).
func (s *Server) Registrations() []RegistrationStatus {
	s.mu.Lock()
	rs := s.regs
	s.mu.Unlock()
	if rs == nil {
		return nil
	}
	out := make([]RegistrationStatus, 0, len(rs.clients))
	for _, rc := range rs.clients {
		out = append(out, rc.snapshot())
	}
	return out
}

// registrationTrunk returns the trunk of the registration whose registrar sent an INVITE from
// src to Request-URI user, or nil.
func (s *Server) registrationTrunk(src netip.Addr, user string) *trunk {
	s.mu.Lock()
	rs := s.regs
	s.mu.Unlock()
	if rs == nil {
		return nil
	}
	for _, rc := range rs.clients {
		if rc.r.Trunk != "" && rc.trusts(src, user) {
			for i := range s.trunks {
				if s.trunks[i].Name == rc.r.Trunk {
					return &s.trunks[i]
				}
			}
		}
	}
	return nil
}

func uriString(u sip.Uri) string { return u.String() }
