package media

// Hooks for rooms (SFU publish/listen, park, audio conferences): a session's caller media can
// be diverted to a Tap instead of the echo/bridge, and anything may be written to the caller.
// They are used by package media/room; they leave echo and proxy sessions untouched.

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Format is one negotiated payload format of a leg.
type Format struct {
	PT       uint8
	Name     string // lower case: opus, pcmu, pcma, telephone-event, vp8, ...
	Rate     uint32 // RTP clock rate
	Channels uint16
	Fmtp     string
}

// IsTelephoneEvent reports whether f is RFC 4733 telephone-event.
func (f Format) IsTelephoneEvent() bool { return f.Name == "telephone-event" }

func exportFormat(f format) Format {
	return Format(f)
}

func importFormat(f Format) format {
	return format(f)
}

// Tap receives the caller's media of a session it is attached to (Session.Attach).
type Tap interface {
	// Media is one packet from the caller (after mute): video or audio (telephone-events
	// included), in format f. The header and payload are only valid during the call. It is
	// called from the leg's reader goroutine: don't block.
	Media(video bool, f Format, h *rtp.Header, payload []byte)
	// KeyframeRequest says the caller asked for a video keyframe (PLI/FIR); it is only
	// reported for sessions started with StartListen.
	KeyframeRequest()
}

// tapLeg is a virtual leg: the destination of the caller's pipes while a Tap is attached.
type tapLeg struct {
	s      *Session
	caller leg
	tap    atomic.Pointer[tapBox]
}

type tapBox struct{ t Tap }

func (l *tapLeg) negotiated() *negotiated { return l.caller.negotiated() } // passthrough always
func (l *tapLeg) ready(mediaKind) bool    { return true }
func (l *tapLeg) sendREMB(uint64)         {}
func (l *tapLeg) lastRTP() time.Time      { return time.Now() }
func (l *tapLeg) touch()                  {}
func (l *tapLeg) counters() (uint64, uint64) {
	return 0, 0
}
func (l *tapLeg) kind() Kind { return Kind("room") }
func (l *tapLeg) close()     {}

func (l *tapLeg) requestKeyframe() {
	if b := l.tap.Load(); b != nil {
		b.t.KeyframeRequest()
	}
}

func (l *tapLeg) write(k mediaKind, h *rtp.Header, payload []byte) error {
	b := l.tap.Load()
	if b == nil {
		return nil
	}
	n := l.caller.negotiated()
	if n == nil {
		return nil
	}
	list := n.audio
	if k == kindVideo {
		list = n.video
	}
	for _, f := range list {
		if f.PT == h.PayloadType {
			b.t.Media(k == kindVideo, exportFormat(f), h, payload)
			return nil
		}
	}
	return nil
}

func (s *Session) callerLeg() (leg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.active || s.legs[SideCaller] == nil {
		return nil, ErrState
	}
	return s.legs[SideCaller], nil
}

// Position is where an outgoing audio stream toward the caller stands: the last sequence
// number and timestamp sent (clock Rate) at time At. Whoever writes to the caller next
// continues from it: a receiver (SRTP replay protection, jitter buffer) drops packets whose
// sequence numbers jump backwards.
type Position struct {
	Seq  uint16
	TS   uint32
	Rate uint32
	At   time.Time
}

// Next returns the sequence number and timestamp that follow p at now for clock rate rate.
func (p Position) Next(rate uint32, now time.Time) (uint16, uint32) {
	ts := p.TS
	if p.Rate == rate {
		ts += uint32(max(now.Sub(p.At).Seconds(), 0.02) * float64(rate))
	} else {
		ts += rate // a different clock: a 1 s jump ahead is safe
	}
	return p.Seq + 1, ts
}

// EchoPosition returns where the echo's audio toward the caller stands (ok false when the
// caller's audio is not echoed or nothing was sent yet).
func (s *Session) EchoPosition() (Position, bool) {
	ps := s.pipes.Load()
	if ps == nil || ps[SideCaller][kindAudio] == nil {
		return Position{}, false
	}
	p := ps[SideCaller][kindAudio]
	if _, tap := p.dst.(*tapLeg); tap {
		return Position{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		return Position{}, false
	}
	return Position{Seq: p.lastOutSeq, TS: p.lastOutTS, Rate: p.curOut.Rate, At: time.Now()}, true
}

// Echo sends the caller's media back to it again (echo sessions only), continuing the audio
// stream from pos when given.
func (s *Session) Echo(pos *Position) error { return s.attach(nil, pos) }

// Attach diverts the caller's media to t (nil: back to the echo, for echo sessions only)
// without renegotiating. Attaching replaces a previous Tap. It fails with ErrState before the
// session is active or after it stopped.
func (s *Session) Attach(t Tap) error { return s.attach(t, nil) }

func (s *Session) attach(t Tap, pos *Position) error {
	cl, err := s.callerLeg()
	if err != nil {
		return err
	}
	select {
	case <-s.done:
		return ErrState
	default:
	}
	ps := &[2][2]*pipe{}
	if t == nil {
		if s.typ != typeEcho {
			return ErrState
		}
		ps[SideCaller][kindAudio] = newPipe(s, cl, cl, kindAudio)
		ps[SideCaller][kindVideo] = newPipe(s, cl, cl, kindVideo)
		if pos != nil {
			p := ps[SideCaller][kindAudio]
			p.lastOutSeq = pos.Seq
			p.lastOutTS = pos.TS + uint32(max(time.Since(pos.At).Seconds(), 0)*float64(pos.Rate))
		}
	} else {
		tl := &tapLeg{s: s, caller: cl}
		tl.tap.Store(&tapBox{t: t})
		ps[SideCaller][kindAudio] = newPipe(s, cl, tl, kindAudio)
		ps[SideCaller][kindVideo] = newPipe(s, cl, tl, kindVideo)
	}
	// Publish under s.mu: stop sets s.stopped under it before clearing the pipes, so pipes
	// stored here are either seen stopped (refused) or cleared by stop afterwards.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.pipes.Load() == nil || s.legs[SideCaller] != cl {
		return ErrState
	}
	s.pipes.Store(ps)
	return nil
}

// CallerFormats returns what the caller's peer accepts, in its preference order (audio
// includes telephone-events).
func (s *Session) CallerFormats() (audio, video []Format) {
	cl, err := s.callerLeg()
	if err != nil {
		return nil, nil
	}
	n := cl.negotiated()
	if n == nil {
		return nil, nil
	}
	for _, f := range n.audio {
		audio = append(audio, exportFormat(f))
	}
	for _, f := range n.video {
		video = append(video, exportFormat(f))
	}
	return audio, video
}

// CallerKind returns the kind of the caller's leg ("" before it exists).
func (s *Session) CallerKind() Kind {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legs[SideCaller] == nil {
		return ""
	}
	return s.legs[SideCaller].kind()
}

// CallerReady reports whether media written to the caller now can reach it.
func (s *Session) CallerReady(video bool) bool {
	cl, err := s.callerLeg()
	if err != nil {
		return false
	}
	if video {
		return cl.ready(kindVideo)
	}
	return cl.ready(kindAudio)
}

// WriteCaller sends one packet to the caller; the leg sets the SSRC, the caller chooses
// payload type (one of CallerFormats), sequence number and timestamp.
func (s *Session) WriteCaller(video bool, h *rtp.Header, payload []byte) error {
	select {
	case <-s.done:
		return ErrState
	default:
	}
	cl, err := s.callerLeg()
	if err != nil {
		return err
	}
	k := kindAudio
	if video {
		k = kindVideo
	}
	return cl.write(k, h, payload)
}

// RequestKeyframe asks the caller for a video keyframe (PLI).
func (s *Session) RequestKeyframe() {
	if cl, err := s.callerLeg(); err == nil {
		cl.requestKeyframe()
	}
}

// KeepAlive marks the caller leg as active now, for receive-only peers (SFU listeners) that
// send no RTP and would otherwise hit the media timeout.
func (s *Session) KeepAlive() {
	if cl, err := s.callerLeg(); err == nil {
		cl.touch()
	}
}

// StartPublish answers a sender's offer (audio, and video when offered) and diverts its
// media to t from the start: nothing is echoed.
func (e *Engine) StartPublish(ctx context.Context, offer Description, opts SessionOptions, t Tap) (*Session, Description, error) {
	if t == nil {
		return nil, Description{}, errors.New("media: StartPublish needs a Tap")
	}
	s, ans, err := e.StartEcho(ctx, offer, opts)
	if err != nil {
		return nil, Description{}, err
	}
	if err := s.Attach(t); err != nil {
		s.Close()
		return nil, Description{}, err
	}
	return s, ans, nil
}

// StartListen creates a WebRTC receiver and returns nkbridge's offer for it, with audio in the
// formats given (telephone-events may be included) and video when videoFormats is not empty.
// The browser's answer completes it (SetListenAnswer). Keyframe requests from the receiver go
// to t.KeyframeRequest; whatever it sends is given to t.Media.
func (e *Engine) StartListen(ctx context.Context, audioFormats, videoFormats []Format, opts SessionOptions, t Tap) (*Session, Description, error) {
	if t == nil {
		return nil, Description{}, errors.New("media: StartListen needs a Tap")
	}
	s, err := e.newSession(typeProxy, opts)
	if err != nil {
		return nil, Description{}, err
	}
	l, err := s.newLeg(KindWebRTC, SideCaller)
	if err != nil {
		s.Close()
		return nil, Description{}, err
	}
	var af, vf []format
	for _, f := range audioFormats {
		af = append(af, importFormat(f))
	}
	for _, f := range videoFormats {
		vf = append(vf, importFormat(f))
	}
	w := l.(*webrtcLeg)
	vdir := dirInactive
	if len(vf) > 0 {
		vdir = dirSendRecv
	}
	off, err := w.offer(ctx, af, vdir, vf)
	if err != nil {
		s.Close()
		return nil, Description{}, err
	}
	tl := &tapLeg{s: s, caller: w}
	tl.tap.Store(&tapBox{t: t})
	s.mu.Lock()
	s.setLegLocked(SideFar, tl) // the receiver's keyframe requests reach the Tap (peer of the caller)
	s.mu.Unlock()
	return s, Description{Kind: KindWebRTC, SDP: off}, nil
}

// SetListenAnswer completes a StartListen session with the receiver's answer.
func (s *Session) SetListenAnswer(ctx context.Context, answer Description) error {
	s.mu.Lock()
	w, ok := s.legs[SideCaller].(*webrtcLeg)
	tl, ok2 := s.legs[SideFar].(*tapLeg)
	active := s.active
	s.mu.Unlock()
	if !ok || !ok2 || active {
		return ErrState
	}
	if answer.Kind != KindWebRTC {
		return ErrBadKind
	}
	select {
	case <-s.done:
		return ErrState
	default:
	}
	if _, err := w.setRemoteAnswer(answer.SDP); err != nil {
		return err
	}
	ps := &[2][2]*pipe{}
	ps[SideCaller][kindAudio] = newPipe(s, w, tl, kindAudio)
	ps[SideCaller][kindVideo] = newPipe(s, w, tl, kindVideo)
	return s.activate(ps)
}
