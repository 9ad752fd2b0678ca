package vertogw

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
)

// Relayed calls: how routed calls survive a page reload.
//
// The engine cannot give a session's WebRTC leg a new PeerConnection, so a routed call with
// media is built from two proxy sessions joined by a plain-RTP relay in this package, on the
// engine's own RTP address (so relayed packets never leave the host):
//
//	page (WebRTC) ⇄ leg session (proxy, far side RTP) ⇄ relay ⇄ call session (proxy, caller side RTP) ⇄ far side
//
// The call session is the router's (linked to the call: answers, DTMF, hold go to it); the leg
// session only carries the page. The relay answers the leg's RTP offer with the page's own
// codec (Opus from a browser), and offers the same codec with the same payload types to the
// call session, so packets cross the relay untouched. When the page reloads the leg session
// ends and the call waits; the re-attach starts a new leg session offering to the new page
// (verto.attach) whose RTP side is the same relay port, and the call goes on.

// relay joins two plain-RTP endpoints: every packet from one side's peer goes to the other's.
type relay struct {
	ip   netip.Addr // a local address of the engine's RTP (loopback by default)
	s    [2]*net.UDPConn
	peer [2]atomic.Pointer[netip.AddrPort]
	wg   *sync.WaitGroup
	once sync.Once
}

func newRelay(wg *sync.WaitGroup, ip netip.Addr) (*relay, error) {
	r := &relay{wg: wg, ip: ip}
	for i := range r.s {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			r.close()
			return nil, err
		}
		r.s[i] = c
	}
	for i := range r.s {
		wg.Add(1)
		go r.forward(i)
	}
	return r, nil
}

func (r *relay) port(i int) int { return r.s[i].LocalAddr().(*net.UDPAddr).Port }

// setPeer sets where side i's peer is, from an SDP it sent (an offer or an answer).
func (r *relay) setPeer(i int, sdp string) error {
	d, err := plainrtp.ParseSDP([]byte(sdp))
	if err != nil {
		return err
	}
	if !d.Addr.IsValid() || d.Port == 0 {
		return fmt.Errorf("vertogw: relay peer without address in SDP")
	}
	ap := netip.AddrPortFrom(d.Addr.Unmap(), uint16(d.Port))
	r.peer[i].Store(&ap)
	return nil
}

func (r *relay) forward(i int) {
	defer r.wg.Done()
	in, out := r.s[i], r.s[1-i]
	buf := make([]byte, 1500)
	for {
		n, from, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		// Only the engine's endpoint of this side is listened to: nobody else can inject
		// packets into the call.
		if src := r.peer[i].Load(); src == nil || *src != netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) {
			continue
		}
		if to := r.peer[1-i].Load(); to != nil {
			_, _ = out.WriteToUDPAddrPort(buf[:n], *to)
		}
	}
}

func (r *relay) close() {
	r.once.Do(func() {
		for _, c := range r.s {
			if c != nil {
				c.Close()
			}
		}
	})
}

// relayIP is the address relays and reflectors bind: the engine's RTP address when it is an
// address of this host (loopback by default); invalid when there is none (NAT public_ip):
// then calls are not relayed and not kept across reconnects.
func (g *Gateway) relayIP() netip.Addr {
	rm, ok := g.media.(RelayMedia)
	if !ok {
		return netip.Addr{}
	}
	ip := rm.RTPAddr()
	if !ip.IsValid() || ip.IsUnspecified() {
		return netip.Addr{}
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return netip.Addr{}
	}
	c.Close()
	return ip
}

// RelayMedia is a Media that says where its plain-RTP endpoints are (the engine's advertised
// RTP address); relays for re-attachable calls bind there.
type RelayMedia interface {
	Media
	RTPAddr() netip.Addr
}

// Relay sides.
const (
	relayLeg  = 0 // towards the leg session (the page)
	relayCall = 1 // towards the call session (the far side)
)

// startRelayed starts the leg session (the page's offer, far side RTP answered by the relay)
// and the call session (offered by the relay, far side of kind far) and returns the call
// session's id.
func (ib *inbound) startRelayed(ctx context.Context, offer signaling.Desc, far string) (string, error) {
	g := ib.g
	owner := ownerKey(ib.inv.SessionID)
	rl, err := newRelay(&g.wg, g.relayIP())
	if err != nil {
		return "", signaling.Errorf(signaling.CodeInternalError, "relay: %v", err)
	}
	fail := func(sids ...string) {
		rl.close()
		for _, s := range sids {
			_ = g.core.StopSession(s, signaling.Errorf(signaling.CodeSessionStop, "Verto call setup failed"))
		}
	}
	leg, err := g.core.StartSession(ctx, signaling.SessionRequest{Type: signaling.TypeProxy, Offer: offer,
		Owner: owner, User: ib.inv.User, Options: map[string]any{"proxy_type": "rtp"}})
	if err != nil {
		rl.close()
		return "", err
	}
	legOffer, err := plainrtp.ParseSDP([]byte(leg.Offer.SDP()))
	if err != nil {
		fail(leg.SessionID)
		return "", signaling.Errorf(signaling.CodeInternalError, "relay: leg offer: %v", err)
	}
	ans, err := plainrtp.Answer(legOffer, rl.ip, rl.port(relayLeg), plainrtp.DefaultCodecs(), nil)
	if err != nil {
		fail(leg.SessionID)
		return "", signaling.Errorf(signaling.CodeInternalError, "relay: leg answer: %v", err)
	}
	pageAnswer, err := g.core.SetAnswer(ctx, leg.SessionID, signaling.Desc{"sdp": string(ans.Marshal()), "sdp_type": "rtp"})
	if err != nil {
		fail(leg.SessionID)
		return "", err
	}
	if err := rl.setPeer(relayLeg, leg.Offer.SDP()); err != nil {
		fail(leg.SessionID)
		return "", signaling.Errorf(signaling.CodeInternalError, "relay: %v", err)
	}
	// Nothing flows to the page before the far side answers: no media timeout meanwhile.
	_, _ = g.core.UpdateSession(ctx, leg.SessionID, "media", map[string]any{"hold": true})

	callOffer := plainrtp.Offer(rl.ip, rl.port(relayCall), ans.Codecs, rand.Uint64()>>1)
	cdesc := offer.Clone()
	cdesc["sdp"], cdesc["sdp_type"] = string(callOffer.Marshal()), "rtp"
	cs, err := g.core.StartSession(ctx, signaling.SessionRequest{Type: signaling.TypeProxy, Offer: cdesc,
		Owner: owner, User: ib.inv.User, Options: map[string]any{"proxy_type": far}})
	if err != nil {
		fail(leg.SessionID)
		return "", err
	}
	g.core.Bus().Subscribe(ib, signaling.Subscription{Class: "media", Subclass: "session", Type: "stop", ObjID: leg.SessionID})
	ib.mu.Lock()
	ib.legID, ib.relay, ib.legCodecs, ib.pageAnswer = leg.SessionID, rl, ans.Codecs, pageAnswer.SDP()
	ib.mu.Unlock()
	ib.log.Info("verto call relayed", "leg_session", leg.SessionID, "call_session", cs.SessionID, "codec", ans.Codecs[0].Name)
	return cs.SessionID, nil
}

// farAnswered: the call session has its answer (sdp: the far side's RTP answer to the relay).
func (ib *inbound) farAnswered(sdp string) error {
	ib.mu.Lock()
	rl, leg := ib.relay, ib.legID
	ib.mu.Unlock()
	if sdp != "" {
		if err := rl.setPeer(relayCall, sdp); err != nil {
			return err
		}
	}
	if leg != "" {
		_, _ = ib.g.core.UpdateSession(ib.call.Context(), leg, "media", map[string]any{"hold": false})
	}
	return nil
}

// leaveLeg drops the page's leg session (the page went) and keeps the call.
func (ib *inbound) leaveLeg(reason string) {
	ib.mu.Lock()
	leg := ib.legID
	ib.legID = ""
	rl := ib.relay
	ib.mu.Unlock()
	if rl != nil {
		rl.peer[relayLeg].Store(nil)
	}
	if leg != "" {
		ib.g.core.Bus().Unsubscribe(ib, signaling.Subscription{Class: "media", Subclass: "session", Type: "stop", ObjID: leg})
		_ = ib.g.core.StopSession(leg, signaling.Errorf(signaling.CodeSessionStop, "%s", reason))
	}
}

// reofferLeg starts a new leg session for a re-attaching page and returns its WebRTC offer.
func (ib *inbound) reofferLeg(ctx context.Context) (string, error) {
	ib.leaveLeg("Verto client re-attached again")
	ib.mu.Lock()
	rl, codecs := ib.relay, ib.legCodecs
	ib.mu.Unlock()
	offer := plainrtp.Offer(rl.ip, rl.port(relayLeg), codecs, rand.Uint64()>>1)
	res, err := ib.g.core.StartSession(ctx, signaling.SessionRequest{
		Type: signaling.TypeProxy, Owner: ownerKey(ib.inv.SessionID), User: ib.inv.User,
		Offer:   signaling.Desc{"sdp": string(offer.Marshal()), "sdp_type": "rtp"},
		Options: map[string]any{"proxy_type": "webrtc"},
	})
	if err != nil {
		return "", err
	}
	ib.g.core.Bus().Subscribe(ib, signaling.Subscription{Class: "media", Subclass: "session", Type: "stop", ObjID: res.SessionID})
	ib.mu.Lock()
	ended := ib.ended
	if !ended {
		ib.legID = res.SessionID
	}
	ib.mu.Unlock()
	if ended {
		_ = ib.g.core.StopSession(res.SessionID, signaling.Errorf(signaling.CodeSessionStop, "Verto call ended"))
		return "", fmt.Errorf("vertogw: call ended")
	}
	ib.log.Info("verto call re-attaching", "leg_session", res.SessionID)
	return res.Offer.SDP(), nil
}

// legAnswered applies the re-attached page's answer to the new leg session.
func (ib *inbound) legAnswered(ctx context.Context, answer string) error {
	ib.mu.Lock()
	leg, rl := ib.legID, ib.relay
	ib.mu.Unlock()
	if leg == "" {
		return fmt.Errorf("vertogw: no leg waiting for the re-attach")
	}
	got, err := ib.g.core.SetAnswer(ctx, leg, signaling.Desc{"sdp": answer, "sdp_type": "webrtc"})
	if err != nil {
		return err
	}
	if err := rl.setPeer(relayLeg, got.SDP()); err != nil {
		return err
	}
	ib.log.Info("verto call re-attached", "leg_session", leg)
	return nil
}
