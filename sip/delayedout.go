package sip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/nkbridge/nkbridge/internal/sdes"
	"github.com/nkbridge/nkbridge/sip/sdpdir"
)

// Outbound delayed offer (Trunk.DelayedOffer, RFC 3261 §13.2.1): the INVITE goes without SDP,
// the peer offers in its 200 and we answer in the ACK. The answer is made from the offer the
// media prepared for the call (DialOptions.Offer: its address, port and codecs): the first
// codec of the peer's offer that it has, under the peer's payload type, with the peer's
// telephone-event at that clock rate when both have one, and the direction answering the
// peer's. The peer's offer then reaches the caller of Dial as the call's RemoteSDP, like an
// answer to the media's offer.

// errNoDelayedAnswer: the 200 to an offerless INVITE carried no offer we can answer.
var errNoDelayedAnswer = errors.New("sip: the 200 to our INVITE without SDP has no usable SDP offer")

type sdpCodec struct {
	pt          string
	name        string // lower case
	rate        string
	rtpmap      string // the rtpmap value after "PT ", "" for a static type without one
	fmtp        string // the fmtp value after "PT ", if any
	isTelephone bool
}

// audioCodecs returns the first audio stream of d and its codecs, in order.
func audioCodecs(d *sdp.SessionDescription) (*sdp.MediaDescription, []sdpCodec) {
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		rtpmap, fmtp := map[string]string{}, map[string]string{}
		for _, a := range m.Attributes {
			pt, rest, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			switch a.Key {
			case "rtpmap":
				rtpmap[pt] = strings.TrimSpace(rest)
			case "fmtp":
				fmtp[pt] = strings.TrimSpace(rest)
			}
		}
		var out []sdpCodec
		for _, pt := range m.MediaName.Formats {
			c := sdpCodec{pt: pt, rtpmap: rtpmap[pt], fmtp: fmtp[pt]}
			switch {
			case c.rtpmap != "":
				f := strings.Split(c.rtpmap, "/")
				if len(f) < 2 {
					continue
				}
				c.name, c.rate = strings.ToLower(f[0]), f[1]
			case pt == "0":
				c.name, c.rate = "pcmu", "8000"
			case pt == "8":
				c.name, c.rate = "pcma", "8000"
			default:
				continue
			}
			c.isTelephone = c.name == "telephone-event"
			out = append(out, c)
		}
		return m, out
	}
	return nil, nil
}

func findCodec(list []sdpCodec, name, rate string) (sdpCodec, bool) {
	for _, c := range list {
		if c.name == name && c.rate == rate {
			return c, true
		}
	}
	return sdpCodec{}, false
}

// delayedAnswer answers the peer's offer from our prepared offer (see above).
func delayedAnswer(ours, peer []byte) ([]byte, error) {
	if len(peer) == 0 || len(peer) > 64<<10 {
		return nil, errNoDelayedAnswer
	}
	info, err := sdpdir.Parse(peer)
	if err != nil || !info.HasAudio || info.Port == 0 {
		return nil, errNoDelayedAnswer
	}
	var po, oo sdp.SessionDescription
	if err := po.UnmarshalString(string(peer)); err != nil {
		return nil, errNoDelayedAnswer
	}
	if err := oo.UnmarshalString(string(sdes.Strip(ours))); err != nil {
		return nil, fmt.Errorf("sip: our delayed-offer SDP: %w", err)
	}
	pm, pcs := audioCodecs(&po)
	om, ocs := audioCodecs(&oo)
	if pm == nil || om == nil {
		return nil, errNoDelayedAnswer
	}
	if strings.Join(pm.MediaName.Protos, "/") != "RTP/AVP" {
		return nil, fmt.Errorf("%w (profile %s: only RTP/AVP)", errNoDelayedAnswer, strings.Join(pm.MediaName.Protos, "/"))
	}
	var chosen []sdpCodec
	for _, c := range pcs {
		if c.isTelephone {
			continue
		}
		if _, ok := findCodec(ocs, c.name, c.rate); ok {
			chosen = append(chosen, c)
			break
		}
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("%w (no codec in common)", errNoDelayedAnswer)
	}
	if te, ok := findCodec(pcs, "telephone-event", chosen[0].rate); ok {
		if _, ours := findCodec(ocs, "telephone-event", chosen[0].rate); ours {
			chosen = append(chosen, te)
		}
	}
	// Our stream with only the chosen formats, under the peer's numbers.
	om.MediaName.Formats = nil
	var attrs []sdp.Attribute
	for _, a := range om.Attributes {
		if a.Key != "rtpmap" && a.Key != "fmtp" {
			attrs = append(attrs, a)
		}
	}
	var fa []sdp.Attribute
	for _, c := range chosen {
		om.MediaName.Formats = append(om.MediaName.Formats, c.pt)
		if c.rtpmap != "" {
			fa = append(fa, sdp.Attribute{Key: "rtpmap", Value: c.pt + " " + c.rtpmap})
		} else {
			fa = append(fa, sdp.Attribute{Key: "rtpmap", Value: c.pt + " " + strings.ToUpper(c.name) + "/" + c.rate})
		}
		if c.fmtp != "" {
			fa = append(fa, sdp.Attribute{Key: "fmtp", Value: c.pt + " " + c.fmtp})
		}
	}
	om.Attributes = append(fa, attrs...)
	// One m= line per line of the offer (RFC 3264 §6): the audio stream we answer, the others
	// refused with port 0.
	oo.MediaDescriptions = nil
	for _, m := range po.MediaDescriptions {
		if m == pm {
			oo.MediaDescriptions = append(oo.MediaDescriptions, om)
			continue
		}
		oo.MediaDescriptions = append(oo.MediaDescriptions, &sdp.MediaDescription{MediaName: sdp.MediaName{
			Media: m.MediaName.Media, Port: sdp.RangedPort{Value: 0}, Protos: m.MediaName.Protos, Formats: m.MediaName.Formats}})
	}
	b, err := oo.Marshal()
	if err != nil {
		return nil, err
	}
	return sdpdir.Set(b, sdpdir.AnswerFor(info))
}

// delayedFailed is, for an answered delayed-offer call, why the 200's offer could not be
// answered in the ACK: a 488 *StatusError (the call is to be hung up), else nil.
func (c *Call) delayedFailed() error {
	c.mu.Lock()
	err := c.delayedErr
	c.mu.Unlock()
	if err == nil {
		return nil
	}
	c.s.log.Info("sip: no answer to the offer in the 200 of a delayed-offer INVITE, hanging up", "sip_call_id", c.callID, "why", err.Error())
	return &StatusError{Code: 488, Reason: "Not Acceptable Here (" + strings.TrimPrefix(err.Error(), "sip: ") + ")"}
}
