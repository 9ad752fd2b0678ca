package sipgw

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
)

// legEvents receives a SIP leg's in-dialog events (sip.CallEvents) and passes
// them to the session's media: the leg is side of session sessionID.
type legEvents struct {
	g         *Gateway
	sessionID string
	side      signaling.Side
	onEnd     func(sip.End)

	mu    sync.Mutex
	leg   *sipLeg       // the answered leg (REFER), set once it is
	q     chan sip.DTMF // digits to play, in order (one worker per leg)
	ended chan struct{}
}

// Reoffer applies a re-INVITE/UPDATE (hold, resume, a new address) to the
// leg's media and answers with its SDP. When the session's media takes no
// re-offers (p2p, a backend without signaling.RTPReofferer) the SIP stack
// answers with the mirrored direction. The caller's answer to our offer
// (r.Answer: the ACK of a delayed-offer INVITE) must reach the media: a
// session that takes no re-offers refuses it, and the call ends.
func (l *legEvents) Reoffer(_ *sip.Call, r sip.Reoffer) ([]byte, error) {
	if l.sessionID == "" {
		return nil, nil
	}
	m, err := signaling.MediaAs[signaling.RTPReofferer](l.g.core, l.sessionID)
	if err != nil {
		if e := signaling.AsError(err); e != nil && e.Code == signaling.CodeNotImplemented && !r.Answer {
			l.g.log.Debug("SIP re-offer answered by the SIP stack", "session_id", l.sessionID, "why", e.Text)
			return nil, nil
		}
		l.g.log.Info("SIP re-offer refused", "session_id", l.sessionID, "err", err)
		return nil, err
	}
	ans, err := m.ReofferRTP(l.side, string(r.SDP))
	if err != nil {
		l.g.log.Info("SIP re-offer refused", "session_id", l.sessionID, "err", err)
		return nil, err
	}
	l.g.log.Debug("SIP re-offer applied", "session_id", l.sessionID, "hold", r.Hold)
	return []byte(ans), nil
}

// DTMF plays a digit received by SIP INFO toward the other side of the
// session as RFC 4733 (digits in order, by one worker per leg).
func (l *legEvents) DTMF(_ *sip.Call, d sip.DTMF) {
	g := l.g
	if l.sessionID == "" {
		g.log.Info("SIP INFO DTMF dropped (no session)", "digit", string(d.Digit))
		return
	}
	l.mu.Lock()
	if l.ended == nil {
		l.ended = make(chan struct{})
	}
	if l.q == nil {
		l.q = make(chan sip.DTMF, 32)
		q, ended := l.q, l.ended
		g.spawn(func() { l.playDigits(q, ended) })
	}
	q := l.q
	l.mu.Unlock()
	select {
	case q <- d:
	default:
		g.log.Info("SIP INFO DTMF dropped (too many queued)", "session_id", l.sessionID, "digit", string(d.Digit))
	}
}

func (l *legEvents) playDigits(q <-chan sip.DTMF, ended <-chan struct{}) {
	g := l.g
	to := l.side.Other()
	for {
		select {
		case d := <-q:
			dur := d.Duration
			if dur <= 0 || dur > 2*time.Second {
				dur = g.cfg.DTMFDuration
			}
			m, err := signaling.MediaAs[signaling.DTMFSender](g.core, l.sessionID)
			if err == nil {
				ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
				err = m.SendDTMF(ctx, to, string(d.Digit), int(dur/time.Millisecond))
				cancel()
			}
			if err != nil {
				g.log.Info("DTMF not relayed", "session_id", l.sessionID, "digit", string(d.Digit), "err", err)
			}
		case <-ended:
			return
		case <-g.ctx.Done():
			return
		}
	}
}

// Ended reports the end of the leg.
func (l *legEvents) Ended(_ *sip.Call, e sip.End) {
	l.mu.Lock()
	if l.ended == nil {
		l.ended = make(chan struct{})
	}
	select {
	case <-l.ended:
	default:
		close(l.ended)
	}
	l.mu.Unlock()
	if l.onEnd != nil {
		l.onEnd(e)
	}
}

// watchDTMF sends RFC 4733 digits received from the other side of the
// session as SIP INFO to call, when the SIP peer did not negotiate
// telephone-events (otherwise the media bridge relays them in RTP). The
// returned function stops it; it also stops when the call ends.
func (g *Gateway) watchDTMF(call *sip.Call, sid string, side signaling.Side) func() {
	if sid == "" || strings.Contains(strings.ToLower(string(call.RemoteSDP())), "telephone-event") {
		return func() {}
	}
	src, err := signaling.MediaAs[signaling.DTMFObserver](g.core, sid)
	if err != nil {
		g.log.Debug("RFC 4733 digits not relayed by SIP INFO", "session_id", sid, "err", err)
		return func() {}
	}
	q := make(chan rune, 32)
	stopped := make(chan struct{})
	stop := src.OnDTMF(func(from signaling.Side, digit rune) {
		if from == side {
			return
		}
		select {
		case q <- digit:
		default:
			g.log.Info("RFC 4733 digit dropped (too many queued)", "session_id", sid, "digit", string(digit))
		}
	})
	g.spawn(func() {
		for {
			select {
			case d := <-q:
				ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
				if err := call.SendDTMF(ctx, d, g.cfg.DTMFDuration); err != nil {
					g.log.Info("DTMF not sent by SIP INFO", "digit", string(d), "err", err)
				}
				cancel()
			case <-stopped:
				return
			case <-call.Done():
				return
			case <-g.ctx.Done():
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			close(stopped)
		})
	}
}
