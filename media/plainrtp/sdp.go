// Package plainrtp provides RTP endpoints for SIP-style call legs: a port pool with
// quarantine, a UDP endpoint with symmetric RTP latching and RTCP, optionally SRTP with SDES
// keys (RFC 4568, srtp.go), and SDP offer/answer generation and parsing for the audio codecs
// nkbridge speaks (PCMU, PCMA, Opus and RFC 4733 telephone-event).
package plainrtp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Limits applied to every SDP this package parses.
const (
	MaxSDPSize  = 16 << 10
	MaxSDPLines = 400
)

// Codec is one payload format of an audio stream.
type Codec struct {
	PT       uint8
	Name     string // as written in rtpmap, e.g. "PCMU", "opus", "telephone-event"
	Rate     int    // clock rate
	Channels int    // 0 or 1 for mono; Opus is always 2 in SDP
	Fmtp     string // format parameters, without "a=fmtp:PT "
}

// IsTelephoneEvent reports whether c is RFC 4733 telephone-event.
func (c Codec) IsTelephoneEvent() bool { return strings.EqualFold(c.Name, "telephone-event") }

// Same reports whether c and o are the same format (name, case-insensitively, and rate).
func (c Codec) Same(o Codec) bool { return strings.EqualFold(c.Name, o.Name) && c.Rate == o.Rate }

// Standard codecs, with the payload types nkbridge offers them under.
var (
	PCMU       = Codec{PT: 0, Name: "PCMU", Rate: 8000}
	PCMA       = Codec{PT: 8, Name: "PCMA", Rate: 8000}
	Opus       = Codec{PT: 111, Name: "opus", Rate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	TelEvent8  = Codec{PT: 101, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"}
	TelEvent48 = Codec{PT: 110, Name: "telephone-event", Rate: 48000, Fmtp: "0-16"}
)

// DefaultCodecs returns the codecs nkbridge offers on a plain RTP leg, in preference order.
func DefaultCodecs() []Codec { return []Codec{PCMU, PCMA, Opus, TelEvent8, TelEvent48} }

// Direction values of an audio stream.
const (
	SendRecv = "sendrecv"
	SendOnly = "sendonly"
	RecvOnly = "recvonly"
	Inactive = "inactive"
)

// Description is the audio part of an SDP session description for a plain RTP leg.
type Description struct {
	Addr      netip.Addr // connection address
	Port      int        // RTP port
	RTCPPort  int        // RTCP port (a=rtcp), 0 for Port+1
	RTCPMux   bool
	Codecs    []Codec // in preference order, telephone-events included
	PTime     int     // milliseconds, 0 if absent
	Direction string  // SendRecv if absent
	SessionID uint64  // o= line session id and version
	Version   uint64
	// Profile is the m= line's transport (RTP/AVP when empty; RTP/SAVP for SRTP).
	Profile string
	// Crypto are the stream's usable SDES attributes (srtp.go), in the order given; an offer
	// may carry several, an answer one.
	Crypto []Crypto
}

// Errors returned by ParseSDP.
var (
	ErrTooLarge = errors.New("plainrtp: SDP too large")
	ErrNoAudio  = errors.New("plainrtp: SDP has no usable audio stream")
)

// ParseSDP parses an SDP and extracts its first active audio stream. It refuses oversized
// input, host names (no DNS lookups are ever made), absurd ports, DTLS-SRTP profiles and
// malformed a=crypto attributes; RTP/SAVP needs a usable one (srtp.go).
func ParseSDP(b []byte) (*Description, error) {
	if len(b) > MaxSDPSize {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(b), MaxSDPSize)
	}
	if n := bytes.Count(b, []byte("\n")); n > MaxSDPLines {
		return nil, fmt.Errorf("%w (%d lines, limit %d)", ErrTooLarge, n, MaxSDPLines)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("plainrtp: empty SDP")
	}
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(b)); err != nil {
		return nil, fmt.Errorf("plainrtp: bad SDP: %w", err)
	}
	d := &Description{SessionID: s.Origin.SessionID, Version: s.Origin.SessionVersion, Direction: SendRecv}
	var sessAddr netip.Addr
	if s.ConnectionInformation != nil {
		a, err := parseConn(s.ConnectionInformation)
		if err != nil {
			return nil, err
		}
		sessAddr = a
	}
	for _, a := range s.Attributes {
		if isDirection(a.Key) {
			d.Direction = a.Key
		}
	}
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		port := m.MediaName.Port.Value
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("plainrtp: audio port %d out of range", port)
		}
		proto := strings.Join(m.MediaName.Protos, "/")
		if proto != "RTP/AVP" && proto != "RTP/AVPF" && !IsSecure(proto) {
			return nil, fmt.Errorf("plainrtp: audio profile %q not supported (RTP/AVP, or RTP/SAVP with SDES)", proto)
		}
		d.Port = port
		d.Profile = proto
		d.Addr = sessAddr
		if m.ConnectionInformation != nil {
			a, err := parseConn(m.ConnectionInformation)
			if err != nil {
				return nil, err
			}
			d.Addr = a
		}
		if !d.Addr.IsValid() {
			return nil, errors.New("plainrtp: audio stream has no connection address")
		}
		if err := parseFormats(d, m); err != nil {
			return nil, err
		}
		if len(d.Codecs) == 0 {
			return nil, fmt.Errorf("%w: no payload formats", ErrNoAudio)
		}
		if IsSecure(proto) && len(d.Crypto) == 0 {
			return nil, ErrNoCrypto
		}
		return d, nil
	}
	return nil, ErrNoAudio
}

func isDirection(k string) bool {
	return k == SendRecv || k == SendOnly || k == RecvOnly || k == Inactive
}

func parseConn(c *sdp.ConnectionInformation) (netip.Addr, error) {
	if c.Address == nil {
		return netip.Addr{}, errors.New("plainrtp: c= line without address")
	}
	host := c.Address.Address
	if i := strings.IndexByte(host, '/'); i >= 0 { // multicast TTL
		host = host[:i]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("plainrtp: connection address %q is not an IP address", host)
	}
	if a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("plainrtp: multicast connection address %s not supported", a)
	}
	return a.Unmap(), nil
}

func parseFormats(d *Description, m *sdp.MediaDescription) error {
	rtpmap := map[uint8]Codec{}
	fmtp := map[uint8]string{}
	cryptoLines := 0
	tags := map[int]bool{}
	for _, a := range m.Attributes {
		switch {
		case a.Key == "crypto":
			if cryptoLines++; cryptoLines > MaxCryptoLines {
				return fmt.Errorf("%w: more than %d in one stream", ErrBadCrypto, MaxCryptoLines)
			}
			c, err := ParseCrypto(a.Value)
			if errors.Is(err, ErrCryptoUnsupported) {
				continue // the offerer may have offered others we speak
			}
			if err != nil {
				return err
			}
			if tags[c.Tag] {
				return fmt.Errorf("%w: tag %d used twice", ErrBadCrypto, c.Tag)
			}
			tags[c.Tag] = true
			d.Crypto = append(d.Crypto, c)
		case a.Key == "rtpmap":
			pt, rest, ok := ptPrefix(a.Value)
			if !ok {
				continue
			}
			parts := strings.Split(rest, "/")
			if len(parts) < 2 {
				continue
			}
			rate, err := strconv.Atoi(parts[1])
			if err != nil || rate <= 0 || rate > 1000000 {
				return fmt.Errorf("plainrtp: bad clock rate in rtpmap %q", a.Value)
			}
			c := Codec{PT: pt, Name: parts[0], Rate: rate}
			if len(parts) > 2 {
				c.Channels, _ = strconv.Atoi(parts[2])
			}
			rtpmap[pt] = c
		case a.Key == "fmtp":
			if pt, rest, ok := ptPrefix(a.Value); ok {
				fmtp[pt] = rest
			}
		case a.Key == "ptime":
			if v, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && v > 0 && v <= 1000 {
				d.PTime = v
			}
		case a.Key == "rtcp":
			f := strings.Fields(a.Value)
			if len(f) > 0 {
				p, err := strconv.Atoi(f[0])
				if err != nil || p < 1 || p > 65535 {
					return fmt.Errorf("plainrtp: bad a=rtcp port %q", a.Value)
				}
				d.RTCPPort = p
			}
		case a.Key == "rtcp-mux":
			d.RTCPMux = true
		case isDirection(a.Key):
			d.Direction = a.Key
		}
	}
	for _, f := range m.MediaName.Formats {
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 || v > 127 {
			return fmt.Errorf("plainrtp: bad payload type %q", f)
		}
		pt := uint8(v)
		c, ok := rtpmap[pt]
		if !ok {
			switch pt {
			case 0:
				c = PCMU
			case 8:
				c = PCMA
			default:
				continue // static type we don't know, or dynamic without rtpmap
			}
		}
		c.Fmtp = fmtp[pt]
		d.Codecs = append(d.Codecs, c)
	}
	return nil
}

func ptPrefix(v string) (uint8, string, bool) {
	sp := strings.IndexByte(v, ' ')
	if sp < 0 {
		return 0, "", false
	}
	n, err := strconv.Atoi(v[:sp])
	if err != nil || n < 0 || n > 127 {
		return 0, "", false
	}
	return uint8(n), strings.TrimSpace(v[sp+1:]), true
}

// Marshal writes d as a complete SDP.
func (d *Description) Marshal() []byte {
	var b strings.Builder
	ipv := "IP4"
	if d.Addr.Is6() {
		ipv = "IP6"
	}
	fmt.Fprintf(&b, "v=0\r\no=nkbridge %d %d IN %s %s\r\ns=nkbridge\r\nc=IN %s %s\r\nt=0 0\r\n",
		d.SessionID, d.Version, ipv, d.Addr, ipv, d.Addr)
	profile := d.Profile
	if profile == "" {
		profile = "RTP/AVP"
	}
	b.WriteString("m=audio " + strconv.Itoa(d.Port) + " " + profile)
	for _, c := range d.Codecs {
		b.WriteString(" " + strconv.Itoa(int(c.PT)))
	}
	b.WriteString("\r\n")
	for _, c := range d.Codecs {
		fmt.Fprintf(&b, "a=rtpmap:%d %s/%d", c.PT, c.Name, c.Rate)
		if c.Channels > 1 {
			fmt.Fprintf(&b, "/%d", c.Channels)
		}
		b.WriteString("\r\n")
		if c.Fmtp != "" {
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", c.PT, c.Fmtp)
		}
	}
	if d.PTime > 0 {
		fmt.Fprintf(&b, "a=ptime:%d\r\n", d.PTime)
	}
	for _, c := range d.Crypto {
		b.WriteString("a=crypto:" + c.String() + "\r\n")
	}
	if d.RTCPMux {
		b.WriteString("a=rtcp-mux\r\n")
	} else if d.RTCPPort != 0 {
		fmt.Fprintf(&b, "a=rtcp:%d\r\n", d.RTCPPort)
	}
	dir := d.Direction
	if dir == "" {
		dir = SendRecv
	}
	b.WriteString("a=" + dir + "\r\n")
	return []byte(b.String())
}

// String returns Marshal as a string.
func (d *Description) String() string { return string(d.Marshal()) }

// MainCodec returns the first codec that is not telephone-event.
func (d *Description) MainCodec() (Codec, bool) {
	for _, c := range d.Codecs {
		if !c.IsTelephoneEvent() {
			return c, true
		}
	}
	return Codec{}, false
}

// TelephoneEvent returns the telephone-event codec at clock rate rate, if present.
func (d *Description) TelephoneEvent(rate int) (Codec, bool) {
	for _, c := range d.Codecs {
		if c.IsTelephoneEvent() && c.Rate == rate {
			return c, true
		}
	}
	return Codec{}, false
}

// ErrNoCommonCodec is returned by Answer when the offer has no codec we support.
var ErrNoCommonCodec = errors.New("plainrtp: no common audio codec")

// Answer builds the answer to offer for a local endpoint at addr:port. It picks one audio codec:
// the first of prefer that the offer has (if prefer is non-empty), otherwise the offer's first
// codec that supported has; plus the offer's telephone-event at that codec's clock rate. The
// answer keeps the offer's payload type numbers and mirrors its direction.
func Answer(offer *Description, addr netip.Addr, port int, supported, prefer []Codec) (*Description, error) {
	var chosen *Codec
	for _, p := range prefer {
		for i, c := range offer.Codecs {
			if c.Same(p) && !c.IsTelephoneEvent() && hasCodec(supported, c) {
				chosen = &offer.Codecs[i]
				break
			}
		}
		if chosen != nil {
			break
		}
	}
	if chosen == nil {
		for i, c := range offer.Codecs {
			if !c.IsTelephoneEvent() && hasCodec(supported, c) {
				chosen = &offer.Codecs[i]
				break
			}
		}
	}
	if chosen == nil {
		return nil, ErrNoCommonCodec
	}
	ans := &Description{Addr: addr, Port: port, RTCPMux: offer.RTCPMux, PTime: offer.PTime,
		SessionID: offer.SessionID + 1, Version: 1, Codecs: []Codec{*chosen}}
	if !offer.RTCPMux {
		ans.RTCPPort = port + 1
	}
	if te, ok := offer.TelephoneEvent(chosen.Rate); ok && hasCodec(supported, te) {
		ans.Codecs = append(ans.Codecs, te)
	}
	if len(offer.Crypto) > 0 { // SDES: the first attribute of the offer, with a key of ours
		c, err := NewCrypto(offer.Crypto[0].Tag, offer.Crypto[0].Suite)
		if err != nil {
			return nil, err
		}
		ans.Crypto = []Crypto{c}
		ans.Profile = offer.Profile
	}
	switch offer.Direction {
	case SendOnly:
		ans.Direction = RecvOnly
	case RecvOnly:
		ans.Direction = SendOnly
	case Inactive:
		ans.Direction = Inactive
	default:
		ans.Direction = SendRecv
	}
	return ans, nil
}

func hasCodec(list []Codec, c Codec) bool {
	for _, s := range list {
		if s.Same(c) {
			return true
		}
	}
	return false
}

// Offer builds an offer for a local endpoint at addr:port with codecs (nil for DefaultCodecs).
func Offer(addr netip.Addr, port int, codecs []Codec, sessionID uint64) *Description {
	if codecs == nil {
		codecs = DefaultCodecs()
	}
	return &Description{Addr: addr, Port: port, RTCPPort: port + 1, Codecs: codecs, PTime: 20,
		Direction: SendRecv, SessionID: sessionID, Version: 1}
}

// Negotiated checks an answer against the offer it answers and returns the answer's chosen
// codec (the first non-telephone-event one present in the offer).
func Negotiated(offer, answer *Description) (Codec, error) {
	for _, c := range answer.Codecs {
		if c.IsTelephoneEvent() {
			continue
		}
		if hasCodec(offer.Codecs, c) {
			return c, nil
		}
	}
	return Codec{}, ErrNoCommonCodec
}
