package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// SIPConfig configures the SIP front end (section sip:).
type SIPConfig struct {
	Enabled bool `yaml:"enabled"`
	// Listen is the UDP and TCP address; TLSListen and WSSListen need tls_cert/tls_key.
	Listen    string `yaml:"listen"`
	TLSListen string `yaml:"tls_listen"`
	WSListen  string `yaml:"ws_listen"`
	WSSListen string `yaml:"wss_listen"`
	TLSCert   string `yaml:"tls_cert"`
	TLSKey    string `yaml:"tls_key"`
	// ExternalHost is advertised in Via/Contact (default: the listen host).
	ExternalHost string `yaml:"external_host"`
	Domain       string `yaml:"domain"`
	Realm        string `yaml:"realm"`
	// Users are SIP accounts (digest needs the password itself). A SIP user is
	// the same identity as the API user of that name: its registered devices
	// ring for call start type user.
	Users []SIPUserConfig `yaml:"users" env:"-"`
	// SIPCallers are API users allowed to call SIP URLs (besides SIP users with call_sip).
	SIPCallers []string         `yaml:"sip_callers"`
	Trunks     []SIPTrunkConfig `yaml:"trunks" env:"-"`
	// Registrations are nkbridge's own registrations at providers' registrars.
	Registrations   []SIPRegistrationConfig `yaml:"registrations" env:"-"`
	OutboundDomains []string                `yaml:"outbound_domains"`
	Extensions      map[string]string       `yaml:"extensions"`
	RoomPrefixes    map[string]string       `yaml:"room_prefixes"`
	SIPPrefixes     []string                `yaml:"sip_prefixes"`
	VertoPrefixes   []string                `yaml:"verto_prefixes"`
	MinExpires      time.Duration           `yaml:"min_expires"`
	MaxExpires      time.Duration           `yaml:"max_expires"`
	AuthMaxFailures int                     `yaml:"auth_max_failures"`
	RequestRate     float64                 `yaml:"request_rate"`
	// TrunkRequestRate replaces request_rate for a trunk's networks (the whole trunk).
	TrunkRequestRate float64 `yaml:"trunk_request_rate"`
	MaxCalls         int     `yaml:"max_calls"`
	// Per-source and per-user bounds (issue 13): concurrent calls from one non-trunk address,
	// bindings registered from one address, new calls per second (and burst) from one
	// authenticated user and to one callee.
	MaxCallsPerSource         int           `yaml:"max_calls_per_source"`
	MaxRegistrationsPerSource int           `yaml:"max_registrations_per_source"`
	CallerInviteRate          float64       `yaml:"caller_invite_rate"`
	CallerInviteBurst         int           `yaml:"caller_invite_burst"`
	CalleeInviteRate          float64       `yaml:"callee_invite_rate"`
	CalleeInviteBurst         int           `yaml:"callee_invite_burst"`
	SessionExpires            time.Duration `yaml:"session_expires"`
	// UserFarSide: the offer inbound calls to a user ring with: webrtc, rtp or auto.
	UserFarSide string `yaml:"user_far_side"`
	// UDPReadBuffer is the SIP UDP socket's kernel receive buffer, bytes; 0: the kernel default.
	UDPReadBuffer int `yaml:"udp_read_buffer"`
}

// SIPUserConfig is one SIP account.
type SIPUserConfig struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	CallSIP  bool   `yaml:"call_sip"`
	// SRTP: off (default), optional or mandatory (SDES, sip/srtp.go).
	SRTP string `yaml:"srtp"`
}

// SIPTrunkConfig is a SIP peer trusted by network (inbound) and/or reached
// with credentials (outbound).
type SIPTrunkConfig struct {
	Name     string   `yaml:"name"`
	Networks []string `yaml:"networks"`
	Host     string   `yaml:"host"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	// Several hosts, their health (OPTIONS keep-alive) and the choice among them.
	Hosts           []string      `yaml:"hosts"`
	Balance         string        `yaml:"balance"`
	OptionsInterval time.Duration `yaml:"options_interval"`
	OptionsTimeout  time.Duration `yaml:"options_timeout"`
	DownAfter       int           `yaml:"down_after"`
	UpAfter         int           `yaml:"up_after"`
	// Per-trunk limits and inbound destination mapping (DID -> what it reaches).
	MaxCalls     int               `yaml:"max_calls"`
	CPS          float64           `yaml:"cps"`
	RequestRate  float64           `yaml:"request_rate"`
	Destinations map[string]string `yaml:"destinations"`
	// Outbound caller identity through the trunk.
	FromUser       string `yaml:"from_user"`
	AssertIdentity bool   `yaml:"assert_identity"`
	Privacy        string `yaml:"privacy"`
	// SRTP: off (default), optional or mandatory (SDES, sip/srtp.go).
	SRTP string `yaml:"srtp"`
	// DelayedOffer: calls to the trunk go as INVITEs without SDP (sip/delayedout.go).
	DelayedOffer bool `yaml:"delayed_offer"`
}

// SIPRegistrationConfig is one registration of nkbridge at a provider's
// registrar (sip.Registration).
type SIPRegistrationConfig struct {
	Name         string        `yaml:"name"`
	Registrar    string        `yaml:"registrar"`
	Transport    string        `yaml:"transport"`
	Domain       string        `yaml:"domain"`
	Username     string        `yaml:"username"`
	AuthUsername string        `yaml:"auth_username"`
	Password     string        `yaml:"password"`
	Expires      time.Duration `yaml:"expires"`
	ContactUser  string        `yaml:"contact_user"`
	Trunk        string        `yaml:"trunk"`
	Timeout      time.Duration `yaml:"timeout"`
	RetryMin     time.Duration `yaml:"retry_min"`
	RetryMax     time.Duration `yaml:"retry_max"`
}

// sipUsers is the SIP user store: SIP accounts plus the API users allowed to
// call SIP URLs.
type sipUsers struct {
	pass    map[string]string
	callers map[string]bool
	srtp    map[string]string
}

func (u sipUsers) Password(user string) (string, bool) { p, ok := u.pass[user]; return p, ok }
func (u sipUsers) CanCallSIP(user string) bool         { return u.callers[user] }
func (u sipUsers) SRTP(user string) string             { return u.srtp[user] }

// wantsSDES reports whether a trunk or user may use SRTP: the media then puts SDES keys in its
// plain-RTP offers (media.Config.SDESOffers), which the SIP side removes where SRTP is off.
func (c SIPConfig) wantsSDES() bool {
	if !c.Enabled {
		return false
	}
	for _, u := range c.Users {
		if u.SRTP == sip.SRTPOptional || u.SRTP == sip.SRTPMandatory {
			return true
		}
	}
	for _, t := range c.Trunks {
		if t.SRTP == sip.SRTPOptional || t.SRTP == sip.SRTPMandatory {
			return true
		}
	}
	return false
}

func (c SIPConfig) check(apiUsers map[string]bool) error {
	if !c.Enabled {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); c.Listen != "" && err != nil {
		return fmt.Errorf("sip.listen %q: want host:port", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("sip.tls_cert and sip.tls_key go together")
	}
	if c.TLSCert == "" && (c.TLSListen != "" || c.WSSListen != "") {
		return fmt.Errorf("sip.tls_listen / sip.wss_listen need sip.tls_cert and sip.tls_key")
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		if u.User == "" || u.Password == "" {
			return fmt.Errorf("sip.users[%d]: user and password are required", i)
		}
		if seen[u.User] {
			return fmt.Errorf("sip.users: %q listed twice", u.User)
		}
		if !sip.ValidSRTP(u.SRTP) {
			return fmt.Errorf("sip.users[%d].srtp %q: want off, optional or mandatory", i, u.SRTP)
		}
		seen[u.User] = true
	}
	for _, n := range c.SIPCallers {
		if !seen[n] && !apiUsers[n] && len(apiUsers) > 0 {
			return fmt.Errorf("sip.sip_callers: %q is neither an API user nor a SIP user", n)
		}
	}
	for i, tr := range c.Trunks {
		for _, n := range tr.Networks {
			if _, err := netip.ParsePrefix(n); err != nil {
				return fmt.Errorf("sip.trunks[%d].networks: %q is not a CIDR range", i, n)
			}
		}
		if len(tr.Networks) == 0 && tr.Host == "" && len(tr.Hosts) == 0 {
			return fmt.Errorf("sip.trunks[%d]: needs networks or host", i)
		}
		if !sip.ValidSRTP(tr.SRTP) {
			return fmt.Errorf("sip.trunks[%d].srtp %q: want off, optional or mandatory", i, tr.SRTP)
		}
		if tr.DelayedOffer && (tr.SRTP == sip.SRTPOptional || tr.SRTP == sip.SRTPMandatory) {
			return fmt.Errorf("sip.trunks[%d].delayed_offer does not go with srtp %s (keys cannot be offered in the ACK)", i, tr.SRTP)
		}
	}
	return nil
}

// sipServerConfig turns the section into the SIP server's configuration.
func (c SIPConfig) sipServerConfig() (sip.Config, sipUsers, error) {
	sc := sip.Config{
		ExternalHost: c.ExternalHost, Domain: c.Domain, Realm: c.Realm,
		OutboundDomains: c.OutboundDomains, MinExpires: c.MinExpires, MaxExpires: c.MaxExpires,
		Limits: sip.Limits{AuthMaxFailures: c.AuthMaxFailures, RequestsPerSecond: c.RequestRate, TrunkRequestRate: c.TrunkRequestRate, MaxCalls: c.MaxCalls,
			MaxCallsPerSource: c.MaxCallsPerSource, CallerInviteRate: c.CallerInviteRate, CallerInviteBurst: c.CallerInviteBurst,
			CalleeInviteRate: c.CalleeInviteRate, CalleeInviteBurst: c.CalleeInviteBurst},
		MaxRegistrationsPerSource: c.MaxRegistrationsPerSource,
		UDPReadBuffer:             kernelDefaultIfZero(c.UDPReadBuffer),
	}
	if c.SessionExpires > 0 {
		sc.SessionTimer.Expires = c.SessionExpires
	}
	if c.Listen != "" {
		sc.Listen = append(sc.Listen, sip.Listen{Transport: "udp", Addr: c.Listen}, sip.Listen{Transport: "tcp", Addr: c.Listen})
	}
	if c.WSListen != "" {
		sc.Listen = append(sc.Listen, sip.Listen{Transport: "ws", Addr: c.WSListen})
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return sip.Config{}, sipUsers{}, fmt.Errorf("sip.tls_cert: %w", err)
		}
		sc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if c.TLSListen != "" {
			sc.Listen = append(sc.Listen, sip.Listen{Transport: "tls", Addr: c.TLSListen})
		}
		if c.WSSListen != "" {
			sc.Listen = append(sc.Listen, sip.Listen{Transport: "wss", Addr: c.WSSListen})
		}
	}
	us := sipUsers{pass: map[string]string{}, callers: map[string]bool{}, srtp: map[string]string{}}
	for _, u := range c.Users {
		us.pass[u.User] = u.Password
		us.srtp[u.User] = u.SRTP
		if u.CallSIP {
			us.callers[u.User] = true
		}
	}
	for _, n := range c.SIPCallers {
		us.callers[n] = true
	}
	for _, tr := range c.Trunks {
		sc.Trunks = append(sc.Trunks, sip.Trunk{Name: tr.Name, Networks: tr.Networks, Host: tr.Host, Username: tr.Username, Password: tr.Password,
			Hosts: tr.Hosts, Balance: tr.Balance, OptionsInterval: tr.OptionsInterval, OptionsTimeout: tr.OptionsTimeout,
			DownAfter: tr.DownAfter, UpAfter: tr.UpAfter, MaxCalls: tr.MaxCalls, CPS: tr.CPS, RequestRate: tr.RequestRate,
			Destinations: tr.Destinations, FromUser: tr.FromUser, AssertIdentity: tr.AssertIdentity, Privacy: tr.Privacy,
			SRTP: tr.SRTP, DelayedOffer: tr.DelayedOffer})
	}
	for _, r := range c.Registrations {
		sc.Registrations = append(sc.Registrations, sip.Registration{Name: r.Name, Registrar: r.Registrar,
			Transport: r.Transport, Domain: r.Domain, Username: r.Username, AuthUsername: r.AuthUsername,
			Password: r.Password, Expires: r.Expires, ContactUser: r.ContactUser, Trunk: r.Trunk,
			Timeout: r.Timeout, RetryMin: r.RetryMin, RetryMax: r.RetryMax})
	}
	return sc, us, nil
}

// wireSIP starts the SIP front end (unless sip.enabled is false): the SIP
// server with its registrar and the gateway routing SIP calls through core.
func wireSIP(ctx context.Context, cfg *Config, log *slog.Logger, core *signaling.Core, h *hooks) error {
	c := cfg.SIP
	if !c.Enabled {
		log.Info("SIP disabled")
		return nil
	}
	api := map[string]bool{}
	for _, u := range cfg.Users {
		api[u.User] = true
	}
	if err := c.check(api); err != nil {
		return err
	}
	sc, users, err := c.sipServerConfig()
	if err != nil {
		return err
	}
	gw, err := sipgw.New(sipgw.Config{
		Route: sipgw.RouteConfig{Extensions: c.Extensions, RoomPrefixes: c.RoomPrefixes,
			SIPPrefixes: c.SIPPrefixes, VertoPrefixes: c.VertoPrefixes},
		RingTime: cfg.Calls.RingTime, UserFarSide: c.UserFarSide,
	}, sipgw.Options{Logger: log, Core: core})
	if err != nil {
		return err
	}
	obs := &sipObserver{} // bound to the metrics by the Metrics hook below
	srv, err := sip.New(sc, sip.Options{Logger: log.With("component", "sip"), Handler: gw, Users: users, Observer: obs})
	if err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	gw.Attach(srv)
	if err := srv.Start(ctx); err != nil {
		gw.Close()
		return fmt.Errorf("sip: %w", err)
	}
	h.Drain = append(h.Drain, gw.Drain)
	h.Stop = append(h.Stop, func() { _ = srv.Close() }, gw.Close) // reverse: gateway, then server
	h.Metrics = append(h.Metrics, func(mt *metrics.Metrics) {
		mt.SIP().RegistrationsFunc(srv.Registrar().Count)
		obs.bind(mt.SIP())
	})
	var addrs []string
	for _, l := range sc.Listen {
		if a := srv.Addr(l.Transport); a != nil {
			addrs = append(addrs, l.Transport+":"+a.String())
		}
	}
	log.Info("SIP started", "listen", addrs, "domain", srv.Config().Domain, "users", len(c.Users),
		"trunks", len(c.Trunks), "registrations", len(c.Registrations), "outbound_domains", c.OutboundDomains)
	return nil
}
