// Package sip is nkbridge's SIP front end on emiago/sipgo: listeners, a digest-authenticating
// registrar, and a user agent for inbound and outbound calls (INVITE, CANCEL, BYE, re-INVITE
// hold/resume, INFO DTMF, RFC 4028 session timers) that hands calls to a CallHandler and takes
// SDP from its caller.
package sip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/nkbridge/nkbridge/internal/sockbuf"
	"github.com/nkbridge/nkbridge/sip/digestauth"
	"github.com/nkbridge/nkbridge/sip/registrar"
)

// CallHandler receives inbound calls that passed authentication. HandleInvite is called in its
// own goroutine; it must eventually call Ringing/Progress and Answer or Reject on the call, and
// should watch call.Done() (CANCEL, BYE, timeouts).
type CallHandler interface {
	HandleInvite(call *Call)
}

// UserStore looks up SIP users. The default is built from Config.Users.
type UserStore interface {
	// Password returns the user's password, false when there is no such user.
	Password(user string) (string, bool)
	// CanCallSIP reports whether the user may call SIP URLs (outbound domains and trunks).
	CanCallSIP(user string) bool
}

// Options are the Server's collaborators.
type Options struct {
	Logger  *slog.Logger
	Handler CallHandler
	// Users overrides Config.Users when set.
	Users UserStore
	// Resolver resolves the host names of outbound targets (allowed domains and trunks only);
	// net.DefaultResolver when nil.
	Resolver *net.Resolver
	// Observer is told about every request and response sent and received and every
	// REGISTER outcome (e.g. for metrics); nil: nobody.
	Observer Observer
}

// allowedMethods is the Allow header value.
const allowedMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, REFER"

type configUsers map[string]User

func (u configUsers) Password(name string) (string, bool) {
	x, ok := u[strings.ToLower(name)]
	return x.Password, ok
}

func (u configUsers) CanCallSIP(name string) bool { return u[strings.ToLower(name)].CanCallSIP }

// Server is a SIP registrar and user agent.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler CallHandler
	users   UserStore
	trunks  []trunk
	obs     Observer

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client

	resolver *net.Resolver
	dials    *dialGuard

	auth     *digestauth.Authenticator
	failures *digestauth.FailureLimiter
	rate     *rateLimiter[netip.Addr]
	// invites from one authenticated caller and to one callee (limits.go)
	callerRate, calleeRate *rateLimiter[string]
	reg                    *registrar.Registrar

	mu        sync.Mutex
	calls     map[string]*Call // dialog key -> call
	callCount int
	bySource  map[netip.Addr]int  // live inbound calls per non-trunk source
	addrs     map[string]net.Addr // transport -> bound address
	closers   []io.Closer
	regs      *registrations // outbound registrations (regclient.go)
	started   bool
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a Server from cfg. Nothing listens until Start.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	trunks, err := parseTrunks(cfg.Trunks, cfg.Limits.TrunkRequestRate)
	if err != nil {
		return nil, err
	}
	users := opts.Users
	if users == nil {
		m := configUsers{}
		for _, u := range cfg.Users {
			m[strings.ToLower(u.Name)] = u
		}
		users = m
	}
	auth, err := digestauth.New(digestauth.Config{Realm: cfg.Realm, NonceTTL: cfg.NonceTTL, Algorithms: append([]string(nil), cfg.AuthAlgorithms...)})
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: log, handler: opts.Handler, users: users, trunks: trunks, auth: auth,
		failures: digestauth.NewFailureLimiter(digestauth.LimiterConfig{
			MaxFailures: cfg.Limits.AuthMaxFailures, Window: cfg.Limits.AuthWindow,
			Block: cfg.Limits.AuthBlock, MaxEntries: cfg.Limits.TrackedSources,
		}),
		rate:       newRateLimiter[netip.Addr](cfg.Limits.RequestsPerSecond, cfg.Limits.Burst, cfg.Limits.TrackedSources),
		callerRate: newRateLimiter[string](cfg.Limits.CallerInviteRate, cfg.Limits.CallerInviteBurst, cfg.Limits.TrackedSources),
		calleeRate: newRateLimiter[string](cfg.Limits.CalleeInviteRate, cfg.Limits.CalleeInviteBurst, cfg.Limits.TrackedSources),
		reg: registrar.New(registrar.Config{MinExpires: cfg.MinExpires, MaxExpires: cfg.MaxExpires,
			DefaultExpires: cfg.DefaultExpires, MaxContacts: cfg.MaxContactsPerUser, MaxPerSource: cfg.MaxRegistrationsPerSource}),
		calls:    make(map[string]*Call),
		bySource: make(map[netip.Addr]int),
		addrs:    make(map[string]net.Addr),
		resolver: opts.Resolver,
		dials:    newDialGuard(),
	}
	if s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	s.obs = opts.Observer
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	parser := sip.NewParser(sip.WithHeadersParsers(headerParsers()))
	parser.MaxMessageLength = cfg.Limits.MaxMessageSize
	sipLog := slog.New(quietHandler{log.Handler()}).With("component", "sipgo")
	maxSize := cfg.Limits.MaxMessageSize
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentHostname(cfg.Domain),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgenTLSConfig(cfg.TLS),
		sipgo.WithUserAgentDNSResolver(denyResolver()),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerTransports(sip.TransportsConfig{
				TCP: &sip.TransportTCP{DialerCreate: s.dials.dialer, ReadTimeout: 5 * time.Minute, WriteTimeout: 10 * time.Second},
				TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: s.dials.dialer, ReadTimeout: 5 * time.Minute, WriteTimeout: 10 * time.Second}},
			}),
			sip.WithTransportLayerReadFilter(func(p sip.TransportReadProps, data []byte) ([]byte, error) {
				if strings.EqualFold(p.Transport, "udp") && len(data) > maxSize {
					return nil, nil // drop oversize datagrams (an error would stop the UDP reader)
				}
				return data, nil
			}),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(s.unhandledResponse),
		),
	)
	if err != nil {
		return nil, err
	}
	s.ua = ua
	s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return nil, err
	}
	s.cli, err = sipgo.NewClient(ua, sipgo.WithClientLogger(sipLog), sipgo.WithClientHostname(cfg.ExternalHost))
	if err != nil {
		return nil, err
	}
	s.srv.OnRegister(s.guard(s.onRegister))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guard(s.onAck))
	s.srv.OnBye(s.guard(s.onBye))
	s.srv.OnCancel(s.guard(s.onCancel))
	s.srv.OnInfo(s.guard(s.onInfo))
	s.srv.OnUpdate(s.guard(s.onUpdate))
	s.srv.OnRefer(s.guard(s.onRefer))
	s.srv.OnNoRoute(s.guard(s.onNoRoute))
	return s, nil
}

// Registrar returns the registration store (lookup and change notifications).
func (s *Server) Registrar() *registrar.Registrar { return s.reg }

// Config returns the normalized configuration.
func (s *Server) Config() Config { return s.cfg }

// Start binds every listener and serves until ctx ends or Close is called.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("sip: server already started or closed")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.mu.Unlock()

	for _, l := range s.cfg.Listen {
		if err := s.listen(l); err != nil {
			s.Close()
			return err
		}
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.reg.Run(s.ctx, time.Second) }()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				s.auth.Sweep()
			}
		}
	}()
	s.waitUDPServing() // requests sent from the UDP listener need it in sipgo's pool
	s.startRegistrations(s.ctx)
	s.startTrunkHealth(s.ctx)
	go func() { <-s.ctx.Done(); s.Close() }()
	return nil
}

func (s *Server) listen(l Listen) error {
	var (
		addr  net.Addr
		serve func() error
		c     io.Closer
	)
	switch l.Transport {
	case "udp":
		pc, err := net.ListenPacket("udp", l.Addr)
		if err != nil {
			return fmt.Errorf("sip: listen udp %s: %w", l.Addr, err)
		}
		if uc, ok := pc.(*net.UDPConn); ok {
			sockbuf.Apply(uc, s.cfg.UDPReadBuffer, "sip.udp_read_buffer", "sip udp "+pc.LocalAddr().String(), s.log)
		}
		addr, c, serve = pc.LocalAddr(), pc, func() error { return s.srv.ServeUDP(pc) }
	case "tcp", "ws":
		raw, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return fmt.Errorf("sip: listen %s %s: %w", l.Transport, l.Addr, err)
		}
		ln := newLimitListener(raw, s.cfg.Limits.MaxConns, s.cfg.Limits.MaxConnsPerIP)
		addr, c = ln.Addr(), ln
		if l.Transport == "tcp" {
			serve = func() error { return s.srv.ServeTCP(ln) }
		} else {
			serve = func() error { return s.srv.ServeWS(ln) }
		}
	case "tls", "wss":
		raw, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return fmt.Errorf("sip: listen %s %s: %w", l.Transport, l.Addr, err)
		}
		ln := newLimitListener(raw, s.cfg.Limits.MaxConns, s.cfg.Limits.MaxConnsPerIP)
		addr, c = ln.Addr(), ln
		tl := tlsListener(ln, s.cfg.TLS)
		if l.Transport == "tls" {
			serve = func() error { return s.srv.ServeTLS(tl) }
		} else {
			serve = func() error { return s.srv.ServeWSS(tl) }
		}
	}
	s.mu.Lock()
	s.addrs[l.Transport] = addr
	s.closers = append(s.closers, c)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Warn("sip listener stopped", "transport", l.Transport, "err", err)
		}
	}()
	s.log.Info("sip listening", "transport", l.Transport, "addr", addr.String())
	return nil
}

// Addr returns the bound address of the first listener of transport (udp, tcp, ...), or nil.
func (s *Server) Addr(transport string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[strings.ToLower(transport)]
}

func (s *Server) port(transport string) int {
	a := s.Addr(transport)
	if a == nil {
		return 0
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

// Close hangs up every call, stops the listeners and waits for the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	calls := make([]*Call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	closers := s.closers
	cancel := s.cancel
	s.mu.Unlock()
	s.stopRegistrations() // un-REGISTER while the transports are still up

	for _, c := range calls {
		ctx, cn := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = c.Hangup(ctx)
		cn()
		c.finish(End{Cause: CauseShutdown})
	}
	if cancel != nil {
		cancel()
	}
	for _, c := range closers {
		_ = c.Close()
	}
	err := s.ua.Close()
	s.wg.Wait()
	return err
}

// guard wraps a request handler so that a panic on hostile input answers 500 instead of
// killing the process.
func (s *Server) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		tx = s.observeIn(req, tx)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("sip handler panic", "panic", r, "req", req.StartLine())
				if tx != nil && !req.IsAck() {
					_ = s.send(req, tx, sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
				}
			}
		}()
		if !s.validRequest(req, tx) {
			return
		}
		h(req, tx)
	}
}

// validRequest rejects requests missing what every handler relies on (RFC 3261 §8.2).
func (s *Server) validRequest(req *sip.Request, tx sip.ServerTransaction) bool {
	bad := func(reason string) bool {
		if !req.IsAck() {
			_ = s.send(req, tx, sip.NewResponseFromRequest(req, 400, reason, nil))
		}
		return false
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return bad("Missing Mandatory Header")
	}
	if req.CSeq().MethodName != req.Method && !(req.IsAck() && req.CSeq().MethodName == sip.ACK) {
		return bad("CSeq Method Mismatch")
	}
	if req.SipVersion != "SIP/2.0" {
		if !req.IsAck() {
			_ = s.send(req, tx, sip.NewResponseFromRequest(req, 505, "Version Not Supported", nil))
		}
		return false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 && req.Method != sip.OPTIONS && !req.IsAck() {
		_ = s.send(req, tx, sip.NewResponseFromRequest(req, 483, "Too Many Hops", nil))
		return false
	}
	if scheme := req.Recipient.Scheme; scheme != "sip" && scheme != "sips" {
		if !req.IsAck() {
			_ = s.send(req, tx, sip.NewResponseFromRequest(req, 416, "Unsupported URI Scheme", nil))
		}
		return false
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(req.Body()) {
		return bad("Content-Length Mismatch")
	}
	if req.From().Params == nil || !req.From().Params.Has("tag") {
		if req.Method == sip.INVITE || req.Method == sip.REGISTER || req.Method == sip.BYE {
			return bad("Missing From Tag")
		}
	}
	if len(req.GetHeaders("Content-Length")) > 1 || len(req.GetHeaders("Call-ID")) > 1 || len(req.GetHeaders("CSeq")) > 1 ||
		len(req.GetHeaders("From")) > 1 || len(req.GetHeaders("To")) > 1 || len(req.GetHeaders("Max-Forwards")) > 1 {
		return bad("Duplicate Single-Valued Header")
	}
	if !req.IsAck() && req.Method != sip.CANCEL {
		if reqs := req.GetHeaders("Require"); len(reqs) > 0 {
			var unsup []string
			for _, h := range reqs {
				for _, opt := range strings.Split(h.Value(), ",") {
					opt = strings.TrimSpace(opt)
					if opt != "" && !strings.EqualFold(opt, "timer") && !(req.Method == sip.REFER && strings.EqualFold(opt, "norefersub")) &&
						!(req.Method == sip.INVITE && strings.EqualFold(opt, "replaces")) {
						unsup = append(unsup, opt)
					}
				}
			}
			if len(unsup) > 0 {
				res := sip.NewResponseFromRequest(req, 420, "Bad Extension", nil)
				res.AppendHeader(sip.NewHeader("Unsupported", strings.Join(unsup, ", ")))
				_ = s.send(req, tx, res)
				return false
			}
		}
	}
	return true
}

func sourceAddr(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		host, _, _ := net.SplitHostPort(req.Source())
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

func (s *Server) trunkFor(src netip.Addr) *trunk {
	for i := range s.trunks {
		for _, n := range s.trunks[i].nets {
			if n.Contains(src) {
				return &s.trunks[i]
			}
		}
	}
	return nil
}

// admit applies the per-source rate limit to out-of-dialog requests.
func (s *Server) admit(req *sip.Request, tx sip.ServerTransaction) bool {
	src := sourceAddr(req)
	if t := s.trunkFor(src); t != nil { // a trunk's SBC gets the trunk's own rate
		if t.rt.allowRequest() {
			return true
		}
		s.respond(req, tx, 503, "Service Unavailable (trunk "+t.Name+": sip.trunks[].request_rate)", sip.NewHeader("Retry-After", "1"))
		return false
	}
	if s.rate.allow(src) {
		return true
	}
	s.respond(req, tx, 503, "Service Unavailable (sip.request_rate)", sip.NewHeader("Retry-After", "5"))
	return false
}

func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := s.send(req, tx, res); err != nil {
		s.log.Debug("respond failed", "code", code, "err", err)
	}
}

// send sends res to req. A final non-2xx answer to an INVITE outside a dialog (a challenge, a
// refusal: sent before any call exists, so possibly to a forged source) is sent statelessly:
// once, with no transaction to retransmit it until an ACK that a spoofed victim never sends
// (RFC 3261 §8.2.7, §17.2.1). A retransmitted INVITE gets one answer per copy, like any
// stateless server: nkbridge never amplifies. Everything else goes through the transaction.
func (s *Server) send(req *sip.Request, tx sip.ServerTransaction, res *sip.Response) error {
	if tx != nil && !statelessAnswer(req, res) {
		return tx.Respond(res)
	}
	s.obs.Response(string(req.Method), res.StatusCode, "out")
	if tx == nil {
		return s.srv.WriteResponse(res)
	}
	inner := tx
	if o, ok := tx.(observedTx); ok {
		inner = o.ServerTransaction
	}
	c, ok := inner.(interface{ Connection() sip.Connection })
	if !ok || c.Connection() == nil {
		inner.Terminate() // no retransmissions, no late 100 Trying
		return s.srv.WriteResponse(res)
	}
	// End the transaction before the answer leaves, so that its ACK (if any) finds none and
	// every copy of the request is answered alike; hold the connection meanwhile (ending the
	// transaction releases its reference).
	conn := c.Connection()
	conn.Ref(1)
	inner.Terminate()
	err := conn.WriteMsg(res)
	_, _ = conn.TryClose()
	return err
}

func statelessAnswer(req *sip.Request, res *sip.Response) bool {
	if req.Method != sip.INVITE || res.StatusCode < 300 {
		return false
	}
	to := req.To()
	return to == nil || to.Params == nil || !to.Params.Has("tag")
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if req.To().Params.Has("tag") {
		if c := s.lookupDialog(req); c != nil {
			c.touch()
		}
	} else if !s.admit(req, tx) {
		return
	}
	s.respond(req, tx, 200, "OK",
		sip.NewHeader("Allow", allowedMethods),
		sip.NewHeader("Accept", "application/sdp, application/dtmf-relay, application/dtmf"),
		sip.NewHeader("Supported", "timer"),
		sip.NewHeader("User-Agent", s.cfg.UserAgent))
}

func (s *Server) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	s.respond(req, tx, 405, "Method Not Allowed", sip.NewHeader("Allow", allowedMethods))
}

func (s *Server) unhandledResponse(res *sip.Response) {
	// A 2xx retransmission for an outbound INVITE whose transaction has gone: re-ACK it.
	if res.IsSuccess() && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE {
		if c := s.lookupDialogResponse(res); c != nil {
			c.reAck()
		}
	}
}
