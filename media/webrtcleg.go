package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// maxPendingCandidates bounds trickled candidates buffered before the remote description.
const maxPendingCandidates = 64

// maxCandidates bounds the trickled candidates one leg accepts in all.
const maxCandidates = 200

// Candidate is a trickled ICE candidate (the browser's RTCIceCandidateInit).
type Candidate struct {
	Candidate     string
	SDPMid        *string
	SDPMLineIndex *uint16
}

// outTrack is a TrackLocal that lets the bridge choose payload type, sequence number and
// timestamp of every packet (pion's static tracks force one payload type, which would break
// telephone-events).
type outTrack struct {
	id, stream string
	kind       webrtc.RTPCodecType

	mu    sync.Mutex
	ws    webrtc.TrackLocalWriter
	ssrc  uint32
	bound bool
	since time.Time
}

func (t *outTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	t.mu.Lock()
	t.ws, t.ssrc, t.bound, t.since = ctx.WriteStream(), uint32(ctx.SSRC()), true, time.Now()
	t.mu.Unlock()
	return codecs[0], nil
}

func (t *outTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.bound, t.ws = false, nil
	t.mu.Unlock()
	return nil
}

func (t *outTrack) ID() string                { return t.id }
func (t *outTrack) RID() string               { return "" }
func (t *outTrack) StreamID() string          { return t.stream }
func (t *outTrack) Kind() webrtc.RTPCodecType { return t.kind }

func (t *outTrack) write(h *rtp.Header, payload []byte) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.bound {
		return false, nil
	}
	h.SSRC = t.ssrc
	_, err := t.ws.WriteRTP(h, payload)
	return err == nil, err
}

func (t *outTrack) boundFor() (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bound, time.Since(t.since)
}

func (t *outTrack) isBoundNow() bool {
	b, _ := t.boundFor()
	return b
}

func (t *outTrack) SSRC() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ssrc
}

// webrtcLeg is a WebRTC endpoint: one PeerConnection on the engine's shared ports.
type webrtcLeg struct {
	s    *Session
	side Side
	pc   *webrtc.PeerConnection

	tracks [2]*outTrack
	neg    atomic.Pointer[negotiated]
	last   atomic.Int64
	nin    atomic.Uint64
	nout   atomic.Uint64
	rssrc  [2]atomic.Uint32
	dtlsUp atomic.Bool

	mu         sync.Mutex
	localOffer *sdpMedia
	haveRemote bool
	pending    []webrtc.ICECandidateInit
	candidates int
	closed     bool
	wg         sync.WaitGroup
}

func newWebRTCLeg(s *Session, side Side) (*webrtcLeg, error) {
	pc, err := s.e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("media: new PeerConnection: %w", err)
	}
	l := &webrtcLeg{s: s, side: side, pc: pc}
	l.last.Store(time.Now().UnixNano())
	stream := fmt.Sprintf("nkb-%s-%d", s.id, side)
	l.tracks[kindAudio] = &outTrack{id: "audio", stream: stream, kind: webrtc.RTPCodecTypeAudio}
	l.tracks[kindVideo] = &outTrack{id: "video", stream: stream, kind: webrtc.RTPCodecTypeVideo}
	pc.OnTrack(l.onTrack)
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		s.log.Debug("ice state", "side", side, "state", st.String())
		if st == webrtc.ICEConnectionStateFailed {
			s.legFailed(l, side, CauseICEFailed, "ICE failed")
		}
	})
	pc.SCTP().Transport().OnStateChange(func(st webrtc.DTLSTransportState) {
		switch st {
		case webrtc.DTLSTransportStateConnected:
			l.dtlsUp.Store(true)
		case webrtc.DTLSTransportStateFailed:
			s.legFailed(l, side, CauseDTLSFailed, "DTLS handshake failed")
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("connection state", "side", side, "state", st.String())
		if st != webrtc.PeerConnectionStateFailed && st != webrtc.PeerConnectionStateClosed {
			return
		}
		if l.isClosed() {
			return
		}
		switch {
		case pc.ICEConnectionState() == webrtc.ICEConnectionStateFailed:
			s.legFailed(l, side, CauseICEFailed, "ICE failed")
		case !l.dtlsUp.Load():
			s.legFailed(l, side, CauseDTLSFailed, "DTLS handshake failed")
		case st == webrtc.PeerConnectionStateClosed:
			s.legFailed(l, side, CausePeerClosed, "peer closed the connection")
		default:
			s.legFailed(l, side, CauseICEFailed, "connection lost")
		}
	})
	return l, nil
}

func (l *webrtcLeg) kind() Kind                 { return KindWebRTC }
func (l *webrtcLeg) negotiated() *negotiated    { return l.neg.Load() }
func (l *webrtcLeg) lastRTP() time.Time         { return time.Unix(0, l.last.Load()) }
func (l *webrtcLeg) touch()                     { l.last.Store(time.Now().UnixNano()) }
func (l *webrtcLeg) counters() (uint64, uint64) { return l.nin.Load(), l.nout.Load() }

// ready is true once our track is bound and the peer has shown it can receive too (it sends
// us media) or a second has passed: packets sent earlier are often lost while the peer's
// DTLS-SRTP is still being set up.
func (l *webrtcLeg) ready(k mediaKind) bool {
	bound, d := l.tracks[k].boundFor()
	return bound && (l.nin.Load() > 0 || d > time.Second)
}

func (l *webrtcLeg) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// goTracked runs f in a goroutine the leg waits for on close.
func (l *webrtcLeg) goTracked(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
	return true
}

func (l *webrtcLeg) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	k := kindAudio
	if tr.Kind() == webrtc.RTPCodecTypeVideo {
		k = kindVideo
	}
	l.rssrc[k].Store(uint32(tr.SSRC()))
	l.goTracked(func() { l.readTrack(tr) })
	if k == kindVideo {
		l.requestKeyframe()
	}
	if c := l.s.bitrate.Load(); c > 0 && l.side == SideCaller {
		l.sendREMB(uint64(c))
	}
}

func (l *webrtcLeg) readTrack(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	failures := 0
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || l.isClosed() {
				return
			}
			if n == 0 || !errors.Is(err, webrtc.ErrCodecNotFound) {
				if n > 0 {
					continue // a malformed packet and the like: drop it
				}
				if failures++; failures > 100 {
					l.s.log.Warn("giving up reading a track", "side", l.side, "err", err)
					return
				}
				continue
			}
			// A payload type pion did not negotiate: the session accepts it when it was in
			// our offer or the answer (negotiated.lookup), and drops it otherwise.
		}
		failures = 0
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		l.last.Store(time.Now().UnixNano())
		l.nin.Add(1)
		l.s.onRTP(l, l.side, &pkt)
	}
}

func (l *webrtcLeg) readSenderRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				l.s.onKeyframeRequest(l.side)
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				l.s.onREMB(l.side, uint64(p.Bitrate))
			}
		}
	}
}

func (l *webrtcLeg) write(k mediaKind, h *rtp.Header, payload []byte) error {
	ok, err := l.tracks[k].write(h, payload)
	if ok {
		l.nout.Add(1)
	}
	if err != nil && errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

func (l *webrtcLeg) requestKeyframe() {
	if ssrc := l.rssrc[kindVideo].Load(); ssrc != 0 {
		_ = l.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
}

func (l *webrtcLeg) sendREMB(bps uint64) {
	var ssrcs []uint32
	for k := range l.rssrc {
		if s := l.rssrc[k].Load(); s != 0 {
			ssrcs = append(ssrcs, s)
		}
	}
	if len(ssrcs) == 0 {
		return
	}
	_ = l.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bps), SSRCs: ssrcs}})
}

// addTrack adds the section of kind k, ordering codecs by prefer. When restrict is non-nil
// (answering), only codecs the offer has are kept. Answering (offerDir 0) attaches our sending
// track to the offer's section; offering, the section gets direction offerDir, with our
// track when it sends.
func (l *webrtcLeg) addTrack(k mediaKind, prefer, restrict []format, offerDir dir) error {
	ct := webrtc.RTPCodecTypeAudio
	if k == kindVideo {
		ct = webrtc.RTPCodecTypeVideo
	}
	var tr *webrtc.RTPTransceiver
	switch {
	case offerDir.sends():
		t, err := l.pc.AddTransceiverFromTrack(l.tracks[k], webrtc.RTPTransceiverInit{Direction: offerDir.pion()})
		if err != nil {
			return err
		}
		tr = t
	case offerDir.recvs():
		t, err := l.pc.AddTransceiverFromKind(ct, webrtc.RTPTransceiverInit{Direction: offerDir.pion()})
		if err != nil {
			return err
		}
		tr = t
	default:
		sender, err := l.pc.AddTrack(l.tracks[k])
		if err != nil {
			return err
		}
		for _, t := range l.pc.GetTransceivers() {
			if t.Sender() == sender {
				tr = t
			}
		}
	}
	if tr == nil {
		return errors.New("media: no transceiver for track")
	}
	params := codecParamsFor(ct, prefer)
	if restrict != nil {
		kept := params[:0]
		for _, c := range params {
			for _, f := range restrict {
				if matchParams(c, f) {
					kept = append(kept, c)
					break
				}
			}
		}
		params = kept
	}
	if len(params) == 0 {
		return ErrNoCodec
	}
	if err := tr.SetCodecPreferences(params); err != nil {
		return err
	}
	if sender := tr.Sender(); sender != nil {
		l.goTracked(func() { l.readSenderRTCP(sender) })
	}
	return nil
}

// gatherLocal sets desc as local description and waits for ICE gathering (instant with the
// UDP mux), returning the complete SDP.
func (l *webrtcLeg) gatherLocal(ctx context.Context, desc webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("media: set local description: %w", err)
	}
	if err := waitCtx(ctx, done); err != nil {
		return "", err
	}
	return l.pc.LocalDescription().SDP, nil
}

// setRemoteOffer applies the peer's offer.
func (l *webrtcLeg) setRemoteOffer(sdpText string) (*sdpMedia, error) {
	m, err := parseWebRTCSDP(sdpText)
	if err != nil {
		return nil, err
	}
	if err := l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdpText}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	l.remoteSet()
	return m, nil
}

// answer creates our answer to the offer applied by setRemoteOffer. Audio codecs matching
// prefer come first. Our video track is added when sendVideo is set (there is video to send:
// the far side's, or the caller's own for echo) and the offer accepts video; when videoOnly is
// non-nil, only those video codecs are allowed (the far side's, for passthrough). A video
// section with nothing to send is answered recvonly or inactive, as the offer allows.
func (l *webrtcLeg) answer(ctx context.Context, offer *sdpMedia, prefer []format, sendVideo bool, videoOnly []format) (string, error) {
	if err := l.addTrack(kindAudio, prefer, offer.audio, 0); err != nil {
		return "", fmt.Errorf("media: audio track: %w", err)
	}
	if sendVideo && offer.hasVideo && offer.videoDir.recvs() {
		restrict := offer.video
		if videoOnly != nil {
			restrict = nil
			for _, f := range offer.video {
				for _, g := range videoOnly {
					if f.same(g) {
						restrict = append(restrict, f)
						break
					}
				}
			}
		}
		if len(restrict) > 0 {
			if err := l.addTrack(kindVideo, restrict, restrict, 0); err != nil {
				return "", fmt.Errorf("media: video track: %w", err)
			}
		}
	}
	if err := l.stopSourcelessSenders(); err != nil {
		return "", err
	}
	ans, err := l.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("media: create answer: %w", err)
	}
	local, err := l.gatherLocal(ctx, ans)
	if err != nil {
		return "", err
	}
	lm, err := parseWebRTCSDP(local)
	if err != nil {
		return "", fmt.Errorf("media: own answer: %w", err)
	}
	n := negotiatedFrom(lm, offer)
	if len(n.audio) == 0 {
		return "", ErrNoCodec
	}
	n.videoDir = lm.videoDir
	l.neg.Store(n)
	return local, nil
}

// stopSourcelessSenders makes every transceiver we have no track for answer without sending:
// sendonly becomes inactive, sendrecv recvonly. pion answers a recvonly offer section it has
// no track for with sendonly and no msid; Chromium then fires ontrack with no stream for it,
// and a client that keeps the last event's stream (@signalwire/js) loses the audio stream it
// had (issue 14). SetSender with a nil track is pion's own way to stop sending on a
// transceiver; it needs a sender to start from, which is dropped at once.
func (l *webrtcLeg) stopSourcelessSenders() error {
	for _, tr := range l.pc.GetTransceivers() {
		d := tr.Direction()
		if tr.Sender() != nil || (d != webrtc.RTPTransceiverDirectionSendonly && d != webrtc.RTPTransceiverDirectionSendrecv) {
			continue
		}
		sender, err := l.s.e.api.NewRTPSender(&outTrack{id: "none", stream: "none", kind: tr.Kind()}, l.pc.SCTP().Transport())
		if err != nil {
			return fmt.Errorf("media: %s section without a track: %w", tr.Kind(), err)
		}
		err = tr.SetSender(sender, nil)
		_ = sender.Stop()
		if err != nil {
			return fmt.Errorf("media: %s section without a track: %w", tr.Kind(), err)
		}
	}
	return nil
}

// offer creates our offer: audio sendrecv, and video with direction video unless it is
// inactive (sending only when there is video to send, receiving when someone takes it).
func (l *webrtcLeg) offer(ctx context.Context, prefer []format, video dir, videoPrefer []format) (string, error) {
	if err := l.addTrack(kindAudio, prefer, nil, dirSendRecv); err != nil {
		return "", fmt.Errorf("media: audio track: %w", err)
	}
	if video != dirInactive {
		if err := l.addTrack(kindVideo, videoPrefer, nil, video); err != nil {
			return "", fmt.Errorf("media: video track: %w", err)
		}
	}
	off, err := l.pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("media: create offer: %w", err)
	}
	local, err := l.gatherLocal(ctx, off)
	if err != nil {
		return "", err
	}
	lm, err := parseWebRTCSDP(local)
	if err != nil {
		return "", fmt.Errorf("media: own offer: %w", err)
	}
	l.mu.Lock()
	l.localOffer = lm
	l.mu.Unlock()
	return local, nil
}

// setRemoteAnswer applies the peer's answer to our offer.
func (l *webrtcLeg) setRemoteAnswer(sdpText string) (*sdpMedia, error) {
	m, err := parseWebRTCSDP(sdpText)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	off := l.localOffer
	l.mu.Unlock()
	// pion is given the answer widened to every audio format we offered, so that it accepts
	// whichever of them the peer sends; negotiatedFrom below uses the answer as written.
	if err := l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: widenAnswer(sdpText, off)}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	n := negotiatedFrom(m, off)
	if len(n.audio) == 0 {
		return nil, ErrNoCodec
	}
	if off != nil && m.hasVideo {
		n.videoDir = off.videoDir & m.videoDir.reverse()
	}
	l.neg.Store(n)
	l.remoteSet()
	return m, nil
}

func (l *webrtcLeg) remoteSet() {
	l.mu.Lock()
	l.haveRemote = true
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, c := range pending {
		if err := l.pc.AddICECandidate(c); err != nil {
			l.s.log.Debug("buffered candidate refused", "err", err)
		}
	}
}

func (l *webrtcLeg) addCandidate(c Candidate) error {
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}
	if len(c.Candidate) > 1024 {
		return errors.New("media: candidate too long")
	}
	l.mu.Lock()
	if l.candidates >= maxCandidates {
		l.mu.Unlock()
		return errors.New("media: too many candidates")
	}
	l.candidates++
	if !l.haveRemote {
		defer l.mu.Unlock()
		if len(l.pending) >= maxPendingCandidates {
			return errors.New("media: too many candidates before the remote description")
		}
		l.pending = append(l.pending, init)
		return nil
	}
	l.mu.Unlock()
	if err := l.pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("media: bad candidate: %w", err)
	}
	return nil
}

func (l *webrtcLeg) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_ = l.pc.GracefulClose()
	l.wg.Wait()
}
