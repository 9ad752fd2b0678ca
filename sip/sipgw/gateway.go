package sipgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/registrar"
)

// Config configures a Gateway.
type Config struct {
	Route RouteConfig
	// Domains are the hosts that mean nkbridge itself in a SIP URL: a call to
	// sip:bob@<domain> rings bob's registered devices instead of leaving.
	// The SIP server's domain and external host belong here.
	Domains []string
	// RingTime is the ring timeout of inbound calls (0: the core's default).
	RingTime time.Duration
	// DTMFDuration is the length of a digit played as RFC 4733 (default 100 ms).
	DTMFDuration time.Duration
	// MaxInbound bounds the inbound calls handled at once (default 10000).
	MaxInbound int
	// UserFarSide is the kind of offer an inbound call to a user rings with:
	// "webrtc" (default: the user's browsers), "rtp" (SIP devices), or "auto"
	// (rtp when the user has registered SIP devices not on WebSocket, else webrtc).
	UserFarSide string
}

// Options are the Gateway's collaborators.
type Options struct {
	Logger *slog.Logger
	// Core is the signaling core; in-dialog features reach a session's media
	// through its capabilities (signaling.MediaAs): a session whose backend has
	// no RTPReofferer gets its re-offers answered by the SIP stack alone, one
	// without DTMFSender has SIP INFO digits logged and dropped.
	Core *signaling.Core
}

// Gateway connects the SIP server to the core. It is a sip.CallHandler.
type Gateway struct {
	cfg    Config
	router *Router
	core   *signaling.Core
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	srv      *sip.Server
	draining bool
	closed   bool
	inbound  int
	sources  map[string]string     // inbound call id -> source ip:port
	legs     map[*sip.Call]*sipLeg // answered dialogs and their places (transfer.go)
	unsubReg func()                // registrar change subscription (Attach)
}

// Validate checks c as New does (routes, user far side), building nothing.
func (c Config) Validate() error {
	if _, err := NewRouter(c.Route); err != nil {
		return err
	}
	switch c.UserFarSide {
	case "", "webrtc", "rtp", "auto":
		return nil
	}
	return fmt.Errorf("sipgw: user far side %q: want webrtc, rtp or auto", c.UserFarSide)
}

// New builds a Gateway. Attach connects it to the SIP server.
func New(cfg Config, o Options) (*Gateway, error) {
	if o.Core == nil {
		return nil, errors.New("sipgw: Options.Core is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, err := NewRouter(cfg.Route)
	if err != nil {
		return nil, err
	}
	if cfg.DTMFDuration <= 0 {
		cfg.DTMFDuration = 100 * time.Millisecond
	}
	if cfg.UserFarSide == "" {
		cfg.UserFarSide = "webrtc"
	}
	if cfg.MaxInbound <= 0 {
		cfg.MaxInbound = 10000
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Gateway{cfg: cfg, router: r, core: o.Core, log: log.With("component", "sipgw"), ctx: ctx, cancel: cancel, sources: map[string]string{}, legs: map[*sip.Call]*sipLeg{}}, nil
}

// Attach connects the gateway to srv (whose Options.Handler should be the
// gateway) and registers the "sip" and "user" call resolvers with the core.
// Call it once, before srv.Start.
func (g *Gateway) Attach(srv *sip.Server) {
	g.mu.Lock()
	g.srv = srv
	g.mu.Unlock()
	c := srv.Config()
	g.cfg.Domains = append(g.cfg.Domains, c.Domain, c.ExternalHost)
	g.core.AddResolver(signaling.CallTypeSIP, signaling.ResolverFunc(g.resolveSIP))
	g.core.AddResolver(signaling.CallTypeUser, signaling.ResolverFunc(g.resolveUser))
	// Operators (admins) see the registrations: core/monitor/list {what: "registrations"}
	// and core/monitor/registration events.
	reg := srv.Registrar()
	g.core.AddLister("registrations", func() []map[string]any {
		bs := reg.All()
		out := make([]map[string]any, len(bs))
		for i, b := range bs {
			out[i] = bindingInfo(b)
		}
		return out
	})
	unsub := reg.Subscribe(func(ch registrar.Change) {
		body := bindingInfo(ch.Binding)
		body["change"] = ch.Kind.String()
		g.core.PublishMonitor(signaling.MonitorRegistration, ch.Binding.AOR, body)
		// Other nodes of a cluster find the phone through the core's presence registry.
		id := ch.Binding.AOR + " " + ch.Binding.Contact
		switch ch.Kind {
		case registrar.Added, registrar.Refreshed:
			g.core.Presence().Add(signaling.Contact{User: ch.Binding.AOR, Kind: signaling.ContactSIP, ID: id,
				Info: map[string]any{"transport": ch.Binding.Transport}})
		case registrar.Removed, registrar.Expired:
			g.core.Presence().Remove(signaling.ContactSIP, id)
		}
	})
	g.mu.Lock()
	g.unsubReg = unsub
	g.mu.Unlock()
}

// bindingInfo describes a registration for operators.
func bindingInfo(b registrar.Binding) map[string]any {
	m := map[string]any{"aor": b.AOR, "contact": b.Contact, "expires": b.Expires.UTC().Format(time.RFC3339),
		"source": b.Source, "transport": b.Transport}
	if b.UserAgent != "" {
		m["user_agent"] = b.UserAgent
	}
	return m
}

// Drain makes the gateway refuse new inbound calls (503) while calls in
// progress go on.
func (g *Gateway) Drain() {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
}

// Close ends every call the gateway handles and waits for its goroutines.
// The SIP server is closed by its owner.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	unsub := g.unsubReg
	g.unsubReg = nil
	g.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	g.cancel()
	g.wg.Wait()
}

// spawn runs f in a goroutine that Close waits for, unless the gateway is
// closed (then it reports false and f does not run).
func (g *Gateway) spawn(f func()) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

func (g *Gateway) server() *sip.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.srv
}

// isLocalHost reports whether host (with an optional port) names nkbridge:
// one of its domains, on no port or on one of its listeners' ports.
func (g *Gateway) isLocalHost(host string) bool {
	h, port := host, ""
	if hh, pp, err := net.SplitHostPort(host); err == nil {
		h, port = hh, pp
	}
	h = strings.Trim(h, "[]")
	match := false
	for _, d := range g.cfg.Domains {
		if d != "" && strings.EqualFold(d, h) {
			match = true
		}
	}
	if !match || port == "" {
		return match
	}
	srv := g.server()
	if srv == nil {
		return false
	}
	for _, tp := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		if a := srv.Addr(tp); a != nil {
			if _, p, err := net.SplitHostPort(a.String()); err == nil && p == port {
				return true
			}
		}
	}
	return false
}

// uriUserHost splits "sip:user@host:port;params" into its user and host:port.
func uriUserHost(u string) (user, host string) {
	_, rest, _ := strings.Cut(u, ":")
	if i := strings.IndexAny(rest, ";?"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return "", rest
}

// resolveSIP is the resolver of call type "sip" (and of calls without a type
// whose callee is a SIP URL).
func (g *Gateway) resolveSIP(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	srv := g.server()
	if srv == nil {
		return nil, nil
	}
	callee := dest.Callee
	if dest.Type == "" && !isSIPURL(callee) {
		return nil, nil
	}
	target, err := SIPTarget(callee)
	if err != nil {
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid SIP URL: %s", callee)
	}
	if user, host := uriUserHost(target); g.isLocalHost(host) && user != "" {
		// One of ours: its registered devices.
		bs := srv.Registrar().Lookup(user)
		if len(bs) == 0 {
			return nil, signaling.Errorf(signaling.CodeNoDestination, "Not registered: %s", target)
		}
		return g.bindingInvitees(bs, dest), nil
	}
	if dest.Caller.User == "" {
		return nil, signaling.Errorf(signaling.CodeUnauthorized, "Only authenticated users may call SIP URLs")
	}
	if _, err := srv.Authorize(dest.Caller.User, target); err != nil {
		switch {
		case errors.Is(err, sip.ErrNotPermitted):
			return nil, signaling.Errorf(signaling.CodeUnauthorized, "User %s may not call SIP URLs: add the user to sip.sip_callers (or, for a SIP user, set call_sip in sip.users)", dest.Caller.User)
		case errors.Is(err, sip.ErrForbiddenTarget):
			return nil, signaling.Errorf(signaling.CodeUnauthorized, "SIP domain not allowed: %s: add its host to sip.outbound_domains, or reach it through a trunk in sip.trunks", target)
		default:
			return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid SIP URL: %s", callee)
		}
	}
	return []signaling.Invitee{&outInvitee{g: g, target: target}}, nil
}

// resolveUser is a resolver of call type "user": the user's registered SIP
// devices.
func (g *Gateway) resolveUser(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	srv := g.server()
	if srv == nil || !isUserName(dest.Callee) {
		return nil, nil
	}
	return g.bindingInvitees(srv.Registrar().Lookup(dest.Callee), dest), nil
}

func (g *Gateway) bindingInvitees(bs []registrar.Binding, dest signaling.Destination) []signaling.Invitee {
	var out []signaling.Invitee
	for i := range bs {
		b := bs[i]
		// A device does not ring for its own call (an inbound call from it).
		if src := strings.TrimPrefix(dest.Caller.Owner, ownerPrefix); src != dest.Caller.Owner && g.ownerSource(src) == b.Source && b.Source != "" {
			continue
		}
		out = append(out, &outInvitee{g: g, binding: &b})
	}
	return out
}

// ownerPrefix starts the core owner key of inbound SIP calls.
const ownerPrefix = "sip:"

// ownerSource returns the source address of a live inbound call.
func (g *Gateway) ownerSource(callID string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sources[callID]
}

// sipEndError maps the end of a SIP leg to the API error that ends its call
// or session.
func sipEndError(e sip.End) *signaling.Error {
	switch e.Cause {
	case sip.CauseRemoteHangup:
		return signaling.Err(signaling.CodeSIPBye)
	case sip.CauseCanceled:
		return signaling.Err(signaling.CodeSIPCancel)
	case sip.CauseSessionExpiry:
		return signaling.Errorf(signaling.CodeSIPBye, "SIP session timer expired")
	case sip.CauseAckTimeout:
		return signaling.Errorf(signaling.CodeSIPSendError, "SIP ACK not received")
	case sip.CauseTransport:
		return signaling.Errorf(signaling.CodeSIPSendError, "SIP transport error: %s", e.Reason)
	case sip.CauseBadAnswer:
		return signaling.Errorf(signaling.CodeSIPNoSDP, "SIP %s", e.Reason)
	case sip.CauseShutdown:
		return signaling.Errorf(signaling.CodeSessionStop, "SIP server stopping")
	case sip.CauseRejected:
		return statusError(e.Code, e.Reason)
	}
	return signaling.Err(signaling.CodeUserStop)
}

// statusError is the API error for a SIP final failure: 2021 call_rejected
// whose text keeps the status ("486 Busy Here").
func statusError(code int, reason string) *signaling.Error {
	if reason == "" {
		reason = "Rejected"
	}
	return signaling.Errorf(signaling.CodeCallRejected, "%d %s", code, reason)
}

// sipStatus maps an API error that ended an inbound call before it was
// answered to the SIP final response sent to the caller.
func sipStatus(e *signaling.Error) (int, string) {
	if e == nil {
		return 480, "Temporarily Unavailable"
	}
	// A SIP status kept in the text (a SIP leg's own rejection) is passed on.
	// (3xx needs a Contact we do not have: only 4xx-6xx are passed on.)
	if e.Code == signaling.CodeCallRejected && len(e.Text) >= 4 && e.Text[3] == ' ' {
		if n, err := strconv.Atoi(e.Text[:3]); err == nil && n >= 400 && n <= 699 {
			if r := oneLine(e.Text[4:]); strings.TrimSpace(r) != "" {
				return n, r
			}
			return n, ""
		}
	}
	switch e.Code {
	case signaling.CodeNoDestination, signaling.CodeUserNotFound, signaling.CodeRoomNotFound, signaling.CodeSessionNotFound:
		return 404, "Not Found"
	case signaling.CodeCallRejected:
		return 486, "Busy Here"
	case signaling.CodeNoAnswer:
		return 480, "Temporarily Unavailable (no answer)"
	case signaling.CodeUnauthorized:
		return 403, "Forbidden"
	case signaling.CodeMissingOffer, signaling.CodeSIPNoSDP, signaling.CodeUnknownSessionType, signaling.CodeInvalidParameters:
		return 488, "Not Acceptable Here"
	case signaling.CodeNoMediaserver:
		return 480, "Temporarily Unavailable (no media server for this destination)"
	case signaling.CodeSessionStop, signaling.CodeInvalidOperation:
		return 503, "Service Unavailable"
	case signaling.CodeOriginatorCancel:
		return 487, "Request Terminated"
	}
	return 480, "Temporarily Unavailable"
}

func fmtErr(e *signaling.Error) string {
	if e == nil {
		return ""
	}
	return fmt.Sprintf("%d %s", e.Code, e.Text)
}
