package sip

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// Listen is one listening socket.
type Listen struct {
	// Transport is udp, tcp, tls, ws or wss. tls and wss need a certificate.
	Transport string
	// Addr is host:port; port 0 picks a free port (see Server.Addr).
	Addr string
}

// User is a SIP account: it may REGISTER and place calls, authenticated by digest.
type User struct {
	Name     string
	Password string
	// CanCallSIP allows this user (as an API or SIP caller) to call SIP URLs in the allowed
	// outbound domains and trunks. Without it only registered contacts can be reached.
	CanCallSIP bool
	// SRTP is the user's SRTP mode (srtp.go): off (""), optional or mandatory, for the calls
	// it places and the calls to its registered devices.
	SRTP string
}

// Trunk is a SIP peer trusted by address (inbound) and/or reached with credentials (outbound).
type Trunk struct {
	Name string
	// Networks whose INVITEs are accepted without digest authentication (CIDR, e.g.
	// "203.0.113.0/24" or a single address "127.0.0.1/32").
	Networks []string
	// Host is the trunk's host[:port] for outbound calls; calls to it are allowed and use
	// Username/Password when challenged (401/407).
	Host     string
	Username string
	Password string
	// Hosts are further host[:port]s of the trunk (Host, when set, is the first): a call to any
	// of them goes through the trunk, to the host Balance picks among those that are up; a host
	// that does not take the call (408, 503, no answer) passes it to the next.
	Hosts []string
	// Balance is failover (default: the first host that is up) or round_robin.
	Balance string
	// OptionsInterval > 0 sends OPTIONS to every host at that interval (default 0: off, hosts
	// always up). A host is down after DownAfter (default 3) consecutive failures (no answer
	// within OptionsTimeout (default 2s), or 5xx) and up again after UpAfter (default 2)
	// answers.
	OptionsInterval time.Duration
	OptionsTimeout  time.Duration
	DownAfter       int
	UpAfter         int
	// MaxCalls bounds the concurrent calls with this trunk, both directions (0: unbounded);
	// over it: 503 naming sip.trunks[].max_calls.
	MaxCalls int
	// CPS bounds the new calls per second with this trunk, both directions (burst CPS, at
	// least 1; 0: unbounded); over it: 503 naming sip.trunks[].cps.
	CPS float64
	// RequestRate is the out-of-dialog requests per second accepted from the trunk's Networks,
	// all its addresses together (burst 2x), instead of sip.request_rate per source (default
	// sip.trunk_request_rate).
	RequestRate float64
	// Destinations maps the Request-URI user (DID) of inbound calls from this trunk to what
	// they reach, as the call router reads a dialled user: an API user, an extension, a room
	// (conf-<room>) or a SIP URL (sip:...). Unlisted users are routed as dialled.
	Destinations map[string]string
	// FromUser replaces the From user of calls through the trunk (e.g. the account number the
	// carrier expects); AssertIdentity sends the caller's identity in P-Asserted-Identity;
	// Privacy "id" adds "Privacy: id" (the carrier withholds the caller id). identity.go.
	FromUser       string
	AssertIdentity bool
	Privacy        string
	// DelayedOffer sends calls to the trunk as INVITEs without SDP: the trunk offers in its
	// 200 and the ACK carries our answer (delayedout.go). Not with SRTP.
	DelayedOffer bool
	// SRTP is the trunk's SRTP mode (srtp.go): off (""), optional or mandatory, both
	// directions. Use it with SIP over TLS (hosts with ;transport=tls): the keys travel in the SDP.
	SRTP string
}

// Limits bounds what a source can make the server do.
type Limits struct {
	// MaxMessageSize in bytes (default 16384); larger messages are dropped (UDP) or close the
	// connection (stream transports).
	MaxMessageSize int
	// AuthMaxFailures within AuthWindow blocks a source for AuthBlock (403). Defaults 5, 1m, 5m.
	AuthMaxFailures int
	AuthWindow      time.Duration
	AuthBlock       time.Duration
	// RequestsPerSecond and Burst limit out-of-dialog requests per source IP (default 50/100);
	// excess gets 503 with Retry-After.
	RequestsPerSecond float64
	Burst             int
	// TrunkRequestRate replaces RequestsPerSecond for sources in a trunk's Networks: requests
	// per second for the whole trunk, burst 2x (default sip.trunk_request_rate); a trunk's
	// RequestRate overrides it.
	TrunkRequestRate float64
	// MaxCalls bounds concurrent calls (default 10000); excess INVITEs get 503.
	MaxCalls int
	// MaxCallsPerSource bounds the concurrent inbound calls from one address that is not a
	// trunk (default sip.max_calls_per_source); excess INVITEs get 503.
	MaxCallsPerSource int
	// CallerInviteRate and CallerInviteBurst limit the new calls (INVITEs) one authenticated
	// user places (default sip.caller_invite_rate, sip.caller_invite_burst): excess gets 503
	// with Retry-After.
	// CalleeInviteRate and CalleeInviteBurst limit the calls authenticated users place to one
	// callee (Request-URI user; default sip.callee_invite_rate, sip.callee_invite_burst): excess
	// gets 486. Calls from trunks are bounded by RequestsPerSecond only.
	CallerInviteRate  float64
	CallerInviteBurst int
	CalleeInviteRate  float64
	CalleeInviteBurst int
	// TrackedSources bounds the per-source tables (default 4096).
	TrackedSources int
	// MaxConns and MaxConnsPerIP bound concurrent TCP/TLS/WS connections per listener
	// (defaults 10000 and 100).
	MaxConns, MaxConnsPerIP int
}

// SessionTimer configures RFC 4028 session timers.
type SessionTimer struct {
	// Expires is the Session-Expires we ask for on outbound calls (default 1800s); 0 with
	// Disabled turns timers off.
	Expires time.Duration
	// MinSE is the smallest interval we accept (default 90s, the RFC minimum; tests may lower it).
	MinSE    time.Duration
	Disabled bool
}

// Config configures a Server.
type Config struct {
	// Listen sockets; default one UDP and one TCP on 127.0.0.1:5060.
	Listen []Listen
	// UDPReadBuffer is the kernel receive buffer (SO_RCVBUF) asked for on UDP listeners,
	// in bytes (default sip.udp_read_buffer; negative: the kernel default). A cap by
	// net.core.rmem_max is logged as a warning.
	UDPReadBuffer int
	// TLS is used for tls and wss listeners.
	TLS *tls.Config
	// ExternalHost is the address advertised in Via, Contact and used by media for SDP
	// (default: the host of the first listener).
	ExternalHost string
	// Domain is our SIP domain (default ExternalHost); Realm the digest realm (default Domain).
	Domain string
	Realm  string

	Users  []User
	Trunks []Trunk
	// Registrations are nkbridge's own registrations at providers' registrars (regclient.go).
	Registrations []Registration
	// OutboundDomains are the hosts (names or IP literals, optionally host:port) that calls to
	// SIP URLs may go to, besides trunk hosts. Empty means none: no open relay by default.
	OutboundDomains []string

	// Registration expiry bounds (defaults 60s, 3600s, 3600s).
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// MaxContactsPerUser (default 10).
	MaxContactsPerUser int
	// MaxRegistrationsPerSource bounds the bindings registered from one source IP, over all
	// users (default sip.max_registrations_per_source; a NAT with many phones counts as one
	// source); excess gets 403.
	MaxRegistrationsPerSource int

	// NonceTTL (default 5m); AuthAlgorithms offered (default MD5; "SHA-256" may be added).
	NonceTTL       time.Duration
	AuthAlgorithms []string

	Limits       Limits
	SessionTimer SessionTimer

	// UserAgent header value (default "nkbridge").
	UserAgent string
	// AckTimeout is how long an answered inbound call waits for ACK before BYE (default 32s).
	AckTimeout time.Duration
	// RingTimeout bounds how long an inbound call may stay unanswered before nkbridge rejects
	// it with 480 (default 3 minutes); the router's own ring timeout is normally shorter.
	RingTimeout time.Duration
}

type trunk struct {
	Trunk
	nets []netip.Prefix
	rt   *trunkRuntime // health, balancing, limits (trunkhealth.go)
}

// Validate checks c as New does, building nothing.
func (c Config) Validate() error {
	c.Listen = append([]Listen(nil), c.Listen...)
	if err := c.normalize(); err != nil {
		return err
	}
	_, err := parseTrunks(c.Trunks, c.Limits.TrunkRequestRate)
	return err
}

func (c *Config) normalize() error {
	if len(c.Listen) == 0 {
		addr := defaults.String("sip.listen")
		c.Listen = []Listen{{Transport: "udp", Addr: addr}, {Transport: "tcp", Addr: addr}}
	}
	for i := range c.Listen {
		l := &c.Listen[i]
		l.Transport = strings.ToLower(l.Transport)
		switch l.Transport {
		case "udp", "tcp", "ws":
		case "tls", "wss":
			if c.TLS == nil || len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
				return fmt.Errorf("sip: %s listener %s needs a TLS certificate", l.Transport, l.Addr)
			}
		default:
			return fmt.Errorf("sip: unknown transport %q", l.Transport)
		}
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			return fmt.Errorf("sip: listen address %q: %w", l.Addr, err)
		}
	}
	if c.UDPReadBuffer == 0 {
		c.UDPReadBuffer = defaults.Int("sip.udp_read_buffer")
	}
	if c.ExternalHost == "" {
		h, _, _ := net.SplitHostPort(c.Listen[0].Addr)
		if h == "" || h == "0.0.0.0" || h == "::" {
			return errors.New("sip: ExternalHost is required when listening on a wildcard address")
		}
		c.ExternalHost = h
	}
	if c.Domain == "" {
		c.Domain = c.ExternalHost
	}
	if c.Realm == "" {
		c.Realm = c.Domain
	}
	seen := map[string]bool{}
	for _, u := range c.Users {
		if u.Name == "" || u.Password == "" {
			return errors.New("sip: users need a name and a password")
		}
		if seen[strings.ToLower(u.Name)] {
			return fmt.Errorf("sip: duplicate user %q", u.Name)
		}
		if !ValidSRTP(u.SRTP) {
			return fmt.Errorf("sip: user %s: srtp %q (want off, optional or mandatory)", u.Name, u.SRTP)
		}
		seen[strings.ToLower(u.Name)] = true
	}
	l := &c.Limits
	if l.MaxMessageSize <= 0 {
		l.MaxMessageSize = 16384
	}
	if l.RequestsPerSecond <= 0 {
		l.RequestsPerSecond = defaults.Float("sip.request_rate")
	}
	if l.TrunkRequestRate <= 0 {
		l.TrunkRequestRate = defaults.Float("sip.trunk_request_rate")
	}
	if l.Burst <= 0 {
		l.Burst = int(2 * l.RequestsPerSecond)
	}
	if l.MaxCalls <= 0 {
		l.MaxCalls = defaults.Int("sip.max_calls")
	}
	if l.MaxCallsPerSource <= 0 {
		l.MaxCallsPerSource = defaults.Int("sip.max_calls_per_source")
	}
	if l.CallerInviteRate <= 0 {
		l.CallerInviteRate = defaults.Float("sip.caller_invite_rate")
	}
	if l.CallerInviteBurst <= 0 {
		l.CallerInviteBurst = defaults.Int("sip.caller_invite_burst")
	}
	if l.CalleeInviteRate <= 0 {
		l.CalleeInviteRate = defaults.Float("sip.callee_invite_rate")
	}
	if l.CalleeInviteBurst <= 0 {
		l.CalleeInviteBurst = defaults.Int("sip.callee_invite_burst")
	}
	if l.TrackedSources <= 0 {
		l.TrackedSources = 4096
	}
	if l.MaxConns <= 0 {
		l.MaxConns = 10000
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 100
	}
	st := &c.SessionTimer
	if st.MinSE <= 0 {
		st.MinSE = 90 * time.Second
	}
	if st.Expires <= 0 {
		st.Expires = defaults.Duration("sip.session_expires")
	}
	if st.Expires < st.MinSE {
		st.Expires = st.MinSE
	}
	if c.UserAgent == "" {
		c.UserAgent = "nkbridge"
	}
	c.Registrations = append([]Registration(nil), c.Registrations...)
	regNames := map[string]bool{}
	for i := range c.Registrations {
		if err := c.Registrations[i].normalize(c.Trunks); err != nil {
			return err
		}
		if regNames[c.Registrations[i].Name] {
			return fmt.Errorf("sip: duplicate registration %q", c.Registrations[i].Name)
		}
		regNames[c.Registrations[i].Name] = true
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 32 * time.Second
	}
	if c.RingTimeout <= 0 {
		c.RingTimeout = 3 * time.Minute
	}
	return nil
}

func parseTrunks(ts []Trunk, requestRate float64) ([]trunk, error) {
	out := make([]trunk, 0, len(ts))
	for _, t := range ts {
		if err := t.normalizeHealth(requestRate); err != nil {
			return nil, err
		}
		if !ValidSRTP(t.SRTP) {
			return nil, fmt.Errorf("sip: trunk %s: srtp %q (want off, optional or mandatory)", t.Name, t.SRTP)
		}
		if t.DelayedOffer && t.SRTP != "" && t.SRTP != SRTPOff {
			return nil, fmt.Errorf("sip: trunk %s: delayed_offer does not go with srtp %s (keys cannot be offered in the ACK)", t.Name, t.SRTP)
		}
		tr := trunk{Trunk: t, rt: newTrunkRuntime(t)}
		for _, n := range t.Networks {
			if !strings.Contains(n, "/") {
				a, err := netip.ParseAddr(n)
				if err != nil {
					return nil, fmt.Errorf("sip: trunk %s network %q: %w", t.Name, n, err)
				}
				tr.nets = append(tr.nets, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(n)
			if err != nil {
				return nil, fmt.Errorf("sip: trunk %s network %q: %w", t.Name, n, err)
			}
			tr.nets = append(tr.nets, p.Masked())
		}
		out = append(out, tr)
	}
	return out, nil
}

// hostMatches reports whether target host[:port] is named by pattern (host or host:port).
func hostMatches(pattern, host string, port int) bool {
	ph, pp, err := net.SplitHostPort(pattern)
	if err != nil {
		return strings.EqualFold(strings.Trim(pattern, "[]"), host)
	}
	if !strings.EqualFold(ph, host) {
		return false
	}
	n, _ := strconv.Atoi(pp)
	if port == 0 {
		port = 5060
	}
	return n == port
}
