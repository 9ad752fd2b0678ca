package sipgw

import (
	"context"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/sip"
)

// legEvents receives a SIP leg's in-dialog events (sip.CallEvents) and passes
// them to the session's media: the leg is side of session sessionID.
type legEvents struct {
	g         *Gateway
	sessionID string
	side      Side
	onEnd     func(sip.End)
}

// Reoffer applies a re-INVITE/UPDATE (hold, resume, a new address) to the
// leg's media and answers with its SDP. Without media access the SIP stack
// answers with the mirrored direction.
func (l *legEvents) Reoffer(_ *sip.Call, r sip.Reoffer) ([]byte, error) {
	if l.g.media == nil || l.sessionID == "" {
		return nil, nil
	}
	ans, err := l.g.media.ReofferRTP(l.sessionID, l.side, string(r.SDP))
	if err != nil {
		l.g.log.Info("SIP re-offer refused", "session", l.sessionID, "err", err)
		return nil, err
	}
	l.g.log.Debug("SIP re-offer applied", "session", l.sessionID, "hold", r.Hold)
	return []byte(ans), nil
}

// DTMF plays a digit received by SIP INFO toward the other side of the
// session as RFC 4733.
func (l *legEvents) DTMF(_ *sip.Call, d sip.DTMF) {
	g := l.g
	if g.media == nil || l.sessionID == "" {
		g.log.Info("SIP INFO DTMF dropped (no media access)", "digit", string(d.Digit))
		return
	}
	to := SideFar
	if l.side == SideFar {
		to = SideCaller
	}
	dur := d.Duration
	if dur <= 0 || dur > 2*time.Second {
		dur = g.cfg.DTMFDuration
	}
	sid := l.sessionID
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		defer cancel()
		if err := g.media.SendDTMF(ctx, sid, to, string(d.Digit), int(dur/time.Millisecond)); err != nil {
			g.log.Info("DTMF not relayed", "session", sid, "digit", string(d.Digit), "err", err)
		}
	}()
}

// Ended reports the end of the leg.
func (l *legEvents) Ended(_ *sip.Call, e sip.End) {
	if l.onEnd != nil {
		l.onEnd(e)
	}
}

// watchDTMF sends RFC 4733 digits received from the other side of the
// session as SIP INFO to call, when the SIP peer did not negotiate
// telephone-events (otherwise the media bridge relays them in RTP). The
// returned function stops it; it also stops when the call ends.
func (g *Gateway) watchDTMF(call *sip.Call, sid string, side Side) func() {
	src, ok := g.media.(DTMFSource)
	if !ok || sid == "" || strings.Contains(strings.ToLower(string(call.RemoteSDP())), "telephone-event") {
		return func() {}
	}
	stop := src.OnDTMF(sid, func(from Side, digit rune) {
		if from == side {
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
			defer cancel()
			if err := call.SendDTMF(ctx, digit, g.cfg.DTMFDuration); err != nil {
				g.log.Info("DTMF not sent by SIP INFO", "digit", string(digit), "err", err)
			}
		}()
	})
	return stop
}
