package fsbridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/signaling"
)

// fsSession is the media of one session on FreeSWITCH: a SIP leg from the media engine
// and the FreeSWITCH channel it created. It implements signaling.Media.
type fsSession struct {
	b     *Backend
	id    string
	token string // X-NKB-Leg of this session's call
	rep   signaling.MediaReporter
	log   *slog.Logger
	found chan struct{} // closed when the channel is known

	abortOnce sync.Once
	abort     chan struct{} // closed when the start must give up (leg ended)

	mu        sync.Mutex
	leg       Leg
	channel   string
	place     placement // where the channel is
	moving    int       // moveTo calls in progress
	gen       uint64    // counts moves (started and placed)
	member    string    // conference member id
	live      bool      // start completed
	stopped   bool      // Stop called or start failed
	gone      *signaling.Error
	chanEnded bool // FreeSWITCH reported the channel's end
}

func (s *fsSession) channelID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.channel
}

func (s *fsSession) abortStart() {
	s.abortOnce.Do(func() {
		if s.abort != nil {
			close(s.abort)
		}
	})
}

// channelEnded: FreeSWITCH says the channel is gone.
func (s *fsSession) channelEnded(e *signaling.Error) {
	s.mu.Lock()
	s.chanEnded = true
	report := s.live && !s.stopped
	if !s.live && s.gone == nil {
		s.gone = e
	}
	s.mu.Unlock()
	if report {
		s.rep.Stopped(e)
	}
}

// legEnded: the SIP leg ended by itself (BYE from FreeSWITCH, media failure).
func (s *fsSession) legEnded(e *signaling.Error) {
	s.mu.Lock()
	if e != nil && e.Code == signaling.CodeFSChannelStop {
		s.chanEnded = true // FreeSWITCH hung up: no uuid_kill needed
	}
	report := s.live && !s.stopped
	if !s.live && s.gone == nil {
		s.gone = e
	}
	s.mu.Unlock()
	if report {
		s.rep.Stopped(e)
		return
	}
	s.abortStart()
}

// forget removes the session from the backend's maps. The channel of a session in an
// mcu room is remembered (departed) for the del-member FreeSWITCH sends once it has
// killed the channel.
func (s *fsSession) forget() {
	b := s.b
	now := time.Now()
	b.mu.Lock()
	if b.sessions[s.id] == s {
		delete(b.sessions, s.id)
	}
	delete(b.repoll, s)
	for ch, d := range b.departed {
		if now.After(d.until) {
			delete(b.departed, ch)
		}
	}
	s.mu.Lock()
	if s.channel != "" && b.byChannel[s.channel] == s {
		delete(b.byChannel, s.channel)
		if s.place.typ == signaling.TypeMCU {
			b.departed[s.channel] = departure{sid: s.id, until: now.Add(b.opts.ChannelTimeout)}
		}
	}
	s.mu.Unlock()
	b.mu.Unlock()
}

// teardown undoes a failed start: the leg is hung up now (FreeSWITCH drops the channel
// on BYE), the channel is also killed in the background in case the BYE is lost.
func (s *fsSession) teardown() {
	s.mu.Lock()
	s.stopped = true
	leg, ch, ended, place := s.leg, s.channel, s.chanEnded, s.place
	s.mu.Unlock()
	s.forget()
	if place.typ == signaling.TypeMCU {
		s.b.leaveRoom(place.room, s.id)
	}
	if leg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.b.opts.CommandTimeout)
		leg.Hangup(ctx)
		cancel()
	}
	if ch != "" && !ended {
		s.b.background(func() { s.b.kill(ch) })
	}
}

// moveTo transfers the channel to p.
func (s *fsSession) moveTo(ctx context.Context, p placement) error {
	b := s.b
	s.mu.Lock()
	ch, old := s.channel, s.place
	s.moving++
	s.gen++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.moving--
		s.mu.Unlock()
	}()
	if old.typ == signaling.TypeBridge && old.peer != "" && (p.typ != signaling.TypeBridge || p.peer != old.peer) {
		// Park the old partner first, so that leaving the bridge does not hang it up.
		s.unbridge(ctx, old.peer)
	}
	cctx, cancel := b.cmdCtx(ctx)
	defer cancel()
	var err error
	what := "uuid_transfer"
	transfer := func(f func() error) error {
		err := f()
		if errors.Is(err, esl.ErrClosed) && cctx.Err() == nil {
			// The connection dropped with the command in flight: a transfer is
			// idempotent, so it is sent again once the client has reconnected (within
			// the same command timeout).
			s.log.Info("fsbridge: Event Socket dropped during uuid_transfer; sending it again", "channel", ch)
			err = f()
		}
		return err
	}
	switch p.typ {
	case signaling.TypePark:
		err = transfer(func() error { return esl.TransferPark(cctx, b.opts.ESL, ch) })
	case signaling.TypeEcho:
		err = transfer(func() error { return esl.TransferEcho(cctx, b.opts.ESL, ch) })
	case signaling.TypeMCU:
		err = transfer(func() error { return esl.TransferConference(cctx, b.opts.ESL, ch, p.room, b.opts.Profile) })
	case signaling.TypeBridge:
		what = "uuid_bridge"
		peer := b.session(p.peer)
		if peer == nil || peer == s {
			return signaling.Errorf(signaling.CodeSessionNotFound, "Peer session not found on FreeSWITCH: %s", p.peer)
		}
		peer.mu.Lock()
		pch, plive := peer.channel, peer.live && !peer.stopped
		peer.mu.Unlock()
		if !plive || pch == "" {
			return signaling.Errorf(signaling.CodeSessionNotFound, "Peer session not found on FreeSWITCH: %s", p.peer)
		}
		peer.mu.Lock()
		pold := peer.place
		peer.mu.Unlock()
		if pold.typ == signaling.TypeBridge && pold.peer != "" && pold.peer != s.id {
			peer.unbridge(ctx, pold.peer) // the partner's own partner goes back to park
		}
		if err = esl.UUIDBridge(cctx, b.opts.ESL, ch, pch); err == nil {
			peer.placed(pold, placement{typ: signaling.TypeBridge, peer: s.id})
		}
	}
	if err != nil {
		return fsError(what, err)
	}
	s.placed(old, p)
	return nil
}

// placed records that the channel moved from old to p (rooms, media timeout).
func (s *fsSession) placed(old, p placement) {
	b := s.b
	s.mu.Lock()
	s.place = p
	s.gen++
	if p.typ != signaling.TypeMCU {
		s.member = ""
	}
	leg := s.leg
	s.mu.Unlock()
	if leg != nil {
		leg.SetQuiet(p.typ == signaling.TypePark)
	}
	if old.typ == signaling.TypeMCU && (p.typ != signaling.TypeMCU || p.room != old.room) {
		b.leaveRoom(old.room, s.id)
	}
	if p.typ == signaling.TypeMCU {
		b.joinRoom(p.room, s.id)
	}
}

// unbridge unlinks s from its bridge partner and parks the partner.
func (s *fsSession) unbridge(ctx context.Context, peerID string) {
	s.mu.Lock()
	if s.place.peer == peerID {
		s.place.peer = ""
	}
	s.mu.Unlock()
	peer := s.b.session(peerID)
	if peer == nil {
		return
	}
	peer.mu.Lock()
	linked := peer.place.typ == signaling.TypeBridge && peer.place.peer == s.id
	if linked {
		peer.place.peer = ""
	}
	peer.mu.Unlock()
	if !linked {
		return
	}
	if err := peer.moveTo(ctx, placement{typ: signaling.TypePark}); err != nil {
		s.log.Warn("fsbridge: parking the bridge partner failed", "peer", peerID, "err", err)
	}
}

func (b *Backend) session(id string) *fsSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[id]
}

// SetAnswer implements signaling.Media: the client got its answer with the start reply.
func (s *fsSession) SetAnswer(context.Context, signaling.Desc) (signaling.Desc, error) {
	return nil, signaling.Errorf(signaling.CodeAnswerAlreadySet, "Answer already set for session %s", s.id)
}

// Update implements signaling.Media: session_type (park, echo, mcu, bridge),
// mcu_layout and media.
func (s *fsSession) Update(ctx context.Context, kind string, opts map[string]any) (map[string]any, error) {
	s.mu.Lock()
	cur, leg, stopped := s.place, s.leg, s.stopped
	s.mu.Unlock()
	if stopped {
		return nil, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", s.id)
	}
	switch kind {
	case signaling.UpdateSessionType:
		typ, _ := opts["session_type"].(string)
		if typ == "" {
			return nil, signaling.MissingField("session_type")
		}
		o := opts
		if typ == signaling.TypeMCU && cur.typ == signaling.TypeMCU {
			if _, given := opts["room_id"]; !given {
				o = map[string]any{"room_id": cur.room}
			}
		}
		p, err := s.b.target(typ, o, "")
		if err != nil {
			return nil, err
		}
		if err := s.moveTo(ctx, p); err != nil {
			return nil, err
		}
		s.log.Info("fsbridge: session moved", "type", p.typ, "room", p.room, "peer", p.peer)
		switch p.typ {
		case signaling.TypeMCU:
			return map[string]any{"room_id": p.room}, nil
		case signaling.TypeBridge:
			return map[string]any{"peer": p.peer}, nil
		}
		return nil, nil
	case signaling.UpdateMCULayout:
		layout, _ := opts["mcu_layout"].(string)
		if layout == "" {
			return nil, signaling.MissingField("mcu_layout")
		}
		if cur.typ != signaling.TypeMCU {
			return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Session %s is not in an mcu room", s.id)
		}
		cctx, cancel := s.b.cmdCtx(ctx)
		defer cancel()
		if err := esl.ConferenceLayout(cctx, s.b.opts.ESL, cur.room, layout); err != nil {
			return nil, fsError("conference vid-layout", err)
		}
		return nil, nil
	case signaling.UpdateMedia:
		return nil, leg.Update(ctx, opts)
	}
	return nil, signaling.Errorf(signaling.CodeNotImplemented, "Update %s is not supported by the FreeSWITCH backend", kind)
}

// Candidate implements signaling.Media.
func (s *fsSession) Candidate(ctx context.Context, c signaling.Candidate) error {
	s.mu.Lock()
	leg := s.leg
	s.mu.Unlock()
	return leg.Candidate(ctx, c)
}

// Stop implements signaling.Media: the channel is killed and the leg hung up, in the
// background.
func (s *fsSession) Stop(reason *signaling.Error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	leg, ch, ended, place := s.leg, s.channel, s.chanEnded, s.place
	s.mu.Unlock()
	s.forget()
	if place.typ == signaling.TypeMCU {
		s.b.leaveRoom(place.room, s.id)
	}
	code := 0
	if reason != nil {
		code = reason.Code
	}
	s.log.Info("fsbridge: stopping session", "channel", ch, "code", code)
	b := s.b
	b.background(func() {
		if place.typ == signaling.TypeBridge && place.peer != "" {
			s.unbridge(context.Background(), place.peer)
		}
		if ch != "" && !ended && b.opts.ESL.Connected() {
			b.kill(ch) // else the BYE alone ends it
		}
		if leg != nil {
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommandTimeout)
			leg.Hangup(ctx)
			cancel()
		}
	})
}
