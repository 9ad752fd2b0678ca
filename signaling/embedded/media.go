package embedded

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// The capabilities the SIP and Verto front ends use (through signaling.MediaAs).
var (
	_ signaling.DTMFSender   = (*Media)(nil)
	_ signaling.DTMFObserver = (*Media)(nil)
	_ signaling.RTPReofferer = (*Media)(nil)
	_ signaling.Reattacher   = (*Media)(nil)
	_ signaling.Holder       = (*Media)(nil)
	_ signaling.MediaQuality = (*Media)(nil)
)

// Media is the embedded media of one echo or proxy session; it implements
// signaling.Media and the capabilities signaling.DTMFSender, DTMFObserver,
// RTPReofferer, Holder and Reattacher. Its methods are safe for concurrent use.
type Media struct {
	b          *Backend
	id, typ    string
	rep        signaling.MediaReporter
	log        *slog.Logger
	callerKind media.Kind
	farKind    media.Kind // proxy only

	mu       sync.Mutex
	sess     *media.Session  // nil while starting
	stopInfo *media.StopInfo // engine stop seen while starting
	reported bool            // Stopped sent
	stopped  bool            // Stop called
	nextDTMF int
	dtmf     map[int]func(signaling.Side, rune)
	room     roomState   // rooms.go
	streams  streamState // stream.go
}

// SessionID returns the API session id.
func (m *Media) SessionID() string { return m.id }

// Type returns the session type (echo or proxy).
func (m *Media) Type() string { return m.typ }

// Session returns the engine session.
func (m *Media) Session() *media.Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sess
}

// CallerKind is the kind of the leg of the party whose offer started the session.
func (m *Media) CallerKind() media.Kind { return m.callerKind }

// FarKind is the kind of a proxy's far leg ("" for echo).
func (m *Media) FarKind() media.Kind { return m.farKind }

// Done is closed when the media stops.
func (m *Media) Done() <-chan struct{} { return m.Session().Done() }

// Held reports whether the session is on hold (no media timeout runs then).
func (m *Media) Held() bool { return m.Session().Held() }

// Hold implements signaling.Holder: the caller's audio is muted toward the far side and
// the media timeout suspended while held.
func (m *Media) Hold(ctx context.Context, held bool) error {
	_, err := m.Update(ctx, signaling.UpdateMedia, map[string]any{"hold": held, "use_audio": !held})
	return err
}

// SetHold marks the call held or resumed (for hold signalled outside SDP, or
// on a WebRTC leg).
func (m *Media) SetHold(held bool) { m.Session().SetHold(held) }

// Stats returns the per-side counters.
func (m *Media) Stats() [2]media.LegStats { return m.Session().Stats() }

// Quality returns the per-leg figures of the session's media for its call record (nothing
// while it is starting).
func (m *Media) Quality() []signaling.LegQuality {
	sess := m.Session()
	if sess == nil {
		return nil
	}
	var out []signaling.LegQuality
	for i, st := range sess.Stats() {
		if st.Kind == "" {
			continue
		}
		out = append(out, signaling.LegQuality{
			Side: signaling.Side(i).String(), Kind: string(st.Kind), Codec: st.AudioCodec,
			PacketsIn: st.PacketsIn, PacketsOut: st.PacketsOut, Lost: st.Lost, JitterMS: st.Jitter * 1000,
		})
	}
	return out
}

// SendDTMF sends digits as RFC 4733 events toward side (each durMS ms, 0 =
// 100). It blocks until sent.
func (m *Media) SendDTMF(ctx context.Context, to signaling.Side, digits string, durMS int) error {
	if err := m.Session().SendDTMF(ctx, engineSide(to), digits, durMS); err != nil {
		return signaling.Errorf(signaling.CodeInvalidParameters, "DTMF not sent: %v", err)
	}
	return nil
}

// ReofferRTP applies a SIP re-INVITE's SDP offer from the plain-RTP peer of
// side and returns the SDP answer; a sendonly/inactive/0.0.0.0 offer puts the
// session on hold, a sendrecv one resumes it.
func (m *Media) ReofferRTP(side signaling.Side, sdp string) (string, error) {
	d, err := m.Session().ReofferRTP(engineSide(side), media.Description{Kind: media.KindRTP, SDP: sdp})
	if err != nil {
		switch {
		case errors.Is(err, media.ErrState), errors.Is(err, media.ErrBadKind):
			return "", signaling.Errorf(signaling.CodeInvalidOperation, "Re-offer refused: %v", err)
		}
		return "", startError(err)
	}
	return d.SDP, nil
}

// Detach keeps the session through the loss of side's peer (a Verto page
// reload) for up to grace: no media timeout and no stop on its ICE/DTLS
// failure or close meanwhile. ReattachAnswer re-attaches it; when grace runs
// out first the session stops (peer_closed). grace <= 0 re-attaches as is.
func (m *Media) Detach(side signaling.Side, grace time.Duration) error {
	if err := m.CanReattach(side); err != nil {
		return err
	}
	if err := m.Session().Detach(engineSide(side), grace); err != nil {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Detach refused: %v", err)
	}
	return nil
}

// DeferPeerClose makes a close or ICE/DTLS failure of side's WebRTC peer end
// the session only after d, and not at all if Detach is called meanwhile (the
// Verto socket's loss is often noticed after the page's PeerConnection closed).
func (m *Media) DeferPeerClose(side signaling.Side, d time.Duration) error {
	if err := m.CanReattach(side); err != nil {
		return err
	}
	if err := m.Session().DeferPeerClose(engineSide(side), d); err != nil {
		return signaling.Errorf(signaling.CodeInvalidParameters, "%v", err)
	}
	return nil
}

// Detached reports whether side is detached, waiting for a re-attach.
func (m *Media) Detached(side signaling.Side) bool { return m.Session().Detached(engineSide(side)) }

// CanReattach implements signaling.Reattacher: side must be a WebRTC leg of an
// echo or proxy session (a room's leg belongs to the room).
func (m *Media) CanReattach(side signaling.Side) error {
	var kind media.Kind
	switch {
	case m.typ != signaling.TypeEcho && m.typ != signaling.TypeProxy:
		return signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: session %s is of type %s", m.id, m.typ)
	case side == signaling.SideCaller:
		kind = m.callerKind
	case side == signaling.SideFar && m.typ == signaling.TypeProxy:
		kind = m.farKind
	default:
		return signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: session %s has no %s side", m.id, side)
	}
	if kind != media.KindWebRTC {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: the %s side of session %s is %s, not WebRTC", side, m.id, kind)
	}
	if m.Session() == nil {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: session %s has no media yet", m.id)
	}
	return nil
}

// ReattachOffer builds a new WebRTC leg for side and returns its SDP offer
// for the peer's new PeerConnection (complete candidates, no trickle).
func (m *Media) ReattachOffer(ctx context.Context, side signaling.Side) (string, error) {
	d, err := m.Session().ReofferWebRTC(ctx, engineSide(side))
	if err != nil {
		if errors.Is(err, media.ErrState) || errors.Is(err, media.ErrClosed) {
			return "", signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: %v", err)
		}
		return "", signaling.Errorf(signaling.CodeInternalError, "Re-attach offer failed: %v", err)
	}
	return d.SDP, nil
}

// ReattachAnswer applies the peer's answer to ReattachOffer's offer: the new
// leg replaces the old one (the far side, echo or room carry on untouched)
// and side is re-attached. On error the session is left as it was.
func (m *Media) ReattachAnswer(ctx context.Context, side signaling.Side, sdp string) error {
	err := m.Session().SetReofferAnswer(ctx, engineSide(side), media.Description{Kind: media.KindWebRTC, SDP: sdp})
	if err != nil {
		if errors.Is(err, media.ErrState) || errors.Is(err, media.ErrClosed) {
			return signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: %v", err)
		}
		return startError(err)
	}
	return nil
}

// OnDTMF registers f for every RFC 4733 digit received from either side (from
// a media goroutine: don't block). The returned func unregisters it.
func (m *Media) OnDTMF(f func(from signaling.Side, digit rune)) (cancel func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dtmf == nil {
		m.dtmf = make(map[int]func(signaling.Side, rune))
	}
	n := m.nextDTMF
	m.nextDTMF++
	m.dtmf[n] = f
	return func() {
		m.mu.Lock()
		delete(m.dtmf, n)
		m.mu.Unlock()
	}
}

func (m *Media) dtmfReceived(engFrom media.Side, digit rune) {
	from := apiSide(engFrom)
	m.mu.Lock()
	fs := make([]func(signaling.Side, rune), 0, len(m.dtmf))
	for _, f := range m.dtmf {
		fs = append(fs, f)
	}
	m.mu.Unlock()
	for _, f := range fs {
		f(from, digit)
	}
	if m.rep != nil {
		m.rep.Event("info", map[string]any{"info": map[string]any{"dtmf": string(digit), "side": from.String()}})
	}
}

// engineSide is the engine's name of an API side.
func engineSide(s signaling.Side) media.Side {
	if s == signaling.SideFar {
		return media.SideFar
	}
	return media.SideCaller
}

// apiSide is the API's name of an engine side.
func apiSide(s media.Side) signaling.Side {
	if s == media.SideFar {
		return signaling.SideFar
	}
	return signaling.SideCaller
}

// engineStopped is the engine's OnStop: the session stops with a clear reason.
func (m *Media) engineStopped(info media.StopInfo) {
	m.mu.Lock()
	if m.sess == nil {
		i := info
		m.stopInfo = &i
		m.mu.Unlock()
		return
	}
	if m.reported || m.stopped {
		m.mu.Unlock()
		return
	}
	m.reported = true
	m.mu.Unlock()
	e := stopError(info)
	m.log.Info("embedded: media stopped by the engine", "cause", info.Cause, "reason", info.Reason)
	if m.rep != nil {
		m.rep.Stopped(e)
	}
	if info.Cause == media.CauseEngineClosed {
		m.b.forget(m) // Stop may never come (the core may be gone)
	}
}

// SetAnswer implements signaling.Media: the far side's answer of a proxy.
func (m *Media) SetAnswer(ctx context.Context, answer signaling.Desc) (signaling.Desc, error) {
	if m.typ == signaling.TypeListen {
		return m.setListenAnswer(ctx, answer) // rooms.go
	}
	if m.typ != signaling.TypeProxy {
		return nil, signaling.Errorf(signaling.CodeAnswerAlreadySet, "Answer already set for session %s", m.id)
	}
	if answer.SDP() == "" {
		return nil, signaling.MissingField("answer.sdp")
	}
	kind := m.farKind // an answer without sdp_type is of the kind offered
	if t := answer.String("sdp_type"); t != "" {
		var err error
		if kind, err = kindOf(t, "answer.sdp_type"); err != nil {
			return nil, err
		}
	}
	if kind != m.farKind {
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: answer.sdp_type (the far side's offer was %q, the answer is %q)", m.farKind, kind)
	}
	out, err := m.Session().SetAnswer(ctx, media.Description{Kind: kind, SDP: answer.SDP()})
	if err != nil {
		if errors.Is(err, media.ErrState) {
			return nil, signaling.Errorf(signaling.CodeAnswerAlreadySet, "Answer already set for session %s", m.id)
		}
		return nil, sdpError(err, "answer")
	}
	return descOf(out, answer), nil
}

// Update implements signaling.Media: kind "media" {use_audio, use_video,
// bitrate, record, hold}.
func (m *Media) Update(_ context.Context, kind string, opts map[string]any) (map[string]any, error) {
	if kind != signaling.UpdateMedia {
		if kind == signaling.UpdateListenSwitch || kind == signaling.UpdateSessionType || kind == signaling.UpdateMCULayout {
			return m.updateRoom(context.Background(), kind, opts) // rooms.go
		}
		return nil, signaling.Errorf(signaling.CodeNotImplemented, "Update %s is not supported for %s sessions on the embedded media engine", kind, m.typ)
	}
	o, err := mediaOptions(opts)
	if err != nil {
		return nil, err
	}
	var hold *bool
	if v, ok := opts["hold"]; ok && v != nil {
		h, ok := v.(bool)
		if !ok {
			return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: hold (want true or false)")
		}
		hold = &h
	}
	sess := m.Session()
	if err := sess.Update(o); err != nil {
		switch {
		case errors.Is(err, media.ErrState):
			return nil, signaling.Errorf(signaling.CodeAnswerNotSet, "Answer not set for session %s", m.id)
		case errors.Is(err, media.ErrNoRecordDir):
			return nil, signaling.Errorf(signaling.CodeNotImplemented, "Recording is not configured (media.record_dir)")
		}
		return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Media update failed: %v", err)
	}
	if hold != nil {
		sess.SetHold(*hold)
	}
	if o.Record != nil && *o.Record {
		paths := sess.RecordPaths()
		if m.rep != nil {
			m.rep.Event("info", map[string]any{"info": map[string]any{"record_paths": paths}})
		}
		return map[string]any{"record_paths": paths}, nil
	}
	return nil, nil
}

// Candidate implements signaling.Media: a trickled candidate of the API
// client's (caller side) WebRTC leg.
func (m *Media) Candidate(_ context.Context, c signaling.Candidate) error {
	sess := m.Session()
	if m.callerKind != media.KindWebRTC {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Session %s has no WebRTC leg for candidates", m.id)
	}
	var err error
	if c.End || c.Candidate == "" {
		err = sess.CandidatesEnd(media.SideCaller)
	} else {
		mc := media.Candidate{Candidate: c.Candidate}
		if c.MID != "" {
			mid := c.MID
			mc.SDPMid = &mid
		}
		if c.MLineIndex >= 0 && c.MLineIndex < 1<<16 {
			idx := uint16(c.MLineIndex)
			mc.SDPMLineIndex = &idx
		}
		err = sess.AddCandidate(media.SideCaller, mc)
	}
	if err != nil {
		return signaling.Errorf(signaling.CodeInvalidParameters, "Invalid candidate: %v", err)
	}
	return nil
}

// Stop implements signaling.Media: the engine session is closed in the
// background (Backend.Close waits for it; once the Backend is closing, Stop
// closes before it returns).
func (m *Media) Stop(reason *signaling.Error) {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.stopped = true
	sess := m.sess
	m.mu.Unlock()
	why := "session stopped"
	if reason != nil && reason.Text != "" {
		why = reason.Text
	}
	release := func() {
		m.stopStreams(why) // stream.go
		m.leaveRoom()      // rooms.go
		if sess != nil {
			sess.Close()
		}
		m.b.forget(m)
	}
	m.b.mu.Lock()
	if m.b.closed {
		m.b.mu.Unlock()
		release()
		return
	}
	m.b.wg.Add(1)
	m.b.mu.Unlock()
	go func() {
		defer m.b.wg.Done()
		release()
	}()
}
