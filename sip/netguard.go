package sip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

// errNoDNS is what sipgo's own resolver returns: every name nkbridge sends to is resolved by
// the Server itself (allowed domains only), so a hostile Via or Contact can never trigger a DNS
// lookup.
var errNoDNS = errors.New("sip: DNS lookups are done by nkbridge, not the SIP stack")

func denyResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errNoDNS
	}}
}

// dialGuard allows outgoing stream connections only to destinations nkbridge itself chose to
// send a request to. sipgo otherwise dials the Via address when a response's connection has
// gone, which a peer could abuse to make us connect anywhere.
type dialGuard struct {
	mu  sync.Mutex
	m   map[netip.AddrPort]time.Time
	max int
}

func newDialGuard() *dialGuard { return &dialGuard{m: make(map[netip.AddrPort]time.Time), max: 65536} }

func (g *dialGuard) permit(ap netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if len(g.m) >= g.max {
		for k, exp := range g.m {
			if now.After(exp) {
				delete(g.m, k)
			}
		}
	}
	if len(g.m) < g.max {
		g.m[ap] = now.Add(2 * time.Minute)
	}
}

func (g *dialGuard) allowed(address string) bool {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, ok := g.m[ap]
	return ok && time.Now().Before(exp)
}

func (g *dialGuard) dialer(laddr net.Addr) net.Dialer {
	return net.Dialer{Timeout: 10 * time.Second, LocalAddr: laddr,
		Control: func(network, address string, _ syscall.RawConn) error {
			if !g.allowed(address) {
				return errors.New("sip: refusing to dial " + address + " (not a destination we chose)")
			}
			return nil
		}}
}

// route resolves the destination of a request we originate (first Route, else Request-URI) to
// an IP literal with nkbridge's resolver, pins it with SetDestination, and permits the dial.
func (s *Server) route(ctx context.Context, req *sip.Request) error {
	u := &req.Recipient
	if r := req.Route(); r != nil {
		u = &r.Address
	}
	tp := req.Transport()
	port := u.Port
	if port == 0 {
		port = sip.DefaultPort(tp)
	}
	var ip netip.Addr
	if a, err := netip.ParseAddr(u.Host); err == nil {
		ip = a.Unmap()
	} else {
		ips, err := s.resolver.LookupNetIP(ctx, "ip4", u.Host)
		if err != nil || len(ips) == 0 {
			return &StatusError{Code: 503, Reason: "Service Unavailable (cannot resolve " + u.Host + ")"}
		}
		ip = ips[0].Unmap()
	}
	ap := netip.AddrPortFrom(ip, uint16(port))
	req.SetDestination(net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if sip.IsReliable(tp) {
		s.dials.permit(ap)
	}
	return nil
}

// route picks the destination of a request the call sends: the call's flow (the connection or
// address the peer registered or called from) when it has one and no route set applies,
// otherwise normal routing.
func (c *Call) route(ctx context.Context, req *sip.Request) error {
	c.mu.Lock()
	flow := c.flow
	c.mu.Unlock()
	if flow == "" || req.Route() != nil {
		return c.s.route(ctx, req)
	}
	ap, err := netip.ParseAddrPort(flow)
	if err != nil {
		return c.s.route(ctx, req)
	}
	req.SetDestination(flow)
	if sip.IsReliable(req.Transport()) {
		c.s.dials.permit(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return nil
}
