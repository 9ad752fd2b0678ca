package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media/dtmf"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// Side names a leg of a session.
type Side int

// Sides. Echo sessions have only SideCaller.
const (
	SideCaller Side = 0 // the party whose offer started the session
	SideFar    Side = 1 // the far side of a proxy session
)

func (s Side) String() string {
	if s == SideFar {
		return "far"
	}
	return "caller"
}

// StopCause says why the engine stopped a session.
type StopCause string

// Stop causes reported through SessionOptions.OnStop.
const (
	CauseMediaTimeout StopCause = "media_timeout" // no RTP for Config.MediaTimeout
	CauseICEFailed    StopCause = "ice_failed"
	CauseDTLSFailed   StopCause = "dtls_failed"
	CausePeerClosed   StopCause = "peer_closed" // the WebRTC peer closed DTLS
	CauseEngineClosed StopCause = "engine_closed"
	CauseClosed       StopCause = "closed" // Session.Close (never passed to OnStop)
)

// StopInfo describes why a session stopped.
type StopInfo struct {
	Cause  StopCause
	Side   Side   // the leg that failed (meaningless for CauseEngineClosed)
	Reason string // human readable, e.g. "no RTP from caller for 30s"
}

// MediaOptions are the control API's media options; nil fields are left unchanged.
type MediaOptions struct {
	UseAudio *bool // false mutes the caller's audio (not echoed / not sent to the far side)
	UseVideo *bool // false mutes the caller's video likewise
	Bitrate  *int  // bits/s cap asked of the caller's WebRTC sender via REMB and applied to Opus we encode; 0 = none
	Record   *bool // true records each side's received audio to a WAV in Config.RecordDir
}

// SessionOptions configure a new session.
type SessionOptions struct {
	// ID names the session in logs and recording file names (default: engine-generated).
	ID    string
	Media MediaOptions
	// OnStop is called once, from its own goroutine, when the engine stops the session on its
	// own (media timeout, ICE/DTLS failure, peer closed, engine shutdown). It is not called
	// for Session.Close. The session's resources are already released when it runs.
	OnStop func(StopInfo)
	// OnDTMF is called for each RFC 4733 digit received from a side, in order, from one
	// goroutine of the session (digits are dropped if it falls 32 behind).
	OnDTMF func(from Side, digit rune)
	// TalkspurtMarkers makes the session's plain-RTP legs set the RTP marker bit on audio
	// only where a talk spurt starts (see talkspurts) instead of passing on the source's
	// bits. FreeSWITCH flushes its input on every marked audio packet, and some senders
	// (pion's TrackLocalStaticSample) mark them all. Telephone-events keep their bit.
	TalkspurtMarkers bool
	// Owner is the user the session's RTP ports are counted against (Config.RTPPortsPerUser);
	// "" counts against nobody.
	Owner string
	// OnRecordStop is called, from its own goroutine, when the engine ends a recording on its
	// own because it reached Config.RecordMaxBytes or RecordMaxDuration (the session goes on).
	// paths are that recording's files; reason names the limit and its setting.
	OnRecordStop func(paths []string, reason string)
}

type sessionType int

const (
	typeEcho sessionType = iota
	typeProxy
)

// Session is one echo or proxy media session. Its methods are safe for concurrent use.
type Session struct {
	e    *Engine
	id   string
	log  *slog.Logger
	typ  sessionType
	opts SessionOptions

	mu         sync.Mutex
	legs       [2]leg
	active     bool
	callerOffW *sdpMedia
	callerOffP *plainrtp.Description
	farOffP    *plainrtp.Description
	farKind    Kind
	recs       [2]*recorder
	recPaths   []string
	recGen     uint64      // counts recordings started, so a limit ends only its own
	recTimer   *time.Timer // RecordMaxDuration of the current recording
	stopped    bool
	answering  bool           // a SetAnswer is in progress
	dtmfCh     chan dtmfEvent // set in activate, before pipes are published

	pipes atomic.Pointer[[2][2]*pipe]
	// cur is a copy of legs for the media goroutines (replaced whole when a leg changes).
	cur atomic.Pointer[[2]leg]
	// detached[side] is the deadline (unix ns) of a detached side, 0 when attached.
	detached [2]atomic.Int64
	// closeLinger[side] delays stops on that side's transport failure (DeferPeerClose).
	closeLinger [2]atomic.Int64
	// reoffer[side] is a WebRTC leg offered to a re-attaching peer, waiting for its answer.
	reoffer [2]*webrtcLeg
	// retired[side] are the packet counters (in, out) of legs replaced on that side.
	retired  [2][2]uint64
	useAudio atomic.Bool
	useVideo atomic.Bool
	bitrate  atomic.Int64
	hold     atomic.Bool
	det      [2]dtmf.Detector
	inband   inbandState // inband.go
	recOn    atomic.Bool
	sinks    atomic.Pointer[[]*sinkEntry] // audiosink.go

	stopOnce sync.Once
	done     chan struct{}
	cleaned  chan struct{}
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

func (e *Engine) newSession(t sessionType, opts SessionOptions) (*Session, error) {
	s := &Session{e: e, id: sanitizeID(opts.ID), typ: t, opts: opts, done: make(chan struct{}),
		cleaned: make(chan struct{})}
	s.useAudio.Store(true)
	s.useVideo.Store(true)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := e.register(s); err != nil { // sets s.id and s.log before publishing s
		s.cancel()
		return nil, err
	}
	return s, nil
}

func sanitizeID(id string) string {
	if len(id) > 64 {
		id = id[:64]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
}

// ID returns the session's id.
func (s *Session) ID() string { return s.id }

// Done is closed when the session stops.
func (s *Session) Done() <-chan struct{} { return s.done }

// newLeg creates a leg of kind k.
func (s *Session) newLeg(k Kind, side Side) (leg, error) {
	var l leg
	var err error
	if k == KindWebRTC {
		l, err = newWebRTCLeg(s, side)
	} else {
		l, err = newRTPLeg(s, side)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		l.close()
		return nil, ErrClosed
	}
	s.setLegLocked(side, l)
	s.mu.Unlock()
	return l, nil
}

// setLegLocked installs l as the leg of side (s.mu held) and republishes the copy the media
// goroutines read.
func (s *Session) setLegLocked(side Side, l leg) {
	s.legs[side] = l
	snap := s.legs
	s.cur.Store(&snap)
}

// curLeg returns the current leg of side for the media goroutines (nil when none).
func (s *Session) curLeg(side Side) leg {
	if c := s.cur.Load(); c != nil {
		return c[side]
	}
	return nil
}

// StartEcho answers offer with a session that sends the caller's media back to it (audio, and
// video when offered). It returns the session and the answer for the caller.
func (e *Engine) StartEcho(ctx context.Context, offer Description, opts SessionOptions) (*Session, Description, error) {
	if !offer.Kind.valid() {
		return nil, Description{}, ErrBadKind
	}
	s, err := e.newSession(typeEcho, opts)
	if err != nil {
		return nil, Description{}, err
	}
	ans, err := s.startEcho(ctx, offer)
	if err != nil {
		s.Close()
		return nil, Description{}, err
	}
	return s, ans, nil
}

func (s *Session) startEcho(ctx context.Context, offer Description) (Description, error) {
	l, err := s.newLeg(offer.Kind, SideCaller)
	if err != nil {
		return Description{}, err
	}
	var ans string
	switch l := l.(type) {
	case *webrtcLeg:
		m, err := l.setRemoteOffer(offer.SDP)
		if err != nil {
			return Description{}, err
		}
		// The caller's own video comes back to it: there is video to send if it sends some.
		if ans, err = l.answer(ctx, m, nil, m.videoDir.sends(), nil); err != nil {
			return Description{}, err
		}
	case *rtpLeg:
		off, err := plainrtp.ParseSDP([]byte(offer.SDP))
		if err != nil {
			return Description{}, plainErr(err)
		}
		a, err := plainrtp.Answer(off, s.e.advertise, l.ep.Port(), plainrtp.DefaultCodecs(), nil)
		if err != nil {
			return Description{}, plainErr(err)
		}
		if err := l.setNegotiated(off, a, off); err != nil {
			return Description{}, plainErr(err)
		}
		ans = a.String()
	}
	ps := &[2][2]*pipe{}
	ps[SideCaller][kindAudio] = newPipe(s, l, l, kindAudio)
	ps[SideCaller][kindVideo] = newPipe(s, l, l, kindVideo)
	if err := s.activate(ps); err != nil {
		return Description{}, err
	}
	return Description{Kind: offer.Kind, SDP: ans}, nil
}

func plainErr(err error) error {
	switch {
	case errors.Is(err, plainrtp.ErrNoAudio):
		return fmt.Errorf("%w: %v", ErrNoAudio, err)
	case errors.Is(err, plainrtp.ErrNoCommonCodec):
		return fmt.Errorf("%w: %v", ErrNoCodec, err)
	}
	return fmt.Errorf("%w: %v", ErrBadSDP, err)
}

// activate installs the pipes, applies the initial media options and starts the watchdog.
func (s *Session) activate(ps *[2][2]*pipe) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrClosed
	}
	s.active = true
	for _, l := range s.legs {
		if l != nil {
			l.touch()
		}
	}
	if s.opts.OnDTMF != nil {
		s.dtmfCh = make(chan dtmfEvent, 32)
		go s.dtmfLoop(s.dtmfCh)
	}
	s.pipes.Store(ps) // publishes everything above to the media goroutines
	s.wg.Add(1)
	go s.watchdog()
	s.mu.Unlock()
	return s.Update(s.opts.Media)
}

type dtmfEvent struct {
	from  Side
	digit rune
}

// dtmfLoop delivers digits to OnDTMF in order, off the media goroutines (so OnDTMF may even
// call Close). It ends when the session stops.
func (s *Session) dtmfLoop(ch <-chan dtmfEvent) {
	for {
		select {
		case <-s.done:
			return
		case ev := <-ch:
			s.opts.OnDTMF(ev.from, ev.digit)
		}
	}
}

// StartProxy takes the caller's offer and returns a session plus nkbridge's offer for the far
// side, of kind farKind. Complete it with SetAnswer.
func (e *Engine) StartProxy(ctx context.Context, caller Description, farKind Kind, opts SessionOptions) (*Session, Description, error) {
	if !caller.Kind.valid() || !farKind.valid() {
		return nil, Description{}, ErrBadKind
	}
	s, err := e.newSession(typeProxy, opts)
	if err != nil {
		return nil, Description{}, err
	}
	off, err := s.startProxy(ctx, caller, farKind)
	if err != nil {
		s.Close()
		return nil, Description{}, err
	}
	return s, off, nil
}

func (s *Session) startProxy(ctx context.Context, caller Description, farKind Kind) (Description, error) {
	cl, err := s.newLeg(caller.Kind, SideCaller)
	if err != nil {
		return Description{}, err
	}
	var callerAudio []format
	callerVideo := dirInactive // what the far side's video section does, from our side
	var callerVideoFormats []format
	switch cl := cl.(type) {
	case *webrtcLeg:
		m, err := cl.setRemoteOffer(caller.SDP)
		if err != nil {
			return Description{}, err
		}
		s.callerOffW = m
		callerAudio = m.audio
		// We send the far side video when the caller sends us some, and take the far side's
		// when the caller takes it.
		callerVideo, callerVideoFormats = m.videoDir, m.video
	case *rtpLeg:
		d, err := plainrtp.ParseSDP([]byte(caller.SDP))
		if err != nil {
			return Description{}, plainErr(err)
		}
		s.callerOffP = d
		callerAudio = plainMedia(d).audio
	}
	hasCommon := false
	for _, f := range callerAudio {
		if !f.isTE() && audioSupported(f) {
			hasCommon = true
		}
	}
	if !hasCommon {
		return Description{}, ErrNoCodec
	}
	fl, err := s.newLeg(farKind, SideFar)
	if err != nil {
		return Description{}, err
	}
	s.farKind = farKind
	var offer string
	switch fl := fl.(type) {
	case *webrtcLeg:
		if offer, err = fl.offer(ctx, callerAudio, callerVideo, callerVideoFormats); err != nil {
			return Description{}, err
		}
	case *rtpLeg:
		var codecs []plainrtp.Codec
		for _, d := range plainrtp.DefaultCodecs() {
			for _, f := range callerAudio {
				if !f.isTE() && fromPlain(d).same(f) {
					codecs = append(codecs, d)
					break
				}
			}
		}
		for _, d := range plainrtp.DefaultCodecs() {
			if !containsCodec(codecs, d) {
				codecs = append(codecs, d)
			}
		}
		// Offer the caller's codecs first, in its order.
		codecs = orderLike(codecs, callerAudio)
		d := plainrtp.Offer(s.e.advertise, fl.ep.Port(), codecs, uint64(time.Now().UnixNano()&0x7fffffff))
		if s.e.cfg.SDESOffers { // best-effort SRTP (srtp.go)
			if err := d.AddSDES(); err != nil {
				return Description{}, err
			}
		}
		fl.offer = d
		s.farOffP = d
		offer = d.String()
	}
	return Description{Kind: farKind, SDP: offer}, nil
}

func containsCodec(list []plainrtp.Codec, c plainrtp.Codec) bool {
	for _, x := range list {
		if x.Same(c) {
			return true
		}
	}
	return false
}

// orderLike puts the codecs that appear in order first, in that order.
func orderLike(codecs []plainrtp.Codec, order []format) []plainrtp.Codec {
	var out []plainrtp.Codec
	used := make([]bool, len(codecs))
	for _, f := range order {
		for i, c := range codecs {
			if !used[i] && !c.IsTelephoneEvent() && fromPlain(c).same(f) {
				out = append(out, c)
				used[i] = true
			}
		}
	}
	for i, c := range codecs {
		if !used[i] {
			out = append(out, c)
		}
	}
	return out
}

// SetAnswer completes a proxy session with the far side's answer and returns the answer for
// the caller.
func (s *Session) SetAnswer(ctx context.Context, far Description) (Description, error) {
	s.mu.Lock()
	if s.typ != typeProxy || s.active || s.answering || s.legs[SideFar] == nil {
		s.mu.Unlock()
		return Description{}, ErrState
	}
	s.answering = true
	fl, cl := s.legs[SideFar], s.legs[SideCaller]
	farKind := s.farKind
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.answering = false
		s.mu.Unlock()
	}()
	select {
	case <-s.done:
		return Description{}, ErrState
	default:
	}
	if far.Kind != farKind {
		return Description{}, fmt.Errorf("%w: answer is %q, the far side offer was %q", ErrBadKind, far.Kind, farKind)
	}
	var farChosen []format
	switch fl := fl.(type) {
	case *webrtcLeg:
		if _, err := fl.setRemoteAnswer(far.SDP); err != nil {
			return Description{}, err
		}
	case *rtpLeg:
		a, err := plainrtp.ParseSDP([]byte(far.SDP))
		if err != nil {
			return Description{}, plainErr(err)
		}
		if _, err := plainrtp.Negotiated(fl.offer, a); err != nil {
			return Description{}, plainErr(err)
		}
		if err := fl.setNegotiated(fl.offer, a, a); err != nil {
			return Description{}, plainErr(err)
		}
	}
	for _, f := range fl.negotiated().audio {
		if !f.isTE() {
			farChosen = append(farChosen, f)
		}
	}
	farVideoFormats := fl.negotiated().video
	farVideo := fl.negotiated().videoDir.recvs() && len(farVideoFormats) > 0 // the far side sends video
	var ans string
	switch cl := cl.(type) {
	case *webrtcLeg:
		var err error
		if ans, err = cl.answer(ctx, s.callerOffW, farChosen, farVideo, farVideoFormats); err != nil {
			return Description{}, err
		}
	case *rtpLeg:
		a, err := plainrtp.Answer(s.callerOffP, s.e.advertise, cl.ep.Port(), plainrtp.DefaultCodecs(), toPlainList(farChosen))
		if err != nil {
			return Description{}, plainErr(err)
		}
		if err := cl.setNegotiated(s.callerOffP, a, s.callerOffP); err != nil {
			return Description{}, plainErr(err)
		}
		ans = a.String()
	}
	ps := &[2][2]*pipe{}
	ps[SideCaller][kindAudio] = newPipe(s, cl, fl, kindAudio)
	ps[SideCaller][kindVideo] = newPipe(s, cl, fl, kindVideo)
	ps[SideFar][kindAudio] = newPipe(s, fl, cl, kindAudio)
	ps[SideFar][kindVideo] = newPipe(s, fl, cl, kindVideo)
	if err := s.activate(ps); err != nil {
		return Description{}, err
	}
	return Description{Kind: cl.kind(), SDP: ans}, nil
}

func toPlainList(fs []format) []plainrtp.Codec {
	out := make([]plainrtp.Codec, 0, len(fs))
	for _, f := range fs {
		out = append(out, toPlain(f))
	}
	return out
}

// ReofferRTP applies a new offer from the plain-RTP peer of side (a SIP re-INVITE: new
// address, codecs or direction) and returns nkbridge's answer; the local port stays the same
// and the current codec is kept when still offered. An offer that is sendonly or inactive, or
// whose address is 0.0.0.0, puts the session on hold (SetHold(true)); a sendrecv one resumes it.
func (s *Session) ReofferRTP(side Side, offer Description) (Description, error) {
	if offer.Kind != KindRTP {
		return Description{}, fmt.Errorf("%w: re-offers are for plain RTP legs", ErrBadKind)
	}
	if side != SideCaller && side != SideFar {
		return Description{}, fmt.Errorf("media: bad side %d", side)
	}
	s.mu.Lock()
	l, ok := s.legs[side].(*rtpLeg)
	active := s.active
	s.mu.Unlock()
	if !ok || !active {
		return Description{}, fmt.Errorf("%w: side %s is not an answered plain RTP leg", ErrState, side)
	}
	select {
	case <-s.done:
		return Description{}, ErrState
	default:
	}
	off, err := plainrtp.ParseSDP([]byte(offer.SDP))
	if err != nil {
		return Description{}, plainErr(err)
	}
	var prefer []plainrtp.Codec
	if n := l.negotiated(); n != nil {
		for _, f := range n.audio {
			if !f.isTE() {
				prefer = append(prefer, toPlain(f))
				break
			}
		}
	}
	ans, err := plainrtp.Answer(off, s.e.advertise, l.ep.Port(), plainrtp.DefaultCodecs(), prefer)
	if err != nil {
		return Description{}, plainErr(err)
	}
	held := off.Direction == plainrtp.SendOnly || off.Direction == plainrtp.Inactive || off.Addr.IsUnspecified()
	l.keepLocalKey(ans) // our SRTP key stays unless the suite changes (srtp.go)
	if off.Addr.IsUnspecified() {
		if err := l.setSRTP(off, ans, false); err != nil {
			return Description{}, plainErr(err)
		}
		l.neg.Store(negotiatedFrom(plainMedia(ans), plainMedia(off)))
	} else {
		l.ep.ResetLatch()
		if err := l.setNegotiated(off, ans, off); err != nil {
			return Description{}, plainErr(err)
		}
	}
	s.SetHold(held)
	return Description{Kind: KindRTP, SDP: ans.String()}, nil
}

// AddCandidate adds a trickled ICE candidate from the peer of side (WebRTC legs only).
func (s *Session) AddCandidate(side Side, c Candidate) error {
	l, err := s.webrtcLegOf(side)
	if err != nil {
		return err
	}
	return l.addCandidate(c)
}

// CandidatesEnd notes the end of the peer's trickled candidates (WebRTC legs only).
func (s *Session) CandidatesEnd(side Side) error {
	_, err := s.webrtcLegOf(side)
	return err
}

func (s *Session) webrtcLegOf(side Side) (*webrtcLeg, error) {
	if side != SideCaller && side != SideFar {
		return nil, fmt.Errorf("media: bad side %d", side)
	}
	s.mu.Lock()
	l := s.legs[side]
	s.mu.Unlock()
	w, ok := l.(*webrtcLeg)
	if !ok {
		return nil, fmt.Errorf("%w: side %s is not a WebRTC leg", ErrState, side)
	}
	return w, nil
}

// Update changes media options. It fails with ErrState before the session has its answer.
func (s *Session) Update(o MediaOptions) error {
	s.mu.Lock()
	active := s.active
	s.mu.Unlock()
	if !active {
		return ErrState
	}
	if o.Record != nil && *o.Record && s.e.cfg.RecordDir == "" {
		return ErrNoRecordDir
	}
	if o.Bitrate != nil && (*o.Bitrate < 0 || *o.Bitrate > 100_000_000) {
		return fmt.Errorf("media: bitrate %d out of range", *o.Bitrate)
	}
	if o.UseAudio != nil {
		s.useAudio.Store(*o.UseAudio)
	}
	if o.UseVideo != nil {
		s.useVideo.Store(*o.UseVideo)
	}
	if o.Bitrate != nil {
		s.bitrate.Store(int64(*o.Bitrate))
		if ps := s.pipes.Load(); ps != nil {
			for _, row := range ps {
				if row[kindAudio] != nil {
					row[kindAudio].setBitrate(*o.Bitrate)
				}
			}
		}
		s.sendBitrateCap()
	}
	if o.Record != nil {
		if *o.Record {
			return s.startRecording()
		}
		s.stopRecording()
	}
	return nil
}

func (s *Session) startRecording() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrClosed
	}
	if s.recOn.Load() {
		return nil
	}
	stamp := time.Now().UTC().Format("20060102T150405.000")
	s.recGen++
	gen := s.recGen
	for side, l := range s.legs {
		if l == nil {
			continue
		}
		p := filepath.Join(s.e.cfg.RecordDir, fmt.Sprintf("%s-%s-%s.wav", s.id, Side(side), stamp))
		r, err := newRecorder(p, s.e.cfg.RecordMaxBytes, gen)
		if err != nil {
			for i := range s.recs {
				if s.recs[i] != nil {
					s.recs[i].close()
					s.recs[i] = nil
				}
			}
			return err
		}
		s.recs[side] = r
		s.recPaths = append(s.recPaths, p)
	}
	limit := s.e.cfg.RecordMaxDuration
	s.recTimer = time.AfterFunc(limit, func() {
		s.recordLimit(gen, fmt.Sprintf("recording reached %s (media.record_max_duration)", limit))
	})
	s.recOn.Store(true)
	return nil
}

// recordLimit ends recording gen when it is still the current one, and tells OnRecordStop.
func (s *Session) recordLimit(gen uint64, reason string) {
	s.mu.Lock()
	var paths []string
	for _, r := range s.recs {
		if r != nil && r.gen == gen {
			paths = append(paths, r.path)
		}
	}
	if len(paths) == 0 || s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopRecordingLocked()
	s.mu.Unlock()
	s.log.Info("recording stopped at its limit", "reason", reason, "paths", paths)
	if s.opts.OnRecordStop != nil {
		s.opts.OnRecordStop(paths, reason)
	}
}

func (s *Session) stopRecording() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopRecordingLocked()
}

func (s *Session) stopRecordingLocked() {
	s.recOn.Store(false)
	if s.recTimer != nil {
		s.recTimer.Stop()
		s.recTimer = nil
	}
	for i, r := range s.recs {
		if r != nil {
			if err := r.close(); err != nil {
				s.log.Warn("recording close", "err", err)
			}
			s.recs[i] = nil
		}
	}
}

// Held reports whether the session is on hold.
func (s *Session) Held() bool { return s.hold.Load() }

// RecordPaths returns the files recorded so far (one per side per recording started).
func (s *Session) RecordPaths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.recPaths...)
}

// SetHold marks the call held (true) or resumed (false). No media timeout runs while held.
func (s *Session) SetHold(held bool) {
	s.hold.Store(held)
	if !held {
		s.mu.Lock()
		for _, l := range s.legs {
			if l != nil {
				l.touch()
			}
		}
		s.mu.Unlock()
	}
}

// SendDTMF sends digits (0-9 * # A-D) as RFC 4733 events toward side, each lasting durMS
// milliseconds (default 100). It blocks until sent.
func (s *Session) SendDTMF(ctx context.Context, to Side, digits string, durMS int) error {
	if durMS == 0 {
		durMS = 100
	}
	for _, d := range digits {
		if _, err := dtmf.CodeOf(d); err != nil {
			return err
		}
	}
	if len(digits) > 64 {
		return errors.New("media: too many digits")
	}
	ps := s.pipes.Load()
	if ps == nil {
		return ErrState
	}
	var p *pipe
	if s.typ == typeEcho {
		p = ps[SideCaller][kindAudio]
	} else {
		p = ps[1-to][kindAudio]
	}
	if p == nil {
		return ErrState
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	return p.sendDTMF(ctx, digits, durMS)
}

// LegStats are counters of one leg.
type LegStats struct {
	Kind                  Kind
	PacketsIn, PacketsOut uint64
	// Forwarded and Transcoded count packets the bridge sent toward this leg.
	Forwarded, Transcoded, Dropped uint64
	// Lost counts audio packets missing from what this leg received (sequence gaps), Jitter
	// is the RFC 3550 interarrival jitter of its live received audio stream (seconds), and
	// AudioCodec the format it last sent ("opus/48000", "pcmu/8000"; "" before any audio).
	Lost       uint64
	Jitter     float64
	AudioCodec string
}

// Stats returns the per-leg counters (index by Side; a missing leg has an empty Kind).
func (s *Session) Stats() [2]LegStats {
	var out [2]LegStats
	s.mu.Lock()
	legs := s.legs
	s.mu.Unlock()
	ps := s.pipes.Load()
	for i, l := range legs {
		if l == nil {
			continue
		}
		out[i].Kind = l.kind()
		out[i].PacketsIn, out[i].PacketsOut = l.counters()
		s.mu.Lock()
		out[i].PacketsIn += s.retired[i][0]
		out[i].PacketsOut += s.retired[i][1]
		s.mu.Unlock()
		if ps == nil {
			continue
		}
		for _, row := range ps {
			for _, p := range row {
				if p != nil && p.dst == l {
					out[i].Forwarded += p.forwarded.Load()
					out[i].Transcoded += p.transc.Load()
					out[i].Dropped += p.dropped.Load()
				}
				if p != nil && p.src == l && p.k == kindAudio {
					out[i].Lost += p.rx.lost.Load()
					out[i].Jitter = max(out[i].Jitter, math.Float64frombits(p.rx.jitter.Load()))
					p.mu.Lock()
					if p.lastIn.Name != "" {
						out[i].AudioCodec = fmt.Sprintf("%s/%d", p.lastIn.Name, p.lastIn.Rate)
					}
					p.mu.Unlock()
				}
			}
		}
	}
	return out
}

func (s *Session) peerOf(side Side) Side {
	if s.typ == typeEcho {
		return SideCaller
	}
	return 1 - side
}

// onRTP is called by a leg's reader for each packet it receives. Packets from a leg that is
// no longer (or not yet) the session's leg of that side are ignored.
func (s *Session) onRTP(l leg, side Side, pkt *rtp.Packet) {
	ps := s.pipes.Load()
	if ps == nil || s.curLeg(side) != l {
		return
	}
	n := l.negotiated()
	if n == nil {
		return
	}
	f, k, ok := n.lookup(pkt.PayloadType)
	if !ok {
		return
	}
	if k == kindAudio {
		if f.isTE() {
			if d, ok := s.det[side].Push(pkt.Timestamp, pkt.Payload); ok && s.dtmfCh != nil {
				select {
				case s.dtmfCh <- dtmfEvent{side, d}:
				default:
					s.log.Warn("DTMF digit dropped: OnDTMF too slow", "digit", string(d))
				}
			}
		} else {
			if !n.hasTE() {
				s.inbandAudio(side, f, pkt) // digits as tones only (inband.go)
			}
			if s.recOn.Load() {
				s.mu.Lock()
				r := s.recs[side]
				s.mu.Unlock()
				if r != nil && r.write(f, pkt) {
					go s.recordLimit(r.gen, fmt.Sprintf("recording reached %d bytes (media.record_max_bytes)", r.max))
				}
			}
			s.toSinks(side, f, pkt)
		}
		if side == SideCaller && !s.useAudio.Load() {
			return
		}
	} else if side == SideCaller && !s.useVideo.Load() {
		return
	}
	if p := ps[side][k]; p != nil {
		p.push(f, pkt)
	}
}

func (s *Session) onKeyframeRequest(side Side) {
	if s.pipes.Load() == nil {
		return
	}
	if l := s.curLeg(s.peerOf(side)); l != nil {
		l.requestKeyframe()
	}
}

func (s *Session) onREMB(side Side, bps uint64) {
	if s.pipes.Load() == nil {
		return
	}
	if c := s.bitrate.Load(); c > 0 && bps > uint64(c) {
		bps = uint64(c)
	}
	if l := s.curLeg(s.peerOf(side)); l != nil {
		l.sendREMB(bps)
	}
}

func (s *Session) sendBitrateCap() {
	if c := s.bitrate.Load(); c > 0 {
		if l := s.curLeg(SideCaller); l != nil {
			l.sendREMB(uint64(c))
		}
	}
}

// watchdog enforces the media timeout and refreshes the bitrate cap.
func (s *Session) watchdog() {
	defer s.wg.Done()
	timeout := s.e.cfg.MediaTimeout
	tick := time.Second
	if timeout > 0 && timeout/4 < tick {
		tick = max(timeout/4, 20*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastCap := time.Now()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			if now.Sub(lastCap) >= time.Second {
				lastCap = now
				s.sendBitrateCap()
			}
			for side := range s.detached {
				if d := s.detached[side].Load(); d != 0 && now.UnixNano() > d {
					s.stop(StopInfo{Cause: CausePeerClosed, Side: Side(side),
						Reason: fmt.Sprintf("%s detached and not re-attached in time", Side(side))}, true)
					return
				}
			}
			if timeout <= 0 || s.hold.Load() {
				continue
			}
			for side, l := range s.cur.Load() {
				if l == nil || s.detached[side].Load() != 0 {
					continue
				}
				if idle := now.Sub(l.lastRTP()); idle > timeout {
					s.stop(StopInfo{Cause: CauseMediaTimeout, Side: Side(side),
						Reason: fmt.Sprintf("no RTP from %s for %s", Side(side), timeout)}, true)
					return
				}
			}
		}
	}
}

// legFailed is called by legs when their transport dies. The failure of a leg that is not
// the session's leg of side (replaced, or offered and not yet answered) or of a detached side
// does not stop the session.
func (s *Session) legFailed(l leg, side Side, cause StopCause, reason string) {
	if s.curLeg(side) != l {
		s.log.Debug("replaced or pending leg failed", "side", side, "cause", cause)
		return
	}
	if s.detached[side].Load() != 0 {
		s.log.Info("detached leg failed; waiting for re-attach", "side", side, "cause", cause)
		return
	}
	if d := time.Duration(s.closeLinger[side].Load()); d > 0 {
		s.log.Info("leg failed; stopping unless detached soon", "side", side, "cause", cause, "wait", d)
		time.AfterFunc(d, func() {
			if s.curLeg(side) == l && s.detached[side].Load() == 0 {
				s.stop(StopInfo{Cause: cause, Side: side, Reason: reason + " (" + side.String() + ")"}, true)
			}
		})
		return
	}
	s.stop(StopInfo{Cause: cause, Side: side, Reason: reason + " (" + side.String() + ")"}, true)
}

// Close stops the session and releases its ports, goroutines and PeerConnections. OnStop is
// not called. It is safe to call more than once and from OnStop.
func (s *Session) Close() {
	s.stop(StopInfo{Cause: CauseClosed, Reason: "closed"}, false)
	<-s.cleaned
}

// stop starts stopping the session once. Cleanup runs in its own goroutine so that it may be
// triggered from the session's own goroutines.
func (s *Session) stop(info StopInfo, notify bool) {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		if notify {
			s.log.Info("media session stopped", "cause", info.Cause, "reason", info.Reason)
		}
		close(s.done)
		s.pipes.Store(nil)
		s.cancel()
		go s.cleanup(info, notify)
	})
}

func (s *Session) cleanup(info StopInfo, notify bool) {
	s.mu.Lock()
	legs := s.legs
	pending := s.reoffer
	s.reoffer = [2]*webrtcLeg{}
	s.mu.Unlock()
	for _, l := range legs {
		if l != nil {
			l.close()
		}
	}
	for _, l := range pending {
		if l != nil {
			l.close()
		}
	}
	s.wg.Wait()
	s.stopRecording()
	s.e.unregister(s)
	close(s.cleaned)
	if notify && s.opts.OnStop != nil {
		s.opts.OnStop(info)
	}
}
