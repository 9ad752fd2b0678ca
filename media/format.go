package media

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// Limits on a WebRTC SDP.
const (
	maxWebRTCSDPSize  = 64 << 10
	maxWebRTCSDPLines = 2000
)

type mediaKind int

const (
	kindAudio mediaKind = iota
	kindVideo
)

func (k mediaKind) String() string {
	if k == kindVideo {
		return "video"
	}
	return "audio"
}

// format is one negotiated payload format.
type format struct {
	PT       uint8
	Name     string // lower case
	Rate     uint32
	Channels uint16
	Fmtp     string
}

func (f format) isTE() bool         { return f.Name == "telephone-event" }
func (f format) same(o format) bool { return f.Name == o.Name && f.Rate == o.Rate }
func (f format) String() string     { return fmt.Sprintf("%s/%d(pt %d)", f.Name, f.Rate, f.PT) }

func fromPlain(c plainrtp.Codec) format {
	return format{PT: c.PT, Name: strings.ToLower(c.Name), Rate: uint32(c.Rate), Channels: uint16(c.Channels), Fmtp: c.Fmtp}
}

func toPlain(f format) plainrtp.Codec {
	name := f.Name
	switch name {
	case codec.PCMU, codec.PCMA:
		name = strings.ToUpper(name)
	}
	return plainrtp.Codec{PT: f.PT, Name: name, Rate: int(f.Rate), Channels: int(f.Channels), Fmtp: f.Fmtp}
}

// negotiated is what one leg agreed with its peer.
type negotiated struct {
	audio []format // what the peer accepts, preference order (telephone-events included)
	video []format
	// videoDir is what the leg does with video, from nkbridge's side: dirSend when it sends
	// video to the peer, dirRecv when the peer sends video to it (inactive for plain RTP).
	videoDir dir
	recv     map[uint8]format
	kinds    map[uint8]mediaKind
}

func (n *negotiated) lookup(pt uint8) (format, mediaKind, bool) {
	f, ok := n.recv[pt]
	return f, n.kinds[pt], ok
}

// dir is the direction of a media section as its author wrote it: dirSend set when the
// author sends on it, dirRecv when it receives.
type dir uint8

const (
	dirInactive dir = 0
	dirSend     dir = 1
	dirRecv     dir = 2
	dirSendRecv     = dirSend | dirRecv
)

func (d dir) sends() bool { return d&dirSend != 0 }
func (d dir) recvs() bool { return d&dirRecv != 0 }

// reverse is the direction seen from the other end (sendonly <-> recvonly).
func (d dir) reverse() dir { return (d&dirSend)<<1 | (d&dirRecv)>>1 }

func (d dir) String() string {
	switch d {
	case dirSend:
		return "sendonly"
	case dirRecv:
		return "recvonly"
	case dirSendRecv:
		return "sendrecv"
	}
	return "inactive"
}

func (d dir) pion() webrtc.RTPTransceiverDirection {
	switch d {
	case dirSend:
		return webrtc.RTPTransceiverDirectionSendonly
	case dirRecv:
		return webrtc.RTPTransceiverDirectionRecvonly
	case dirSendRecv:
		return webrtc.RTPTransceiverDirectionSendrecv
	}
	return webrtc.RTPTransceiverDirectionInactive
}

// dirAttr returns the direction attribute among attrs, if any.
func dirAttr(attrs []sdp.Attribute) (dir, bool) {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv":
			return dirSendRecv, true
		case "sendonly":
			return dirSend, true
		case "recvonly":
			return dirRecv, true
		case "inactive":
			return dirInactive, true
		}
	}
	return 0, false
}

// sectionDir is the direction of media section m of d (RFC 4566: the media attribute, else the
// session attribute, else sendrecv).
func sectionDir(d *sdp.SessionDescription, m *sdp.MediaDescription) dir {
	if v, ok := dirAttr(m.Attributes); ok {
		return v
	}
	if v, ok := dirAttr(d.Attributes); ok {
		return v
	}
	return dirSendRecv
}

// sdpMedia is the parsed media section list of a WebRTC SDP.
type sdpMedia struct {
	audio, video       []format
	hasAudio           bool
	hasVideo           bool
	audioDir, videoDir dir // as the author wrote them (inactive when the kind is absent)
}

// parseWebRTCSDP validates a WebRTC SDP enough to give clear errors before pion sees it.
func parseWebRTCSDP(s string) (*sdpMedia, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty SDP", ErrBadSDP)
	}
	if len(s) > maxWebRTCSDPSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrBadSDP, len(s), maxWebRTCSDPSize)
	}
	if n := strings.Count(s, "\n"); n > maxWebRTCSDPLines {
		return nil, fmt.Errorf("%w: %d lines (limit %d)", ErrBadSDP, n, maxWebRTCSDPLines)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	out := &sdpMedia{}
	fpOK := checkFingerprints(d.Attributes)
	if fpOK != nil && fpOK != errNoFingerprint {
		return nil, fpOK
	}
	haveFP := fpOK == nil
	for _, m := range d.MediaDescriptions {
		port := m.MediaName.Port.Value
		if port < 0 || port > 65535 {
			return nil, fmt.Errorf("%w: port %d out of range", ErrBadSDP, port)
		}
		if m.MediaName.Media != "audio" && m.MediaName.Media != "video" {
			continue
		}
		if port == 0 {
			continue
		}
		if err := checkFingerprints(m.Attributes); err == nil {
			haveFP = true
		} else if err != errNoFingerprint {
			return nil, err
		}
		fs, err := sdpFormats(m)
		if err != nil {
			return nil, err
		}
		if m.MediaName.Media == "audio" && !out.hasAudio {
			out.hasAudio, out.audio, out.audioDir = true, fs, sectionDir(&d, m)
		} else if m.MediaName.Media == "video" && !out.hasVideo {
			out.hasVideo, out.video, out.videoDir = true, fs, sectionDir(&d, m)
		}
	}
	if !out.hasAudio {
		return nil, ErrNoAudio
	}
	if !haveFP {
		return nil, fmt.Errorf("%w: no DTLS fingerprint", ErrBadSDP)
	}
	return out, nil
}

var errNoFingerprint = fmt.Errorf("%w: no fingerprint", ErrBadSDP)

func checkFingerprints(attrs []sdp.Attribute) error {
	found := false
	for _, a := range attrs {
		if a.Key != "fingerprint" {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) != 2 {
			return fmt.Errorf("%w: malformed fingerprint %q", ErrBadSDP, a.Value)
		}
		var want int
		switch strings.ToLower(f[0]) {
		case "sha-1":
			want = 20
		case "sha-224":
			want = 28
		case "sha-256":
			want = 32
		case "sha-384":
			want = 48
		case "sha-512":
			want = 64
		default:
			return fmt.Errorf("%w: unsupported fingerprint hash %q", ErrBadSDP, f[0])
		}
		raw, err := hex.DecodeString(strings.ReplaceAll(f[1], ":", ""))
		if err != nil || len(raw) != want || len(f[1]) != want*3-1 {
			return fmt.Errorf("%w: malformed %s fingerprint", ErrBadSDP, f[0])
		}
		found = true
	}
	if !found {
		return errNoFingerprint
	}
	return nil
}

func sdpFormats(m *sdp.MediaDescription) ([]format, error) {
	rtpmap := map[uint8]format{}
	fmtp := map[uint8]string{}
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" && a.Key != "fmtp" {
			continue
		}
		sp := strings.IndexByte(a.Value, ' ')
		if sp < 0 {
			continue
		}
		pt, err := strconv.Atoi(a.Value[:sp])
		if err != nil || pt < 0 || pt > 127 {
			continue
		}
		rest := strings.TrimSpace(a.Value[sp+1:])
		if a.Key == "fmtp" {
			fmtp[uint8(pt)] = rest
			continue
		}
		parts := strings.Split(rest, "/")
		if len(parts) < 2 {
			continue
		}
		rate, err := strconv.Atoi(parts[1])
		if err != nil || rate <= 0 || rate > 1000000 {
			return nil, fmt.Errorf("%w: bad clock rate in rtpmap %q", ErrBadSDP, a.Value)
		}
		f := format{PT: uint8(pt), Name: strings.ToLower(parts[0]), Rate: uint32(rate)}
		if len(parts) > 2 {
			ch, _ := strconv.Atoi(parts[2])
			f.Channels = uint16(ch)
		}
		rtpmap[uint8(pt)] = f
	}
	var out []format
	for _, s := range m.MediaName.Formats {
		pt, err := strconv.Atoi(s)
		if err != nil || pt < 0 || pt > 127 {
			return nil, fmt.Errorf("%w: bad payload type %q", ErrBadSDP, s)
		}
		f, ok := rtpmap[uint8(pt)]
		if !ok {
			switch pt {
			case 0:
				f = format{PT: 0, Name: codec.PCMU, Rate: 8000}
			case 8:
				f = format{PT: 8, Name: codec.PCMA, Rate: 8000}
			default:
				continue
			}
		}
		f.Fmtp = fmtp[uint8(pt)]
		out = append(out, f)
	}
	return out, nil
}

// audioSupported reports whether an audio format can be bridged (passthrough or transcode).
func audioSupported(f format) bool { return f.isTE() || codec.Supported(f.Name) }

// negotiatedFrom builds the negotiation result of a leg from the answer (authoritative for
// what the peer accepts) and the offer (extra receive payload types).
func negotiatedFrom(answer, offer *sdpMedia) *negotiated {
	n := &negotiated{recv: map[uint8]format{}, kinds: map[uint8]mediaKind{}}
	for _, f := range answer.audio {
		if audioSupported(f) {
			n.audio = append(n.audio, f)
		}
	}
	n.video = answer.video
	add := func(m *sdpMedia) {
		for _, f := range m.audio {
			if _, ok := n.recv[f.PT]; !ok {
				n.recv[f.PT], n.kinds[f.PT] = f, kindAudio
			}
		}
		for _, f := range m.video {
			if _, ok := n.recv[f.PT]; !ok {
				n.recv[f.PT], n.kinds[f.PT] = f, kindVideo
			}
		}
	}
	add(answer)
	if offer != nil {
		add(offer)
	}
	return n
}

// registerCodecs registers the codecs WebRTC endpoints negotiate.
func registerCodecs(me *webrtc.MediaEngine) error { return registerCodecsInto(me) }

func registerCodecsInto(me codecRegistrar) error {
	videoFB := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"},
		{Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	audio := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 48000,
			SDPFmtpLine: "0-16"}, PayloadType: 110},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000,
			SDPFmtpLine: "0-16"}, PayloadType: 126},
	}
	for _, c := range audio {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
	}
	video := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000,
			SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFB}, PayloadType: 98},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFB}, PayloadType: 102},
	}
	for _, c := range video {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}

// codecParamsFor returns the engine's registered parameters ordered so that formats matching
// prefer come first.
func codecParamsFor(kind webrtc.RTPCodecType, prefer []format) []webrtc.RTPCodecParameters {
	var all []webrtc.RTPCodecParameters
	for _, c := range registeredList() {
		if c.kind == kind {
			all = append(all, c.p)
		}
	}
	var out []webrtc.RTPCodecParameters
	used := make([]bool, len(all))
	for _, p := range prefer {
		for i, c := range all {
			if !used[i] && matchParams(c, p) {
				out = append(out, c)
				used[i] = true
			}
		}
	}
	for i, c := range all {
		if !used[i] {
			out = append(out, c)
		}
	}
	return out
}

type regCodec struct {
	kind webrtc.RTPCodecType
	p    webrtc.RTPCodecParameters
}

func registeredList() []regCodec {
	rec := &recorderME{}
	_ = registerCodecsInto(rec)
	return rec.list
}

type codecRegistrar interface {
	RegisterCodec(webrtc.RTPCodecParameters, webrtc.RTPCodecType) error
}

type recorderME struct{ list []regCodec }

func (r *recorderME) RegisterCodec(p webrtc.RTPCodecParameters, k webrtc.RTPCodecType) error {
	r.list = append(r.list, regCodec{kind: k, p: p})
	return nil
}

func matchParams(c webrtc.RTPCodecParameters, f format) bool {
	mime := strings.ToLower(c.MimeType)
	i := strings.IndexByte(mime, '/')
	return mime[i+1:] == f.Name && c.ClockRate == f.Rate
}

// widenAnswer returns the peer's answer with every audio format of our offer that the answer
// left out added back to its first audio section, for pion only: a browser may send any
// payload type of our offer (Chromium sends the first codec we offered even when its answer
// kept only Opus), and pion drops packets of payload types it did not negotiate (a track
// whose first packet has one never even starts). What we send is still chosen from the
// answer as the peer wrote it. On any problem the answer is returned unchanged.
func widenAnswer(answer string, offer *sdpMedia) string {
	if offer == nil {
		return answer
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return answer
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		have := map[string]bool{}
		for _, f := range m.MediaName.Formats {
			have[f] = true
		}
		added := false
		for _, f := range offer.audio {
			pt := strconv.Itoa(int(f.PT))
			if have[pt] || !audioSupported(f) {
				continue
			}
			have[pt] = true
			added = true
			m.MediaName.Formats = append(m.MediaName.Formats, pt)
			rtpmap := fmt.Sprintf("%d %s/%d", f.PT, f.Name, f.Rate)
			if f.Channels > 1 {
				rtpmap += fmt.Sprintf("/%d", f.Channels)
			}
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtpmap", Value: rtpmap})
			if f.Fmtp != "" {
				m.Attributes = append(m.Attributes, sdp.Attribute{Key: "fmtp", Value: fmt.Sprintf("%d %s", f.PT, f.Fmtp)})
			}
		}
		if !added {
			return answer
		}
		out, err := d.Marshal()
		if err != nil {
			return answer
		}
		return string(out)
	}
	return answer
}
