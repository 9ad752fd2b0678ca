package vertogw

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
)

// Re-attach of echo calls.
//
// A reloaded page has a new PeerConnection and the server must offer to it (verto.attach). The
// media engine cannot re-offer a WebRTC leg of a session, so a re-attached echo call gets a
// new session in which the server offers: a proxy whose far side is the page (WebRTC, the
// engine's offer goes out in verto.attach) and whose caller side is a plain-RTP reflector in
// this package sending every packet back, so the page hears itself again. Routed calls are
// relayed from the start instead (relay.go).

// detachWait is how long a session stop that looks like the page going ("peer closed the
// media") waits for the Verto socket's loss before it ends the call.
const detachWait = 3 * time.Second

// canRecover: echo extension calls survive a reconnect when a proxy backend is there.
func (g *Gateway) canRecover(r Route) bool {
	if r.SessionType != signaling.TypeEcho || !g.relayIP().IsValid() {
		return false
	}
	_, _, err := g.core.Backends().Lookup(signaling.TypeProxy, "")
	return err == nil
}

// canRelay: routed calls are relayed (and so survive a reconnect) when a proxy backend is there.
func (g *Gateway) canRelay(r Route) bool {
	if r.IsExtension() || !g.relayIP().IsValid() {
		return false
	}
	_, _, err := g.core.Backends().Lookup(signaling.TypeProxy, "")
	return err == nil
}

// waitDetach waits a little for the client's socket to go (ch closed); false if it did not.
func (ib *inbound) waitDetach(ch chan struct{}) bool {
	t := time.NewTimer(detachWait)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ib.call.Context().Done():
		return false
	}
}

// recoverableInbound is the events of a call that can be re-attached (verto.Recoverable).
type recoverableInbound struct{ *inbound }

// leaveSession drops the call's current media (the old page's) without ending the call.
func (ib *inbound) leaveSession(reason string) {
	ib.mu.Lock()
	sid, refl := ib.sessionID, ib.refl
	ib.sessionID, ib.refl = "", nil
	ib.mu.Unlock()
	ib.g.core.Bus().UnsubscribeAll(ib)
	if sid != "" {
		_ = ib.g.core.StopSession(sid, signaling.Errorf(signaling.CodeSessionStop, "%s", reason))
	}
	if refl != nil {
		refl.close()
	}
}

// Detached: the page went; its media is released, the call waits for the re-attach.
func (r recoverableInbound) Detached() {
	ib := r.inbound
	ib.mu.Lock()
	if !ib.detached {
		ib.detached = true
		close(ib.detachCh)
	}
	ib.mu.Unlock()
	ib.log.Info("verto call detached, waiting for re-attach")
	if ib.relayed {
		ib.leaveLeg("Verto client detached")
		// Nothing comes from the page meanwhile: no media timeout on the call's session.
		ib.mu.Lock()
		sid := ib.sessionID
		ib.mu.Unlock()
		if sid != "" {
			_, _ = ib.g.core.UpdateSession(ib.call.Context(), sid, "media", map[string]any{"hold": true})
		}
		return
	}
	ib.leaveSession("Verto client detached")
}

// ReattachOffer starts the call's new media and returns the engine's offer for the new page.
func (r recoverableInbound) ReattachOffer(ctx context.Context) (string, error) {
	ib := r.inbound
	if ib.relayed {
		return ib.reofferLeg(ctx)
	}
	ib.leaveSession("Verto client re-attached again") // an earlier attach never answered
	ip := ib.g.relayIP()
	if !ip.IsValid() {
		return "", errors.New("vertogw: no local RTP address for the re-attached echo")
	}
	refl, err := newReflector(&ib.g.wg, ip)
	if err != nil {
		return "", err
	}
	offer := plainrtp.Offer(ip, refl.port(), []plainrtp.Codec{plainrtp.PCMU}, rand.Uint64()>>1)
	res, err := ib.g.core.StartSession(ctx, signaling.SessionRequest{
		Type: signaling.TypeProxy, Owner: ownerKey(ib.inv.SessionID), User: ib.inv.User,
		Offer:   signaling.Desc{"sdp": string(offer.Marshal()), "sdp_type": "rtp"},
		Options: map[string]any{"proxy_type": "webrtc"},
	})
	if err != nil {
		refl.close()
		return "", err
	}
	sid := res.SessionID
	ib.g.core.Bus().Subscribe(ib, signaling.Subscription{Class: "media", Subclass: "session", Type: "stop", ObjID: sid})
	ib.mu.Lock()
	ended := ib.ended
	if !ended {
		ib.sessionID, ib.refl = sid, refl
	}
	ib.mu.Unlock()
	if ended {
		_ = ib.g.core.StopSession(sid, byeError(verto.CauseNormalClearing))
		refl.close()
		return "", verto.ErrCallEnded
	}
	ib.log.Info("verto call re-attaching", "session_id", sid)
	return res.Offer.SDP(), nil
}

// Reattached applies the new page's answer; the echo runs again.
func (r recoverableInbound) Reattached(ctx context.Context, answerSDP string) error {
	ib := r.inbound
	if ib.relayed {
		if err := ib.legAnswered(ctx, answerSDP); err != nil {
			return err
		}
		ib.mu.Lock()
		ib.detached, ib.detachCh = false, make(chan struct{})
		sid, held := ib.sessionID, ib.held
		ib.mu.Unlock()
		if sid != "" {
			_, _ = ib.g.core.UpdateSession(ctx, sid, "media", map[string]any{"hold": held})
		}
		return nil
	}
	ib.mu.Lock()
	sid, refl := ib.sessionID, ib.refl
	ib.mu.Unlock()
	if sid == "" || refl == nil {
		return errors.New("vertogw: no media waiting for the re-attach")
	}
	got, err := ib.g.core.SetAnswer(ctx, sid, signaling.Desc{"sdp": answerSDP, "sdp_type": "webrtc"})
	if err != nil {
		return err
	}
	d, err := plainrtp.ParseSDP([]byte(got.SDP()))
	if err != nil {
		return err
	}
	refl.start(netip.AddrPortFrom(d.Addr.Unmap(), uint16(d.Port)))
	ib.mu.Lock()
	ib.detached, ib.detachCh = false, make(chan struct{})
	ib.mu.Unlock()
	ib.log.Info("verto call re-attached", "session_id", sid)
	return nil
}

// reflector is a plain-RTP endpoint that sends every packet back to its sender.
type reflector struct {
	conn *net.UDPConn
	wg   *sync.WaitGroup
	once sync.Once
}

func newReflector(wg *sync.WaitGroup, ip netip.Addr) (*reflector, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, err
	}
	return &reflector{conn: conn, wg: wg}, nil
}

func (r *reflector) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// start reflects the packets of peer (the engine's endpoint) back to it; others are ignored.
func (r *reflector) start(peer netip.AddrPort) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := r.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != peer {
				continue
			}
			_, _ = r.conn.WriteToUDPAddrPort(buf[:n], peer)
		}
	}()
}

func (r *reflector) close() { r.once.Do(func() { r.conn.Close() }) }
