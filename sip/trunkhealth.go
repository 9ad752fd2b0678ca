package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/nkbridge/nkbridge/internal/ratelimit"
)

// Trunk balancing policies (Trunk.Balance).
const (
	BalanceFailover   = "failover"
	BalanceRoundRobin = "round_robin"
)

// TrunkObserver, when implemented by Options.Observer, hears the health of every trunk host:
// once for each at Start (up), then on every change.
type TrunkObserver interface {
	TrunkHostState(trunk, host string, up bool)
}

// TrunkHostStatus is the health of one trunk host.
type TrunkHostStatus struct {
	Trunk, Host string
	Up          bool
}

// trunkRuntime is a trunk's live state: host health, the round-robin position, concurrent
// calls and the call and request rates.
type trunkRuntime struct {
	name     string
	balance  string
	maxCalls int
	hosts    []*trunkHost

	mu       sync.Mutex
	calls    int
	next     int
	cps      *ratelimit.Bucket // nil: unbounded
	requests ratelimit.Bucket
}

type trunkHost struct {
	addr string // host[:port] as configured
	host string
	port int
	// guarded by trunkRuntime.mu
	up         bool
	fails, oks int
}

func (t *Trunk) normalizeHealth(defaultRequestRate float64) error {
	if t.Host != "" {
		found := false
		for _, h := range t.Hosts {
			found = found || h == t.Host
		}
		if !found {
			t.Hosts = append([]string{t.Host}, t.Hosts...)
		}
	}
	for _, h := range t.Hosts {
		host, port, err := splitHostPortDefault(h)
		if err != nil || host == "" || port <= 0 || port > 65535 {
			return fmt.Errorf("sip: trunk %s host %q: want host[:port]", t.Name, h)
		}
	}
	switch t.Balance {
	case "":
		t.Balance = BalanceFailover
	case BalanceFailover, BalanceRoundRobin:
	default:
		return fmt.Errorf("sip: trunk %s: balance %q: want failover or round_robin", t.Name, t.Balance)
	}
	if t.OptionsInterval < 0 || t.MaxCalls < 0 || t.CPS < 0 || t.RequestRate < 0 || t.DownAfter < 0 || t.UpAfter < 0 {
		return fmt.Errorf("sip: trunk %s: negative options_interval, max_calls, cps, request_rate, down_after or up_after", t.Name)
	}
	if t.Privacy != "" && t.Privacy != "id" && t.Privacy != "none" {
		return fmt.Errorf("sip: trunk %s: privacy %q: want id or none", t.Name, t.Privacy)
	}
	if t.FromUser != "" && !validCallerID(t.FromUser) {
		return fmt.Errorf("sip: trunk %s: from_user %q: want a number or SIP user", t.Name, t.FromUser)
	}
	if t.OptionsTimeout <= 0 {
		t.OptionsTimeout = 2 * time.Second
	}
	if t.OptionsInterval > 0 && t.OptionsTimeout > t.OptionsInterval {
		t.OptionsTimeout = t.OptionsInterval
	}
	if t.DownAfter == 0 {
		t.DownAfter = 3
	}
	if t.UpAfter == 0 {
		t.UpAfter = 2
	}
	if t.RequestRate == 0 {
		t.RequestRate = defaultRequestRate
	}
	return nil
}

func newTrunkRuntime(t Trunk) *trunkRuntime {
	rt := &trunkRuntime{name: t.Name, balance: t.Balance, maxCalls: t.MaxCalls,
		requests: ratelimit.New(t.RequestRate, 2*t.RequestRate)}
	if t.CPS > 0 {
		b := ratelimit.New(t.CPS, max(1, t.CPS))
		rt.cps = &b
	}
	for _, h := range t.Hosts {
		host, port, _ := splitHostPortDefault(h)
		rt.hosts = append(rt.hosts, &trunkHost{addr: h, host: host, port: port, up: true})
	}
	return rt
}

// allowRequest applies the trunk's own request rate (instead of sip.request_rate per source).
func (rt *trunkRuntime) allowRequest() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.requests.Allow(time.Now())
}

// errTrunkCPS and errTrunkCalls name the settings that refused a call.
func (rt *trunkRuntime) errCPS() string {
	return "Service Unavailable (trunk " + rt.name + " over its call rate: sip.trunks[].cps)"
}

func (rt *trunkRuntime) errCalls() string {
	return "Service Unavailable (trunk " + rt.name + " at its concurrent calls limit: sip.trunks[].max_calls)"
}

// allowCall applies the trunk's cps limit to a new call.
func (rt *trunkRuntime) allowCall() bool {
	if rt.cps == nil {
		return true
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.cps.Allow(time.Now())
}

// acquire counts a call against max_calls; false when the trunk is full.
func (rt *trunkRuntime) acquire() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.maxCalls > 0 && rt.calls >= rt.maxCalls {
		return false
	}
	rt.calls++
	return true
}

func (rt *trunkRuntime) release() {
	rt.mu.Lock()
	rt.calls--
	rt.mu.Unlock()
}

// order returns the up hosts in the order to try them: configured order (failover) or
// rotated by one for each call (round_robin).
func (rt *trunkRuntime) order() []*trunkHost {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var up []*trunkHost
	for _, h := range rt.hosts {
		if h.up {
			up = append(up, h)
		}
	}
	if rt.balance == BalanceRoundRobin && len(up) > 1 {
		k := rt.next % len(up)
		rt.next++
		up = append(up[k:], up[:k]...)
	}
	return up
}

// result records an OPTIONS outcome for h and returns whether its state changed.
func (rt *trunkRuntime) result(h *trunkHost, ok bool, downAfter, upAfter int) (changed, up bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if ok {
		h.fails = 0
		h.oks++
		if !h.up && h.oks >= upAfter {
			h.up = true
			return true, true
		}
		return false, h.up
	}
	h.oks = 0
	h.fails++
	if h.up && h.fails >= downAfter {
		h.up = false
		return true, false
	}
	return false, h.up
}

// TrunkHosts returns the health of every trunk host.
func (s *Server) TrunkHosts() []TrunkHostStatus {
	var out []TrunkHostStatus
	for i := range s.trunks {
		rt := s.trunks[i].rt
		rt.mu.Lock()
		for _, h := range rt.hosts {
			out = append(out, TrunkHostStatus{Trunk: rt.name, Host: h.addr, Up: h.up})
		}
		rt.mu.Unlock()
	}
	return out
}

// startTrunkHealth reports every host up and starts the OPTIONS keep-alive of trunks that
// have an OptionsInterval.
func (s *Server) startTrunkHealth(ctx context.Context) {
	obs, _ := s.obs.(TrunkObserver)
	for i := range s.trunks {
		t := &s.trunks[i]
		for _, h := range t.rt.hosts {
			if obs != nil {
				obs.TrunkHostState(t.Name, h.addr, true)
			}
			if t.OptionsInterval <= 0 {
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.keepAlive(ctx, t, h, obs)
			}()
		}
	}
}

func (s *Server) keepAlive(ctx context.Context, t *trunk, h *trunkHost, obs TrunkObserver) {
	tick := time.NewTicker(t.OptionsInterval)
	defer tick.Stop()
	for {
		err := s.ping(ctx, h, t.OptionsTimeout)
		if ctx.Err() != nil {
			return
		}
		changed, up := t.rt.result(h, err == nil, t.DownAfter, t.UpAfter)
		if changed {
			if up {
				s.log.Info("sip trunk host up", "trunk", t.Name, "host", h.addr)
			} else {
				s.log.Warn("sip trunk host down", "trunk", t.Name, "host", h.addr, "err", err,
					"setting", "sip.trunks[].down_after")
			}
			if obs != nil {
				obs.TrunkHostState(t.Name, h.addr, up)
			}
		} else if err != nil {
			s.log.Debug("sip trunk keep-alive failed", "trunk", t.Name, "host", h.addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ping sends one OPTIONS to h: any final answer below 500 means alive.
func (s *Server) ping(ctx context.Context, h *trunkHost, timeout time.Duration) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := sip.Uri{Scheme: "sip", Host: h.host, Port: h.port}
	req := sip.NewRequest(sip.OPTIONS, u)
	req.AppendHeader(s.via("UDP"))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "nkbridge", Host: s.cfg.Domain}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
	cid := sip.CallIDHeader(uuid.NewString())
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	req.SetBody(nil)
	req.SetTransport("UDP")
	s.bindLocal(req, "UDP")
	if err := s.route(tctx, req); err != nil {
		return err
	}
	tx, err := s.sendTx(tctx, req)
	if err != nil {
		return err
	}
	defer tx.Terminate()
	res, err := s.await(tctx, tx)
	switch {
	case errors.Is(err, errTxEnded):
		return errors.New("no answer to OPTIONS")
	case err != nil:
		return fmt.Errorf("no answer to OPTIONS within %s", timeout)
	case res.StatusCode >= 500:
		return fmt.Errorf("OPTIONS answered %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// dialTrunk places a call whose target is at one of a trunk's hosts: the trunk's cps applies,
// the host is chosen by its balance among the hosts that are up, and a host that does not
// answer (408, 503, transport error) passes the call to the next. handled is false when the
// target is not a trunk's.
func (s *Server) dialTrunk(ctx context.Context, o DialOptions) (c *Call, err error, handled bool) {
	var u sip.Uri
	if len(o.Target) > 1024 || sip.ParseUri(o.Target, &u) != nil {
		return nil, nil, false
	}
	t := s.trunkForHost(u.Host, u.Port)
	if t == nil {
		return nil, nil, false
	}
	if !o.Trusted && o.Caller == "" {
		return nil, ErrNotPermitted, true
	}
	if _, err := s.Authorize(o.Caller, o.Target); err != nil {
		return nil, err, true
	}
	caller, display := o.FromUser, o.FromDisplay
	if caller == "" {
		caller = "nkbridge"
	}
	if !t.rt.allowCall() {
		s.log.Warn("sip outbound call refused: trunk over its call rate", "trunk", t.Name, "setting", "sip.trunks[].cps")
		return nil, &StatusError{Code: 503, Reason: t.rt.errCPS()}, true
	}
	hosts := t.rt.order()
	if len(hosts) == 0 {
		s.log.Warn("sip outbound call refused: every host of the trunk is down", "trunk", t.Name)
		return nil, &StatusError{Code: 503, Reason: "Service Unavailable (trunk " + t.Name + ": every host is down)"}, true
	}
	if t.FromUser != "" {
		o.FromUser = t.FromUser
	}
	o.headers = s.identityHeaders(t, caller, display)
	for i, h := range hosts {
		try := o
		tu := *u.Clone()
		tu.Host, tu.Port = h.host, h.port
		if h.port == 5060 && !strings.Contains(h.addr, ":") {
			tu.Port = 0
		}
		try.Target = tu.String()
		c, err = s.dial(ctx, try)
		if err == nil || ctx.Err() != nil || !hostFailed(err) || i == len(hosts)-1 {
			return c, err, true
		}
		s.log.Info("sip trunk host failed the call, trying the next", "trunk", t.Name, "host", h.addr, "err", err)
	}
	return c, err, true
}

// hostFailed reports whether a call attempt's error means the host did not take the call
// (rather than the callee refusing it).
func hostFailed(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code == 408 || se.Code == 503
	}
	var ne net.Error
	return errors.As(err, &ne) || !errors.Is(err, ErrForbiddenTarget) && !errors.Is(err, ErrNotPermitted) && !errors.Is(err, ErrBadTarget)
}

// waitUDPServing waits (at most 1 s) until sipgo serves the UDP listener: until then a request
// sent from it (REGISTER, OPTIONS, INVITE) fails with "address already in use".
func (s *Server) waitUDPServing() {
	a := s.Addr("udp")
	if a == nil {
		return
	}
	pool := s.ua.TransportLayer().Pool("udp")
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if c := pool.Get(a.String()); c != nil {
			c.Ref(-1)
			return
		}
		time.Sleep(time.Millisecond)
	}
}
