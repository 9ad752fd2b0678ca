package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/dtmf"
)

// pcmRate is the PCM rate transcoding goes through (every transcode involves G.711).
const pcmRate = 8000

// pipe moves one kind of media from a source leg to a destination leg, rewriting payload
// type, SSRC (done by the leg), sequence number and timestamp, and transcoding audio when the
// destination does not accept the source's codec.
type pipe struct {
	s        *Session
	src, dst leg
	k        mediaKind

	mu sync.Mutex
	// timestamp mapping: out = anchorOut + (in - anchorIn) * outRate / inRate
	anchored          bool
	inSSRC            uint32
	inRate, outRate   uint32
	anchorIn          uint32
	anchorOut         uint32
	seqAnchored       bool
	seqDelta          uint16
	lastOutSeq        uint16
	lastOutTS         uint32
	started           bool
	transcoding       bool
	curOut            format
	tcIn, tcOut       format
	dec               codec.Decoder
	enc               codec.Encoder
	pcm, scratch      []int16
	pcmTS             uint32
	pcmValid          bool
	encBuf            []byte
	bitrate           int
	warned            map[string]bool
	hdr               rtp.Header // scratch header, reused under mu
	forwarded, transc atomic.Uint64
	dropped           atomic.Uint64
	rx                rxStats // the source stream's loss and jitter (traffic.go)
	lastIn            format  // the source's last audio/video format (not telephone-event)
}

func newPipe(s *Session, src, dst leg, k mediaKind) *pipe {
	return &pipe{s: s, src: src, dst: dst, k: k, lastOutSeq: uint16(rand.Uint32()),
		lastOutTS: rand.Uint32(), warned: map[string]bool{}}
}

func (p *pipe) warnOnce(key, msg string, args ...any) {
	if !p.warned[key] {
		p.warned[key] = true
		p.s.log.Warn(msg, args...)
	}
}

// mapTS maps an incoming timestamp to the outgoing timeline. A change of source SSRC or clock
// rates starts a new segment that continues the output timeline without a jump.
func (p *pipe) mapTS(pkt *rtp.Packet, inRate, outRate uint32, mayReanchor bool) uint32 {
	if !p.anchored || (mayReanchor && (pkt.SSRC != p.inSSRC || inRate != p.inRate || outRate != p.outRate)) {
		p.anchored = true
		p.inSSRC, p.inRate, p.outRate = pkt.SSRC, inRate, outRate
		p.anchorIn = pkt.Timestamp
		p.anchorOut = p.lastOutTS + outRate/50
		p.seqAnchored = false
		p.pcmValid = false
		if p.k == kindVideo {
			p.src.requestKeyframe()
		}
	}
	d := int64(int32(pkt.Timestamp - p.anchorIn))
	if d > 1<<28 || d < -(1<<28) {
		p.anchorOut += uint32(d * int64(p.outRate) / int64(p.inRate))
		p.anchorIn = pkt.Timestamp
		d = 0
	}
	return p.anchorOut + uint32(d*int64(p.outRate)/int64(p.inRate))
}

func (p *pipe) mapSeq(in uint16) uint16 {
	if !p.seqAnchored {
		p.seqDelta = p.lastOutSeq + 1 - in
		p.seqAnchored = true
	}
	return in + p.seqDelta
}

func (p *pipe) emit(h *rtp.Header, payload []byte) {
	if err := p.dst.write(p.k, h, payload); err != nil {
		p.dropped.Add(1)
		return
	}
	if !p.started || int16(h.SequenceNumber-p.lastOutSeq) > 0 {
		p.lastOutSeq = h.SequenceNumber
	}
	if !p.started || int32(h.Timestamp-p.lastOutTS) > 0 {
		p.lastOutTS = h.Timestamp
	}
	p.started = true
	p.forwarded.Add(1)
	p.s.e.traffic.sent(len(payload))
}

// push forwards one packet whose payload format on the source leg is in.
func (p *pipe) push(in format, pkt *rtp.Packet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in.isTE() {
		p.s.e.traffic.received(&p.rx, 0, pkt, time.Time{})
	} else {
		p.s.e.traffic.received(&p.rx, in.Rate, pkt, time.Now())
		p.lastIn = in
	}
	n := p.dst.negotiated()
	if n == nil {
		p.dropped.Add(1)
		return
	}
	switch {
	case p.k == kindVideo:
		p.pushVideo(in, pkt, n)
	case in.isTE():
		p.pushTE(in, pkt, n)
	default:
		p.pushAudio(in, pkt, n)
	}
}

// header fills the pipe's scratch header (callers hold p.mu).
func (p *pipe) header(marker bool, pt uint8, seq uint16, ts uint32) *rtp.Header {
	p.hdr = rtp.Header{Version: 2, Marker: marker, PayloadType: pt, SequenceNumber: seq, Timestamp: ts}
	return &p.hdr
}

func (p *pipe) pushVideo(in format, pkt *rtp.Packet, n *negotiated) {
	var out *format
	for i := range n.video {
		if n.video[i].same(in) {
			out = &n.video[i]
			break
		}
	}
	if out == nil {
		p.dropped.Add(1)
		p.warnOnce("video:"+in.Name, "video codec not accepted by the other side; video dropped", "codec", in.String())
		return
	}
	ts := p.mapTS(pkt, in.Rate, out.Rate, true)
	p.emit(p.header(pkt.Marker, out.PT, p.mapSeq(pkt.SequenceNumber), ts), pkt.Payload)
}

// chooseAudioOut picks the destination format for in: the same codec when the destination
// accepts it (passthrough), otherwise its first transcodable codec.
func chooseAudioOut(in format, list []format) (format, bool) {
	for _, f := range list {
		if f.same(in) {
			return f, true
		}
	}
	if !codec.Supported(in.Name) {
		return format{}, false
	}
	for _, f := range list {
		if !f.isTE() && codec.Supported(f.Name) {
			return f, true
		}
	}
	return format{}, false
}

func (p *pipe) pushAudio(in format, pkt *rtp.Packet, n *negotiated) {
	out, ok := chooseAudioOut(in, n.audio)
	if !ok {
		p.dropped.Add(1)
		p.warnOnce("audio:"+in.Name, "no usable codec toward the other side; audio dropped", "codec", in.String())
		return
	}
	p.curOut = out
	ts := p.mapTS(pkt, in.Rate, out.Rate, true)
	if out.same(in) {
		if p.transcoding {
			p.transcoding, p.seqAnchored = false, false
		}
		p.emit(p.header(pkt.Marker, out.PT, p.mapSeq(pkt.SequenceNumber), ts), pkt.Payload)
		return
	}
	p.transcoding = true
	p.seqAnchored = false
	if !p.dst.ready(kindAudio) {
		// Don't run the encoder before the destination can receive: a predictive codec
		// (Opus SILK) decoded from mid-stream sounds wrong for a while.
		p.dec = nil
		p.dropped.Add(1)
		return
	}
	if err := p.transcode(in, out, pkt, ts); err != nil {
		p.dropped.Add(1)
		p.warnOnce("tc:"+err.Error(), "transcoding failed", "from", in.String(), "to", out.String(), "err", err)
	}
}

func (p *pipe) transcode(in, out format, pkt *rtp.Packet, outTS uint32) error {
	if p.dec == nil || !p.tcIn.same(in) || !p.tcOut.same(out) {
		dec, err := codec.NewDecoder(in.Name, pcmRate)
		if err != nil {
			return err
		}
		enc, err := codec.NewEncoder(out.Name, pcmRate)
		if err != nil {
			return err
		}
		if p.bitrate > 0 {
			_ = codec.SetBitrate(enc, p.bitrate)
		}
		p.dec, p.enc, p.tcIn, p.tcOut = dec, enc, in, out
		p.pcmValid = false
		if p.encBuf == nil {
			p.encBuf = make([]byte, 1500)
		}
	}
	var err error
	p.scratch, err = p.dec.Decode(p.scratch[:0], pkt.Payload)
	if err != nil {
		return err
	}
	scale := out.Rate / pcmRate
	if !p.pcmValid || outTS != p.pcmTS+uint32(len(p.pcm))*scale {
		p.pcm = p.pcm[:0]
		p.pcmTS = outTS
		p.pcmValid = true
	}
	p.pcm = append(p.pcm, p.scratch...)
	marker := pkt.Marker
	frame := len(p.pcm)
	if fs := p.enc.FrameSizes(); fs != nil {
		frame = pcmRate / 50 // 20 ms
	}
	if len(p.pcm) > 6*pcmRate/10 { // never buffer more than 600 ms
		p.pcm = p.pcm[:0]
		p.pcmValid = false
		return errors.New("media: transcoder backlog")
	}
	for frame > 0 && len(p.pcm) >= frame && frame <= 1400 {
		nb, err := p.enc.Encode(p.encBuf, p.pcm[:frame])
		if err != nil {
			return err
		}
		p.lastOutSeq++
		p.emit(p.header(marker, out.PT, p.lastOutSeq, p.pcmTS), p.encBuf[:nb])
		marker = false
		p.transc.Add(1)
		p.pcmTS += uint32(frame) * scale
		rest := copy(p.pcm, p.pcm[frame:])
		p.pcm = p.pcm[:rest]
	}
	return nil
}

// teFor returns the destination's telephone-event format, preferring clock rate rate.
func teFor(list []format, rate uint32) (format, bool) {
	var any *format
	for i, f := range list {
		if f.isTE() {
			if f.Rate == rate {
				return f, true
			}
			if any == nil {
				any = &list[i]
			}
		}
	}
	if any != nil {
		return *any, true
	}
	return format{}, false
}

func (p *pipe) pushTE(in format, pkt *rtp.Packet, n *negotiated) {
	outRate := in.Rate
	if p.anchored {
		outRate = p.outRate
	}
	out, ok := teFor(n.audio, outRate)
	if !ok || len(pkt.Payload) < dtmf.PayloadSize {
		p.dropped.Add(1)
		p.warnOnce("te", "telephone-event not accepted by the other side; DTMF dropped")
		return
	}
	inRate := in.Rate
	if p.anchored {
		inRate = p.inRate // telephone-events share the audio stream's timeline
	}
	ts := p.mapTS(pkt, inRate, out.Rate, !p.anchored)
	ev, _ := dtmf.Parse(pkt.Payload)
	if in.Rate != out.Rate {
		ev.Duration = uint16(min(uint64(ev.Duration)*uint64(out.Rate)/uint64(in.Rate), 0xFFFF))
	}
	var seq uint16
	if p.transcoding {
		p.lastOutSeq++
		seq = p.lastOutSeq
	} else {
		seq = p.mapSeq(pkt.SequenceNumber)
	}
	p.emit(p.header(pkt.Marker, out.PT, seq, ts), ev.Marshal())
}

// sendDTMF injects digits as RFC 4733 events toward the destination, pacing the packets in
// real time. It returns when all are sent or ctx/the session ends.
func (p *pipe) sendDTMF(ctx context.Context, digits string, durMS int) error {
	for i, d := range digits {
		p.mu.Lock()
		n := p.dst.negotiated()
		rate := p.outRate
		if rate == 0 && n != nil && len(n.audio) > 0 {
			rate = n.audio[0].Rate
		}
		var te format
		ok := false
		if n != nil {
			te, ok = teFor(n.audio, rate)
		}
		if !ok {
			p.mu.Unlock()
			return errors.New("media: the other side did not negotiate telephone-event")
		}
		pkts, err := dtmf.Generate(d, durMS, 20, int(te.Rate))
		if err != nil {
			p.mu.Unlock()
			return err
		}
		ts := p.lastOutTS + te.Rate/50
		p.mu.Unlock()
		start := time.Now()
		for _, pk := range pkts {
			if err := sleepUntil(ctx, start.Add(time.Duration(pk.SendMS)*time.Millisecond)); err != nil {
				return err
			}
			p.mu.Lock()
			p.lastOutSeq++
			p.emit(p.header(pk.Marker, te.PT, p.lastOutSeq, ts), pk.Payload)
			p.seqAnchored = false
			p.mu.Unlock()
		}
		if i < len(digits)-1 {
			if err := sleepUntil(ctx, time.Now().Add(80*time.Millisecond)); err != nil {
				return err
			}
		}
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pipe) setBitrate(bps int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bitrate = bps
	if p.enc != nil && bps > 0 {
		_ = codec.SetBitrate(p.enc, bps)
	}
}

func (p *pipe) String() string { return fmt.Sprintf("pipe(%s)", p.k) }
