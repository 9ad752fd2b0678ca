package media

// Re-attaching a WebRTC peer that lost its PeerConnection (a page reload during a Verto call):
// the side is detached (its failures and silence tolerated for a grace period), then a new
// WebRTC leg offers to the new PeerConnection and, once answered, replaces the old leg while
// the rest of the session (far leg, echo, tap) carries on.

import (
	"context"
	"fmt"
	"time"
)

// Detach tolerates the loss of side's peer for up to grace: while detached, the side's media
// timeout does not run and its ICE/DTLS failure or close does not stop the session. A
// successful SetReofferAnswer re-attaches the side; when grace runs out first the session
// stops (OnStop with CausePeerClosed). Calling Detach again restarts the grace period;
// grace <= 0 re-attaches the side as it is (its current leg must then carry media again).
func (s *Session) Detach(side Side, grace time.Duration) error {
	if side != SideCaller && side != SideFar {
		return fmt.Errorf("media: bad side %d", side)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || !s.active || s.legs[side] == nil {
		return ErrState
	}
	if grace <= 0 {
		s.detached[side].Store(0)
		s.legs[side].touch()
		return nil
	}
	s.detached[side].Store(time.Now().Add(grace).UnixNano())
	return nil
}

// DeferPeerClose makes an ICE/DTLS failure or close of side's WebRTC peer stop the session
// only after d, and not at all if the side is detached (Detach) meanwhile: signalling often
// learns that a page reloaded slightly after the media does. d <= 0 restores immediate stops.
func (s *Session) DeferPeerClose(side Side, d time.Duration) error {
	if side != SideCaller && side != SideFar {
		return fmt.Errorf("media: bad side %d", side)
	}
	s.closeLinger[side].Store(int64(max(d, 0)))
	return nil
}

// Detached reports whether side is detached (waiting for a re-attach).
func (s *Session) Detached(side Side) bool {
	if side != SideCaller && side != SideFar {
		return false
	}
	return s.detached[side].Load() != 0
}

// ReofferWebRTC creates a new WebRTC leg for side (on the engine's shared ports) and returns
// nkbridge's offer for the peer's new PeerConnection; SetReofferAnswer completes the swap.
// The current leg keeps working meanwhile. Only WebRTC legs of an active session can be
// re-offered (plain RTP legs use ReofferRTP). A second call replaces a pending offer.
func (s *Session) ReofferWebRTC(ctx context.Context, side Side) (Description, error) {
	if side != SideCaller && side != SideFar {
		return Description{}, fmt.Errorf("media: bad side %d", side)
	}
	s.mu.Lock()
	old, ok := s.legs[side].(*webrtcLeg)
	active, stopped := s.active, s.stopped
	s.mu.Unlock()
	if !ok || !active || stopped {
		return Description{}, fmt.Errorf("%w: side %s is not an active WebRTC leg", ErrState, side)
	}
	on := old.negotiated()
	if on == nil {
		return Description{}, ErrState
	}
	nl, err := newWebRTCLeg(s, side)
	if err != nil {
		return Description{}, err
	}
	// Offer what the old leg negotiated first, so the bridge keeps the same codecs.
	off, err := nl.offer(ctx, on.audio, on.videoDir, on.video)
	if err != nil {
		nl.close()
		return Description{}, err
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		nl.close()
		return Description{}, ErrClosed
	}
	prev := s.reoffer[side]
	s.reoffer[side] = nl
	s.mu.Unlock()
	if prev != nil {
		prev.close()
	}
	return Description{Kind: KindWebRTC, SDP: off}, nil
}

// SetReofferAnswer applies the peer's answer to ReofferWebRTC's offer and makes the new leg
// the session's leg of side: the pipes from and to it (bridge, echo, tap) are rewired, the
// outgoing sequence numbers and timestamps continue where the old leg's stopped, the old leg
// is closed and the side is re-attached. On error the pending leg is dropped and the session
// stays as it was (still detached if it was).
func (s *Session) SetReofferAnswer(ctx context.Context, side Side, answer Description) error {
	if side != SideCaller && side != SideFar {
		return fmt.Errorf("media: bad side %d", side)
	}
	if answer.Kind != KindWebRTC {
		return ErrBadKind
	}
	s.mu.Lock()
	nl := s.reoffer[side]
	s.reoffer[side] = nil
	s.mu.Unlock()
	if nl == nil {
		return fmt.Errorf("%w: no re-offer pending for %s", ErrState, side)
	}
	if err := ctx.Err(); err != nil {
		nl.close()
		return err
	}
	if _, err := nl.setRemoteAnswer(answer.SDP); err != nil {
		nl.close()
		return err
	}
	s.mu.Lock()
	old := s.legs[side]
	if s.stopped || old == nil {
		s.mu.Unlock()
		nl.close()
		return ErrClosed
	}
	ps := s.pipes.Load()
	if ps == nil {
		s.mu.Unlock()
		nl.close()
		return ErrClosed
	}
	taps := map[*tapLeg]*tapLeg{}
	repl := func(l leg) leg {
		switch {
		case l == old:
			return nl
		case l == nil:
			return nil
		}
		if tl, ok := l.(*tapLeg); ok && tl.caller == old {
			if n := taps[tl]; n != nil {
				return n
			}
			n := &tapLeg{s: s, caller: nl}
			n.tap.Store(tl.tap.Load())
			taps[tl] = n
			return n
		}
		return l
	}
	nps := &[2][2]*pipe{}
	bps := int(s.bitrate.Load())
	for i, row := range ps {
		for k, p := range row {
			if p == nil {
				continue
			}
			np := newPipe(s, repl(p.src), repl(p.dst), p.k)
			p.mu.Lock()
			if p.started {
				np.lastOutSeq, np.lastOutTS = p.lastOutSeq, p.lastOutTS
			}
			p.mu.Unlock()
			if bps > 0 && np.k == kindAudio {
				np.setBitrate(bps)
			}
			nps[i][k] = np
		}
	}
	in, out := old.counters()
	s.retired[side][0] += in
	s.retired[side][1] += out
	for sd, l := range s.legs {
		if n := repl(l); n != l {
			s.setLegLocked(Side(sd), n)
		}
	}
	nl.touch()
	s.pipes.Store(nps)
	s.detached[side].Store(0)
	s.mu.Unlock()
	old.close()
	s.sendBitrateCap()
	s.log.Info("leg replaced", "side", side)
	return nil
}
